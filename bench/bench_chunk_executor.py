"""chunk_executor_node: its work per control tick (target < 1 ms median) and the jitter of its
command publication. Prints JSON.

overhead: the node's tick in this process, on a real ChunkExecutorNode: the executor core picks
the row due (15-row chunks, a new one every 8 ticks, as policy_node sends them), converts and
limits it (twist: speed caps and the workspace box; pose: the pose composed, box, caps), builds
the TwistStamped / PoseStamped and Float64MultiArray messages and publishes them. Tick instants
are synthetic (one period apart), so every tick plays a row.

jitter: the node in its own process on the wall clock at `--rate` Hz, fed chunks and an ACTING
status over DDS by this process, which records every twist: the interval between consecutive
twist stamps (the node's tick instants) and between their arrivals here, minus the period.

    .venv/bin/python bench/bench_chunk_executor.py [--ticks 2000] [--repeats 5] [--seconds 20]
"""

import argparse
import json
import os
import statistics
import time

import numpy as np

from dp_ros.testing.ros_isolation import isolation_environment

PERIOD_NS = 50_000_000
NS = 1_000_000_000


def percentiles(values_ms: list[float]) -> dict[str, float]:
    data = np.asarray(values_ms)
    return {
        "p50": round(float(np.percentile(data, 50)), 4),
        "p90": round(float(np.percentile(data, 90)), 4),
        "p99": round(float(np.percentile(data, 99)), 4),
        "max": round(float(data.max()), 4),
    }


def chunk_msg(first_ns: int, rng: np.random.Generator):
    from dp_ros import conversions as conv
    from dp_ros.acting.chunk_timing import TimedChunk

    rows = rng.uniform(-1, 1, (15, 7)).astype(np.float32)
    return conv.timed_chunk_to_msg(TimedChunk(first_ns, PERIOD_NS, rows), first_ns, 0)


def measure_overhead(interface: str, ticks: int, repeats: int) -> dict:
    import rclpy
    from rclpy.parameter import Parameter

    from dp_ros import conversions as conv
    from dp_ros.nodes.chunk_executor_node import ChunkExecutorNode

    values = {
        "command_interface": interface,
        "checkpoint": "lift_state",
        "workspace_min": [-2.0, -2.0, -2.0],
        "workspace_max": [2.0, 2.0, 2.0],
        "policy_status_topic": "",  # no watchdog: ticks here are not on the node's clock
    }
    context = rclpy.Context()
    rclpy.init(context=context)
    overrides = [Parameter(name, value=value) for name, value in values.items()]
    node = ChunkExecutorNode(context=context, parameter_overrides=overrides)
    rng = np.random.default_rng(0)
    pose = conv.arrays_to_pose(np.array([0.1, 0.0, 1.0]), np.array([0, 0, 0, 1.0]), 0, "world")
    per_tick_ms, played = [], 0
    try:
        for repeat in range(repeats):
            start_ns = (1000 + repeat * 1000) * NS
            for k in range(ticks):
                tick_ns = start_ns + k * PERIOD_NS
                msg = chunk_msg(tick_ns, rng) if k % 8 == 0 else None
                pose.header.stamp = conv.ns_to_stamp(tick_ns)
                begin = time.perf_counter_ns()
                if msg is not None:  # the chunk callback's share of this tick
                    node._on_chunk(msg)
                node._on_pose(pose)  # the pose callback (pose mode sends from here)
                command = node.core.tick(tick_ns)
                if command is not None:
                    node._send(command)
                per_tick_ms.append((time.perf_counter_ns() - begin) / 1e6)
            played += node.core.counts["rows_played"]
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)
    medians = [statistics.median(per_tick_ms[i * ticks : (i + 1) * ticks]) for i in range(repeats)]
    return {
        "interface": interface,
        "ticks": ticks * repeats,
        "median_ms_per_repeat": [round(m, 4) for m in medians],
        "per_tick_ms": percentiles(per_tick_ms),
        "target_median_ms": 1.0,
    }


def measure_jitter(seconds: float, rate: float) -> dict:
    from geometry_msgs.msg import TwistStamped

    from dp_msgs.msg import ActionChunk, PolicyStatus
    from dp_ros import conversions as conv
    from dp_ros.acting.chunk_timing import TimedChunk
    from dp_ros.nodes.qos import ACTION_QOS, STATUS_QOS
    from dp_ros.testing.observer import GraphObserver
    from dp_ros.testing.processes import ChildProcess

    period_ns = round(NS / rate)
    process = ChildProcess.python(
        "-m", "dp_ros.nodes.chunk_executor_node", "--ros-args", "-p", "checkpoint:=lift_state",
        "-p", f"control_rate:={rate}", "-p", "max_linear_speed:=5.0",
        name="chunk_executor_node",
    )  # fmt: skip
    observer = GraphObserver("bench_executor")
    received: list[tuple[int, int, bool]] = []  # (arrival ns, stamp ns, moving)
    node = observer.node
    node.create_subscription(
        TwistStamped,
        "/servo_node/delta_twist_cmds",
        lambda m: received.append(
            (time.time_ns(), conv.stamp_to_ns(m.header.stamp), m.twist.linear.x != 0.0)
        ),
        100,
    )
    chunks = node.create_publisher(ActionChunk, "/action_chunk", ACTION_QOS)
    status = node.create_publisher(PolicyStatus, "/policy_node/status", STATUS_QOS)
    rng = np.random.default_rng(1)

    def feed() -> None:  # an ACTING policy that sends a 15-row chunk every 8 periods
        status.publish(PolicyStatus(state=PolicyStatus.STATE_ACTING, acting=True))
        now = time.time_ns()
        rows = rng.uniform(0.1, 1, (15, 7)).astype(np.float32)
        # Row 0 at publication, as policy_node stamps them: the rows cover every tick.
        chunk = TimedChunk(now, period_ns, rows)
        chunks.publish(conv.timed_chunk_to_msg(chunk, now, 0))

    node.create_timer(8 * period_ns / NS, feed)
    try:
        process.wait_for(lambda line: "twist commands at" in line, timeout=60)
        observer.spin_for(2.0)  # warm-up
        received.clear()
        observer.spin_for(seconds)
    finally:
        observer.close()
        process.stop()
    arrivals = np.array([r[0] for r in received], dtype=np.int64)
    stamps = np.array([r[1] for r in received], dtype=np.int64)
    moving = sum(r[2] for r in received)
    return {
        "rate_hz": rate,
        "seconds": seconds,
        "twists": len(received),
        "twists_expected": round(seconds * rate),
        "twists_moving": int(moving),
        "tick_interval_minus_period_ms": percentiles(
            list(np.abs(np.diff(stamps) - period_ns) / 1e6)
        ),
        "arrival_interval_minus_period_ms": percentiles(
            list(np.abs(np.diff(arrivals) - period_ns) / 1e6)
        ),
        "arrival_after_tick_ms": percentiles(list((arrivals - stamps) / 1e6)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=2000, help="ticks per repeat (overhead)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=20.0, help="jitter measurement length")
    parser.add_argument("--rate", type=float, default=20.0, help="control rate (Hz), jitter")
    options = parser.parse_args()
    os.environ.update(isolation_environment(os.environ))
    result = {
        "benchmark": "chunk_executor_node: per-tick overhead and command publication jitter",
        "load_average": os.getloadavg(),
        "overhead": [
            measure_overhead(interface, options.ticks, options.repeats)
            for interface in ("twist", "pose")
        ],
        "jitter": measure_jitter(options.seconds, options.rate),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
