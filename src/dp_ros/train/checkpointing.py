"""The trainer's checkpoints: resume from one exactly where it stopped, write one (staged, then
moved into place, so a killed run never leaves half a checkpoint), publish one again under a
second name. A mixin of ``Trainer``: it reads the run's state from the trainer's attributes."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from dp_ros.policy import save_policy
from dp_ros.train import state as train_state
from dp_ros.train.sampling import RANK_SEED_STRIDE, seed_everything


class TrainerCheckpoints:
    """Checkpoint reading and writing for ``Trainer`` (see the trainer module's docstring)."""

    def restore(self) -> None:
        """Continue from `self.resume_dir` (checked in check_inputs), if any."""
        if self.resume_dir is None:
            return
        tensors, document = train_state.load_state(self.resume_dir)
        self.policy.load_state_dict(train_state.unprefixed("model", tensors), strict=True)
        if self.ema is not None:
            self.ema.load_state_dict(train_state.unprefixed("ema", tensors))
        train_state.optimizer_from_flat(self.optimizer.optimizer, tensors, document["optimizer"])
        self.lr_scheduler.load_state_dict(document["lr_scheduler"])
        self.step = document["step"]
        self.epoch = document["epoch"]
        self.batch_in_epoch = document["batch_in_epoch"]
        self.best_value = document["best"]["value"]
        self._last_saved_step = self.step
        same_layout = document["world_size"] == self.world_size
        if not (same_layout and train_state.load_rng(self.resume_dir, self.rank)):
            # Another process count: the old generators do not map onto these ranks.
            seed_everything(self.config.training.seed + RANK_SEED_STRIDE * self.rank + self.step)
            if not same_layout:
                self.batch_in_epoch = 0  # the epoch's split differs; restart the epoch
                self.fabric.print(
                    f"resuming with {self.world_size} processes instead of "
                    f"{document['world_size']}: random streams and epoch position restart"
                )

    def save_checkpoint(
        self, name: str, policy_only: bool = False, metrics: Mapping[str, float] | None = None
    ) -> Path:
        """Write checkpoints/<name>/ (staged, then moved into place); all ranks call this."""
        final = self.paths.checkpoints / name
        staging = self.paths.checkpoints / f".staging-{name}"
        if self.is_main:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
        self.fabric.barrier()
        if not policy_only:
            train_state.save_rng(staging, self.rank)
        if self.is_main:
            save_policy(self.deploy_policy, staging, self._policy_metadata(metrics))
            if not policy_only:
                tensors, document = self._trainer_state()
                train_state.save_state(staging, tensors, document)
        self.fabric.barrier()
        if self.is_main:
            train_state.publish_directory(staging, final)
        self.fabric.barrier()
        if not policy_only:
            self._last_saved_step = self.step
        return final

    def link_checkpoint(self, source: Path, name: str) -> None:
        """Publish `source` again as `name` with hard links (no second copy of the weights)."""
        if self.is_main:
            staging = self.paths.checkpoints / f".staging-{name}"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            for file in source.iterdir():
                try:
                    os.link(file, staging / file.name)
                except OSError:
                    shutil.copy2(file, staging / file.name)
            train_state.publish_directory(staging, self.paths.checkpoints / name)
        self.fabric.barrier()

    def _trainer_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = train_state.prefixed("model", self.policy.state_dict())
        if self.ema is not None:
            tensors.update(train_state.prefixed("ema", self.ema.state_dict()))
        optimizer_tensors, optimizer_document = train_state.optimizer_to_flat(
            self.optimizer.optimizer
        )
        tensors.update(optimizer_tensors)
        training = self.config.training
        document = {
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "world_size": self.world_size,
            "best": {
                "metric": training.best_metric,
                "mode": training.best_mode,
                "value": self.best_value,
            },
            "optimizer": optimizer_document,
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "train_config": self.config.to_dict(),
        }
        return tensors, document

    def _policy_metadata(self, metrics: Mapping[str, float] | None) -> dict[str, Any]:
        return {
            "trainer": {
                "step": self.step,
                "epoch": self.epoch,
                "ema": self.ema is not None,
                "dataset": str(self.config.dataset.path),
                "train_episodes": self.train_set.train_episodes.tolist(),
                "val_episodes": self.train_set.val_episodes.tolist(),
                "metrics": dict(metrics or {}),
            },
            "deployment": self.deployment,
        }
