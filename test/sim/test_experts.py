"""Scripted demonstrators succeed, stay in the teleop range, and are multimodal when asked."""

import numpy as np
import pytest

from dp_ros.acting.action_convention import quat_to_matrix
from dp_ros.keys import EEF_QUAT, OBJECT_STATE
from dp_ros.sim.env import SimEnv
from dp_ros.sim.experts import make_expert
from dp_ros.sim.square_expert import NUT_POS_SLICE, NUT_QUAT_SLICE, heading, wrap

pytestmark = pytest.mark.sim


def run_episode(env: SimEnv, task: str, seed: int, **expert_options) -> tuple[bool, list, str]:
    observation = env.reset(seed=seed)
    expert = make_expert(task, seed, **expert_options)
    expert.reset(observation)
    actions, done, info = [], False, {}
    while not done:
        action = expert.act(observation)
        actions.append(action)
        observation, _, done, info = env.step(action)
    return info["success"], actions, expert.mode_label


@pytest.mark.parametrize(
    ("task", "seeds"), [("lift", range(3)), ("can", range(2)), ("square", range(2))]
)
def test_demonstrator_succeeds_on_a_handful_of_seeds(task, seeds):
    env = SimEnv(task, cameras=False)
    try:
        for seed in seeds:
            success, actions, _ = run_episode(env, task, seed, noise=0.05)
            assert success, f"{task} seed {seed} failed after {len(actions)} steps"
            stacked = np.stack(actions)
            assert stacked.dtype == np.float32 and np.abs(stacked).max() <= 1.0
            assert set(np.unique(stacked[:, 6])) == {-1.0, 1.0}  # it opens and closes
    finally:
        env.close()


def test_multimodal_lift_uses_both_routes_and_still_succeeds():
    env = SimEnv("lift", cameras=False)
    try:
        results = [run_episode(env, "lift", seed, mode="multimodal") for seed in range(6)]
    finally:
        env.close()
    assert all(success for success, _, _ in results)
    labels = [label for _, _, label in results]
    assert set(labels) == {"left", "right"}, labels
    # The routes differ where it counts: the early lateral (y) commands have opposite signs.
    early_y = {label: np.mean([a[1] for a in actions[:5]]) for _, actions, label in results}
    assert early_y["left"] > 0.1 and early_y["right"] < -0.1


def test_square_expert_turns_the_hand_level_to_the_handle():
    env = SimEnv("square", cameras=False)
    try:
        observation = env.reset(seed=4)  # nut at yaw -164 degrees: the hand turns to +16
        expert = make_expert("square", 4)
        expert.reset(observation)
        for _ in range(25):  # above the handle by then (about 20 steps), not yet gripping
            observation, _, _, _ = env.step(expert.act(observation))
    finally:
        env.close()
    hand = quat_to_matrix(observation[EEF_QUAT])
    assert hand[2, 2] < -np.cos(np.deg2rad(3.0))  # pointing down, within 3 degrees
    nut_yaw = heading(quat_to_matrix(observation[OBJECT_STATE][NUT_QUAT_SLICE]))
    assert abs(wrap(2 * (heading(hand) - nut_yaw)) / 2) < np.deg2rad(3.0)  # fingers across


def test_multimodal_square_carries_over_both_sides_and_still_succeeds():
    env = SimEnv("square", cameras=False)
    widest = {}
    try:
        for seed in range(4):
            observation = env.reset(seed=seed)
            expert = make_expert("square", seed, mode="multimodal")
            expert.reset(observation)
            nut_y, done, info = [], False, {}
            while not done:
                observation, _, done, info = env.step(expert.act(observation))
                nut_y.append(observation[OBJECT_STATE][NUT_POS_SLICE][1])
            assert info["success"], f"seed {seed} ({expert.mode_label}) failed"
            # The carry line runs between y 0.1 (the peg) and 0.225 (the nut's farthest start).
            widest[expert.mode_label] = max(nut_y) if expert.mode_label == "left" else min(nut_y)
    finally:
        env.close()
    assert set(widest) == {"left", "right"}, widest
    assert widest["left"] > 0.24 and widest["right"] < 0.06, widest


def test_expert_refuses_unknown_task_and_mode():
    with pytest.raises(ValueError, match="no scripted expert for task 'stack'"):
        make_expert("stack", 0)
    with pytest.raises(ValueError, match="mode='sideways'"):
        make_expert("lift", 0, mode="sideways")
    with pytest.raises(ValueError, match="mode='sideways'"):
        make_expert("square", 0, mode="sideways")
    with pytest.raises(ValueError, match="noise=-0.1"):
        make_expert("square", 0, noise=-0.1)
