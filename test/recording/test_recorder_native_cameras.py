"""recorder_node stores native camera frames (640x480, 1280x720) at the store's size with the
same resize step as policy_node (dp_ros.image_fit), over DDS into a real store (issue 14).

The cameras publish PNG CompressedImages, as native-resolution cameras usually do: raw 1280x720
frames (2.7 MB) over best-effort DDS lose fragments on this loaded machine."""

import threading
import time

import cv2
import numpy as np
import pytest
import rclpy
from geometry_msgs.msg import PoseStamped
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import CompressedImage, JointState

from dp_msgs.msg import ActionChunk
from dp_msgs.srv import StartEpisode, StopEpisode
from dp_ros import conversions as conv
from dp_ros.acting.chunk_timing import TimedChunk
from dp_ros.data.store import EpisodeStore
from dp_ros.image_fit import center_crop_box
from dp_ros.keys import AGENTVIEW_IMAGE, EEF_POS, EEF_QUAT, GRIPPER_QPOS, WRIST_IMAGE
from dp_ros.nodes.qos import SENSOR_QOS, STEP_QOS
from dp_ros.testing.processes import ChildProcess

pytestmark = pytest.mark.ros
# 10 Hz: PNG-encoding two 1280x720 frames per step in this test process and decoding them in the
# recorder at 20 Hz is more than a loaded 2-core machine keeps up with.
PERIOD_NS = 100_000_000
KEYS = [AGENTVIEW_IMAGE, WRIST_IMAGE, EEF_POS, EEF_QUAT, GRIPPER_QPOS]


class NativeCameraFeed:
    """Every PERIOD_NS: two cameras at `hw` (centre square = step value, the rest 255), pose,
    gripper and the applied action, all stamped alike, on topics under `prefix`."""

    def __init__(self, context, prefix: str, hw: tuple[int, int]) -> None:
        self.node = rclpy.create_node(f"feed{prefix.replace('/', '_')}", context=context)
        self.prefix, self.hw, self.step = prefix, hw, 0
        self.top, self.left, self.crop_h, self.crop_w = center_crop_box(hw, (1, 1))
        pub = self.node.create_publisher
        self.cameras = [
            pub(CompressedImage, f"{prefix}/{name}", SENSOR_QOS) for name in ("agent", "wrist")
        ]
        self.pose = pub(PoseStamped, f"{prefix}/pose", SENSOR_QOS)
        self.gripper = pub(JointState, f"{prefix}/gripper", SENSOR_QOS)
        self.action = pub(ActionChunk, f"{prefix}/action", STEP_QOS)
        self.node.create_timer(PERIOD_NS / 1e9, self._tick)
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
        chunk = TimedChunk(stamp, PERIOD_NS, np.full((1, 7), 0.1, np.float32))
        self.action.publish(conv.timed_chunk_to_msg(chunk, stamp, 2, "applied"))
        self.step += 1

    def close(self) -> None:
        self.executor.shutdown()
        self.thread.join(timeout=5)
        self.node.destroy_node()


@pytest.fixture(scope="module")
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.shutdown(context=ctx)


def call(node, executor, client, request):
    assert client.wait_for_service(30)
    future = client.call_async(request)
    executor.spin_until_future_complete(future, timeout_sec=30)
    return future.result()


@pytest.mark.parametrize(
    "native, size, crop", [((480, 640), "84x84", "false"), ((720, 1280), "96x96", "true")]
)
def test_recorder_stores_native_frames_at_the_asked_size(context, tmp_path, native, size, crop):
    name = f"native_recorder_{native[1]}"
    prefix = f"/{name}_feed"
    feed = NativeCameraFeed(context, prefix, native)
    store_path = tmp_path / "store.zarr"
    params = {
        "store": str(store_path), "keys": "[" + ",".join(KEYS) + "]",
        "agentview_topic": f"{prefix}/agent", "wrist_topic": f"{prefix}/wrist",
        "eef_pose_topic": f"{prefix}/pose", "gripper_topic": f"{prefix}/gripper",
        "action_topic": f"{prefix}/action", "object_topic": "''", "image_size": size,
        "center_crop": crop, "outcome_topic": f"{prefix}/outcome", "compressed_images": "true",
        "control_period": "0.1",
    }  # fmt: skip
    args = ["-m", "dp_ros.nodes.recorder_node", "--ros-args", "-r", f"__node:={name}"]
    for key, value in params.items():
        args += ["-p", f"{key}:={value}"]
    recorder = ChildProcess.python(*args, name=name)
    client_node = rclpy.create_node(f"client_{name}", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(client_node)
    try:
        recorder.wait_for(lambda line: "recording [" in line, timeout=60)
        start = client_node.create_client(StartEpisode, f"/{name}/start")
        stop = client_node.create_client(StopEpisode, f"/{name}/stop")
        time.sleep(3.0)  # let DDS match the feed's publishers with the recorder
        assert call(client_node, executor, start, StartEpisode.Request(task="t")).success
        time.sleep(3.0)
        stopped = call(client_node, executor, stop, StopEpisode.Request(success=True))
        assert stopped.saved, (stopped.message, recorder.output())
    finally:
        executor.shutdown()
        client_node.destroy_node()
        recorder.stop()
        feed.close()
    episode = EpisodeStore.open(store_path).episode(0)
    height, width = (int(n) for n in size.split("x"))
    for key in (AGENTVIEW_IMAGE, WRIST_IMAGE):
        frames = episode[key]
        assert frames.shape[1:] == (height, width, 3) and len(frames) >= 5
        if crop == "true":  # only the centre square was kept: each frame is one value
            assert all(np.all(frame == frame[0, 0]) and frame[0, 0, 0] < 255 for frame in frames)
        else:  # squashed: the white bands are averaged in at the sides
            assert np.all(frames[:, :, 0] > frames[:, :, width // 2])
