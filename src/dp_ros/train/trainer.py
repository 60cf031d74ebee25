"""The trainer: one `Trainer.run()` that calls small named steps, for every device set-up.

    check_inputs    every input error (dataset, keys, shapes, output dir, resume point, hook)
                    raised before a process is started or a weight is allocated
    setup_fabric    Lightning Fabric: CPU, one GPU, N GPUs or several nodes (DDP), bf16 on GPU
    prepare_output  set an old run's files aside when output.overwrite asks for it: put back if
                    the new run fails, deleted when it finishes (run_files.py)
    setup_data      SequenceDataset split by episode; normaliser statistics from training only;
                    a consistency student's teacher solutions (teacher_bank.py)
    setup_policy    make_policy + AdamW + warm-up/cosine schedule + EMA
    restore         resume from a checkpoint exactly where it stopped (weights, optimiser,
                    schedule, EMA, step, epoch, position in the epoch, random generators)
    train           epochs of train_step; validate / save_checkpoint / evaluate at the cadence
                    the config asks for
    finish          loss-curve PNG, summary.json, a cross-rank weight check

Checkpoints (output.dir/checkpoints/<name>/) hold the EMA weights as the policy (the contract's
policy.safetensors + policy.json) plus the trainer state (see `dp_ros.train.state`):
`epoch_NNNN` every `training.checkpoint_every_epochs`, `last` (always resumable) and `best`
(policy only, by `training.best_metric`).

Restore and the checkpoint writers live in `checkpointing` (TrainerCheckpoints), the progress
bar and metric logs in `run_log` (TrainerLogs), the per-rank epoch sampler and seeding in
`sampling`, AdamW's parameter groups and the schedule in `optimizers`, a consistency
student's teacher solutions in `teacher_bank`, Ctrl-C/SIGTERM handling in `stopping`.

Shapes: B batch, To obs steps, T horizon, Da action dim.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dp_ros.data.sequence import SequenceDataset
from dp_ros.files import atomic_write_text
from dp_ros.policy import EMA, DiffusionPolicy, load_policy, make_policy
from dp_ros.train.checkpointing import TrainerCheckpoints
from dp_ros.train.config import TrainConfig
from dp_ros.train.inputs import EvalHook, check_inputs, resolve_eval_hook
from dp_ros.train.optimizers import make_lr_scheduler, make_optimizer
from dp_ros.train.run_files import (
    RunPaths,
    discard_previous_run,
    latest_values,
    plot_loss_curve,
    read_metrics,
    restore_previous_run,
    set_aside_previous_run,
)
from dp_ros.train.run_log import TrainerLogs
from dp_ros.train.sampling import RANK_SEED_STRIDE, EpochSampler, seed_everything
from dp_ros.train.stopping import StopRequests, TrainingInterrupted
from dp_ros.train.teacher_bank import TeacherSolutions

# Validation draws its noise from a fixed seed, so successive validation losses differ because
# the model changed, not because the noise did; and it never touches the training generators.
VALIDATION_SEED_OFFSET = 7_919


class Trainer(TrainerCheckpoints, TrainerLogs):
    """Trains a Diffusion Policy on an episode store as `config` says. Use `run()`."""

    def __init__(self, config: TrainConfig, eval_hook: EvalHook | None = None) -> None:
        self.config = config
        self.paths = RunPaths(Path(config.output.dir))
        self._eval_hook = eval_hook
        self.step = 0  # optimiser steps done
        self.epoch = 0  # epochs done
        self.batch_in_epoch = 0  # batches done in the current epoch
        self.best_value: float | None = None
        self._last_saved_step = -1
        self._stop_requested = threading.Event()  # Ctrl-C: finish the step, save, stop
        self._replacing = False  # this fresh run set an old one aside (output.overwrite)
        self.step_times: list[float] = []  # seconds per step, data wait included
        self.wait_times: list[float] = []  # seconds per step spent waiting for the batch
        self.grad_norms: list[torch.Tensor] = []  # pre-clipping norms since the last log row

    # ---- the run ---------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Check inputs, train, and return the run summary (final_metrics on rank 0 only)."""
        self.check_inputs()
        self.setup_fabric()
        self.prepare_output()
        try:
            summary = self._train_and_finish()
        except TrainingInterrupted:
            raise  # resumable: the new run stays, the old one stays aside until it finishes
        except BaseException:
            if self.is_main and self._replacing:
                restore_previous_run(self.paths)
            raise
        if self.is_main:
            discard_previous_run(self.paths)
        return summary

    def _train_and_finish(self) -> dict[str, Any]:
        self.setup_data()
        self.setup_policy()
        self.restore()
        self.open_logs()
        self.announce()
        try:
            with StopRequests() as stop:
                self._stop_requested = stop.requested
                self.train()
            if stop.requested.is_set():
                self.save_checkpoint("last")
                raise TrainingInterrupted(self.step, self.epoch, self.paths.checkpoints / "last")
        finally:
            self.close_logs()
        return self.finish()

    # ---- inputs ----------------------------------------------------------------------------

    def check_inputs(self) -> None:
        """Raise TrainConfigError naming the first input that cannot work (see inputs.py)."""
        inputs = check_inputs(self.config, self.paths)
        self.obs_keys, self.shape_meta = inputs.obs_keys, inputs.shape_meta
        self.policy_config, self.resume_dir = inputs.policy_config, inputs.resume_dir
        self.deployment = inputs.deployment
        if self._eval_hook is None and self.config.eval.hook:
            self._eval_hook = resolve_eval_hook(self.config.eval.hook, self.config.eval.kwargs)

    # ---- set-up ----------------------------------------------------------------------------

    def setup_fabric(self) -> None:
        """Start Lightning Fabric; with more than one process this launches the others."""
        from lightning.fabric import Fabric

        hw = self.config.fabric
        accelerator = hw.accelerator
        if accelerator == "auto":
            accelerator = "cuda" if torch.cuda.is_available() else "cpu"
        accelerator = "cuda" if accelerator == "gpu" else accelerator
        precision = hw.precision
        if precision == "auto":
            # bf16 autocast: the GPU's fast path without fp16's loss scaling.
            precision = "bf16-mixed" if accelerator == "cuda" else "32-true"
        strategy = hw.strategy
        if strategy == "auto" and (hw.num_nodes > 1 or (hw.devices != "auto" and hw.devices > 1)):
            strategy = "ddp"
        self.fabric = Fabric(
            accelerator=accelerator,
            devices=hw.devices,
            num_nodes=hw.num_nodes,
            strategy=strategy,
            precision=precision,
        )
        self.precision = precision
        self.fabric.launch()
        self.rank = self.fabric.global_rank
        self.world_size = self.fabric.world_size
        self.is_main = self.rank == 0

    def prepare_output(self) -> None:
        """With output.overwrite on a fresh run, set the old run's files aside (rank 0, once)."""
        if self.is_main and self.resume_dir is None and self.config.output.overwrite:
            set_aside_previous_run(self.paths)
            self._replacing = True
        self.fabric.barrier()

    def setup_data(self) -> None:
        dataset, training = self.config.dataset, self.config.training
        self.train_set = SequenceDataset(
            dataset.path,
            horizon=self.policy_config.horizon,
            n_obs_steps=self.policy_config.n_obs_steps,
            n_action_steps=self.policy_config.n_action_steps,
            obs_keys=self.obs_keys,
            val_ratio=dataset.val_ratio,
            seed=training.seed,
            max_train_episodes=dataset.max_train_episodes,
            image_cache_bytes=int(dataset.image_cache_gb * 1024**3),
        )
        self.val_set = self.train_set.get_validation_dataset()
        self.stats = self.train_set.compute_stats()
        self.teacher = self._load_teacher()
        train_entries = self._with_teacher_solutions(self.train_set, training.seed)
        self.train_sampler = EpochSampler(
            len(train_entries), self.rank, self.world_size, training.seed, shuffle=True
        )
        self.train_loader = self._loader(train_entries, self.train_sampler, training.batch_size)
        self.steps_per_epoch = math.ceil(self.train_sampler.per_rank / training.batch_size)
        self.val_loader = None
        if len(self.val_set) > 0:
            val_seed = training.seed + VALIDATION_SEED_OFFSET
            val_entries = self._with_teacher_solutions(self.val_set, val_seed)
            sampler = EpochSampler(len(val_entries), self.rank, self.world_size, 0, False)
            batch = training.val_batch_size or training.batch_size
            self.val_loader = self._loader(val_entries, sampler, batch)

    def _with_teacher_solutions(self, windows: SequenceDataset, seed: int):
        """The windows themselves, or for a consistency student the windows with their
        teacher's solutions (computed here, identically on every rank)."""
        if self.teacher is None:
            return windows
        return TeacherSolutions(
            windows,
            self.teacher,
            self.policy_config,
            seed,
            self.config.training.val_batch_size or self.config.training.batch_size,
            progress=self.is_main and self.config.training.progress_bar,
        )

    def _loader(self, dataset: SequenceDataset, sampler: EpochSampler, batch_size: int):
        workers = self.config.training.num_workers
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=workers,
            pin_memory=self.fabric.device.type == "cuda",
            # Worker seeds come from this generator, not from the training generators.
            generator=torch.Generator().manual_seed(self.config.training.seed),
            persistent_workers=False,
        )
        return self.fabric.setup_dataloaders(loader, use_distributed_sampler=False)

    def setup_policy(self) -> None:
        optim, training = self.config.optim, self.config.training
        torch.manual_seed(training.seed)  # the same initial weights on every rank
        self.policy = make_policy(self.policy_config, self.stats)
        if self.teacher is not None:  # a student starts from its teacher (same architecture)
            self.policy.load_state_dict(self.teacher.state_dict())
            # The teacher's solutions are in its normalised units: the student keeps its stats.
            self.policy.normalizer.stats = self.teacher.normalizer.stats
            self.teacher = None  # its solutions are banked: free its weights for training
        optimizer = make_optimizer(self.policy, optim)
        self.model, self.optimizer = self.fabric.setup(self.policy, optimizer)
        # compute_loss is the training forward: route it through DDP's gradient sync.
        self.model.mark_forward_method("compute_loss")
        self.ema = None
        if self.config.ema.enabled:
            ema = self.config.ema
            self.ema = EMA(self.policy, ema.power, ema.max_decay, ema.min_decay)
        self.total_steps = training.epochs * self.steps_per_epoch
        self.lr_scheduler = make_lr_scheduler(optimizer, optim, self.total_steps)
        seed_everything(training.seed + RANK_SEED_STRIDE * self.rank)

    def _load_teacher(self) -> DiffusionPolicy | None:
        """A consistency student's frozen teacher (same architecture, see inputs.py)."""
        if self.policy_config.objective != "consistency":
            return None
        teacher = load_policy(self.policy_config.consistency.teacher, self.fabric.device)
        return teacher.eval().requires_grad_(False)

    @property
    def deploy_policy(self) -> torch.nn.Module:
        """The weights checkpoints publish as the policy: the EMA when enabled."""
        return self.ema.averaged if self.ema is not None else self.policy

    # ---- training --------------------------------------------------------------------------

    def train(self) -> None:
        """Epochs until training.epochs or training.max_steps; ends with a `last` checkpoint."""
        epochs = self.config.training.epochs
        if self.step == 0 and self.config.training.val_at_start:
            self.log(self.validate())  # the untrained baseline of the validation curve
        while self.epoch < epochs and not self._should_stop():
            if not self.train_epoch():
                break  # max_steps reached part-way through the epoch
            self.epoch += 1
            self.batch_in_epoch = 0
            self.end_of_epoch()
        if self._stop_requested.is_set():
            return  # run() saves `last` and reports how to resume
        if self._last_saved_step != self.step and self.config.output.final_checkpoint:
            self.save_checkpoint("last")

    def _reached_max_steps(self) -> bool:
        max_steps = self.config.training.max_steps
        return max_steps is not None and self.step >= max_steps

    def _should_stop(self) -> bool:
        return self._stop_requested.is_set() or self._reached_max_steps()

    def train_epoch(self) -> bool:
        """The rest of the current epoch; False when max_steps or Ctrl-C stopped it early."""
        batch_size = self.config.training.batch_size
        self.train_sampler.start(self.epoch, skip=self.batch_in_epoch * batch_size)
        self.model.train()
        losses: list[torch.Tensor] = []
        batches = iter(self.train_loader)
        while self.batch_in_epoch < self.steps_per_epoch:
            started = time.perf_counter()
            batch = next(batches)
            waited = time.perf_counter() - started
            losses.append(self.train_step(batch))
            self.batch_in_epoch += 1
            self.step += 1
            self._record_speed(waited, time.perf_counter() - started)
            if self.step % self.config.training.log_every_steps == 0:
                self.log_train(losses)
                losses = []
            if self._should_stop() and self.batch_in_epoch < self.steps_per_epoch:
                if losses:
                    self.log_train(losses)
                return False
        if losses:
            self.log_train(losses)
        return True

    def train_step(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """One optimiser step on one batch; returns the (detached) loss."""
        loss = self.model.compute_loss(batch)
        self.fabric.backward(loss)
        clip = self.config.optim.grad_clip_norm
        if clip is not None:  # the norm before clipping, for train/grad_norm and clipped_share
            norm = self.fabric.clip_gradients(self.model, self.optimizer, max_norm=clip)
            self.grad_norms.append(norm.detach().float())
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.lr_scheduler.step()
        if self.ema is not None:
            self.ema.update(self.policy)
        return loss.detach()

    def end_of_epoch(self) -> None:
        """Validation, checkpoints and the evaluation hook, each at its own cadence."""
        training, final = self.config.training, self.epoch == self.config.training.epochs
        metrics: dict[str, float] = {}
        if self.epoch % training.val_every_epochs == 0 or final:
            metrics.update(self.validate())
        hook_due = self._eval_hook is not None and (
            self.epoch % self.config.eval.every_epochs == 0 or final
        )
        if self.epoch % training.checkpoint_every_epochs == 0 or final or hook_due:
            saved = self.save_checkpoint(f"epoch_{self.epoch:04d}")
            self.link_checkpoint(saved, "last")
            if hook_due:
                metrics.update(self.evaluate(saved))
        self.log(metrics)
        self.update_best(metrics)

    # ---- validation and evaluation ---------------------------------------------------------

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Diffusion loss and sampled-action MSE of the deployed (EMA) policy on held-out data."""
        if self.val_loader is None:
            return {}
        model, training = self.deploy_policy, self.config.training
        model.eval()
        losses, mses = [], []
        cuda = self.fabric.device.type == "cuda"
        devices = [self.fabric.device.index or 0] if cuda else []
        with torch.random.fork_rng(devices=devices), self.fabric.autocast():
            torch.manual_seed(training.seed + VALIDATION_SEED_OFFSET + self.rank)
            for index, batch in enumerate(self.val_loader):
                if training.val_max_batches is not None and index >= training.val_max_batches:
                    break
                losses.append(model.compute_loss(batch).float())
                if index < training.action_mse_batches:
                    predicted = model.predict_action(batch["obs"])["action_pred"]
                    mses.append(F.mse_loss(predicted.float(), batch["action"].float()))
        loss = self.fabric.all_reduce(torch.stack(losses).mean(), reduce_op="mean")
        metrics = {"val/loss": float(loss)}
        if mses:
            mse = self.fabric.all_reduce(torch.stack(mses).mean(), reduce_op="mean")
            metrics["val/action_mse"] = float(mse)
        return metrics

    def evaluate(self, checkpoint: Path) -> dict[str, float]:
        """Run the evaluation hook on a saved checkpoint (rank 0; the others wait)."""
        results: dict[str, float] = {}
        if self.is_main:
            with torch.random.fork_rng(devices=[]):
                raw = self._eval_hook(checkpoint)
            for name, value in dict(raw).items():
                results[name if "/" in name else f"eval/{name}"] = float(value)
        self.fabric.barrier()
        return self.fabric.broadcast(results, src=0)

    def update_best(self, metrics: Mapping[str, float]) -> None:
        """Save the policy as `best` when the chosen metric improved."""
        training = self.config.training
        value = metrics.get(training.best_metric)
        if value is None:
            return
        better = self.best_value is None or (
            value < self.best_value if training.best_mode == "min" else value > self.best_value
        )
        if better:
            self.best_value = value
            self.save_checkpoint("best", policy_only=True, metrics=metrics)

    # ---- the end ---------------------------------------------------------------------------

    def finish(self) -> dict[str, Any]:
        """Loss curve, summary.json and a check that every rank holds the same weights."""
        checksums = self.fabric.all_gather(_weights_checksum(self.policy)).reshape(-1, 2)
        waits, steps = np.array(self.wait_times), np.array(self.step_times)
        samples = self.config.training.batch_size * self.world_size
        summary = {
            "steps": self.step,
            "epochs": self.epoch,
            "world_size": self.world_size,
            "rank": self.rank,
            "precision": self.precision,
            "best": {"metric": self.config.training.best_metric, "value": self.best_value},
            "checkpoints": str(self.paths.checkpoints),
            "rank_weight_checksums": checksums.cpu().tolist(),
            "samples_per_s_median": float(samples / np.median(steps)) if steps.size else None,
            "data_wait_s_median": float(np.median(waits)) if waits.size else None,
            "step_s_median": float(np.median(steps)) if steps.size else None,
        }
        if self.is_main:
            rows = read_metrics(self.paths.metrics) if self.paths.metrics.is_file() else []
            summary["final_metrics"] = latest_values(rows)
            plot_loss_curve(rows, self.paths.loss_curve)
            atomic_write_text(self.paths.summary, json.dumps(summary, indent=1))
        self.fabric.barrier()
        return summary


# ---- helpers -----------------------------------------------------------------------------------


def _weights_checksum(module: torch.nn.Module) -> torch.Tensor:
    """(sum, sum of squares) of all parameters in float64: equal on ranks that agree."""
    total = torch.zeros(2, dtype=torch.float64, device=next(module.parameters()).device)
    for parameter in module.parameters():
        data = parameter.detach().double()
        total[0] += data.sum()
        total[1] += (data * data).sum()
    return total
