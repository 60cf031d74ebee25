"""How far outside the training range a healthy closed loop's inputs go (sets the input guard).

Runs the bundled Lift state policy closed loop in robosuite (ROS-free, `policy_episode`) and,
after every step, measures how far each input lies outside the normaliser's training range, in
units of that range (what policy_node's `input_guard` parameter is compared with). Prints JSON:
success rate, and per input the worst excess over all steps and episodes, with the episode's
seed and success. A guard margin below the healthy worst would hold a working policy.

    .venv/bin/python bench/bench_input_guard.py [--episodes 10] [--seed 100000]
"""

import argparse
import json

from dp_ros.acting.input_guard import InputGuard
from dp_ros.policy.runtime import PolicyRunner
from dp_ros.sim.env import SimEnv
from dp_ros.sim.rollout import policy_episode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", default="lift_state")
    parser.add_argument("--task", default="lift")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=100000)
    args = parser.parse_args()
    runner = PolicyRunner.from_checkpoint(args.checkpoint, device="cpu", half_weights=True)
    stats = runner.policy.normalizer.stats
    guard = InputGuard.from_stats(stats, runner.obs_keys, margin=1.0)
    per_key = {key: InputGuard({key: bounds}, margin=1.0) for key, bounds in guard.bounds.items()}
    env = SimEnv(args.task, cameras=False)
    worst: dict[str, dict] = {}
    successes = 0
    for seed in range(args.seed, args.seed + args.episodes):
        episode_worst: dict[str, float] = {}

        def on_step(obs, episode_worst=episode_worst):
            for key, key_guard in per_key.items():
                found = key_guard.worst(obs)
                excess = found.excess if found is not None else 0.0
                episode_worst[key] = max(episode_worst.get(key, 0.0), excess)

        outcome = policy_episode(env, runner, seed, on_step=on_step)
        successes += outcome.success
        for key, excess in episode_worst.items():
            if excess >= worst.get(key, {}).get("excess", -1.0):
                worst[key] = {"excess": excess, "seed": seed, "success": outcome.success}
        print(json.dumps({"seed": seed, "success": outcome.success, "worst": episode_worst}))
    env.close()
    summary = {"episodes": args.episodes, "success_rate": successes / args.episodes}
    print(json.dumps({**summary, "worst_excess_in_training_ranges": worst}, indent=1))


if __name__ == "__main__":
    main()
