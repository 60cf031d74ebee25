"""Message <-> array conversions: the one place where ROS messages meet numpy (pure functions).

Images come out as upright RGB uint8 (H, W, 3), the layout the episode store and the policy runtime
take. Stamps are integer nanoseconds. Every error names the topic and what was expected, because
the node logs it and reports it on its status topic, and an engineer must see at once which
camera or driver is misconfigured.

cv_bridge is used for raw images where ROS provides it; the numpy path below gives the same result
without it (and is what runs on machines with ROS from PyPI wheels, which have no cv_bridge).
"""

import array
import struct
from collections.abc import Sequence

import cv2
import numpy as np
import simplejpeg
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped, TwistStamped
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray

from dp_msgs.msg import ActionChunk
from dp_ros.acting.chunk_timing import TimedChunk
from dp_ros.keys import ACTION_NAMES

try:  # cv_bridge exists on a ROS install, not in the PyPI wheels
    from cv_bridge import CvBridge

    _BRIDGE: "CvBridge | None" = CvBridge()
except ImportError:
    _BRIDGE = None

NS_PER_S = 1_000_000_000
# encoding -> (channels, index of R, G, B within a pixel; None for mono)
RAW_ENCODINGS = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, None),
}


# ---- time ------------------------------------------------------------------------------------


def stamp_to_ns(stamp: Time) -> int:
    return stamp.sec * NS_PER_S + stamp.nanosec


def serialized_stamp_ns(raw: bytes, topic: str) -> int:
    """header.stamp of a serialised (CDR) message that starts with a std_msgs/Header, read
    without deserialising it: 4 bytes of encapsulation (byte 1: 1 little-endian, 0 big), then
    int32 sec and uint32 nanosec."""
    if len(raw) < 12 or raw[0] != 0 or raw[1] not in (0, 1):
        raise ValueError(f"{topic}: not a CDR-serialised message ({len(raw)} bytes)")
    sec, nanosec = struct.unpack_from("<iI" if raw[1] == 1 else ">iI", raw, 4)
    return sec * NS_PER_S + nanosec


