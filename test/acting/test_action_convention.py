"""Action rows -> twists and pose targets, against values computed by hand."""

import numpy as np
import pytest

from dp_ros.acting.action_convention import (
    SIM_CONVENTION,
    ActionConvention,
    GripperGoals,
    compose_pose,
    convention_from_metadata,
    delta_to_twist,
    gripper_to_position,
    matrix_to_quat,
    matrix_to_rotvec,
    pose_to_delta,
    position_to_gripper,
    quat_to_matrix,
    resolve_convention,
    rotvec_to_matrix,
    rpy_to_matrix,
    twist_to_delta,
)

PERIOD_S = 0.05
S45 = np.sqrt(0.5)
QUAT_Z90 = np.array([0.0, 0.0, S45, S45])  # xyzw: 90 degrees about z


def rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def row(*values: float) -> np.ndarray:
    """A 7-D action row: the given leading values, zeros after."""
    out = np.zeros(7, np.float32)
    out[: len(values)] = values
    return out


def test_sim_rows_become_velocities_that_cover_the_delta_in_one_period():
    # 0.05 m and 0.5 rad per unit over 50 ms: 1 m/s and 10 rad/s per unit.
    action = row(0.2, -0.4, 1.0, 0.1, 0.0, -0.2, 1.0)
    linear, angular = delta_to_twist(action, SIM_CONVENTION, 0.05)
    np.testing.assert_allclose(linear, [0.2, -0.4, 1.0], atol=1e-6)
    np.testing.assert_allclose(angular, [1.0, 0.0, -2.0], atol=1e-6)


def test_an_rpy_row_becomes_the_rotation_vector_of_its_rotation():
    rpy = ActionConvention(0.05, 1.0, "rpy", "base")
    # Yaw alone: 0.25 rad about z in 50 ms.
    _, angular = delta_to_twist(row(0, 0, 0, 0, 0, 0.25), rpy, PERIOD_S)
    np.testing.assert_allclose(angular, [0, 0, 5.0], atol=1e-9)
    # Roll 90 then yaw 90 (fixed axes): Rz(90) Rx(90) = [[0,0,1],[1,0,0],[0,1,0]], the rotation
    # by 120 degrees about (1,1,1)/sqrt(3) -- not the rpy numbers divided by the period.
    half_pi = np.pi / 2
    np.testing.assert_allclose(
        rpy_to_matrix([half_pi, 0, half_pi]), [[0, 0, 1], [1, 0, 0], [0, 1, 0]], atol=1e-12
    )
    _, angular = delta_to_twist(row(0, 0, 0, half_pi, 0, half_pi), rpy, 1.0)
    expected = 2 * np.pi / 3 / np.sqrt(3)
    np.testing.assert_allclose(angular, [expected] * 3, atol=1e-9)


