"""Message <-> array conversions: the one place where ROS messages meet numpy (pure functions).

Images come out as upright RGB uint8 (H, W, 3), the layout the episode store and the policy runtime
take. Stamps are integer nanoseconds. Every error names the topic and what was expected, because
the node logs it and reports it on its status topic, and an engineer must see at once which
camera or driver is misconfigured.

cv_bridge is used for raw images where ROS provides it; the numpy path below gives the same result
without it (and is what runs on machines with ROS from PyPI wheels, which have no cv_bridge).
"""

import array
from collections.abc import Sequence

import cv2
import numpy as np
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


def compressed_image_to_rgb(
    msg: CompressedImage, topic: str, expected_hw: tuple[int, int] | None = None
) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg/png) -> (H, W, 3) uint8 RGB."""
    encoded = np.frombuffer(msg.data, dtype=np.uint8)
    bgr = cv2.imdecode(encoded, cv2.IMREAD_COLOR) if encoded.size else None
    if bgr is None:
        raise ValueError(f"{topic}: could not decode compressed image (format {msg.format!r})")
    _check_size(topic, bgr.shape[:2], expected_hw)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


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
) -> ActionChunk:
    """A stamped chunk (N, Da) -> dp_msgs/ActionChunk (row-major float32 data)."""
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
