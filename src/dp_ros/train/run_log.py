"""The trainer's logs: a progress bar, TensorBoard scalars and metrics.jsonl (rank 0 only), and
the step timings behind the speed metrics. A mixin of ``Trainer``: it reads the run's state from
the trainer's attributes."""

from __future__ import annotations

import json
from collections.abc import Mapping

import torch
from tqdm import tqdm

from dp_ros.train.run_files import read_metrics


class TrainerLogs:
    """Logging for ``Trainer``; ``open_logs`` before the first step, ``close_logs`` after."""

    def open_logs(self) -> None:
        self._writer = None
        self._bar = None
        if not self.is_main:
            return
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(str(self.paths.tensorboard), purge_step=self.step or None)
        self._truncate_metrics(self.step)
        self.paths.config.write_text(json.dumps(self.config.to_dict(), indent=1))
        total = min(self.total_steps, self.config.training.max_steps or self.total_steps)
        self._bar = tqdm(
            total=total,
            initial=min(self.step, total),
            unit="step",
            dynamic_ncols=True,
            disable=not self.config.training.progress_bar,
        )

    def announce(self) -> None:
        """The start-up summary a person reads first (rank 0): data, model, device, output."""
        if not self.is_main:
            return
        train_set = self.train_set
        n_train, n_val = len(train_set.train_episodes), len(train_set.val_episodes)
        params = sum(p.numel() for p in self.policy.parameters())
        fabric = self.config.fabric
        start = f"resuming at step {self.step} (epoch {self.epoch})" if self.step else "new run"
        lines = [
            f"dataset  {self.config.dataset.path}: {n_train + n_val} episodes "
            f"({n_train} train, {n_val} validation), {len(train_set)} training windows",
            f"policy   {params / 1e6:.2f} M parameters; observations {list(self.obs_keys)}",
            f"device   {self.fabric.device} x {self.world_size} process(es), precision "
            f"{fabric.precision}, torch threads {torch.get_num_threads()}",
            f"schedule {self.config.training.epochs} epochs x {self.steps_per_epoch} steps "
            f"(batch {self.config.training.batch_size}); {start}",
            f"output   {self.paths.root} (Ctrl-C saves checkpoints/last and prints how to resume)",
        ]
        if self.policy_config.objective == "consistency":
            settings = self.policy_config.consistency
            lines.insert(2, (
                f"teacher  {settings.teacher}: {settings.bank_noises} DDIM-"
                f"{settings.teacher_steps} solutions per window, computed before training; an "
                "epoch visits each once"
            ))  # fmt: skip
        self._say("\n".join(f"dp-train: {line}" for line in lines))

    def _say(self, text: str) -> None:
        """A console line that does not break the progress bar."""
        if self._bar is not None:
            self._bar.write(text)
        else:
            print(text, flush=True)

    def close_logs(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._writer is not None:
            self._writer.close()

    def log(self, metrics: Mapping[str, float]) -> None:
        """One row of metrics at the current step: TensorBoard and metrics.jsonl (rank 0)."""
        if not self.is_main or not metrics:
            return
        for name, value in metrics.items():
            self._writer.add_scalar(name, value, self.step)
        row = {"step": self.step, "epoch": self.epoch, **metrics}
        shown = {
            name: value for name, value in metrics.items() if name.startswith(("val/", "eval/"))
        }
        if shown:  # validation on the console too, not only in TensorBoard
            values = ", ".join(f"{name} {value:.4g}" for name, value in shown.items())
            self._say(f"dp-train: epoch {self.epoch} step {self.step}: {values}")
        with open(self.paths.metrics, "a") as handle:
            handle.write(json.dumps(row) + "\n")

    def _truncate_metrics(self, step: int) -> None:
        """Drop rows past `step` (a resumed run rewrites them), or all rows on a fresh run."""
        path = self.paths.metrics
        if not path.is_file():
            return
        rows = read_metrics(path) if step else []
        kept = [row for row in rows if row["step"] <= step]
        path.write_text("".join(json.dumps(row) + "\n" for row in kept))

    def _record_speed(self, waited: float, total: float) -> None:
        self.wait_times.append(waited)
        self.step_times.append(total)
        if self._bar is not None:
            self._bar.update(1)

    def log_train(self, losses: list[torch.Tensor]) -> None:
        """Mean loss over the last steps and all ranks, learning rate and speed."""
        loss = self.fabric.all_reduce(torch.stack(losses).mean(), reduce_op="mean")
        recent = self.step_times[-len(losses) :]
        samples = self.config.training.batch_size * self.world_size
        metrics = {
            "train/loss": float(loss),
            "train/lr": float(self.lr_scheduler.get_last_lr()[0]),
            "perf/samples_per_s": samples * len(recent) / max(sum(recent), 1e-9),
            "perf/data_wait_frac": sum(self.wait_times[-len(losses) :]) / max(sum(recent), 1e-9),
        }
        metrics.update(self._clipping_metrics())
        if self._bar is not None:
            self._bar.set_postfix(
                loss=f"{metrics['train/loss']:.4f}",
                lr=f"{metrics['train/lr']:.2e}",
                samples_s=f"{metrics['perf/samples_per_s']:.0f}",
            )
        self.log(metrics)

    def _clipping_metrics(self) -> dict[str, float]:
        """Mean gradient norm before clipping, and the share of steps clipping acted on, over
        the steps since the last row (with optim.grad_clip_norm set)."""
        if not self.grad_norms:
            return {}
        norms = torch.stack(self.grad_norms)
        self.grad_norms = []
        clipped = (norms > self.config.optim.grad_clip_norm).float().mean()
        return {
            "train/grad_norm": float(self.fabric.all_reduce(norms.mean(), reduce_op="mean")),
            "train/clipped_share": float(self.fabric.all_reduce(clipped, reduce_op="mean")),
        }
