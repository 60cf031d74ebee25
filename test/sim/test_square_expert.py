"""The Square expert's geometry without the simulator: how it plans its turns, how it turns."""

import numpy as np
import pytest

from dp_ros.sim.square_expert import (
    HAND_DOWN,
    HAND_YAW_RANGE,
    NUT_YAWS_ON_PEG,
    heading,
    plan_turns,
    rotation_command,
    wrap,
    yaw_rotation,
)

NUT_YAWS = np.deg2rad(np.arange(-179.0, 181.0, 7.0))


def hand_at(yaw_degrees: float, tilt_degrees: float = 0.0) -> np.ndarray:
    tilt = np.deg2rad(tilt_degrees)
    about_y = np.array(
        [[np.cos(tilt), 0.0, np.sin(tilt)], [0.0, 1.0, 0.0], [-np.sin(tilt), 0.0, np.cos(tilt)]]
    )
    return about_y @ yaw_rotation(np.deg2rad(yaw_degrees)) @ HAND_DOWN


@pytest.mark.parametrize("nut_yaw", NUT_YAWS)
def test_turns_grip_the_handle_and_square_the_nut_within_the_wrist_range(nut_yaw):
    turns = plan_turns(nut_yaw, hand_yaw=0.0)
    low, high = HAND_YAW_RANGE
    carry_turn = wrap(turns.nut_yaw_on_peg - nut_yaw)
    assert low <= turns.grasp_yaw <= high and low <= turns.grasp_yaw + carry_turn <= high
    assert abs(wrap(2 * (turns.grasp_yaw - nut_yaw))) < 1e-9  # fingers across the handle
    assert turns.nut_yaw_on_peg in NUT_YAWS_ON_PEG  # square to the peg, handle within reach
    # The shortest: at most a quarter turn to grip and a quarter turn to square.
    assert abs(turns.grasp_yaw) <= np.pi / 2 + 1e-9 and abs(carry_turn) <= np.pi / 2 + 1e-9


def test_a_nut_already_square_with_its_handle_toward_the_robot_needs_no_turn():
    turns = plan_turns(np.pi, hand_yaw=0.0)
    assert turns.grasp_yaw == pytest.approx(0.0) and turns.nut_yaw_on_peg == np.pi


def test_rotation_command_holds_a_level_hand_at_its_heading_and_levels_a_tilted_one():
    np.testing.assert_allclose(rotation_command(hand_at(30.0), np.deg2rad(30.0)), 0, atol=1e-9)
    levelling = rotation_command(hand_at(0.0, tilt_degrees=8.0), 0.0)
    assert levelling[1] < -0.05 and abs(levelling[0]) < 1e-9 and abs(levelling[2]) < 1e-9
    assert np.abs(rotation_command(hand_at(0.0, tilt_degrees=60.0), 0.0)).max() <= 1.0


def test_rotation_command_turns_the_long_way_when_asked():
    # From heading -100 to +150 degrees: the short way (through 180) would cross the wrist's stop.
    assert rotation_command(hand_at(-100.0), np.deg2rad(150.0))[2] > 0
    assert rotation_command(hand_at(20.0), np.deg2rad(-10.0))[2] < 0
    assert heading(hand_at(150.0)) == pytest.approx(np.deg2rad(150.0))
