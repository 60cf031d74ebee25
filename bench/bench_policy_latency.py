"""Batch-1 latency of ``PolicyRunner.predict`` for the paper-size policies (a script, not a test).

Image policy: two 84x84 cameras + 9-D robot state, To=2, T=16, Ta=8, a full-width ResNet-18
per camera on 76x76 crops, DP-C U-Net with down_dims [256, 512, 1024]. Low-dim policy: the
9-D robot state + a 14-D object state (robomimic Can/Square), same U-Net. Weights are random
(latency does not depend on their values). Each case is timed over ``--repeats`` predictions
after ``--warmup`` ones; medians and p90 are printed as JSON. Timings on a shared machine are
noisy (DESIGN.md: 3-6x worse under a competing process): compare medians, run twice.

    .venv/bin/python bench/bench_policy_latency.py                      # CPU, fp32 and bf16
    .venv/bin/python bench/bench_policy_latency.py --device cuda --compile reduce-overhead
    .venv/bin/python bench/bench_policy_latency.py --cases image-ddim16 --repeats 5
    .venv/bin/python bench/bench_policy_latency.py --cases image-ddim16 --convs matmul,conv

`--convs` times the denoiser's 1-D convolutions as matrix products (`matmul`, the CPU default)
and/or as oneDNN convolutions (`conv`); with both, `conv_over_matmul` gives the ratio of medians.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch

from dp_ros import keys
from dp_ros.policy.config import PolicyConfig, SamplerConfig, ShapeMeta, image_shape_meta
from dp_ros.policy.policy import count_parameters, make_policy
from dp_ros.policy.random_inputs import random_numpy_obs, random_stats
from dp_ros.policy.runtime import PolicyRunner, reduced_precision_is_fast

OBJECT_DIM = 14  # robomimic Can / Square object state
# name -> (policy kind, sampler, inference steps)
CASES = {
    "image-ddpm100": ("image", "ddpm", 100),
    "image-ddim16": ("image", "ddim", 16),
    "image-ddim8": ("image", "ddim", 8),
    "lowdim-ddpm100": ("lowdim", "ddpm", 100),
    "lowdim-ddim16": ("lowdim", "ddim", 16),
    "lowdim-ddim8": ("lowdim", "ddim", 8),
}


def policy_config(kind: str) -> PolicyConfig:
    if kind == "image":
        meta = image_shape_meta()
    else:
        meta = ShapeMeta(low_dim={**keys.LOW_DIM_SIZES, keys.OBJECT_STATE: OBJECT_DIM})
    return PolicyConfig(shape_meta=meta, sampler=SamplerConfig("ddim", 16))


def time_case(
    kind: str, sampler: str, steps: int, dtype: str, convs: str, args: argparse.Namespace
) -> dict[str, object]:
    config = policy_config(kind)
    torch.manual_seed(0)
    policy = make_policy(config, random_stats(config.shape_meta))
    n_params = count_parameters(policy)
    runner = PolicyRunner(
        policy, args.device, num_inference_steps=steps, sampler=sampler, dtype=dtype,
        compile=args.compile, matmul_convolutions=convs == "matmul",
    )  # fmt: skip
    obs = random_numpy_obs(config.shape_meta, config.n_obs_steps)
    for _ in range(args.warmup):
        runner.predict(obs)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        runner.predict(obs)
        times.append(time.perf_counter() - start)
    return {
        "policy": kind,
        "sampler": sampler,
        "steps": steps,
        "dtype": dtype,
        "convolutions": convs,
        "params_m": round(n_params / 1e6, 2),
        "n": len(times),
        "median_s": round(statistics.median(times), 4),
        "p90_s": round(float(np.percentile(times, 90)), 4),
        "min_s": round(min(times), 4),
    }


def conv_over_matmul(results: list[dict[str, object]]) -> dict[str, float]:
    """Median latency with oneDNN convolutions over that with matrix products, per case."""
    by_key = {
        (r["policy"], r["sampler"], r["steps"], r["dtype"], r["convolutions"]): r for r in results
    }
    ratios = {}
    for (kind, sampler, steps, dtype, convs), result in by_key.items():
        matmul = by_key.get((kind, sampler, steps, dtype, "matmul"))
        if convs == "conv" and matmul is not None:
            name = f"{kind}-{sampler}{steps}-{dtype}"
            ratios[name] = round(result["median_s"] / matmul["median_s"], 2)
    return ratios


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (same code)")
    parser.add_argument("--dtypes", default="float32,bfloat16", help="comma-separated")
    parser.add_argument("--cases", default=",".join(CASES), help=f"from {list(CASES)}")
    parser.add_argument("--convs", default="matmul", help="matmul and/or conv, comma-separated")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per case (>= 20)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--compile", default=None, help="torch.compile mode for the denoiser, e.g. reduce-overhead"
    )
    parser.add_argument("--output", default=None, help="also write the JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    for name in args.cases.split(","):
        kind, sampler, steps = CASES[name]
        for dtype in args.dtypes.split(","):
            for convs in args.convs.split(","):
                result = time_case(kind, sampler, steps, dtype, convs, args)
                print(json.dumps(result), file=sys.stderr, flush=True)
                results.append(result)
    report = {
        "device": args.device,
        "cuda_device": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16_kernels": reduced_precision_is_fast(torch.device(args.device)),
        "threads": torch.get_num_threads(),
        "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "compile": args.compile,
        "warmup": args.warmup,
        "results": results,
        "conv_over_matmul": conv_over_matmul(results),
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.output:
        with open(args.output, "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
