"""Which route policies take from the start of an episode: both modes, one, or the average.

With `expert_mode:=multimodal` the Lift demonstrator first swings out to the left (+y) or the
right (-y) of the cube, one or the other at random. This samples the first executed chunk of each
policy from the first observation of `--seeds` unseen episodes, `--samples` times each, and
classifies its mean y command: left (> 0.4), right (< -0.4) or between (the straight path that
averaging the two routes gives). The store's own demonstrations are classified the same way.
Prints JSON.

    .venv/bin/python bench/bench_multimodal_routes.py data/lift_multimodal.zarr \
        outputs/lift_mm_state/checkpoints/last outputs/lift_mm_mse/checkpoints/last
"""

import argparse
import json

import numpy as np

from dp_ros.data.store import EpisodeStore
from dp_ros.keys import ACTION
from dp_ros.policy.runtime import PolicyRunner
from dp_ros.sim.env import SimEnv

SIDE = 0.4  # |mean y command| beyond which a chunk goes around (demonstrations: >= 0.6)
Y = 1  # action index of the y translation


def classify(mean_y: np.ndarray) -> dict[str, float]:
    left, right = float(np.mean(mean_y > SIDE)), float(np.mean(mean_y < -SIDE))
    return {"left": left, "right": right, "between": 1.0 - left - right, "n": int(mean_y.size)}


def demonstration_routes(store_path: str, steps: int) -> dict[str, float]:
    store = EpisodeStore.open(store_path)
    firsts = [store.episode(i)[ACTION][:steps, Y].mean() for i in range(store.n_episodes)]
    return classify(np.asarray(firsts))


def policy_routes(checkpoint: str, task: str, seeds: range, samples: int) -> dict[str, float]:
    runner = PolicyRunner.from_checkpoint(checkpoint, seed=0)
    env = SimEnv(task, cameras=False)
    per_seed = []
    try:
        for seed in seeds:
            first = env.reset(seed=seed)
            # The episode's first observation, repeated To times (as policy_node does at a start).
            obs = {key: np.stack([first[key]] * runner.n_obs_steps) for key in runner.obs_keys}
            per_seed.append([runner.predict(obs).executed[:, Y].mean() for _ in range(samples)])
    finally:
        env.close()
    mean_y = np.asarray(per_seed)  # (seeds, samples)
    report = classify(mean_y.ravel())
    # Both routes from one and the same observation: only a policy that models both can.
    both = [(row > SIDE).any() and (row < -SIDE).any() for row in mean_y]
    report["seeds_with_both_routes"] = f"{sum(both)}/{len(both)}"
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", help="the multimodal demonstration store")
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--task", default="lift")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=100000)
    parser.add_argument("--samples", type=int, default=10)
    args = parser.parse_args()
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    report = {"demonstrations": demonstration_routes(args.store, steps=8)}
    for checkpoint in args.checkpoints:
        report[checkpoint] = policy_routes(checkpoint, args.task, seeds, args.samples)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
