"""Batch-1 latency of ``PolicyRunner.predict`` for the paper-size policies (a script, not a test).

Image policy: two 84x84 cameras + 9-D robot state, To=2, T=16, Ta=8, a full-width ResNet-18
per camera on 76x76 crops, DP-C U-Net with down_dims [256, 512, 1024]. Low-dim policy: the
9-D robot state + a 14-D object state (robomimic Can/Square), same U-Net. Weights are random
(latency does not depend on their values). Each case is timed over ``--repeats`` predictions
after ``--warmup`` ones; medians and p90 are printed as JSON. Timings on a shared machine are
noisy (DESIGN.md: 3-6x worse under a competing process): compare medians, run twice.

    .venv/bin/python bench/bench_policy_latency.py                      # CPU, every case
    .venv/bin/python bench/bench_policy_latency.py --cases image-ddim16,lowdim-ddim16 \
        --kernels conv,matmul,matmul-fp16
    .venv/bin/python bench/bench_policy_latency.py --device cuda --kernels conv \
        --compile reduce-overhead

`--kernels` picks how the denoiser's 1-D convolutions run: `conv` (torch's own layers), `matmul`
(matrix products, the CPU default) and `matmul-fp16` (the same with fp16 weights packed for
fbgemm, `PolicyRunner(half_weights=True)`; CPU only). `speedup_over_conv` gives the ratio of
medians for each case, and `max_abs_action_diff` how far each variant's first chunk (same seed,
same observations, normalised action units in [-1, 1]) is from the fp32 `conv` one.
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
from dp_ros.policy.config import ConsistencyConfig, PolicyConfig, SamplerConfig, ShapeMeta
from dp_ros.policy.policy import count_parameters, make_policy
from dp_ros.policy.random_inputs import random_numpy_obs, random_stats
from dp_ros.policy.runtime import PolicyRunner, reduced_precision_is_fast
from dp_ros.policy.shape_meta import image_shape_meta

OBJECT_DIM = 14  # robomimic Can / Square object state
# name -> (policy kind, sampler, inference steps)
CASES = {
    "image-ddpm100": ("image", "ddpm", 100),
    "image-ddim16": ("image", "ddim", 16),
    "image-ddim8": ("image", "ddim", 8),
    "lowdim-ddpm100": ("lowdim", "ddpm", 100),
    "lowdim-ddim16": ("lowdim", "ddim", 16),
    "lowdim-ddim8": ("lowdim", "ddim", 8),
    # Few-step: DDIM with fewer steps, and a consistency student (issue 13) with 1 or 2.
    "image-ddim4": ("image", "ddim", 4),
    "image-ddim2": ("image", "ddim", 2),
    "image-consistency1": ("image", "consistency", 1),
    "image-consistency2": ("image", "consistency", 2),
    "lowdim-ddim4": ("lowdim", "ddim", 4),
    "lowdim-ddim2": ("lowdim", "ddim", 2),
    "lowdim-consistency1": ("lowdim", "consistency", 1),
    "lowdim-consistency2": ("lowdim", "consistency", 2),
}


def policy_config(kind: str, sampler: str = "ddim") -> PolicyConfig:
    if kind == "image":
        meta = image_shape_meta()
    else:
        meta = ShapeMeta(low_dim={**keys.LOW_DIM_SIZES, keys.OBJECT_STATE: OBJECT_DIM})
    if sampler == "consistency":  # a student of a DDIM-16 teacher: the same network
        return PolicyConfig(
            shape_meta=meta,
            objective="consistency",
            sampler=SamplerConfig("consistency", 1),
            consistency=ConsistencyConfig(teacher="random", teacher_steps=16),
        )
    return PolicyConfig(shape_meta=meta, sampler=SamplerConfig("ddim", 16))


KERNELS = ("conv", "matmul", "matmul-fp16")


def time_case(
    kind: str, sampler: str, steps: int, dtype: str, kernels: str, args: argparse.Namespace
) -> tuple[dict[str, object], np.ndarray]:
    """Timing of one variant, and its first chunk (T, Da) from the runner's seed."""
    config = policy_config(kind, sampler)
    torch.manual_seed(0)
    policy = make_policy(config, random_stats(config.shape_meta))
    n_params = count_parameters(policy)
    runner = PolicyRunner(
        policy, args.device, num_inference_steps=steps, sampler=sampler, dtype=dtype,
        compile=args.compile, matmul_convolutions=kernels != "conv",
        half_weights=kernels == "matmul-fp16",
    )  # fmt: skip
    obs = random_numpy_obs(config.shape_meta, config.n_obs_steps)
    first_chunk = runner.predict(obs).chunk
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
        "kernels": kernels,
        "params_m": round(n_params / 1e6, 2),
        "n": len(times),
        "median_s": round(statistics.median(times), 4),
        "p90_s": round(float(np.percentile(times, 90)), 4),
        "min_s": round(min(times), 4),
    }, first_chunk


def case_name(result: dict[str, object]) -> str:
    return f"{result['policy']}-{result['sampler']}{result['steps']}"


def speedup_over_conv(results: list[dict[str, object]]) -> dict[str, dict[str, float]]:
    """{case: {variant: conv median / variant median}} for cases timed with `conv` in fp32."""
    conv = {
        case_name(r): r["median_s"]
        for r in results
        if r["kernels"] == "conv" and r["dtype"] == "float32"
    }
    ratios: dict[str, dict[str, float]] = {}
    for r in results:
        if case_name(r) in conv and not (r["kernels"] == "conv" and r["dtype"] == "float32"):
            variant = f"{r['kernels']}-{r['dtype']}"
            ratios.setdefault(case_name(r), {})[variant] = round(
                conv[case_name(r)] / r["median_s"], 2
            )
    return ratios


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (same code)")
    parser.add_argument(
        "--dtypes", default="float32", help="comma-separated, e.g. float32,bfloat16"
    )
    parser.add_argument("--cases", default=",".join(CASES), help=f"from {list(CASES)}")
    parser.add_argument(
        "--kernels", default=",".join(KERNELS), help=f"comma-separated, from {KERNELS}"
    )
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
    unknown = set(args.kernels.split(",")) - set(KERNELS)
    if unknown:
        raise SystemExit(f"--kernels: unknown {sorted(unknown)}; choose from {KERNELS}")
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    for name in args.cases.split(","):
        kind, sampler, steps = CASES[name]
        reference = None  # the fp32 `conv` chunk, when that variant is timed first
        for dtype in args.dtypes.split(","):
            for kernels in args.kernels.split(","):
                result, chunk = time_case(kind, sampler, steps, dtype, kernels, args)
                if dtype == "float32" and kernels == "conv":
                    reference = chunk
                elif reference is not None:
                    result["max_abs_action_diff"] = float(np.abs(chunk - reference).max())
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
        "speedup_over_conv": speedup_over_conv(results),
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.output:
        with open(args.output, "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
