"""Message <-> array conversions: every encoding, padding, and errors that name the topic."""

import resource
import struct
import time
import zlib

import cv2
import numpy as np
import pytest
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import CompressedImage, Image, JointState

from dp_ros import conversions as conv
from dp_ros.acting.chunk_timing import TimedChunk

TOPIC = "/cameras/agentview/image_raw"


def reference_rgb(h: int = 6, w: int = 5) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def raw_image(rgb: np.ndarray, encoding: str, padding: int = 0) -> Image:
    """Build an Image in `encoding` from RGB, with `padding` junk bytes at the end of each row."""
    pixels = {
        "rgb8": rgb,
        "bgr8": rgb[:, :, ::-1],
        "rgba8": np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]),
        "bgra8": np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 7, np.uint8)]),
        "mono8": rgb[:, :, :1],
    }[encoding]
    h, w, c = pixels.shape
    rows = np.concatenate([pixels.reshape(h, w * c), np.full((h, padding), 99, np.uint8)], axis=1)
    return Image(height=h, width=w, encoding=encoding, step=w * c + padding, data=rows.tobytes())


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
@pytest.mark.parametrize("padding", [0, 3])
def test_color_encodings_with_any_padding_give_the_same_rgb(encoding, padding):
    rgb = reference_rgb()
    out = conv.image_to_rgb(raw_image(rgb, encoding, padding), TOPIC, use_bridge=False)
    assert out.dtype == np.uint8 and out.shape == (6, 5, 3)
    np.testing.assert_array_equal(out, rgb)


def test_mono8_is_replicated_to_three_channels():
    rgb = reference_rgb()
    out = conv.image_to_rgb(raw_image(rgb, "mono8", padding=2), TOPIC, use_bridge=False)
    np.testing.assert_array_equal(out, np.repeat(rgb[:, :, :1], 3, axis=2))


def test_unpadded_rgb8_is_a_view_of_the_message_buffer():
    msg = raw_image(reference_rgb(), "rgb8")
    out = conv.image_to_rgb(msg, TOPIC, use_bridge=False)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))


def test_wrong_encoding_size_and_short_data_name_the_topic():
    rgb = reference_rgb()
    bad = raw_image(rgb, "rgb8")
    bad.encoding = "16UC1"
    with pytest.raises(ValueError, match=f"{TOPIC}: image encoding '16UC1' is not supported"):
        conv.image_to_rgb(bad, TOPIC)
    with pytest.raises(ValueError, match=f"{TOPIC}: image is 6x5 \\(HxW\\); expected 84x84"):
        conv.image_to_rgb(raw_image(rgb, "rgb8"), TOPIC, expected_hw=(84, 84))
    short = raw_image(rgb, "rgb8")
    short.data = short.data[:-10]
    with pytest.raises(ValueError, match=f"{TOPIC}: image data too short"):
        conv.image_to_rgb(short, TOPIC, use_bridge=False)


def test_compressed_png_round_trips_exactly_and_garbage_is_refused():
    rgb = reference_rgb()
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    msg = CompressedImage(format="png", data=png.tobytes())
    np.testing.assert_array_equal(conv.compressed_image_to_rgb(msg, TOPIC, (6, 5)), rgb)
    with pytest.raises(ValueError, match=f"{TOPIC}: could not decode compressed image"):
        conv.compressed_image_to_rgb(CompressedImage(format="jpeg", data=b"\x00\x01"), TOPIC)


def _jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [1, quality])
    assert ok
    return data.tobytes()


def _declare_jpeg_size(jpeg: bytes, height: int, width: int) -> bytes:
    """The JPEG with its frame header (SOF0) claiming another size; the data stays small."""
    data = bytearray(jpeg)
    sof = data.find(b"\xff\xc0")
    assert sof > 0
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _declare_png_size(png: bytes, height: int, width: int) -> bytes:
    """The PNG with its IHDR claiming another size (CRC fixed, so only the size is wrong)."""
    data = bytearray(png)
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("kind", ["jpeg", "png"])
def test_decompression_bomb_is_refused_from_its_header_before_decoding(kind):
    rgb = reference_rgb(84, 84)
    if kind == "jpeg":
        bomb = _declare_jpeg_size(_jpeg(rgb), 10000, 10000)
    else:
        ok, png = cv2.imencode(".png", rgb)
        bomb = _declare_png_size(png.tobytes(), 10000, 10000)
    msg = CompressedImage(format=kind, data=bomb)
    before = _peak_rss_mb()
    start = time.perf_counter()
    with pytest.raises(ValueError, match=f"{TOPIC}: image is 10000x10000 \\(HxW\\); expected 84"):
        conv.compressed_image_to_rgb(msg, TOPIC, (84, 84))
    # Without an expected size (the recorder) the pixel cap refuses it.
    with pytest.raises(ValueError, match="declares 10000x10000 pixels; at most 16777216"):
        conv.compressed_image_to_rgb(msg, TOPIC)
    # Decoding 10000x10000 RGB would take 300 MB and about a second of CPU.
    assert _peak_rss_mb() - before < 50
    assert time.perf_counter() - start < 0.5


