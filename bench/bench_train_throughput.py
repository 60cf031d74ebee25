"""Training throughput of the full-size policies, through the real trainer, as JSON.

    .venv/bin/python bench/bench_train_throughput.py                    # CPU, a few steps
    python bench/bench_train_throughput.py --device cuda --precision bf16-mixed 32-true --steps 30

Two cases, the paper's sizes and batch sizes: the image policy (two 84x84 cameras, ResNet-18
per camera, U-Net [256, 512, 1024]) at batch 64, and the low-dim policy (robot + object state)
at batch 256. Each runs `Trainer.run()` on a synthetic store (`dp_ros.data.synthetic`) for
warm-up + measured steps: data loading, forward, backward, clipping, AdamW, EMA and Fabric's
precision handling all count. Reported per case: median step time, samples/s (batch / median
step), and the time spent waiting for the DataLoader, separately (median seconds and share).
Timings on a shared machine are noisy: read medians, compare runs taken on the same machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dp_ros.data.synthetic import write_synthetic_store
from dp_ros.keys import CAMERA_KEYS, EEF_POS, EEF_QUAT, GRIPPER_QPOS, OBJECT_STATE
from dp_ros.train.config import TrainConfig
from dp_ros.train.trainer import Trainer

CASES = {
    # name: (cameras, obs keys, batch size, episodes, frames per episode)
    "image": (CAMERA_KEYS, [*CAMERA_KEYS, EEF_POS, EEF_QUAT, GRIPPER_QPOS], 64, 16, 64),
    "lowdim": ((), [EEF_POS, EEF_QUAT, GRIPPER_QPOS, OBJECT_STATE], 256, 32, 100),
}


class SyncedTrainer(Trainer):
    """Waits for the GPU at the end of each step, so step times are GPU times, not launches."""

    def train_step(self, batch):
        loss = super().train_step(batch)
        if loss.is_cuda:
            torch.cuda.synchronize()
        return loss


def make_store(root: Path, case: str) -> Path:
    cameras, _, _, episodes, length = CASES[case]
    path = root / f"{case}.zarr"
    write_synthetic_store(path, n_episodes=episodes, length=length, cameras=cameras, seed=0)
    return path


def run_case(
    store: Path, case: str, device: str, precision: str, steps: int, warmup: int, workers: int,
    out_root: Path,
) -> dict:  # fmt: skip
    _, obs_keys, batch_size, _, _ = CASES[case]
    config = TrainConfig.from_dict(
        {
            "dataset": {"path": str(store), "obs_keys": obs_keys, "val_ratio": 0.0},
            "policy": {"preset": "default"},
            "optim": {"warmup_steps": 10},
            "training": {
                "epochs": 1000,
                "max_steps": warmup + steps,
                "batch_size": batch_size,
                "num_workers": workers,
                "log_every_steps": 1000,
                "progress_bar": False,
            },
            "fabric": {"accelerator": device, "devices": 1, "precision": precision},
            "output": {"dir": str(out_root / f"{case}-{precision}"), "final_checkpoint": False},
        }
    )
    trainer = SyncedTrainer(config)
    started = time.perf_counter()
    trainer.run()
    wall = time.perf_counter() - started
    step_times = np.array(trainer.step_times[warmup:])
    waits = np.array(trainer.wait_times[warmup:])
    median = float(np.median(step_times))
    return {
        "case": case,
        "device": device,
        "precision": precision,
        "batch_size": batch_size,
        "measured_steps": int(step_times.size),
        "warmup_steps": warmup,
        "step_s_median": median,
        "step_s_min": float(step_times.min()),
        "samples_per_s": batch_size / median,
        "data_wait_s_median": float(np.median(waits)),
        "data_wait_share": float(waits.sum() / step_times.sum()),
        "parameters_m": sum(p.numel() for p in trainer.policy.parameters()) / 1e6,
        "run_wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", nargs="+", default=None,
                        help="Fabric precisions (default: 32-true on CPU, bf16-mixed and "
                        "32-true on CUDA)")  # fmt: skip
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=sorted(CASES))
    parser.add_argument("--steps", type=int, default=None, help="measured steps (CPU 3, GPU 30)")
    parser.add_argument("--warmup", type=int, default=None, help="unmeasured first steps")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers")
    args = parser.parse_args()
    gpu = args.device == "cuda"
    precisions = args.precision or (["bf16-mixed", "32-true"] if gpu else ["32-true"])
    steps = args.steps or (30 if gpu else 3)
    warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)
    workers = args.workers if args.workers is not None else (8 if gpu else 1)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        root = Path(tmp)
        for case in args.cases:
            store = make_store(root, case)
            for precision in precisions:
                results.append(
                    run_case(store, case, args.device, precision, steps, warmup, workers, root)
                )
    report = {
        "benchmark": "train_throughput",
        "host": platform.node(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if gpu else None,
        "results": results,
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
