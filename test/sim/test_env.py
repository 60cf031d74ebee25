"""SimEnv: tasks build, step and reset reproducibly, with documented keys and upright images."""

import numpy as np
import pytest

from dp_ros.keys import (
    AGENTVIEW_IMAGE,
    EEF_POS,
    EEF_QUAT,
    GRIPPER_QPOS,
    OBJECT_STATE,
    WRIST_IMAGE,
)
from dp_ros.sim.env import SimEnv
from dp_ros.sim.experts import CAN_TARGET, OBJECT_POS_SLICE
from dp_ros.sim.square_expert import NUT_POS_SLICE, NUT_QUAT_SLICE, PEG_TOP_Z, SQUARE_PEG_XY

pytestmark = pytest.mark.sim
OBJECT_SIZES = {"lift": 10, "can": 14, "square": 14}


def quarter_brightness(image: np.ndarray) -> tuple[float, float]:
    """Mean brightness of the top and bottom quarters."""
    gray = image.astype(np.float64).mean(axis=2)
    quarter = gray.shape[0] // 4
    return gray[:quarter].mean(), gray[-quarter:].mean()


@pytest.mark.parametrize("task", ["lift", "can", "square"])
def test_task_builds_steps_and_yields_documented_observations(task):
    env = SimEnv(task, cameras=True, image_size=84)
    try:
        first = env.reset(seed=0)
        observation, reward, done, info = env.step(np.zeros(7))
        assert env.steps == 1 and not done and info == {"success": False}
        assert isinstance(reward, float)
        for obs in (first, observation):
            expected = {
                AGENTVIEW_IMAGE: ((84, 84, 3), np.uint8),
                WRIST_IMAGE: ((84, 84, 3), np.uint8),
                EEF_POS: ((3,), np.float32),
                EEF_QUAT: ((4,), np.float32),
                GRIPPER_QPOS: ((2,), np.float32),
                OBJECT_STATE: ((OBJECT_SIZES[task],), np.float32),
            }
            assert {key: (v.shape, v.dtype) for key, v in obs.items()} == expected
        assert abs(np.linalg.norm(observation[EEF_QUAT]) - 1) < 1e-3
        # Upright: the wrist camera looks down at the table (bright, top) past the gripper's
        # fingers (dark, bottom). A flipped image would have it the other way round.
        top, bottom = quarter_brightness(observation[WRIST_IMAGE])
        assert top - bottom > 30, (top, bottom)
        if task != "can":  # Lift/Square: the agent view's table fills the bottom of the frame
            top, bottom = quarter_brightness(observation[AGENTVIEW_IMAGE])
            assert bottom - top > 40, (top, bottom)
        # Object-relative state is filled in at reset (robosuite leaves it zero for Can/Square).
        assert np.abs(first[OBJECT_STATE]).min() >= 0 and np.count_nonzero(first[OBJECT_STATE]) > 6
    finally:
        env.close()


@pytest.mark.parametrize("task", ["lift", "can"])
def test_seeded_reset_is_reproducible_and_seeds_differ(task):
    env = SimEnv(task, cameras=False)
    try:
        a, b, c = env.reset(seed=5), env.reset(seed=5), env.reset(seed=6)
        np.testing.assert_array_equal(a[OBJECT_STATE], b[OBJECT_STATE])
        np.testing.assert_array_equal(a[EEF_POS], b[EEF_POS])
        assert np.abs(a[OBJECT_STATE] - c[OBJECT_STATE]).max() > 1e-3
    finally:
        env.close()


def test_expert_object_slices_and_targets_match_the_simulator():
    lift = SimEnv("lift", cameras=False)
    try:
        obs, raw = lift.reset(seed=2), lift.raw_env
        np.testing.assert_allclose(
            obs[OBJECT_STATE][OBJECT_POS_SLICE["lift"]], raw.sim.data.body_xpos[raw.cube_body_id],
            atol=1e-5,
        )  # fmt: skip
    finally:
        lift.close()
    can = SimEnv("can", cameras=False)
    try:
        obs, raw = can.reset(seed=2), can.raw_env
        body = raw.sim.data.body_xpos[raw.obj_body_id["Can"]]
        np.testing.assert_allclose(obs[OBJECT_STATE][OBJECT_POS_SLICE["can"]], body, atol=1e-5)
        np.testing.assert_allclose(raw.target_bin_placements[raw.object_to_id["can"]], CAN_TARGET)
    finally:
        can.close()
    square = SimEnv("square", cameras=False)
    try:
        obs, raw = square.reset(seed=2), square.raw_env
        nut = raw.obj_body_id["SquareNut"]
        state = obs[OBJECT_STATE]
        np.testing.assert_allclose(state[NUT_POS_SLICE], raw.sim.data.body_xpos[nut], atol=1e-5)
        wxyz = raw.sim.data.body_xquat[nut]
        np.testing.assert_allclose(state[NUT_QUAT_SLICE], [*wxyz[1:], wxyz[0]], atol=1e-5)
        peg = raw.sim.data.body_xpos[raw.peg1_body_id]
        np.testing.assert_allclose(peg[:2], SQUARE_PEG_XY)
        peg_half_height = raw.sim.model.geom_size[raw.sim.model.body_geomadr[raw.peg1_body_id]][2]
        assert peg[2] + peg_half_height == pytest.approx(PEG_TOP_Z)
    finally:
        square.close()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="task='stack': must be one of"):
        SimEnv("stack")
    with pytest.raises(ValueError, match="image_size=8"):
        SimEnv("lift", image_size=8)
