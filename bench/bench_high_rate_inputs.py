"""A valid high-rate input stream must not slow acting down (issue 18, item 6).

Two measurements, JSON printed:

1. callback cost (ROS-free, this process): what policy_node's pose callback does per message,
   on a 1 kHz stream, with the synchroniser's decimation (messages closer than a quarter of
   sync_tolerance after the last kept one are dropped before conversion) and without it.
2. chunk rate (policy_node in its own process, tiny image checkpoint, fp16 weights): chunks
   per second over `--seconds`, repeated `--repeats` times (median), for a feed with every
   stream at 20 Hz and for one with the pose at 1 kHz and both cameras at 60 Hz.

    .venv/bin/python bench/bench_high_rate_inputs.py [--seconds 10] [--repeats 2]
"""

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import rclpy

from dp_msgs.msg import ActionChunk
from dp_ros import conversions as conv
from dp_ros.acting.obs_sync import ObservationSynchronizer, SyncConfig
from dp_ros.keys import EEF_POS, EEF_QUAT
from dp_ros.nodes.qos import ACTION_QOS
from dp_ros.testing.checkpoints import make_tiny_checkpoint
from dp_ros.testing.observer import GraphObserver
from dp_ros.testing.processes import ChildProcess
from dp_ros.testing.robot_feed import RobotFeed
from dp_ros.testing.ros_isolation import isolation_environment

MS = 1_000_000
FEEDS = {
    "20 Hz feed": {},
    "pose 1 kHz, cameras 60 Hz": {"eef_pose": 1000.0, "agentview": 60.0, "wrist": 60.0},
}


def callback_cost_us(min_interval_ns: int, messages: int = 5000) -> float:
    """Median microseconds per pose message through the node's accept path."""
    config = SyncConfig(
        n_obs_steps=2, period_ns=50 * MS, tolerance_ns=25 * MS, max_age_ns=300 * MS
    )
    sync = ObservationSynchronizer([EEF_POS, EEF_QUAT], config)
    sync.min_interval_ns = min_interval_ns
    t0 = time.time_ns()
    msgs = [
        conv.arrays_to_pose(np.array([0.1, 0, 1]), np.array([0, 0, 0, 1.0]), t0 + i * MS, "w")
        for i in range(messages)
    ]
    costs = []
    for msg in msgs:
        start = time.perf_counter_ns()
        stamp = conv.stamp_to_ns(msg.header.stamp)
        if sync.would_keep(EEF_POS, stamp):
            position, quaternion = conv.pose_to_arrays(msg, "/eef_pose")
            sync.add(EEF_POS, stamp, position, stamp)
            sync.add(EEF_QUAT, stamp, quaternion, stamp)
        costs.append(time.perf_counter_ns() - start)
    return statistics.median(costs) / 1000, statistics.mean(costs) / 1000


class ChunkCounter(GraphObserver):
    def __init__(self, context) -> None:
        super().__init__("chunk_counter", context)
        self.chunks = 0
        self.node.create_subscription(ActionChunk, "/action_chunk", self._count, ACTION_QOS)

    def _count(self, msg) -> None:
        self.chunks += 1


def chunk_rate(context, checkpoint: Path, rates: dict, seconds: float) -> float:
    feed = RobotFeed(context, rate_hz=20.0, rates_hz=rates)
    args = ["-m", "dp_ros.nodes.policy_node", "--ros-args", "-p", f"checkpoint:={checkpoint}"]
    args += ["-p", "half_weights:=true"]
    process = ChildProcess.python(*args, name="policy_node")
    counter = ChunkCounter(context)
    try:
        from dp_ros.launching.lifecycle import LifecycleClient

        lifecycle = LifecycleClient(counter.node, counter.executor, "/policy_node")
        assert lifecycle.wait_for_services(60), process.output()
        assert lifecycle.transition("configure") and lifecycle.transition("activate")
        assert counter.spin_until(lambda: counter.chunks >= 2, 60), process.output()[-2000:]
        counter.chunks = 0
        counter.spin_for(seconds)
        return counter.chunks / seconds
    finally:
        counter.close()
        feed.close()
        process.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    os.environ.update(isolation_environment(os.environ))
    result = {
        "callback_us_median_mean": {
            "decimated (tolerance/4 = 6.25 ms)": callback_cost_us(round(25 * MS / 4)),
            "every message": callback_cost_us(0),
        }
    }
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        with tempfile.TemporaryDirectory() as folder:
            checkpoint = make_tiny_checkpoint(Path(folder) / "image")
            rates = {name: [] for name in FEEDS}
            for _ in range(args.repeats):  # interleaved: load on the machine hits both alike
                for name, feed_rates in FEEDS.items():
                    rates[name].append(chunk_rate(context, checkpoint, feed_rates, args.seconds))
            result["chunks_per_s"] = {
                name: {"median": statistics.median(v), "runs": v} for name, v in rates.items()
            }
    finally:
        rclpy.shutdown(context=context)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
