"""How far few-step actions are from the teacher's, on the same observations and the same noise.

For `--samples` observation windows drawn from an episode store (the teacher's training data),
each sampler below starts from the same initial noise (the runner's seed) and is compared with
the teacher's DDIM-`--teacher-steps` chunk: the mean and max |difference| of the whole chunk
(T, Da) in normalised action units ([-1, 1]), and the median batch-1 latency. The teacher's own
DDIM with fewer steps shows what skipping steps costs without distillation.

    .venv/bin/python bench/bench_few_step.py data/lift.zarr lift_state \
        outputs/lift_state_consistency/checkpoints/last --samples 64
"""

import argparse
import json
import statistics
import time

import numpy as np
import torch

from dp_ros.data.store import EpisodeStore
from dp_ros.policy.runtime import PolicyRunner


def observation_windows(store_path: str, keys, n_obs_steps: int, samples: int, seed: int):
    """`samples` random To-step observation windows {key: (To, ...)} from the store."""
    store = EpisodeStore.open(store_path)
    rng = np.random.default_rng(seed)
    windows = []
    for _ in range(samples):
        episode = store.episode(int(rng.integers(store.n_episodes)))
        length = len(episode[keys[0]])
        end = int(rng.integers(n_obs_steps - 1, length))
        windows.append({k: np.asarray(episode[k][end - n_obs_steps + 1 : end + 1]) for k in keys})
    return windows


def chunks(runner: PolicyRunner, windows) -> tuple[np.ndarray, float]:
    """Normalised chunks (N, T, Da), each from the runner's seed, and the median latency."""
    out, times = [], []
    for obs in windows:
        runner.reset()  # the same initial noise for every sampler
        start = time.perf_counter()
        chunk = runner.predict(obs).chunk
        times.append(time.perf_counter() - start)
        with torch.no_grad():
            normalised = runner.policy.normalizer.normalize_action(torch.from_numpy(chunk))
        out.append(normalised.numpy())
    return np.stack(out), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store")
    parser.add_argument("teacher")
    parser.add_argument("students", nargs="*", help="consistency student checkpoints")
    parser.add_argument("--teacher-steps", type=int, default=16)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    teacher = PolicyRunner.from_checkpoint(
        options.teacher, num_inference_steps=options.teacher_steps, sampler="ddim"
    )
    windows = observation_windows(
        options.store, teacher.obs_keys, teacher.n_obs_steps, options.samples, options.seed
    )
    reference, reference_s = chunks(teacher, windows)
    variants = [(f"teacher ddim{k}", options.teacher, "ddim", k) for k in (8, 4, 2, 1)]
    for student in options.students:
        variants += [(f"student {student} x{k}", student, "consistency", k) for k in (1, 2)]
    results = [{"sampler": f"teacher ddim{options.teacher_steps}", "median_s": reference_s}]
    for name, checkpoint, sampler, steps in variants:
        runner = PolicyRunner.from_checkpoint(
            checkpoint, num_inference_steps=steps, sampler=sampler
        )
        got, median_s = chunks(runner, windows)
        difference = np.abs(got - reference)
        results.append(
            {
                "sampler": name,
                "evaluations": steps,
                "mean_abs_diff": round(float(difference.mean()), 4),
                "max_abs_diff": round(float(difference.max()), 4),
                "median_s": round(median_s, 4),
            }
        )
        print(json.dumps(results[-1]), flush=True)
    print(json.dumps({"samples": options.samples, "results": results}, indent=1))


if __name__ == "__main__":
    main()
