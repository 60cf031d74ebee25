"""Continuation without ROS or latency: the algorithm alone, in a closed loop in robosuite.

Runs a policy in SimEnv (with cameras only when the policy reads them) on `--episodes` unseen
seeds, replanning every Ta steps as policy_node does, and samples each chunk with the plan
`dp_ros.acting.continuation` makes: with no latency the frozen rows are those before the newest
observation (plus `--lead` rows), then `--overlap` guided rows. Prints the success rate as JSON.
Where bench_continuation.py measures continuation over ROS at real time, this separates what the
inpainting does to the policy from what timing does; `--delay D` adds D control steps of
inference latency in the same loop, so latency sensitivity can be measured apart from ROS, and
`--delay-share` draws each chunk's delay from a distribution (the takeover shares
bench_continuation.py measures over ROS), freezing rows by the previous chunk's delay as
policy_node freezes by the last inference's latency. On Square, `--phases` says where each
failed episode got to, from the nut's position in the observations: grasp (the nut never left
where it lay), carry (moved, not onto the peg) or insertion (over the peg, not down).

    .venv/bin/python bench/bench_continuation_offline.py outputs/lift_mm_state/checkpoints/last \
        --continuation inpaint --overlap 8 --episodes 40
"""

import argparse
import json
from collections.abc import Callable

import numpy as np
from loop_metrics import jerk
from tqdm import tqdm

from dp_ros.acting.chunk_timing import TimedChunk
from dp_ros.acting.continuation import ContinuationConfig, plan_held_actions
from dp_ros.keys import OBJECT_STATE
from dp_ros.policy.runtime import PolicyRunner
from dp_ros.sim.env import SimEnv
from dp_ros.sim.evaluate import policy_image_size
from dp_ros.sim.square_expert import NUT_POS_SLICE, NUT_RESTING_Z, SQUARE_PEG_XY

# robosuite's Square success: the nut within 3 cm of the peg's axis and its centre below 0.87 m
ON_PEG_XY, DOWN_Z, LIFTED = 0.03, 0.87, 0.03
CARRIED = 0.05  # m the nut must have moved (horizontally) to count as carried
# The reset observations show the nut 6 cm above the table, where robosuite spawns it; it has
# dropped onto the table by the first step. Lifts are read after these first observations.
SETTLE_OBSERVATIONS = 5


def episode(
    env: SimEnv,
    runner: PolicyRunner,
    seed: int,
    config,
    lead: int,
    limit: int,
    delays: Callable[[], int] = lambda: 0,
    replan_every: int = 0,
    drop_late_at_start: bool = False,
) -> tuple[bool, list[dict], list[tuple]]:
    """One episode: (success, its observations, its applied steps as (step, action, index of the
    chunk whose plan it was)); time is counted in control steps (period 1).

    `delays()` gives each chunk's delay D: a chunk computed from the observation at step s
    takes over at s + D (the current chunk keeps playing until then, as on the robot), and
    inferences start every Ta steps (or every `replan_every`: policy_node starts the next
    inference as soon as the last one ended when inference is slow), so each chunk plays its
    rows To-1+D .. To-1+D+Ta-1.
    While the first chunk is computed the robot holds still; then, as policy_node does, the
    chunk starts from its row To-1 (the plan has not begun: nothing moved since its
    observation). `drop_late_at_start` plays it from row To-1+D instead, dropping the rows
    latency made late as if the robot had been moving (policy_node before it started chunks
    from rest). Rows are frozen up to the previous chunk's delay, the latency policy_node knows
    when it plans; a chunk later than that plays the current chunk's rows where it had planned
    its own.
    """
    To, Ta, T = runner.n_obs_steps, runner.n_action_steps, runner.horizon
    Ta = replan_every or Ta
    runner.reset()
    known_delay = None  # the previous chunk's delay: what the planner believes
    history = [env.reset(seed=seed)] * To
    committed, pending = None, None  # the playing chunk; (takes over at, chunk) in flight
    chunks, applied = [], []
    for step in range(limit):
        committed, pending = _land(committed, pending, step)  # before a newer one is asked for
        if step % Ta == 0:
            delay = delays()
            if To - 1 + delay + Ta > T:
                raise ValueError(f"delay {delay}: a chunk of {T} rows cannot cover it and Ta={Ta}")
            known_delay = delay if known_delay is None else known_delay
            window = {k: np.stack([h[k] for h in history[-To:]]) for k in runner.obs_keys}
            freeze = step + known_delay + lead
            held = plan_held_actions(committed, step - (To - 1), T, freeze, config)
            known_delay = delay
            chunk = TimedChunk(step - (To - 1), 1, runner.predict(window, held).chunk)
            if committed is None and not drop_late_at_start:  # from rest: the plan starts now
                chunk = TimedChunk(step + delay - (To - 1), 1, chunk.rows)
            pending = (step + delay, chunk)
            chunks.append(chunk)
        committed, pending = _land(committed, pending, step)
        if committed is None:
            action = HOLD
        else:
            action = committed.rows[step - committed.first_stamp_ns]
            applied.append((step, action, plan_of(chunks, committed, step, action)))
        observation, _, done, info = env.step(action)
        history.append(observation)
        if info["success"] or done:
            return info["success"], history, applied
    return False, history, applied


