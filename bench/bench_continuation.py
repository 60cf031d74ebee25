"""Real-time acting over ROS vs injected inference delay, with and without continuation.

For each cell of (injected delay in control periods) x (continuation none / inpaint) this runs
the evaluate graph (sim_node + policy_node + eval_node, separate processes over DDS, the sim at
`--real-time-factor`, 1.0 by default) on the same `--episodes` unseen seeds, and listens to the
graph. Per cell it reports:

- success rate (eval_node's summary);
- rows dropped as late by the sim's chunk player, and their share of the rows played + dropped;
- takeover: control steps from each chunk's observation to the first step its own plan drove
  (a row frozen to the older chunk is the older chunk's; the loop's real inference delay,
  comparable with `bench_continuation_offline.py --delay`);
- unplayed plan: per chunk, the rows of its own plan (not frozen to the chunk before it) that
  passed before it took over, played from the older chunk instead (a chunk later than the
  latency policy_node froze for; `bench_continuation_offline.py --lead -K` simulates K);
- mid-episode holds: steps the sim held (no row due) after the policy first drove it in an
  episode, i.e. the robot stopping mid-task; start holds: per episode, the steps held before
  its first chunk drove it;
- jerk: the mean |delta action| (translation and rotation columns) between consecutive applied
  steps where both came from one chunk ("inside") and where the second came from a newer chunk
  ("seam"); the ratio seam / inside (continuation's target: <= 1.2);
- with `--routes` (the two-route Lift task): episodes whose end effector committed to one side
  of the cube (more than `ROUTE_COMMIT` m off the cube's y) and later reached the other side.

Prints a table and JSON, writes the JSON (`--output`) and the success-vs-delay curve (`--plot`).

    .venv/bin/python bench/bench_continuation.py --checkpoint lift_state --episodes 20 \
        --output bench_out/continuation_lift.json --plot bench_out/continuation_lift.png
    .venv/bin/python bench/bench_continuation.py \
        --checkpoint outputs/lift_mm_state/checkpoints/last --routes --delays 0 \
        --output bench_out/routes.json
"""

import argparse
import json
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rclpy
import yaml
from geometry_msgs.msg import PoseStamped
from loop_metrics import (
    chunk_of_each_step,
    first_driven,
    jerk,
    mid_episode_holds,
    start_holds,
    takeover,
    unplayed_plan,
)
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import JointState

from dp_msgs.msg import ActionChunk, EpisodeOutcome
from dp_ros import conversions as conv
from dp_ros.launching.graph import config_dir
from dp_ros.nodes.qos import ACTION_QOS, EVENT_QOS, SENSOR_QOS, STEP_QOS
from dp_ros.testing.processes import ChildProcess
from dp_ros.testing.ros_isolation import isolation_environment

ROUTE_COMMIT = 0.06  # m off the cube's y: half the demonstrator's 0.12 m swing-out
DROPPED = re.compile(r"dropped as late (\d+)")
PLAYED = re.compile(r"chunk rows played (\d+)")


@dataclass
class Recording:
    """What one cell's graph published, as this process received it."""

    chunks: list = field(default_factory=list)  # (sequence, {instant: row})
    observed: dict = field(default_factory=dict)  # sequence -> newest observation's instant
    applied: list = field(default_factory=list)  # (instant, row, source)
    poses: list = field(default_factory=list)  # (stamp, y)
    cube_y: list = field(default_factory=list)  # (stamp, y)
    outcomes: list = field(default_factory=list)  # stamp of each episode end

    def on_chunk(self, msg: ActionChunk) -> None:
        first = conv.stamp_to_ns(msg.header.stamp)
        period = conv.duration_to_ns(msg.period)
        rows = np.asarray(msg.data, np.float32).reshape(msg.horizon, msg.action_dim)
        self.chunks.append((msg.sequence, {first + i * period: r for i, r in enumerate(rows)}))
        self.observed[msg.sequence] = conv.stamp_to_ns(msg.observation_stamp)

    def on_applied(self, msg: ActionChunk) -> None:
        row = np.asarray(msg.data, np.float32)
        self.applied.append((conv.stamp_to_ns(msg.header.stamp), row, msg.source))

    def on_pose(self, msg: PoseStamped) -> None:
        self.poses.append((conv.stamp_to_ns(msg.header.stamp), msg.pose.position.y))

    def on_object(self, msg: JointState) -> None:
        if len(msg.position) >= 2:  # Lift: cube position first
            self.cube_y.append((conv.stamp_to_ns(msg.header.stamp), msg.position[1]))

    def on_outcome(self, msg: EpisodeOutcome) -> None:
        self.outcomes.append(conv.stamp_to_ns(msg.header.stamp))


def listen(recording: Recording, stop: threading.Event) -> None:
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("bench_continuation", context=context)
    node.create_subscription(ActionChunk, "/action_chunk", recording.on_chunk, ACTION_QOS)
    node.create_subscription(ActionChunk, "/sim/applied_action", recording.on_applied, STEP_QOS)
    node.create_subscription(PoseStamped, "/eef_pose", recording.on_pose, SENSOR_QOS)
    node.create_subscription(JointState, "/sim/object_state", recording.on_object, SENSOR_QOS)
    node.create_subscription(
        EpisodeOutcome, "/sim/episode_outcome", recording.on_outcome, EVENT_QOS
    )
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)


def route_switches(recording: Recording) -> dict:
    """Episodes that committed to one side of the cube and later reached the other."""
    bounds = [0] + sorted(recording.outcomes)
    cube = dict(recording.cube_y)
    committed, switched = 0, 0
    for start, end in zip(bounds, bounds[1:], strict=False):
        side = 0.0
        for stamp, y in recording.poses:
            if not start < stamp <= end or stamp not in cube:
                continue
            offset = y - cube[stamp]
            if abs(offset) < ROUTE_COMMIT:
                continue
            if side == 0.0:
                side, committed = np.sign(offset), committed + 1
            elif np.sign(offset) != side:
                switched += 1
                break
    return {"episodes_committed": committed, "route_switches": switched}


