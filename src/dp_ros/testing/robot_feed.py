"""A stand-in robot's sensor streams for policy_node tests and benchmarks, with injectable faults.

Publishes the two cameras (rgb8, 84x84), the end-effector pose and the gripper joint state on one
timer, all stamped with the same instant, the way a robot driver with synchronised sensors would.
Each fault is a field of `FeedFaults` so a test states exactly which input is broken and how.
"""

import struct
import threading
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
import rclpy
from geometry_msgs.msg import PoseStamped
from rclpy.executors import SingleThreadedExecutor
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CompressedImage, Image, JointState

from dp_ros import conversions as conv
from dp_ros.nodes.qos import SENSOR_QOS

DEFAULT_TOPICS = {
    "agentview": "/agentview/image_raw",
    "wrist": "/wrist/image_raw",
    "eef_pose": "/eef_pose",
    "gripper": "/gripper/joint_states",
}


@dataclass(frozen=True)
class FeedFaults:
    silent: tuple[str, ...] = ()  # streams that publish nothing
    encodings: dict[str, str] = field(default_factory=dict)  # camera stream -> encoding label
    image_hw: dict[str, tuple[int, int]] = field(default_factory=dict)  # camera -> (H, W)
    nan_pose: bool = False
    stamp_offset_s: float = 0.0  # every stamp shifted by this (negative: stale data)
    backwards: tuple[str, ...] = ()  # streams whose stamps run backwards (out of order)
    future_once: tuple[str, ...] = ()  # streams whose next message only is an hour ahead
    short_positions: bool = False  # gripper JointState with fewer positions than names
    far_pose: bool = False  # finite but absurd: the end effector a thousand km away
    bomb: tuple[str, ...] = ()  # cameras whose JPEG declares 10000x10000 (compressed feeds)


class RobotFeed:
    """Publishes the robot streams at `rate_hz` from its own node, spun in a background thread."""

    def __init__(
        self,
        context,
        rate_hz: float = 20.0,
        topics: dict[str, str] | None = None,
        hw=(84, 84),
        publish_clock: bool = False,
        rates_hz: dict[str, float] | None = None,
        compressed: bool = False,
    ) -> None:
        """With `publish_clock`, the feed is also the robot's clock: it publishes /clock (wall
        time + `clock_offset_ns`, which a test may change to make the clock jump) before each
        tick's messages, and stamps them with it. `rates_hz` gives streams their own rate
        (e.g. {"eef_pose": 1000.0, "agentview": 60.0}); the others publish at `rate_hz`.
        With `compressed`, cameras publish sensor_msgs/CompressedImage (JPEG)."""
        self.node = rclpy.create_node(f"robot_feed_{id(self):x}", context=context)
        self.compressed = compressed
        image_type = CompressedImage if compressed else Image
        self.clock_offset_ns = 0
        self._clock_pub = (
            self.node.create_publisher(Clock, "/clock", 10) if publish_clock else None
        )
        self.topics = dict(DEFAULT_TOPICS, **(topics or {}))
        self.hw = hw
        self.faults = FeedFaults()
        self.published = 0
        self._rng = np.random.default_rng(0)
        self._backwards_ns = 0
        self._publishers = {
            "agentview": self.node.create_publisher(
                image_type, self.topics["agentview"], SENSOR_QOS
            ),
            "wrist": self.node.create_publisher(image_type, self.topics["wrist"], SENSOR_QOS),
            "eef_pose": self.node.create_publisher(
                PoseStamped, self.topics["eef_pose"], SENSOR_QOS
            ),
            "gripper": self.node.create_publisher(JointState, self.topics["gripper"], SENSOR_QOS),
        }
        rates = {stream: rate_hz for stream in self._publishers} | dict(rates_hz or {})
        if len(set(rates.values())) == 1:
            self.node.create_timer(1.0 / rate_hz, self._tick)
        else:  # one timer per stream (no /clock: its ticks would not line up)
            for stream, rate in rates.items():
                self.node.create_timer(1.0 / rate, lambda s=stream: self._tick_one(s))
        self._executor = SingleThreadedExecutor(context=context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._executor.spin, daemon=True)
        self._thread.start()

    def set_faults(self, **faults) -> None:
        self.faults = replace(FeedFaults(), **faults)
        self._backwards_ns = 0

    def _tick(self) -> None:
        faults = self.faults
        now_ns = self.node.get_clock().now().nanoseconds
        if self._clock_pub is not None:
            now_ns += self.clock_offset_ns
            self._clock_pub.publish(Clock(clock=conv.ns_to_stamp(now_ns)))
        stamp_ns = now_ns + round(faults.stamp_offset_s * 1e9)
        for stream, publisher in self._publishers.items():
            if stream in faults.silent:
                continue
            stamp = stamp_ns
            if stream in faults.backwards:
                self._backwards_ns += 100_000_000
                stamp = stamp_ns - 2 * self._backwards_ns
            if stream in faults.future_once:
                stamp = stamp_ns + 3600 * 1_000_000_000
            publisher.publish(self._message(stream, stamp, faults))
        if faults.future_once:
            self.faults = replace(faults, future_once=())
        self.published += 1

    def _tick_one(self, stream: str) -> None:
        if stream not in self.faults.silent:
            stamp_ns = self.node.get_clock().now().nanoseconds
            self._publishers[stream].publish(self._message(stream, stamp_ns, self.faults))

    def _message(self, stream: str, stamp_ns: int, faults: FeedFaults):
        if stream in ("agentview", "wrist"):
            height, width = faults.image_hw.get(stream, self.hw)
            rgb = self._rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            if self.compressed:
                return self._jpeg(rgb, stamp_ns, stream, bomb=stream in faults.bomb)
            msg = conv.rgb_to_image(rgb, stamp_ns, stream)
            msg.encoding = faults.encodings.get(stream, "rgb8")
            return msg
        if stream == "eef_pose":
            position = np.array([0.1, 0.0, 1.0]) if not faults.nan_pose else np.full(3, np.nan)
            if faults.far_pose:
                position = np.array([1e6, 0.0, 1.0])
            return conv.arrays_to_pose(position, np.array([0.0, 0.0, 0.0, 1.0]), stamp_ns, "base")
        positions = np.array([0.02] if faults.short_positions else [0.02, -0.02])
        return conv.array_to_joint_state(positions, stamp_ns, ["finger_joint1", "finger_joint2"])

    @staticmethod
    def _jpeg(rgb: np.ndarray, stamp_ns: int, frame_id: str, bomb: bool) -> CompressedImage:
        """A JPEG of `rgb`; a bomb declares 10000x10000 pixels in its frame header (SOF0)."""
        ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        data = bytearray(encoded.tobytes())
        if bomb:
            sof = data.find(b"\xff\xc0")
            data[sof + 5 : sof + 9] = struct.pack(">HH", 10000, 10000)
        msg = CompressedImage(format="jpeg", data=bytes(data))
        msg.header.stamp = conv.ns_to_stamp(stamp_ns)
        msg.header.frame_id = frame_id
        return msg

    def close(self) -> None:
        self._executor.shutdown()
        self._thread.join(timeout=5)
        self.node.destroy_node()