def test_base_frame_delta_composes_on_the_left():
    position = np.array([0.5, 0.0, 1.0])
    # dx = 1 unit (0.05 m along base x); drx = 1 unit (0.5 rad about base x).
    target_position, target_quat = compose_pose(
        position, QUAT_Z90, row(1.0, 0, 0, 1.0, 0, 0), SIM_CONVENTION
    )
    np.testing.assert_allclose(target_position, [0.55, 0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(
        quat_to_matrix(target_quat), rot_x(0.5) @ rot_z(np.pi / 2), atol=1e-12
    )


def test_tool_frame_delta_moves_along_the_tools_own_axes():
    tool = ActionConvention(0.05, 0.5, "axis_angle", "tool")
    # The tool is turned 90 degrees about z: its x axis is the base's y axis.
    target_position, target_quat = compose_pose(
        [0.5, 0.0, 1.0], QUAT_Z90, row(1.0, 0, 0, 1.0, 0, 0), tool
    )
    np.testing.assert_allclose(target_position, [0.5, 0.05, 1.0], atol=1e-12)
    # 0.5 rad about the tool's x = about the base's y, applied to the current orientation.
    np.testing.assert_allclose(
        quat_to_matrix(target_quat), rot_y(0.5) @ rot_z(np.pi / 2), atol=1e-12
    )


@pytest.mark.parametrize("rotation_type", ["axis_angle", "rpy"])
@pytest.mark.parametrize("frame", ["base", "tool"])
def test_sim_inputs_invert_the_executor_outputs(rotation_type, frame):
    convention = ActionConvention(0.05, 0.5, rotation_type, frame)
    action = row(0.3, -0.7, 0.2, 0.4, -0.3, 0.9)
    position, quat = np.array([0.1, -0.2, 0.9]), matrix_to_quat(rot_x(0.3) @ rot_y(-1.1))
    target = compose_pose(position, quat, action, convention)
    np.testing.assert_allclose(
        pose_to_delta(position, quat, *target, convention), action[:6], atol=1e-6
    )
    twist = delta_to_twist(action, convention, PERIOD_S)
    np.testing.assert_allclose(twist_to_delta(*twist, convention, PERIOD_S), action[:6], atol=1e-6)


def test_rotation_helpers_agree_with_hand_values():
    np.testing.assert_allclose(rotvec_to_matrix([0, 0, np.pi / 2]), rot_z(np.pi / 2), atol=1e-12)
    np.testing.assert_allclose(matrix_to_rotvec(rot_y(0.7)), [0, 0.7, 0], atol=1e-12)
    np.testing.assert_allclose(matrix_to_rotvec(rot_x(np.pi)), [np.pi, 0, 0], atol=1e-6)
    np.testing.assert_allclose(matrix_to_quat(rot_z(np.pi / 2)), QUAT_Z90, atol=1e-12)
    np.testing.assert_allclose(quat_to_matrix([1.0, 0, 0, 0]), rot_x(np.pi), atol=1e-12)


def test_gripper_maps_linearly_between_open_and_closed():
    assert gripper_to_position(-1.0, 0.04, 0.0) == pytest.approx(0.04)
    assert gripper_to_position(1.0, 0.04, 0.0) == pytest.approx(0.0)
    assert gripper_to_position(0.5, 0.04, 0.0) == pytest.approx(0.01)
    assert gripper_to_position(3.0, 0.04, 0.0) == pytest.approx(0.0)  # clipped
    assert position_to_gripper(0.01, 0.04, 0.0) == pytest.approx(0.5)


def test_convention_comes_from_checkpoint_metadata():
    assert convention_from_metadata({"task": "lift"}) == SIM_CONVENTION
    assert convention_from_metadata({"task": "real_franka"}) is None
    stated = {"translation_scale": 0.01, "rotation_scale": 0.1, "rotation_type": "rpy"}
    assert convention_from_metadata({"task": "lift", "action_convention": stated}) == (
        ActionConvention(0.01, 0.1, "rpy", "base")
    )
    with pytest.raises(ValueError, match="unknown keys \\['scale'\\]"):
        convention_from_metadata({"action_convention": {"scale": 1.0}})
    with pytest.raises(ValueError, match="rotation_type='euler'"):
        convention_from_metadata({"action_convention": {**stated, "rotation_type": "euler"}})


def test_parameters_override_the_checkpoint_and_a_gap_is_named():
    convention = resolve_convention(SIM_CONVENTION, translation_scale=0.02, frame="tool")
    assert convention == ActionConvention(0.02, 0.5, "axis_angle", "tool")
    with pytest.raises(ValueError, match="rotation_scale is neither set"):
        resolve_convention(None, translation_scale=0.02, rotation_type="rpy", frame="base")
    with pytest.raises(ValueError, match="parameter action_frame"):
        resolve_convention(None, 0.02, 0.1, "rpy", "")


def test_gripper_goals_only_when_the_command_changes_between_open_and_closed():
    goals = GripperGoals(open_position=0.04, closed_position=0.0)
    sent = [goals.update(c) for c in (-1.0, -0.2, 0.0, 0.3, 1.0, 0.9, -0.5, -1.0)]
    assert sent == [0.04, None, None, 0.0, None, None, 0.04, None]
    goals.forget()  # e.g. the server was missing: the same state is sent again
    assert goals.update(-1.0) == 0.04