def test_corrupt_jpeg_data_is_refused_and_good_jpeg_decodes_as_opencv_does():
    rgb = cv2.GaussianBlur(reference_rgb(84, 84), (5, 5), 2)
    jpeg = _jpeg(rgb)
    decoded = conv.compressed_image_to_rgb(CompressedImage(format="jpeg", data=jpeg), TOPIC)
    bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(decoded, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    broken = bytearray(jpeg)
    scan = broken.find(b"\xff\xda")
    broken[scan + 30 : scan + 30] = b"\xff\xd0" * 3  # restart markers where none belong
    # OpenCV decodes this to an image of garbage without an error.
    assert cv2.imdecode(np.frombuffer(bytes(broken), np.uint8), cv2.IMREAD_COLOR) is not None
    msg = CompressedImage(format="jpeg", data=bytes(broken))
    with pytest.raises(ValueError, match=f"{TOPIC}: corrupt JPEG data"):
        conv.compressed_image_to_rgb(msg, TOPIC, (84, 84))
    truncated = CompressedImage(format="jpeg", data=jpeg[: len(jpeg) * 2 // 3])
    with pytest.raises(ValueError, match=f"{TOPIC}: corrupt JPEG data"):
        conv.compressed_image_to_rgb(truncated, TOPIC, (84, 84))
    ok, png = cv2.imencode(".png", rgb)
    broken_png = bytearray(png.tobytes())
    broken_png[60] ^= 0xFF  # inside the image data: its chunk's CRC no longer matches
    msg = CompressedImage(format="png", data=bytes(broken_png))
    with pytest.raises(ValueError, match=f"{TOPIC}: corrupt PNG data"):
        conv.compressed_image_to_rgb(msg, TOPIC, (84, 84))


def test_rgb_to_image_round_trip_keeps_stamp_and_pixels():
    rgb = reference_rgb()
    msg = conv.rgb_to_image(rgb, stamp_ns=1_700_000_000_123_456_789, frame_id="agentview")
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1_700_000_000, 123_456_789)
    np.testing.assert_array_equal(conv.image_to_rgb(msg, TOPIC, use_bridge=False), rgb)


def test_pose_conversion_and_its_refusals():
    msg = conv.arrays_to_pose(np.array([0.1, -0.2, 1.0]), np.array([0, 0, 0.6, 0.8]), 5, "world")
    position, quaternion = conv.pose_to_arrays(msg, "/eef_pose")
    np.testing.assert_allclose(position, [0.1, -0.2, 1.0], rtol=1e-6)
    np.testing.assert_allclose(quaternion, [0, 0, 0.6, 0.8], rtol=1e-6)
    nan_pose = PoseStamped()
    nan_pose.pose.position.x = float("nan")
    nan_pose.pose.orientation.w = 1.0
    with pytest.raises(ValueError, match="/eef_pose: pose contains NaN"):
        conv.pose_to_arrays(nan_pose, "/eef_pose")
    unnormalised = PoseStamped()
    unnormalised.pose.orientation.w = 2.0
    with pytest.raises(ValueError, match="/eef_pose: orientation quaternion has norm 2.0000"):
        conv.pose_to_arrays(unnormalised, "/eef_pose")


def test_joint_state_by_name_and_refusals():
    msg = JointState(name=["j1", "finger_r", "finger_l"], position=[0.5, 0.02, -0.03])
    values = conv.joint_state_to_array(msg, "/gripper", 2, names=["finger_l", "finger_r"])
    np.testing.assert_allclose(values, [-0.03, 0.02], rtol=1e-6)
    with pytest.raises(ValueError, match=r"/gripper: joint state lacks joints \['thumb'\]"):
        conv.joint_state_to_array(msg, "/gripper", 1, names=["thumb"])
    with pytest.raises(ValueError, match="/gripper: joint state has 3 positions; expected 2"):
        conv.joint_state_to_array(msg, "/gripper", 2)
    # Fewer positions than names (a driver bug): refused by name, not an IndexError.
    short = JointState(name=["j1", "finger_r", "finger_l"], position=[0.5])
    with pytest.raises(ValueError, match="/gripper: joint state has 3 names but 1 positions"):
        conv.joint_state_to_array(short, "/gripper", 2, names=["finger_l", "finger_r"])


def test_action_chunk_round_trip_and_refusals():
    rows = np.arange(21, dtype=np.float32).reshape(3, 7) / 8
    chunk = TimedChunk(first_stamp_ns=10_000_000_123, period_ns=50_000_000, rows=rows)
    msg = conv.timed_chunk_to_msg(chunk, observation_stamp_ns=9_000_000_000, sequence=4)
    assert (msg.horizon, msg.action_dim, msg.sequence) == (3, 7, 4)
    assert conv.stamp_to_ns(msg.observation_stamp) == 9_000_000_000
    back = conv.msg_to_timed_chunk(msg, "/action_chunk")
    assert (back.first_stamp_ns, back.period_ns) == (10_000_000_123, 50_000_000)
    np.testing.assert_array_equal(back.rows, rows)

    msg.data = msg.data[:-1]
    with pytest.raises(ValueError, match="/action_chunk: chunk has 20 values for horizon 3"):
        conv.msg_to_timed_chunk(msg, "/action_chunk")
    rows[1, 2] = np.nan
    nan_msg = conv.timed_chunk_to_msg(TimedChunk(0, 1, rows), 0, 0)
    with pytest.raises(ValueError, match="/action_chunk: action chunk contains NaN"):
        conv.msg_to_timed_chunk(nan_msg, "/action_chunk")


def test_stamp_is_read_from_serialised_bytes_without_deserialising():
    from rclpy.serialization import serialize_message

    stamp = 1_700_000_000_123_456_789
    pose = conv.arrays_to_pose(np.zeros(3), np.array([0, 0, 0, 1.0]), stamp, "base")
    image = conv.rgb_to_image(reference_rgb(), stamp + 1, "camera")
    assert conv.serialized_stamp_ns(serialize_message(pose), TOPIC) == stamp
    assert conv.serialized_stamp_ns(serialize_message(image), TOPIC) == stamp + 1
    with pytest.raises(ValueError, match=f"{TOPIC}: not a CDR-serialised message"):
        conv.serialized_stamp_ns(b"\x01\x02", TOPIC)
