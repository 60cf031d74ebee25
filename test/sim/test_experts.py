"""Scripted demonstrators succeed, stay in the teleop range, and are multimodal when asked."""

import numpy as np
import pytest

from dp_ros.sim.env import SimEnv
from dp_ros.sim.experts import make_expert

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


@pytest.mark.parametrize(("task", "seeds"), [("lift", range(3)), ("can", range(2))])
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


def test_expert_refuses_unknown_task_and_mode():
    with pytest.raises(ValueError, match="no scripted expert for task 'square'"):
        make_expert("square", 0)
    with pytest.raises(ValueError, match="mode='sideways'"):
        make_expert("lift", 0, mode="sideways")
