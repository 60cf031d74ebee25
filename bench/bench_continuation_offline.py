"""Continuation without ROS or latency: the algorithm alone, in a closed loop in robosuite.

Runs a policy in SimEnv (no cameras) on `--episodes` unseen seeds, replanning every Ta steps as
policy_node does, and samples each chunk with the plan `dp_ros.acting.continuation` makes: with
no latency the frozen rows are those before the newest observation (plus `--lead` rows), then
`--overlap` guided rows. Prints the success rate as JSON. Where bench_continuation.py measures
continuation over ROS at real time, this separates what the inpainting does to the policy from
what timing does.

    .venv/bin/python bench/bench_continuation_offline.py outputs/lift_mm_state/checkpoints/last \
        --continuation inpaint --overlap 8 --episodes 40
"""

import argparse
import json

import numpy as np

from dp_ros.acting.chunk_timing import TimedChunk
from dp_ros.acting.continuation import ContinuationConfig, plan_held_actions
from dp_ros.policy.runtime import PolicyRunner
from dp_ros.sim.env import SimEnv


def episode(env: SimEnv, runner: PolicyRunner, seed: int, config, lead: int, limit: int) -> bool:
    """One episode; time is counted in control steps (the period is 1)."""
    To, Ta, T = runner.n_obs_steps, runner.n_action_steps, runner.horizon
    runner.reset()
    history = [env.reset(seed=seed)] * To
    committed, step = None, 0
    while step < limit:
        window = {k: np.stack([h[k] for h in history[-To:]]) for k in runner.obs_keys}
        held = plan_held_actions(committed, step - (To - 1), T, step + lead, config)
        chunk = runner.predict(window, held).chunk
        committed = TimedChunk(step - (To - 1), 1, chunk)
        for row in chunk[To - 1 : To - 1 + Ta]:
            observation, _, done, info = env.step(row)
            history.append(observation)
            step += 1
            if info["success"]:
                return True
            if done:
                return False
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--task", default="lift")
    parser.add_argument("--continuation", default="inpaint", choices=("none", "inpaint"))
    parser.add_argument("--overlap", type=int, default=8)
    parser.add_argument("--schedule", default="linear")
    parser.add_argument("--lead", type=int, default=0, help="extra frozen rows after the newest")
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--first-seed", type=int, default=100000)
    parser.add_argument("--max-steps", type=int, default=300)
    options = parser.parse_args()
    runner = PolicyRunner.from_checkpoint(options.checkpoint)
    config = ContinuationConfig(options.continuation, options.overlap, options.schedule)
    env = SimEnv(options.task, cameras=False)
    try:
        seeds = range(options.first_seed, options.first_seed + options.episodes)
        wins = [episode(env, runner, s, config, options.lead, options.max_steps) for s in seeds]
    finally:
        env.close()
    print(json.dumps({**vars(options), "successes": sum(wins), "success_rate": np.mean(wins)}))


if __name__ == "__main__":
    main()