def policy_parameters(path: Path, overrides: dict) -> Path:
    """policy_node.yaml with `overrides` applied, written to `path`."""
    document = yaml.safe_load((config_dir() / "policy_node.yaml").read_text())
    document["/**"]["ros__parameters"].update(overrides)
    path.write_text(yaml.safe_dump(document))
    return path


def run_cell(options, delay_steps: int, continuation: str, folder: Path) -> dict:
    name = f"delay{delay_steps}_{continuation}"
    overrides = {
        "debug_inference_delay": delay_steps * options.period,
        "continuation": continuation,
        "num_inference_steps": options.num_inference_steps,
    }
    parameters = policy_parameters(folder / f"{name}.yaml", overrides)
    summary_path = folder / f"{name}_summary.json"
    recording, stop = Recording(), threading.Event()
    listener = threading.Thread(target=listen, args=(recording, stop), daemon=True)
    listener.start()
    started = time.monotonic()
    runner = ChildProcess.python(
        "-m", "dp_ros.launching.runner", "launch", "evaluate",
        f"checkpoint:={options.checkpoint}", f"task:={options.task}",
        f"episodes:={options.episodes}", f"seed:={options.first_seed}",
        f"cameras:={str(options.cameras).lower()}",
        f"real_time_factor:={options.real_time_factor}", "video_episodes:=0",
        f"summary:={summary_path}", f"policy_config:={parameters}",
        f"timeout:={options.timeout}", name="dp-ros",
    )  # fmt: skip
    try:
        runner.wait(options.timeout + 120)
    finally:
        runner.stop()
        stop.set()
        listener.join(timeout=10)
    output = runner.output()
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    dropped = [int(n) for n in DROPPED.findall(output)]
    played = [int(n) for n in PLAYED.findall(output)]
    late, total = (dropped[-1], dropped[-1] + played[-1]) if dropped else (None, None)
    result = {
        "delay_steps": delay_steps,
        "continuation": continuation,
        "episodes": summary.get("episodes", 0),
        "success_rate": summary.get("success_rate"),
        "rows_dropped_late": late,
        "late_share": round(late / total, 3) if total else None,
        "wall_s": round(time.monotonic() - started, 1),
    }
    period_ns, steps = round(options.period * 1e9), chunk_of_each_step(recording)
    result.update(jerk(steps, period_ns))
    first_step = first_driven(steps)
    result.update(takeover(recording, first_step, period_ns))
    result.update(unplayed_plan(recording, first_step))
    result.update(mid_episode_holds(recording))
    result.update(start_holds(recording))
    if options.routes:
        result.update(route_switches(recording))
    print(json.dumps(result), flush=True)
    return result


def plot(results: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for continuation in sorted({r["continuation"] for r in results}):
        cells = sorted(
            (r for r in results if r["continuation"] == continuation),
            key=lambda r: r["delay_steps"],
        )
        axis.plot(
            [r["delay_steps"] for r in cells],
            [r["success_rate"] or 0.0 for r in cells],
            marker="o",
            label=f"continuation={continuation}",
        )
    axis.set_xlabel("injected inference delay (control periods of 50 ms)")
    axis.set_ylabel("success rate")
    axis.set_ylim(-0.02, 1.02)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)


def table(results: list[dict]) -> str:
    columns = ["delay_steps", "continuation", "success_rate", "late_share",
               "takeover_steps_median", "jerk_inside", "jerk_seam", "seam_over_inside",
               "route_switches"]  # fmt: skip
    lines = [" | ".join(columns)]
    for result in results:
        lines.append(" | ".join(str(result.get(column, "-")) for column in columns))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="lift_state")
    parser.add_argument("--task", default="lift")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=100000)
    parser.add_argument("--delays", default="0,1,2,4,6", help="control periods, comma-separated")
    parser.add_argument("--continuations", default="none,inpaint")
    parser.add_argument("--real-time-factor", type=float, default=1.0)
    parser.add_argument("--cameras", action="store_true")
    parser.add_argument(
        "--num-inference-steps", type=int, default=0, help="policy_node's; 0: the checkpoint's"
    )
    parser.add_argument("--routes", action="store_true", help="count route switches (Lift)")
    parser.add_argument("--period", type=float, default=0.05)
    parser.add_argument("--timeout", type=float, default=1800.0, help="per cell, seconds")
    parser.add_argument("--output", type=Path, default=Path("bench_out/continuation.json"))
    parser.add_argument("--plot", type=Path, help="PNG of success vs delay")
    options = parser.parse_args()
    # This process and every graph it starts share one isolated, loopback-only DDS domain.
    os.environ.update(isolation_environment(os.environ))
    folder = Path(tempfile.mkdtemp(prefix="bench_continuation_"))
    results = []
    for delay in [int(d) for d in options.delays.split(",")]:
        for continuation in options.continuations.split(","):
            results.append(run_cell(options, delay, continuation, folder))
    report = {
        "benchmark": "closed loop over ROS vs injected inference delay",
        "checkpoint": options.checkpoint,
        "num_inference_steps": options.num_inference_steps,
        "task": options.task,
        "episodes_per_cell": options.episodes,
        "first_seed": options.first_seed,
        "real_time_factor": options.real_time_factor,
        "cells": results,
    }
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(report, indent=1))
    if options.plot:
        plot(results, options.plot, f"{options.task}, {Path(options.checkpoint).name}")
    print(table(results))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