def plan_of(chunks: list[TimedChunk], playing: TimedChunk, step: int, action) -> int:
    """Index of the chunk whose plan `action` is: the playing one, or the oldest before it that
    holds the same row at `step` (a frozen row is the older chunk's plan), as
    bench_continuation.py attributes the rows it sees over ROS."""
    index = next(i for i in range(len(chunks) - 1, -1, -1) if chunks[i] is playing)
    while index > 0:
        row = step - chunks[index - 1].first_stamp_ns
        older = chunks[index - 1].rows
        if not (0 <= row < len(older) and np.array_equal(older[row], action)):
            break
        index -= 1
    return index


def square_phase(history: list[dict]) -> dict:
    """Where a Square episode got to, from the nut's positions (object state): grasp (the nut
    never left where it lay), carry (moved, but not onto the peg), or insertion (over the peg,
    not down)."""
    nut = np.stack([h[OBJECT_STATE][NUT_POS_SLICE] for h in history])[SETTLE_OBSERVATIONS:]
    lift = float(nut[:, 2].max() - NUT_RESTING_Z)
    moved = float(np.abs(nut[-1, :2] - nut[0, :2]).max())
    offset = float(np.abs(nut[-1, :2] - SQUARE_PEG_XY).max())
    held = float(np.linalg.norm(history[-1][OBJECT_STATE][0:3])) < 0.1
    if offset < ON_PEG_XY:
        phase = "insertion: over the peg, not down" if nut[-1, 2] >= DOWN_Z else "on the peg"
    elif moved < CARRIED:
        phase = "grasp: the nut stayed where it lay" + (
            " (lifted, then slipped)" if lift >= LIFTED else ""
        )
    else:
        phase = "carry: moved, not onto the peg" + (" (held)" if held else " (dropped)")
    return {
        "phase": phase,
        "max_lift_m": round(lift, 3),
        "moved_m": round(moved, 3),
        "final_xy_offset_m": round(offset, 3),
    }


HOLD = np.array([0, 0, 0, 0, 0, 0, -1], np.float32)  # no motion, gripper open


def delay_draws(share: dict[int, float], seed: int) -> Callable[[], int]:
    """Delays (control steps) drawn independently per chunk with the given shares."""
    rng = np.random.default_rng(seed)
    values, weights = list(share), np.array(list(share.values()))
    return lambda: int(rng.choice(values, p=weights / weights.sum()))


