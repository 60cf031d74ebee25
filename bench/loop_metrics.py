"""What a closed loop's applied steps say about its chunks: seams, takeover, unplayed plan rows,
holds at episode starts and mid-episode. Shared by bench_continuation.py (over ROS) and
bench_continuation_offline.py (without ROS), so both measure seams the same way; no rclpy needed.

A step is (instant, applied row, origin): origin names the chunk whose plan the row was (None
for a step no chunk drove).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from dp_msgs.msg import ActionChunk

if TYPE_CHECKING:
    from bench_continuation import Recording

SOURCE_CHUNK = ActionChunk.SOURCE_POLICY  # an applied action that was a chunk's row
MOTION = slice(0, 6)  # translation and rotation columns: the gripper toggles by design


def chunk_of_each_step(recording: Recording) -> list[tuple[int, np.ndarray, int | None]]:
    """(instant, applied row, sequence of the oldest chunk holding exactly that row there).

    The oldest, because a newer chunk holds the same row only where policy_node froze it to
    the chunk it continues: that row is the older chunk's plan, and counting it as the newer
    chunk's would date its takeover (and its seam) before its own plan drove anything.
    """
    by_instant: dict[int, list[tuple[int, np.ndarray]]] = {}
    for sequence, rows in recording.chunks:
        for instant, row in rows.items():
            by_instant.setdefault(instant, []).append((sequence, row))
    steps = []
    for instant, row, source in sorted(recording.applied, key=lambda item: item[0]):
        origin = None
        if source == SOURCE_CHUNK:
            matches = [s for s, r in by_instant.get(instant, []) if np.allclose(r, row, atol=1e-6)]
            origin = min(matches) if matches else None
        steps.append((instant, row, origin))
    return steps


def jerk(steps: list[tuple[int, np.ndarray, int | None]], period_ns: int) -> dict:
    """Mean |delta action| between consecutive chunk-driven steps (`chunk_of_each_step`), inside
    chunks and at seams."""
    inside, seam = [], []
    for (t0, row0, chunk0), (t1, row1, chunk1) in zip(steps, steps[1:], strict=False):
        if chunk0 is None or chunk1 is None or t1 - t0 != period_ns:
            continue
        delta = float(np.mean(np.abs(row1[MOTION] - row0[MOTION])))
        (inside if chunk0 == chunk1 else seam).append(delta)
    mean_inside = float(np.mean(inside)) if inside else float("nan")
    mean_seam = float(np.mean(seam)) if seam else float("nan")
    return {
        "jerk_inside": round(mean_inside, 4),
        "jerk_seam": round(mean_seam, 4),
        "seam_over_inside": round(mean_seam / mean_inside, 3) if inside and seam else None,
        "seams": len(seam),
    }


def first_driven(steps: list[tuple[int, np.ndarray, int | None]]) -> dict[int, int]:
    """Chunk sequence -> the instant of the first step it drove."""
    first_step: dict[int, int] = {}
    for instant, _, origin in steps:
        if origin is not None and origin not in first_step:
            first_step[origin] = instant
    return first_step


def share_of(counts: list[int]) -> dict[int, float]:
    values, tally = np.unique(counts, return_counts=True)
    return {int(v): round(int(c) / len(counts), 3) for v, c in zip(values, tally, strict=True)}


def takeover(recording: Recording, first_step: dict[int, int], period_ns: int) -> dict:
    """Control steps from each chunk's observation to the first step it drove.

    The closed loop's real inference delay: a chunk conditioned on the observation at step t
    that first drives the robot at step t + D acts D steps late, as
    `bench_continuation_offline.py --delay D` simulates without ROS.
    """
    delays = [
        round((instant - recording.observed[seq]) / period_ns)
        for seq, instant in first_step.items()
        if seq in recording.observed
    ]
    if not delays:
        return {"takeover_steps_median": None, "takeover_steps_share": {}}
    return {
        "takeover_steps_median": float(np.median(delays)),
        "takeover_steps_share": share_of(delays),
    }


def unplayed_plan(recording: Recording, first_step: dict[int, int]) -> dict:
    """Per chunk, the rows it published with its own plan (not frozen to the chunk before it)
    whose instants passed before it took over: rows it planned that the older chunk played.

    policy_node freezes the rows it expects the current chunk to play (its last latency); a
    chunk landing later than that loses the first rows of its own plan, and its seam joins rows
    planned for different pasts. `bench_continuation_offline.py --lead -K` simulates K of them.
    """
    chunks = dict(recording.chunks)
    counts = []
    for seq, start in first_step.items():
        rows, before = chunks.get(seq), chunks.get(seq - 1)
        if rows is None or before is None:
            continue
        counts.append(
            sum(
                1
                for instant, row in rows.items()
                if instant < start
                and not (instant in before and np.allclose(before[instant], row, atol=1e-6))
            )
        )
    return {"unplayed_plan_rows_share": share_of(counts) if counts else {}}


def mid_episode_holds(recording: Recording) -> dict:
    """Steps the sim held (no row due) after the policy first drove it in an episode: the robot
    stopping mid-task, which the demonstrations never do. Holds before an episode's first chunk
    (while it is computed) are expected and not counted."""
    bounds = sorted(recording.outcomes)
    holds, driven, episode, acting = 0, 0, 0, False
    for instant, _, source in sorted(recording.applied, key=lambda item: item[0]):
        while episode < len(bounds) and instant >= bounds[episode]:
            episode, acting = episode + 1, False
        acting |= source == SOURCE_CHUNK
        if acting:
            driven += 1
            holds += source == ActionChunk.SOURCE_HOLD
    return {"mid_episode_holds": holds, "mid_episode_hold_share": round(holds / max(driven, 1), 4)}


def start_holds(recording: Recording) -> dict:
    """Per episode that began at an outcome, the steps held before its first chunk drove it: the
    first chunk's inference, and any wait the acting loop's schedule adds (before 8ea342d,
    policy_node kept the old episode's next start across the reset: 0 to Ta steps)."""
    bounds = sorted(recording.outcomes)
    counts, episode, held = [], 0, None  # held: steps so far of an episode not yet driven
    for instant, _, source in sorted(recording.applied, key=lambda item: item[0]):
        while episode < len(bounds) and instant >= bounds[episode]:
            episode, held = episode + 1, 0
        if held is None:  # before the first outcome, or the episode's first chunk came
            continue
        if source == SOURCE_CHUNK:
            counts.append(held)
            held = None
        else:
            held += 1
    return {"start_holds_share": share_of(counts) if counts else {}}
