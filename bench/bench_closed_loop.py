"""End-to-end rate of the ROS loop: sim_node -> policy_node -> sim_node, in simulated time.

Starts the policy graph with the dp-ros runner (sim + policy, separate processes over DDS) and
listens for `--seconds` of simulated time: chunks per second, the share of control steps driven
by a chunk row (the rest are holds: the policy did not keep up), rows dropped as late, and the
policy's inference latency from its status. Prints JSON.

    .venv/bin/python bench/bench_closed_loop.py --policy state   # tiny state policy, no cameras
    .venv/bin/python bench/bench_closed_loop.py --policy image   # tiny image policy, 84x84 cams
    .venv/bin/python bench/bench_closed_loop.py --checkpoint DIR --cameras --device cuda
"""

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rosgraph_msgs.msg import Clock

from dp_msgs.msg import ActionChunk, PolicyStatus
from dp_ros import conversions as conv
from dp_ros.keys import EEF_POS, EEF_QUAT, GRIPPER_QPOS, OBJECT_STATE
from dp_ros.nodes.qos import ACTION_QOS, STATUS_QOS, STEP_QOS
from dp_ros.policy.shape_meta import image_shape_meta
from dp_ros.testing.checkpoints import make_tiny_checkpoint
from dp_ros.testing.processes import ChildProcess
from dp_ros.testing.ros_isolation import isolation_environment

LIFT_OBJECT_SIZE = 10
SOURCE_CHUNK = ActionChunk.SOURCE_POLICY


def tiny_checkpoint(kind: str, folder: Path) -> Path:
    if kind == "image":
        return make_tiny_checkpoint(folder / "image")
    low_dim = {EEF_POS: 3, EEF_QUAT: 4, GRIPPER_QPOS: 2, OBJECT_STATE: LIFT_OBJECT_SIZE}
    return make_tiny_checkpoint(folder / "state", image_shape_meta(cameras=(), low_dim=low_dim))


def measure(seconds: float, warmup: float) -> dict:
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("bench_closed_loop", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    clock = {"ns": 0}
    chunks, applied, latencies = [], [], []
    node.create_subscription(
        Clock, "/clock", lambda m: clock.update(ns=conv.stamp_to_ns(m.clock)), 10
    )
    node.create_subscription(ActionChunk, "/action_chunk", lambda m: chunks.append(m), ACTION_QOS)
    node.create_subscription(ActionChunk, "/sim/applied_action", applied.append, STEP_QOS)
    node.create_subscription(
        PolicyStatus,
        "/policy_node/status",
        lambda m: latencies.append(m.last_inference_latency) if m.acting else None,
        STATUS_QOS,
    )
    try:
        deadline = time.monotonic() + 600
        while clock["ns"] == 0 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        start = clock["ns"]
        while clock["ns"] - start < warmup * 1e9 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        chunks.clear(), applied.clear(), latencies.clear()
        start, wall_start = clock["ns"], time.monotonic()
        while clock["ns"] - start < seconds * 1e9 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        sim_s = (clock["ns"] - start) / 1e9
        wall_s = time.monotonic() - wall_start
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
    from_chunks = sum(1 for msg in applied if msg.source == SOURCE_CHUNK)
    return {
        "sim_seconds": round(sim_s, 2),
        "wall_seconds": round(wall_s, 2),
        "control_steps": len(applied),
        "steps_per_sim_second": round(len(applied) / sim_s, 2) if sim_s else 0,
        "share_of_steps_from_chunks": round(from_chunks / len(applied), 3) if applied else 0,
        "chunks_per_sim_second": round(len(chunks) / sim_s, 2) if sim_s else 0,
        "mean_rows_per_chunk": round(statistics.mean(m.horizon for m in chunks), 2)
        if chunks
        else 0,
        "inference_latency_ms_median": round(statistics.median(latencies) * 1e3, 1)
        if latencies
        else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", choices=("state", "image"), default="state")
    parser.add_argument("--checkpoint", help="use this checkpoint instead of a tiny one")
    parser.add_argument("--cameras", action="store_true", help="render cameras (image policies)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=20.0, help="simulated seconds measured")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--real-time-factor", type=float, default=1.0)
    options = parser.parse_args()
    # This process and the graph it starts share one isolated, loopback-only DDS domain.
    os.environ.update(isolation_environment(os.environ))
    folder = Path(tempfile.mkdtemp(prefix="bench_closed_loop_"))
    checkpoint = options.checkpoint or tiny_checkpoint(options.policy, folder)
    cameras = options.cameras or options.policy == "image"
    sim_config = folder / "sim.yaml"
    sim_config.write_text(
        "/**:\n  ros__parameters:\n"
        f"    cameras: {str(cameras).lower()}\n"
        f"    real_time_factor: {options.real_time_factor}\n"
        "    max_episode_steps: 100000\n"
    )
    runner = ChildProcess.python(
        "-m", "dp_ros.launching.runner", "launch", "policy", f"checkpoint:={checkpoint}",
        f"device:={options.device}", f"sim_config:={sim_config}", name="dp-ros",
    )  # fmt: skip
    try:
        runner.wait_for(lambda line: "policy_node: activate done" in line, timeout=300)
        result = measure(options.seconds, options.warmup)
    finally:
        runner.stop()
    result.update(
        benchmark="closed loop sim_node <-> policy_node over DDS",
        policy=options.checkpoint or f"tiny {options.policy}",
        cameras=cameras,
        device=options.device,
        real_time_factor=options.real_time_factor,
        control_rate_hz=20,
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