def parse_delay_share(text: str) -> dict[int, float]:
    """'0:0.15,1:0.38,2:0.35,3:0.12' -> {0: 0.15, ...}: delay in steps, its share."""
    share = {}
    for item in text.split(","):
        delay, _, weight = item.partition(":")
        try:
            share[int(delay)] = float(weight)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"--delay-share item {item!r}: expected STEPS:SHARE, e.g. 1:0.4"
            ) from None
    if min(share) < 0 or min(share.values()) < 0 or sum(share.values()) <= 0:
        raise argparse.ArgumentTypeError(f"--delay-share {text!r}: negative delay or shares")
    return share


def add_delay_share_argument(parser: argparse.ArgumentParser) -> None:
    """`--delay-share`, as both offline benches take it."""
    parser.add_argument(
        "--delay-share",
        type=parse_delay_share,
        default=None,
        help="per-chunk delays drawn with these shares (the takeover shares measured over ROS), "
        "e.g. 0:0.36,1:0.47,2:0.17; replaces --delay",
    )


def _land(committed, pending, step: int):
    """(playing chunk, chunk in flight) after step `step`'s arrivals."""
    if pending is not None and step >= pending[0]:
        return pending[1], None
    return committed, pending


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--task", default="lift")
    parser.add_argument("--continuation", default="inpaint", choices=("none", "inpaint"))
    parser.add_argument("--overlap", type=int, default=8)
    parser.add_argument("--schedule", default="linear")
    parser.add_argument("--lead", type=int, default=0, help="extra frozen rows after the newest")
    parser.add_argument("--delay", type=int, default=0, help="inference delay, control steps")
    add_delay_share_argument(parser)
    parser.add_argument("--replan-every", type=int, default=0, help="steps; 0: Ta")
    parser.add_argument(
        "--drop-late-at-start",
        action="store_true",
        help="play the first chunk from row To-1+delay, not To-1 (the old rule)",
    )
    parser.add_argument("--half-weights", action="store_true", help="fp16 weights, as on ROS")
    parser.add_argument("--num-inference-steps", type=int, default=None, help="default: ckpt's")
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--first-seed", type=int, default=100000)
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--phases", action="store_true", help="Square: where failures got to")
    options = parser.parse_args()
    if options.phases and options.task != "square":
        parser.error("--phases reads the Square nut's position: use it with --task square")
    runner = PolicyRunner.from_checkpoint(
        options.checkpoint,
        num_inference_steps=options.num_inference_steps,
        half_weights=options.half_weights,
    )
    config = ContinuationConfig(options.continuation, options.overlap, options.schedule)
    image_size = policy_image_size(runner.shape_meta)  # None: a policy without cameras
    env = SimEnv(options.task, cameras=image_size is not None, image_size=image_size or 84)
    try:
        seeds = range(options.first_seed, options.first_seed + options.episodes)
        outcomes = [
            episode(
                env,
                runner,
                s,
                config,
                options.lead,
                options.max_steps,
                delay_draws(options.delay_share, s)
                if options.delay_share
                else lambda: options.delay,
                options.replan_every,
                options.drop_late_at_start,
            )
            for s in tqdm(seeds, desc="episodes", leave=False)
        ]
    finally:
        env.close()
    wins = [won for won, _, _ in outcomes]
    report = {**vars(options), "successes": sum(wins), "success_rate": np.mean(wins)}
    # Seams as bench_continuation.py measures them over ROS; episodes kept apart in time.
    stride = options.max_steps + 2
    report.update(
        jerk(
            [
                (n * stride + step, action, (n, plan))
                for n, (_, _, applied) in enumerate(outcomes)
                for step, action, plan in applied
            ],
            1,
        )
    )
    if options.phases:
        failures = {
            seed: square_phase(history)
            for seed, (won, history, _) in zip(seeds, outcomes, strict=True)
            if not won
        }
        phases = [failure["phase"] for failure in failures.values()]
        report["failed_phases"] = {phase: phases.count(phase) for phase in sorted(set(phases))}
        report["failures"] = failures
    print(json.dumps(report))


if __name__ == "__main__":
    main()
