"""Measurements behind the numbers we quote for the simulator: expert success and env speed.

    python -m dp_ros.sim.measure experts --task can --episodes 50 --mode multimodal --noise 0.05
    python -m dp_ros.sim.measure speed --task lift --steps 200 --repeats 3

`experts` runs the scripted demonstrator on seeds first_seed .. first_seed + episodes - 1 in a
state-only env (the expert reads state only, so cameras would change nothing but the time) and
reports successes, episode lengths and the routes taken. `speed` times `SimEnv.step` in the three
render settings (default rendering, fast rendering, no cameras) and reports the median of the
repeats: this machine is shared, so a single run says little. Each prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from dp_ros.sim.env import TASKS, SimEnv
from dp_ros.sim.expert_commands import MODES
from dp_ros.sim.experts import EXPERT_TASKS, make_expert

# name -> SimEnv arguments of the render settings `speed` compares
RENDER_SETTINGS = {
    "cameras_default_render": {"cameras": True, "fast_render": False},
    "cameras_fast_render": {"cameras": True, "fast_render": True},
    "no_cameras": {"cameras": False},
}


def expert_success(
    task: str, episodes: int, first_seed: int = 0, mode: str = "default", noise: float = 0.0
) -> dict[str, Any]:
    """Run the scripted expert once per seed; success rate, lengths, routes, failed seeds."""
    env = SimEnv(task, cameras=False)
    lengths, routes, failed = [], Counter(), []
    start = time.perf_counter()
    try:
        for seed in range(first_seed, first_seed + episodes):
            obs = env.reset(seed=seed)
            expert = make_expert(task, seed, noise=noise, mode=mode)
            expert.reset(obs)
            done, info = False, {"success": False}
            while not done:
                obs, _, done, info = env.step(expert.act(obs))
            lengths.append(env.steps)
            routes[expert.mode_label] += 1
            if not info["success"]:
                failed.append(seed)
    finally:
        env.close()
    return {
        "task": task,
        "mode": mode,
        "noise": noise,
        "episodes": episodes,
        "first_seed": first_seed,
        "successes": episodes - len(failed),
        "success_rate": (episodes - len(failed)) / episodes,
        "mean_steps": float(np.mean(lengths)),
        "median_steps": float(np.median(lengths)),
        "max_steps": int(np.max(lengths)),
        "routes": dict(routes),
        "failed_seeds": failed,
        "wall_s": time.perf_counter() - start,
    }


def env_speed(
    task: str, steps: int, repeats: int, image_size: int = 84, seed: int = 0
) -> dict[str, Any]:
    """Median env steps/s over `repeats` runs of `steps` steps, per render setting.

    Actions are small random ones (the arm moves, so the renders change) with a reset every
    100 steps, as in collection; building the env and the first reset are not timed.
    """
    rng = np.random.default_rng(seed)
    result: dict[str, Any] = {"task": task, "steps": steps, "repeats": repeats}
    for name, settings in RENDER_SETTINGS.items():
        env = SimEnv(task, image_size=image_size, **settings)
        rates = []
        try:
            for repeat in range(repeats):
                env.reset(seed=repeat)
                start = time.perf_counter()
                for step in range(steps):
                    if step and step % 100 == 0:
                        env.reset(seed=repeat)
                    env.step(rng.uniform(-0.3, 0.3, 7))
                rates.append(steps / (time.perf_counter() - start))
        finally:
            env.close()
        result[name] = {"median_steps_per_s": statistics.median(rates), "runs": rates}
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dp_ros.sim.measure", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    experts = commands.add_parser("experts", help="scripted expert success over seeds")
    experts.add_argument("--task", required=True, choices=EXPERT_TASKS)
    experts.add_argument("--episodes", type=int, default=50)
    experts.add_argument("--first-seed", type=int, default=0)
    experts.add_argument("--mode", choices=MODES, default="default")
    experts.add_argument("--noise", type=float, default=0.0)
    speed = commands.add_parser("speed", help="env steps/s per render setting")
    speed.add_argument("--task", required=True, choices=sorted(TASKS))
    speed.add_argument("--steps", type=int, default=200)
    speed.add_argument("--repeats", type=int, default=3)
    speed.add_argument("--image-size", type=int, default=84)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "experts":
        if args.episodes < 1:
            print(f"--episodes={args.episodes}: must be >= 1", file=sys.stderr)
            return 2
        result = expert_success(args.task, args.episodes, args.first_seed, args.mode, args.noise)
    else:
        if args.steps < 1 or args.repeats < 1:
            print("--steps and --repeats must be >= 1", file=sys.stderr)
            return 2
        result = env_speed(args.task, args.steps, args.repeats, args.image_size)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
