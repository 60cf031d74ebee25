"""Cameras at their native resolution (issue 14): policy_node and recorder_node bring 640x480 and
1280x720 frames to the policy's / the store's size with one implementation (dp_ros.image_fit)."""

import cv2
import numpy as np
import pytest

from dp_msgs.msg import ActionChunk, PolicyStatus
from dp_ros import conversions as conv
from dp_ros.acting.inputs import STREAM_BY_NAME
from dp_ros.image_fit import center_crop_box, fit_image, parse_hw
from dp_ros.keys import AGENTVIEW_IMAGE
from dp_ros.launching.lifecycle import LifecycleClient
from dp_ros.nodes.qos import ACTION_QOS, STATUS_QOS
from dp_ros.recording.decode import make_decoder
from dp_ros.testing.camera_feed import NativeCameraFeed
from dp_ros.testing.checkpoints import make_tiny_checkpoint
from dp_ros.testing.observer import GraphObserver
from dp_ros.testing.processes import ChildProcess

NATIVE = {"640x480": (480, 640), "1280x720": (720, 1280)}


def banded(hw: tuple[int, int], inside: int, outside: int) -> np.ndarray:
    """A frame whose central square (the 1:1 centre crop) is `inside`, the rest `outside`."""
    top, left, crop_h, crop_w = center_crop_box(hw, (84, 84))
    frame = np.full((*hw, 3), outside, np.uint8)
    frame[top : top + crop_h, left : left + crop_w] = inside
    return frame


# ---- the one implementation ------------------------------------------------------------------


def test_parse_hw():
    assert parse_hw("84x84") == (84, 84) and parse_hw(" 96X128 ") == (96, 128)
    assert parse_hw("") is None
    with pytest.raises(ValueError, match="expected HxW"):
        parse_hw("84")


@pytest.mark.parametrize("native", sorted(NATIVE))
def test_fit_is_inter_area_with_an_optional_centre_crop(native):
    hw = NATIVE[native]
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    squashed = fit_image(frame, (84, 84))
    assert squashed.shape == (84, 84, 3) and squashed.dtype == np.uint8
    np.testing.assert_array_equal(
        squashed, cv2.resize(frame, (84, 84), interpolation=cv2.INTER_AREA)
    )
    # Area averaging keeps the mean (nearest/bilinear sampling of noise would not be this close).
    assert abs(float(squashed.mean()) - float(frame.mean())) < 0.5
    # The crop keeps the central square only: the bands left and right never reach the output.
    cropped = fit_image(banded(hw, inside=100, outside=250), (84, 84), crop=True)
    assert np.all(cropped == 100)
    assert fit_image(squashed, (84, 84)) is squashed  # the right size is passed through


@pytest.mark.parametrize("native", sorted(NATIVE))
def test_recorder_decoder_and_policy_conversion_give_identical_pixels(native):
    """The recorder's decoder and policy_node's conversion are the same function of a message."""
    hw = NATIVE[native]
    frame = np.random.default_rng(1).integers(0, 256, (*hw, 3), dtype=np.uint8)
    msg = conv.rgb_to_image(frame, 123, "agentview")
    decode = make_decoder(
        STREAM_BY_NAME["agentview"], "/cam", (AGENTVIEW_IMAGE,), image_hw=(84, 84),
        center_crop=True,
    )  # fmt: skip
    recorded = decode(msg)[AGENTVIEW_IMAGE]
    acted = conv.camera_to_rgb(msg, "/cam", False, (84, 84), crop=True)
    np.testing.assert_array_equal(recorded, acted)
    np.testing.assert_array_equal(recorded, fit_image(frame, (84, 84), crop=True))


# ---- policy_node over DDS --------------------------------------------------------------------


@pytest.mark.ros
# 1280x720 over DDS is behind `slow`: two 1280x720 frames per step into a node on 2 shared cores
# under load 10+ starved it (services not up in 60 s); the function itself is tested above.
@pytest.mark.parametrize(
    "native, crop",
    [("640x480", "false"), pytest.param("1280x720", "true", marks=pytest.mark.slow)],
)
def test_policy_node_acts_on_native_camera_frames(context, tmp_path, native, crop):
    checkpoint = make_tiny_checkpoint(tmp_path / "tiny")  # two 84x84 cameras + state
    name = f"native_{native.replace('x', '_')}"
    prefix = f"/{name}_robot"
    # 10 Hz (control_period 0.1) PNG frames: 2 x 1280x720 per step is heavy on 2 shared cores.
    feed = NativeCameraFeed(context, prefix, NATIVE[native], period_ns=100_000_000)
    node = ChildProcess.python(
        "-m", "dp_ros.nodes.policy_node", "--ros-args", "-r", f"__node:={name}",
        "-p", f"checkpoint:={checkpoint}", "-p", f"action_topic:=/{name}/action_chunk",
        "-p", f"agentview_topic:={prefix}/agent", "-p", f"wrist_topic:={prefix}/wrist",
        "-p", f"eef_pose_topic:={prefix}/pose", "-p", f"gripper_topic:={prefix}/gripper",
        "-p", "compressed_images:=true", "-p", f"center_crop:={crop}",
        "-p", "half_weights:=false", "-p", "control_period:=0.1", "-p", "sync_tolerance:=0.04",
        "-p", "max_observation_age:=1.0", name="policy_node",
    )  # fmt: skip
    observer = GraphObserver(f"observer_{name}", context)
    chunks, statuses = [], []
    observer.node.create_subscription(
        ActionChunk, f"/{name}/action_chunk", chunks.append, ACTION_QOS
    )
    observer.node.create_subscription(PolicyStatus, f"/{name}/status", statuses.append, STATUS_QOS)
    try:
        lifecycle = LifecycleClient(observer.node, observer.executor, f"/{name}")
        assert lifecycle.wait_for_services(60), node.output()
        assert lifecycle.transition("configure", timeout=90), node.output()
        assert lifecycle.transition("activate", timeout=30), node.output()
        assert observer.spin_until(lambda: len(chunks) >= 2, timeout=60), (
            [s.reason for s in statuses[-5:]],
            node.output(),
        )
        assert "image is" not in node.output()  # no size refusal on the way
    finally:
        observer.close()
        node.stop()
        feed.close()
