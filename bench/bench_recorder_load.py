"""recorder_node under load: two 84x84 cameras at 30 Hz, state at 100 Hz, actions at 20 Hz.

Starts recorder_node in its own process (default parameters, a fresh store), publishes from this
process for `--seconds` (default 300) inside one episode, stops it and reports as JSON:
messages published vs received per stream (dropped: target 0), recorded frames and dropped
frames, the recorder's CPU use (from /proc, over the publishing window) and peak memory, and the
time from the stop request to the episode being in the store (write throughput).

    .venv/bin/python bench/bench_recorder_load.py [--seconds 60]
"""

import argparse
import heapq
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from geometry_msgs.msg import PoseStamped
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import Image, JointState

from dp_msgs.msg import ActionChunk
from dp_msgs.srv import StartEpisode, StopEpisode
from dp_ros import conversions as conv
from dp_ros.acting.chunk_timing import TimedChunk
from dp_ros.data.store import EpisodeStore
from dp_ros.keys import AGENTVIEW_IMAGE, EEF_POS, GRIPPER_QPOS, OBJECT_STATE, WRIST_IMAGE
from dp_ros.nodes.qos import SENSOR_QOS, STEP_QOS
from dp_ros.testing.processes import ChildProcess
from dp_ros.testing.ros_isolation import isolation_environment

os.environ.update(isolation_environment(os.environ))
RATES_HZ = {"agentview": 30.0, "wrist": 30.0, "pose": 100.0, "gripper": 100.0, "object": 100.0}
ACTION_HZ = 20.0
KEY_OF = {
    "agentview": AGENTVIEW_IMAGE,
    "wrist": WRIST_IMAGE,
    "pose": EEF_POS,
    "gripper": GRIPPER_QPOS,
    "object": OBJECT_STATE,
}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class LoadPublisher:
    """Publishes every stream on its own schedule from one thread, stamped at publication."""

    def __init__(self, node) -> None:
        self.node = node
        self.pubs = {
            "agentview": node.create_publisher(Image, "/agentview/image_raw", SENSOR_QOS),
            "wrist": node.create_publisher(Image, "/wrist/image_raw", SENSOR_QOS),
            "pose": node.create_publisher(PoseStamped, "/eef_pose", SENSOR_QOS),
            "gripper": node.create_publisher(JointState, "/gripper/joint_states", SENSOR_QOS),
            "object": node.create_publisher(JointState, "/sim/object_state", SENSOR_QOS),
            "action": node.create_publisher(ActionChunk, "/sim/applied_action", STEP_QOS),
        }
        rng = np.random.default_rng(0)
        self.images = rng.integers(0, 256, (16, 84, 84, 3), np.uint8)
        self.counts = dict.fromkeys(self.pubs, 0)
        self.late_s = 0.0  # worst lateness of a publication behind its schedule

    def matched(self) -> bool:
        return all(pub.get_subscription_count() >= 1 for pub in self.pubs.values())

    def run(self, seconds: float) -> None:
        periods = {name: 1.0 / rate for name, rate in RATES_HZ.items()}
        periods["action"] = 1.0 / ACTION_HZ
        start = time.monotonic()
        queue = [(start, name) for name in periods]
        heapq.heapify(queue)
        while queue:
            due, name = heapq.heappop(queue)
            if due - start >= seconds:
                continue
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.late_s = max(self.late_s, time.monotonic() - due)
            self.publish(name, time.time_ns())
            heapq.heappush(queue, (due + periods[name], name))

    def publish(self, name: str, stamp_ns: int) -> None:
        count = self.counts[name]
        if name in ("agentview", "wrist"):
            msg = conv.rgb_to_image(self.images[count % 16], stamp_ns, name)
        elif name == "pose":
            msg = conv.arrays_to_pose([0.1, 0, 1], [0, 0, 0, 1.0], stamp_ns, "world")
        elif name == "gripper":
            msg = conv.array_to_joint_state([0.04, -0.04], stamp_ns, ["f1", "f2"])
        elif name == "object":
            msg = conv.array_to_joint_state(
                np.arange(10.0), stamp_ns, [f"o{i}" for i in range(10)]
            )
        else:
            row = np.full((1, 7), 0.1, np.float32)
            chunk = TimedChunk(stamp_ns, round(1e9 / ACTION_HZ), row)
            msg = conv.timed_chunk_to_msg(chunk, stamp_ns, 1)
        self.pubs[name].publish(msg)
        self.counts[name] = count + 1


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def call(executor, client, request, timeout: float):
    assert client.wait_for_service(timeout_sec=60), client.srv_name
    future = client.call_async(request)
    executor.spin_until_future_complete(future, timeout_sec=timeout)
    return future.result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench_recorder_"))
    store_path = workdir / "store"
    recorder = ChildProcess.python(
        "-m", "dp_ros.nodes.recorder_node", "--ros-args", "-p", f"store:={store_path}",
        name="recorder_node",
    )  # fmt: skip
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("load_publisher", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    try:
        load = LoadPublisher(node)
        start_client = node.create_client(StartEpisode, "/recorder_node/start")
        stop_client = node.create_client(StopEpisode, "/recorder_node/stop")
        deadline = time.monotonic() + 60
        while not load.matched() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        assert load.matched(), "recorder did not subscribe:\n" + recorder.output()
        started = call(executor, start_client, StartEpisode.Request(task="bench"), 30)
        assert started.success, started.message
        spinner.start()
        pid = recorder.process.pid
        cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
        load.run(args.seconds)
        cpu_used, wall = cpu_seconds(pid) - cpu_before, time.monotonic() - wall_before
        time.sleep(0.5)  # let the last messages arrive
        executor.shutdown()
        spinner.join(timeout=5)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        stop_start = time.monotonic()
        stopped = call(executor, stop_client, StopEpisode.Request(success=True), 900)
        stop_s = time.monotonic() - stop_start
        rss_mb = peak_rss_mb(pid)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
        recorder.stop()
    store = EpisodeStore.open(store_path)
    metadata = store.episode_metadata(0) if store.n_episodes else {}
    received = metadata.get("messages_received", {})
    published = {KEY_OF[name]: load.counts[name] for name in RATES_HZ}
    episode_bytes = sum(store.episode(0)[key].nbytes for key in store.keys) if metadata else 0
    store_bytes = sum(f.stat().st_size for f in store_path.rglob("*") if f.is_file())
    report = {
        "seconds": args.seconds,
        "saved": stopped.saved,
        "stop_message": stopped.message,
        "published": {**published, "action": load.counts["action"]},
        "received": received,
        "dropped_messages": {key: published[key] - received.get(key, 0) for key in published},
        "frames": stopped.frames,
        "dropped_frames": metadata.get("dropped_frames"),
        "action_gaps": len(metadata.get("action_gaps", [])),
        "recorder_cpu_percent": round(100 * cpu_used / wall, 1),
        "recorder_peak_rss_mb": round(rss_mb, 1),
        "publisher_worst_lateness_ms": round(1000 * load.late_s, 1),
        "stop_to_saved_s": round(stop_s, 2),
        "episode_mb_uncompressed": round(episode_bytes / 1e6, 1),
        "store_mb_on_disk": round(store_bytes / 1e6, 1),
        "write_mb_per_s_uncompressed": round(episode_bytes / 1e6 / stop_s, 1),
        "frames_per_s_written": round(stopped.frames / stop_s, 1),
    }
    print(json.dumps(report, indent=2))
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
