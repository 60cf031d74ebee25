"""A robot whose cameras publish at their native resolution, as PNG CompressedImages (tests).

Cameras (centre square = a per-step value, the rest 255, so a centre crop is visible in the
result), end-effector pose, gripper and the applied action, all stamped alike, every period, on
topics under a prefix: <prefix>/agent, /wrist, /pose, /gripper, /action. PNG, not raw: raw
1280x720 frames (2.7 MB) over best-effort DDS are lost wholesale on a loaded machine.
"""

import threading

import cv2
import numpy as np
import rclpy
from geometry_msgs.msg import PoseStamped
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import CompressedImage, JointState

from dp_msgs.msg import ActionChunk
from dp_ros import conversions as conv
from dp_ros.acting.chunk_timing import TimedChunk
from dp_ros.image_fit import center_crop_box
from dp_ros.nodes.qos import SENSOR_QOS, STEP_QOS


class NativeCameraFeed:
    """Every `period_ns`: two cameras at `hw` (centre square = step value, the rest 255), pose,
    gripper and the applied action, all stamped alike, on topics under `prefix`."""

    def __init__(
        self, context, prefix: str, hw: tuple[int, int], period_ns: int = 100_000_000
    ) -> None:
        self.node = rclpy.create_node(f"feed{prefix.replace('/', '_')}", context=context)
        self.prefix, self.hw, self.step, self.period_ns = prefix, hw, 0, period_ns
        self.top, self.left, self.crop_h, self.crop_w = center_crop_box(hw, (1, 1))
        pub = self.node.create_publisher
        self.cameras = [
            pub(CompressedImage, f"{prefix}/{name}", SENSOR_QOS) for name in ("agent", "wrist")
        ]
        self.pose = pub(PoseStamped, f"{prefix}/pose", SENSOR_QOS)
        self.gripper = pub(JointState, f"{prefix}/gripper", SENSOR_QOS)
        self.action = pub(ActionChunk, f"{prefix}/action", STEP_QOS)
        self.node.create_timer(period_ns / 1e9, self._tick)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _tick(self) -> None:
        stamp = self.node.get_clock().now().nanoseconds
        value = 10 + self.step % 200
        frame = np.full((*self.hw, 3), 255, np.uint8)
        frame[self.top : self.top + self.crop_h, self.left : self.left + self.crop_w] = value
        png = CompressedImage(format="png", data=cv2.imencode(".png", frame)[1].tobytes())
        png.header.stamp = conv.ns_to_stamp(stamp)
        for publisher in self.cameras:
            publisher.publish(png)
        self.pose.publish(conv.arrays_to_pose(np.zeros(3), np.array([0, 0, 0, 1.0]), stamp, "w"))
        self.gripper.publish(conv.array_to_joint_state(np.array([0.04, -0.04]), stamp, ["a", "b"]))
        chunk = TimedChunk(stamp, self.period_ns, np.full((1, 7), 0.1, np.float32))
        self.action.publish(conv.timed_chunk_to_msg(chunk, stamp, 2, "applied"))
        self.step += 1

    def close(self) -> None:
        self.executor.shutdown()
        self.thread.join(timeout=5)
        self.node.destroy_node()
