"""policy_node's acting without ROS: its ActingCore and replanning rule, sim_node's ChunkPlayer.

Runs a policy in SimEnv on `--episodes` unseen seeds with the very objects the two nodes use
(dp_ros.acting.acting_loop.ActingCore: observation sync, continuation plan, late-row dropping,
next-start rule; dp_ros.acting.chunk_timing.ChunkPlayer: rows played at their stamps), on a
simulated clock: each inference takes `--delay` whole control steps (or a number drawn per chunk
with `--delay-share`, as over ROS), during which the sim keeps playing the current chunk. Only DDS
and the machine's load are missing, so a loss over ROS that this reproduces lies in the acting
logic and its settings (`--continuation`, `--overlap`, `--replan-lead-steps`, the same parameters
as policy_node's), not in transport or timing; bench_continuation_offline.py re-implements the loop
instead and replans every Ta steps.
Prints JSON: successes and the failed seeds.

    .venv/bin/python bench/bench_acting_offline.py outputs/can_image_cpu40/checkpoints/epoch_0040 \
        --task can --episodes 20 --delay 1 --num-inference-steps 8 --continuation none
"""

import argparse
import json
from collections.abc import Callable

import numpy as np
from bench_continuation_offline import add_delay_share_argument, delay_draws
from tqdm import tqdm

from dp_ros.acting.acting_loop import ActingConfig, ActingCore
from dp_ros.acting.chunk_timing import ChunkPlayer
from dp_ros.acting.continuation import ContinuationConfig
from dp_ros.policy.runtime import PolicyRunner
from dp_ros.sim.env import SimEnv
from dp_ros.sim.evaluate import policy_image_size

PERIOD_NS = 50_000_000  # 20 Hz, as policy_node.yaml
EPISODE_GAP_NS = 10 * PERIOD_NS  # clock time between episodes


def episode(
    env: SimEnv, core: ActingCore, seed: int, start_ns: int, options, delay: Callable[[], int]
) -> tuple[bool, int]:
    """One episode from `start_ns`; (success, the clock at its end). `delay()`: the next
    inference's duration in control steps."""
    observation = env.reset(seed=seed)
    core.reset(start_ns)
    clock = start_ns
    publish(core, observation, clock)
    player = ChunkPlayer(PERIOD_NS)
    in_flight = None  # (when it lands, the outcome being computed)
    for _ in range(options.max_steps or env.max_episode_steps):
        if in_flight is None and core.due(clock):
            # The clock at assembly and at publication, `delay()` steps later.
            published = clock + delay() * PERIOD_NS
            outcome = core.act(iter([clock, published]).__next__)
            if outcome.chunk is not None:
                in_flight = (published, outcome)
        if in_flight is not None and clock >= in_flight[0]:
            outcome = in_flight[1]
            player.submit(outcome.chunk)
            core.schedule_next(outcome, options.replan_lead_steps)
            in_flight = None
        action, _ = player.action_at(clock)
        observation, _, done, info = env.step(action)
        clock += PERIOD_NS
        publish(core, observation, clock)
        if info["success"] or done:
            return bool(info["success"]), clock
    return False, clock


def publish(core: ActingCore, observation: dict, stamp_ns: int) -> None:
    """What sim_node publishes and policy_node's callbacks add, all at one stamp."""
    for key in core.runner.obs_keys:
        core.add(key, stamp_ns, np.asarray(observation[key]), stamp_ns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--task", default="lift")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=100000)
    parser.add_argument("--max-steps", type=int, default=0, help="0: the task's limit")
    parser.add_argument("--delay", type=int, default=1, help="inference time, control steps")
    add_delay_share_argument(parser)
    parser.add_argument("--num-inference-steps", type=int, default=None, help="default: ckpt's")
    parser.add_argument("--continuation", default="inpaint", choices=("none", "inpaint"))
    parser.add_argument("--overlap", type=int, default=8, help="continuation_overlap_steps")
    parser.add_argument("--schedule", default="linear", help="continuation_schedule")
    parser.add_argument("--replan-lead-steps", type=int, default=1)
    parser.add_argument("--full-weights", action="store_true", help="fp32 (policy_node: fp16)")
    options = parser.parse_args()
    if options.delay < 0:
        parser.error(f"--delay {options.delay}: must be >= 0")
    runner = PolicyRunner.from_checkpoint(
        options.checkpoint,
        num_inference_steps=options.num_inference_steps,
        half_weights=not options.full_weights,
    )
    config = ActingConfig(
        period_ns=PERIOD_NS,
        tolerance_ns=PERIOD_NS // 2,
        max_age_ns=6 * PERIOD_NS,
        exec_latency_ns=0,
        action_limit=1.0,
        continuation=ContinuationConfig(options.continuation, options.overlap, options.schedule),
    )
    image_size = policy_image_size(runner.shape_meta)  # None: a policy without cameras
    env = SimEnv(options.task, cameras=image_size is not None, image_size=image_size or 84)
    seeds = range(options.first_seed, options.first_seed + options.episodes)
    clock, failed = 1_000_000_000_000, []
    try:
        for seed in tqdm(seeds, desc="episodes", leave=False):
            delay = (
                delay_draws(options.delay_share, seed)
                if options.delay_share
                else lambda: options.delay
            )
            won, clock = episode(env, ActingCore(runner, config), seed, clock, options, delay)
            clock += EPISODE_GAP_NS
            if not won:
                failed.append(seed)
    finally:
        env.close()
    successes = len(seeds) - len(failed)
    report = {**vars(options), "successes": successes, "success_rate": successes / len(seeds)}
    print(json.dumps({**report, "failed_seeds": failed}))


if __name__ == "__main__":
    main()
