"""What a 7-D delta-pose action means physically, and its conversions to controller commands.

An action row is (dx, dy, dz, r1, r2, r3, gripper) in policy units. The convention says how far a
unit moves (`translation_scale` metres, `rotation_scale` radians), how the three rotation numbers
encode a rotation (`axis_angle`: a rotation vector; `rpy`: roll, pitch, yaw about the fixed x, y,
z axes, R = Rz(yaw) Ry(pitch) Rx(roll), as tf2's setRPY), and in which frame the delta acts:
`base` (a fixed frame: p' = p + dp, R' = dR R, robosuite's OSC_POSE with input_ref_frame base) or
`tool` (the end effector's own frame: p' = p + R dp, R' = R dR).

Our simulator's convention (dp_ros.sim.env: OSC_POSE delta, 0.05 m and 0.5 rad per unit,
axis-angle, base frame) is `SIM_CONVENTION`; a checkpoint trained on its data says so in its
metadata (`task`), or states a convention explicitly under `action_convention`.

Quaternions are xyzw (ROS and robosuite order). Positions (3,), quaternions (4,), rotation
matrices (3, 3); everything float64 inside, whatever comes in.
"""

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

ROTATION_TYPES = ("axis_angle", "rpy")
FRAMES = ("base", "tool")
SIM_TASKS = ("lift", "can", "square")  # dp_ros.sim.env.TASKS, without importing robosuite
METADATA_KEY = "action_convention"


@dataclass(frozen=True)
class ActionConvention:
    translation_scale: float  # metres per action unit
    rotation_scale: float  # radians per action unit
    rotation_type: str = "axis_angle"
    frame: str = "base"

    def __post_init__(self) -> None:
        for name in ("translation_scale", "rotation_scale"):
            value = getattr(self, name)
            if not np.isfinite(value) or value <= 0:
                raise ValueError(f"action convention {name}={value!r}: must be > 0")
        if self.rotation_type not in ROTATION_TYPES:
            raise ValueError(
                f"action convention rotation_type={self.rotation_type!r}: must be one of "
                f"{list(ROTATION_TYPES)}"
            )
        if self.frame not in FRAMES:
            raise ValueError(
                f"action convention frame={self.frame!r}: must be one of {list(FRAMES)}"
            )


SIM_CONVENTION = ActionConvention(0.05, 0.5, "axis_angle", "base")


def convention_from_metadata(metadata: Mapping[str, Any]) -> ActionConvention | None:
    """The convention a checkpoint states (`action_convention`), or the simulator's when it was
    trained on one of our simulated tasks; None when the metadata says neither."""
    explicit = metadata.get(METADATA_KEY)
    if explicit is not None:
        if not isinstance(explicit, Mapping):
            raise ValueError(f"checkpoint metadata {METADATA_KEY} must be a mapping: {explicit!r}")
        known = {item.name for item in fields(ActionConvention)}
        unknown = sorted(set(explicit) - known)
        if unknown:
            raise ValueError(
                f"checkpoint metadata {METADATA_KEY} has unknown keys {unknown}; known: "
                f"{sorted(known)}"
            )
        try:
            return ActionConvention(**explicit)
        except TypeError as error:  # a missing required key
            raise ValueError(f"checkpoint metadata {METADATA_KEY}: {error}") from error
    if metadata.get("task") in SIM_TASKS:
        return SIM_CONVENTION
    return None


# ---- rotations --------------------------------------------------------------------------------


def rotvec_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """Rotation vector (axis * angle, rad) -> (3, 3), Rodrigues' formula."""
    rotvec = np.asarray(rotvec, dtype=np.float64)
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        return np.eye(3)
    x, y, z = rotvec / angle
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * (k @ k)