def ns_to_stamp(ns: int) -> Time:
    return Time(sec=ns // NS_PER_S, nanosec=ns % NS_PER_S)


def duration_to_ns(duration: Duration) -> int:
    return duration.sec * NS_PER_S + duration.nanosec


def ns_to_duration(ns: int) -> Duration:
    return Duration(sec=ns // NS_PER_S, nanosec=ns % NS_PER_S)


# ---- images ----------------------------------------------------------------------------------


def image_to_rgb(
    msg: Image, topic: str, expected_hw: tuple[int, int] | None = None, use_bridge: bool = True
) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8; any row padding) -> (H, W, 3) uint8.

    rgb8 without padding comes back as a read-only view of the message buffer (no copy).
    """
    layout = RAW_ENCODINGS.get(msg.encoding)
    if layout is None:
        raise ValueError(
            f"{topic}: image encoding {msg.encoding!r} is not supported; "
            f"expected one of {sorted(RAW_ENCODINGS)}"
        )
    _check_size(topic, (msg.height, msg.width), expected_hw)
    if use_bridge and _BRIDGE is not None:
        return np.asarray(_BRIDGE.imgmsg_to_cv2(msg, desired_encoding="rgb8"))
    channels, order = layout
    row_bytes = msg.width * channels
    if msg.step < row_bytes or len(msg.data) < msg.step * msg.height:
        raise ValueError(
            f"{topic}: image data too short for {msg.height}x{msg.width} {msg.encoding} "
            f"(step {msg.step}, {len(msg.data)} bytes; need step >= {row_bytes} and "
            f"{msg.step * msg.height} bytes)"
        )
    buffer = np.frombuffer(msg.data, dtype=np.uint8, count=msg.step * msg.height)
    pixels = buffer.reshape(msg.height, msg.step)[:, :row_bytes]
    pixels = pixels.reshape(msg.height, msg.width, channels)
    if order is None:
        return np.repeat(pixels, 3, axis=2)
    if order == (0, 1, 2) and channels == 3:
        return pixels
    return np.ascontiguousarray(pixels[:, :, list(order)])


# Without an expected size (the recorder), the most pixels a compressed image may declare: 16.7 MP
# is 50 MB of RGB, far above any camera a policy is trained on.
MAX_COMPRESSED_PIXELS = 4096 * 4096
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def compressed_image_to_rgb(
    msg: CompressedImage, topic: str, expected_hw: tuple[int, int] | None = None
) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg/png) -> (H, W, 3) uint8 RGB.

    The size the header declares is checked before anything is decoded (a message of a few
    hundred KB can declare 10000x10000 pixels). JPEG is decoded by libjpeg-turbo through
    simplejpeg in strict mode, so data libjpeg calls corrupt (its warnings, which OpenCV's
    imdecode prints to stderr and then returns the garbage) is refused; JPEG has no checksum,
    so corruption libjpeg cannot see still decodes (README). PNG's chunks are CRC-checked by
    libpng. The pixels are those OpenCV gives (same libjpeg-turbo and libpng decoders).
    """
    data = bytes(msg.data)
    if data.startswith(PNG_SIGNATURE):
        kind, height, width = "PNG", *_png_header_hw(data, topic)
    elif data.startswith(b"\xff\xd8"):
        kind, height, width = "JPEG", *_jpeg_header_hw(data, topic)
    else:
        raise ValueError(
            f"{topic}: could not decode compressed image (format {msg.format!r}): the data is "
            "neither JPEG nor PNG"
        )
    _check_size(topic, (height, width), expected_hw)
    if height * width > MAX_COMPRESSED_PIXELS:
        raise ValueError(
            f"{topic}: compressed image declares {height}x{width} pixels; at most "
            f"{MAX_COMPRESSED_PIXELS} are decoded"
        )
    if kind == "JPEG":
        try:
            return simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
        except ValueError as exc:
            raise ValueError(f"{topic}: corrupt JPEG data ({exc})") from exc
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.shape[:2] != (height, width):
        raise ValueError(f"{topic}: corrupt PNG data (libpng could not decode it)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _png_header_hw(data: bytes, topic: str) -> tuple[int, int]:
    """(height, width) from the IHDR chunk, which the PNG standard puts first."""
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise ValueError(f"{topic}: could not decode compressed image: PNG without an IHDR")
    width, height = struct.unpack(">II", data[16:24])
    return height, width


def _jpeg_header_hw(data: bytes, topic: str) -> tuple[int, int]:
    try:
        width, height, _, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError as exc:
        raise ValueError(
            f"{topic}: could not decode compressed image: bad JPEG header ({exc})"
        ) from exc
    return height, width


def rgb_to_image(rgb: np.ndarray, stamp_ns: int, frame_id: str) -> Image:
    """(H, W, 3) uint8 RGB -> sensor_msgs/Image rgb8."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", step=rgb.shape[1] * 3)
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.header.frame_id = frame_id
    msg.data = np.ascontiguousarray(rgb).tobytes()
    return msg


def _check_size(topic: str, got_hw: tuple[int, int], expected_hw: tuple[int, int] | None) -> None:
    if expected_hw is not None and tuple(got_hw) != tuple(expected_hw):
        raise ValueError(
            f"{topic}: image is {got_hw[0]}x{got_hw[1]} (HxW); expected "
            f"{expected_hw[0]}x{expected_hw[1]}"
        )


# ---- robot state -----------------------------------------------------------------------------


def pose_to_arrays(msg: PoseStamped, topic: str) -> tuple[np.ndarray, np.ndarray]:
    """geometry_msgs/PoseStamped -> position (3,), quaternion xyzw (4,), float32."""
    p, q = msg.pose.position, msg.pose.orientation
    position = np.array([p.x, p.y, p.z], dtype=np.float32)
    quaternion = np.array([q.x, q.y, q.z, q.w], dtype=np.float32)
    _check_finite(topic, "pose", np.concatenate([position, quaternion]))
    norm = float(np.linalg.norm(quaternion))
    if abs(norm - 1.0) > 1e-2:
        raise ValueError(f"{topic}: orientation quaternion has norm {norm:.4f}; expected 1")
    return position, quaternion


def arrays_to_pose(
    position: np.ndarray, quaternion_xyzw: np.ndarray, stamp_ns: int, frame_id: str
) -> PoseStamped:
    msg = PoseStamped()
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.header.frame_id = frame_id
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = map(float, position)
    o = msg.pose.orientation
    o.x, o.y, o.z, o.w = map(float, quaternion_xyzw)
    return msg


def joint_state_to_array(
    msg: JointState, topic: str, size: int, names: Sequence[str] = ()
) -> np.ndarray:
    """sensor_msgs/JointState positions -> (size,) float32, selected by name when names given."""
    positions = np.asarray(msg.position, dtype=np.float32)
    if names:
        if len(msg.name) != positions.size:
            raise ValueError(
                f"{topic}: joint state has {len(msg.name)} names but {positions.size} positions"
            )
        missing = [name for name in names if name not in msg.name]
        if missing:
            raise ValueError(f"{topic}: joint state lacks joints {missing}; has {list(msg.name)}")
        positions = positions[[list(msg.name).index(name) for name in names]]
    if positions.shape != (size,):
        raise ValueError(f"{topic}: joint state has {positions.size} positions; expected {size}")
    _check_finite(topic, "joint state", positions)
    return positions


def array_to_joint_state(values: np.ndarray, stamp_ns: int, names: Sequence[str]) -> JointState:
    msg = JointState()
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.name = list(names)
    msg.position = [float(v) for v in values]
    return msg


def _check_finite(topic: str, what: str, values: np.ndarray) -> None:
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{topic}: {what} contains NaN or infinite values: {values.tolist()}")


# ---- action chunks ---------------------------------------------------------------------------


def timed_chunk_to_msg(
    chunk: TimedChunk,
    observation_stamp_ns: int,
    sequence: int,
    frame_id: str = "",
    names: Sequence[str] = ACTION_NAMES,
    source: int = ActionChunk.SOURCE_UNKNOWN,
) -> ActionChunk:
    """A stamped chunk (N, Da) -> dp_msgs/ActionChunk (row-major float32 data); `source` is one
    of ActionChunk.SOURCE_* (what produced the rows)."""
    horizon, action_dim = chunk.rows.shape
    if len(names) != action_dim:
        raise ValueError(f"{len(names)} action names for {action_dim} action columns")
    msg = ActionChunk()
    msg.header.stamp = ns_to_stamp(chunk.first_stamp_ns)
    msg.header.frame_id = frame_id
    msg.observation_stamp = ns_to_stamp(observation_stamp_ns)
    msg.period = ns_to_duration(chunk.period_ns)
    msg.horizon = horizon
    msg.action_dim = action_dim
    msg.action_names = list(names)
    # array.array is what rclpy stores float32[] as; assigning one avoids a per-element check.
    msg.data = array.array("f", np.ascontiguousarray(chunk.rows, dtype=np.float32).tobytes())
    msg.sequence = sequence
    msg.source = source
    return msg


def msg_to_timed_chunk(msg: ActionChunk, topic: str, action_dim: int = 7) -> TimedChunk:
    """dp_msgs/ActionChunk -> TimedChunk, refusing inconsistent or non-finite chunks."""
    data = np.asarray(msg.data, dtype=np.float32)
    if msg.action_dim != action_dim:
        raise ValueError(f"{topic}: chunk action_dim is {msg.action_dim}; expected {action_dim}")
    if msg.horizon == 0 or data.size != msg.horizon * msg.action_dim:
        raise ValueError(
            f"{topic}: chunk has {data.size} values for horizon {msg.horizon} x "
            f"action_dim {msg.action_dim}"
        )
    period_ns = duration_to_ns(msg.period)
    if period_ns <= 0:
        raise ValueError(f"{topic}: chunk period must be > 0, got {period_ns} ns")
    _check_finite(topic, "action chunk", data)
    rows = data.reshape(msg.horizon, msg.action_dim)
    return TimedChunk(stamp_to_ns(msg.header.stamp), period_ns, rows)


# ---- camera frames at another size -------------------------------------------------------------


def camera_to_rgb(
    msg,
    topic: str,
    compressed: bool = False,
    target_hw: tuple[int, int] | None = None,
    crop: bool = False,
) -> np.ndarray:
    """Image or CompressedImage -> (H, W, 3) uint8 RGB, brought to `target_hw` (None: as it
    came) by dp_ros.image_fit (optional centre crop, INTER_AREA): what policy_node and
    recorder_node both do with a camera of another native size."""
    from dp_ros.image_fit import fit_image

    rgb = compressed_image_to_rgb(msg, topic) if compressed else image_to_rgb(msg, topic)
    return rgb if target_hw is None else fit_image(rgb, target_hw, crop)


# ---- controller commands (chunk_executor_node, sim_node's command inputs) ---------------------


def arrays_to_twist(
    linear: np.ndarray, angular: np.ndarray, stamp_ns: int, frame_id: str
) -> TwistStamped:
    """(3,) m/s and (3,) rad/s -> geometry_msgs/TwistStamped."""
    msg = TwistStamped()
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.header.frame_id = frame_id
    msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = map(float, linear)
    msg.twist.angular.x, msg.twist.angular.y, msg.twist.angular.z = map(float, angular)
    return msg


def twist_to_arrays(msg: TwistStamped, topic: str) -> tuple[np.ndarray, np.ndarray]:
    """geometry_msgs/TwistStamped -> linear (3,), angular (3,) float64, refusing non-finite."""
    lin, ang = msg.twist.linear, msg.twist.angular
    linear = np.array([lin.x, lin.y, lin.z])
    angular = np.array([ang.x, ang.y, ang.z])
    _check_finite(topic, "twist", np.concatenate([linear, angular]))
    return linear, angular


def positions_to_multi_array(positions: Sequence[float]) -> Float64MultiArray:
    """Joint positions -> std_msgs/Float64MultiArray (forward_command_controller's input)."""
    return Float64MultiArray(data=[float(value) for value in positions])


def multi_array_to_position(msg: Float64MultiArray, topic: str) -> float:
    """The first value of a std_msgs/Float64MultiArray (a gripper position command)."""
    if len(msg.data) == 0:
        raise ValueError(f"{topic}: Float64MultiArray is empty; expected a gripper position")
    _check_finite(topic, "gripper command", np.asarray(msg.data, dtype=np.float64))
    return float(msg.data[0])


def diagnostic_array(
    stamp_ns: int, name: str, level: int, message: str, values: dict
) -> DiagnosticArray:
    """One DiagnosticStatus (level OK=0, WARN=1, ERROR=2, STALE=3) with key/value pairs."""
    status = DiagnosticStatus(level=bytes([level]), name=name, message=message)
    status.values = [KeyValue(key=str(key), value=str(value)) for key, value in values.items()]
    msg = DiagnosticArray(status=[status])
    msg.header.stamp = ns_to_stamp(stamp_ns)
    return msg
