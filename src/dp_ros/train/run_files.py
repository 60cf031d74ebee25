"""A run's files under output.dir, and the metrics and loss curve made from them."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunPaths:
    """Where a run writes, under output.dir."""

    root: Path

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def loss_curve(self) -> Path:
        return self.root / "loss_curve.png"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def replaced(self) -> Path:
        """Where output.overwrite keeps the previous run until the new one has finished."""
        return self.root / ".replaced_run"

    def run_files(self) -> tuple[Path, ...]:
        """Everything a run writes; nothing else under root is ever moved or deleted."""
        return (
            self.checkpoints,
            self.tensorboard,
            self.metrics,
            self.loss_curve,
            self.summary,
            self.config,
        )


# output.overwrite replaces a run the way a staged import replaces a store: the old run is not
# destroyed before the new one exists. It is renamed aside (same directory, so no copy), put back
# if the new run fails, and deleted only when the new run has finished. A new run stopped by
# Ctrl-C is resumable, so it stays in place and the old run stays aside until the resumed run
# finishes. A crash (SIGKILL) leaves the old run whole under .replaced_run.


def set_aside_previous_run(paths: RunPaths) -> None:
    """Move the previous run's files under paths.replaced. If an earlier overwrite never
    finished, .replaced_run already holds the last finished run: keep it, and delete the files
    of the unfinished run in front of it (the ones being overwritten)."""
    if paths.replaced.is_dir():
        for path in paths.run_files():
            _remove(path)
        return
    present = [path for path in paths.run_files() if path.exists()]
    if not present:
        return
    staging = paths.root / f".replacing-{os.getpid()}"  # renamed in whole: never half aside
    staging.mkdir()
    for path in present:
        os.rename(path, staging / path.name)
    os.rename(staging, paths.replaced)


def restore_previous_run(paths: RunPaths) -> None:
    """The new run failed: delete its files and put the previous run back where it was."""
    if not paths.replaced.is_dir():
        return
    for path in paths.run_files():
        _remove(path)
    for entry in paths.replaced.iterdir():
        os.rename(entry, paths.root / entry.name)
    paths.replaced.rmdir()


def discard_previous_run(paths: RunPaths) -> None:
    """The new run finished: the previous one is no longer needed."""
    shutil.rmtree(paths.replaced, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a run's metrics.jsonl."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_loss_curve(rows: list[Mapping[str, Any]], path: Path) -> None:
    """Training loss per step and validation loss per epoch, log scale, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4.5), dpi=100)
    for name, style in (("train/loss", "-"), ("val/loss", "o-")):
        points = [(row["step"], row[name]) for row in rows if name in row]
        if points:
            steps, values = zip(*points, strict=True)
            axis.plot(steps, values, style, label=name, markersize=3)
    axis.set_xlabel("optimiser step")
    axis.set_ylabel("diffusion loss (MSE)")
    if any(name in row for row in rows for name in ("train/loss", "val/loss")):
        axis.set_yscale("log")
        axis.legend()
    axis.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def latest_values(rows: list[Mapping[str, Any]]) -> dict[str, float]:
    latest: dict[str, float] = {}
    for row in rows:
        latest.update({k: v for k, v in row.items() if k not in ("step", "epoch")})
    return latest