def matrix_to_rotvec(matrix: np.ndarray) -> np.ndarray:
    """(3, 3) rotation -> rotation vector with angle in [0, pi]."""
    matrix = np.asarray(matrix, dtype=np.float64)
    cos = np.clip((np.trace(matrix) - 1.0) / 2.0, -1.0, 1.0)
    angle = float(np.arccos(cos))
    if angle < 1e-9:
        return np.zeros(3)
    if np.pi - angle > 1e-6:
        axis = np.array(
            [matrix[2, 1] - matrix[1, 2], matrix[0, 2] - matrix[2, 0], matrix[1, 0] - matrix[0, 1]]
        )
        return axis / (2.0 * np.sin(angle)) * angle
    # Near pi the antisymmetric part vanishes: take the axis from the symmetric part.
    symmetric = (matrix + np.eye(3)) / 2.0
    column = int(np.argmax(np.diag(symmetric)))
    axis = symmetric[:, column] / np.sqrt(symmetric[column, column])
    return axis / np.linalg.norm(axis) * angle


def rpy_to_matrix(rpy: np.ndarray) -> np.ndarray:
    """Roll, pitch, yaw about fixed x, y, z -> Rz(yaw) @ Ry(pitch) @ Rx(roll)."""
    roll, pitch, yaw = np.asarray(rpy, dtype=np.float64)
    cr, sr, cp, sp, cy, sy = (
        np.cos(roll),
        np.sin(roll),
        np.cos(pitch),
        np.sin(pitch),
        np.cos(yaw),
        np.sin(yaw),
    )
    return np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )


def quat_to_matrix(quat_xyzw: np.ndarray) -> np.ndarray:
    x, y, z, w = np.asarray(quat_xyzw, dtype=np.float64) / np.linalg.norm(quat_xyzw)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quat(matrix: np.ndarray) -> np.ndarray:
    """(3, 3) -> unit quaternion xyzw with w >= 0 (Shepperd's method: largest pivot first)."""
    m = np.asarray(matrix, dtype=np.float64)
    trace = np.trace(m)
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        quat = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        quat = [0.0, 0.0, 0.0, (m[k, j] - m[j, k]) / s]
        quat[i] = s / 4
        quat[j] = (m[j, i] + m[i, j]) / s
        quat[k] = (m[k, i] + m[i, k]) / s
    quat = np.array(quat)
    quat /= np.linalg.norm(quat)
    return -quat if quat[3] < 0 else quat


# ---- action row <-> physical delta ------------------------------------------------------------


def delta_rotation(row: np.ndarray, convention: ActionConvention) -> np.ndarray:
    """The (3, 3) rotation a row's columns 3:6 ask for."""
    scaled = np.asarray(row[3:6], dtype=np.float64) * convention.rotation_scale
    if convention.rotation_type == "rpy":
        return rpy_to_matrix(scaled)
    return rotvec_to_matrix(scaled)


def rotation_to_action(rotation: np.ndarray, convention: ActionConvention) -> np.ndarray:
    """Inverse of delta_rotation: (3, 3) -> the three action numbers (policy units)."""
    if convention.rotation_type == "rpy":
        pitch = float(np.arcsin(np.clip(-rotation[2, 0], -1.0, 1.0)))
        roll = float(np.arctan2(rotation[2, 1], rotation[2, 2]))
        yaw = float(np.arctan2(rotation[1, 0], rotation[0, 0]))
        angles = np.array([roll, pitch, yaw])
    else:
        angles = matrix_to_rotvec(rotation)
    return angles / convention.rotation_scale


