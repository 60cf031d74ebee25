"""A run's files under output.dir, and the metrics and loss curve made from them."""

from __future__ import annotations

import json
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