def delta_to_twist(
    row: np.ndarray, convention: ActionConvention, period_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """A row -> (linear m/s (3,), angular rad/s (3,)) in the convention's frame: the constant
    velocities that cover the row's delta in one control period. An rpy delta becomes the
    rotation vector of the rotation it encodes (rpy rates are not an angular velocity)."""
    linear = np.asarray(row[:3], dtype=np.float64) * convention.translation_scale / period_s
    angular = matrix_to_rotvec(delta_rotation(row, convention)) / period_s
    if convention.rotation_type == "axis_angle":  # exact, and no detour through the matrix
        angular = np.asarray(row[3:6], dtype=np.float64) * convention.rotation_scale / period_s
    return linear, angular


def twist_to_delta(
    linear: np.ndarray, angular: np.ndarray, convention: ActionConvention, period_s: float
) -> np.ndarray:
    """Inverse of delta_to_twist: velocities held for one period -> action columns 0:6."""
    translation = np.asarray(linear, dtype=np.float64) * period_s / convention.translation_scale
    rotation = rotvec_to_matrix(np.asarray(angular, dtype=np.float64) * period_s)
    return np.concatenate([translation, rotation_to_action(rotation, convention)])


def compose_pose(
    position: np.ndarray, quat_xyzw: np.ndarray, row: np.ndarray, convention: ActionConvention
) -> tuple[np.ndarray, np.ndarray]:
    """Current pose (base frame) composed with a row's delta -> target (position, quat xyzw)."""
    current = quat_to_matrix(quat_xyzw)
    translation = np.asarray(row[:3], dtype=np.float64) * convention.translation_scale
    rotation = delta_rotation(row, convention)
    if convention.frame == "tool":
        return np.asarray(position, np.float64) + current @ translation, matrix_to_quat(
            current @ rotation
        )
    return np.asarray(position, np.float64) + translation, matrix_to_quat(rotation @ current)


def pose_to_delta(
    position: np.ndarray,
    quat_xyzw: np.ndarray,
    target_position: np.ndarray,
    target_quat_xyzw: np.ndarray,
    convention: ActionConvention,
) -> np.ndarray:
    """Inverse of compose_pose: current and target pose -> action columns 0:6."""
    current = quat_to_matrix(quat_xyzw)
    target = quat_to_matrix(target_quat_xyzw)
    translation = np.asarray(target_position, np.float64) - np.asarray(position, np.float64)
    if convention.frame == "tool":
        translation = current.T @ translation
        rotation = current.T @ target
    else:
        rotation = target @ current.T
    return np.concatenate(
        [translation / convention.translation_scale, rotation_to_action(rotation, convention)]
    )


# ---- gripper ------------------------------------------------------------------------------------


def gripper_to_position(command: float, open_position: float, closed_position: float) -> float:
    """Gripper action in [-1 open, +1 closed] -> a position between the two, linearly."""
    fraction = (float(np.clip(command, -1.0, 1.0)) + 1.0) / 2.0
    return open_position + fraction * (closed_position - open_position)


class GripperGoals:
    """The per-tick gripper action as goals for an action-based gripper (control_msgs'
    GripperCommand): a goal only when the command crosses between open (<= 0) and closed
    (> 0), since each goal restarts the gripper's motion; the first command always is one."""

    def __init__(self, open_position: float, closed_position: float) -> None:
        self.open_position = open_position
        self.closed_position = closed_position
        self.closed: bool | None = None

    def update(self, command: float) -> float | None:
        """The position of a new goal, or None when the gripper keeps its last one."""
        closed = command > 0.0
        if closed == self.closed:
            return None
        self.closed = closed
        return self.closed_position if closed else self.open_position

    def forget(self) -> None:
        """The next command sends a goal whatever it is (e.g. after the server came back)."""
        self.closed = None


def position_to_gripper(position: float, open_position: float, closed_position: float) -> float:
    """Inverse of gripper_to_position, clipped to [-1, 1]."""
    span = closed_position - open_position
    if span == 0:
        raise ValueError("gripper open and closed positions are equal")
    return float(np.clip(2.0 * (position - open_position) / span - 1.0, -1.0, 1.0))


def resolve_convention(
    fallback: ActionConvention | None,
    translation_scale: float = 0.0,
    rotation_scale: float = 0.0,
    rotation_type: str = "",
    frame: str = "",
) -> ActionConvention:
    """Each given value (non-zero, non-empty) overrides the fallback's (the checkpoint's); a
    value neither gives is an error naming the parameter."""
    given = {
        "translation_scale": translation_scale or None,
        "rotation_scale": rotation_scale or None,
        "rotation_type": rotation_type or None,
        "frame": frame or None,
    }
    values = {}
    for name, value in given.items():
        if value is None and fallback is None:
            parameter = "action_frame" if name == "frame" else name
            raise ValueError(
                f"the action convention's {name} is neither set (parameter {parameter}) nor "
                f"stated by the checkpoint's metadata ({METADATA_KEY}, or a simulated task)"
            )
        values[name] = value if value is not None else getattr(fallback, name)
    return ActionConvention(**values)
