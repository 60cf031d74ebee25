"""dp-eval: a real (tiny, untrained) checkpoint rolled out closed loop in real robosuite envs."""

import json

import cv2
import numpy as np
import pytest

from dp_ros import keys
from dp_ros.policy.shape_meta import image_shape_meta
from dp_ros.sim.evaluate import (
    EvalConfigError,
    SimEvalConfig,
    eval_threads,
    main,
    make_eval_hook,
    policy_image_size,
)
from dp_ros.sim.rollout import ObsHistory, policy_episode
from dp_ros.sim.video import DEFAULT_SCALE
from dp_ros.testing.checkpoints import make_tiny_checkpoint

SIZE = 32
# An untrained policy never lifts the cube: every episode runs to the limit, which cuts the
# second chunk (Ta=8) short.
MAX_STEPS = 12


def read_video(path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), path
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


@pytest.fixture(scope="module")
def image_checkpoint(tmp_path_factory):
    meta = image_shape_meta(image_hw=(SIZE, SIZE))
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "image", meta)


@pytest.fixture(scope="module")
def state_checkpoint(tmp_path_factory):
    low_dim = {**keys.LOW_DIM_SIZES, keys.OBJECT_STATE: 10}  # Lift's cube state
    meta = image_shape_meta(cameras=(), low_dim=low_dim)
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "state", meta)


@pytest.mark.sim
def test_dp_eval_writes_results_and_a_side_by_side_video(image_checkpoint, tmp_path):
    output = tmp_path / "eval" / "lift.json"
    argv = [str(image_checkpoint), "--task", "lift", "--episodes", "2", "--first-seed", "7"]
    argv += ["--workers", "2", "--max-episode-steps", str(MAX_STEPS), "--videos", "1"]
    argv += ["--output", str(output), "--no-progress"]
    assert main(argv) == 0

    result = json.loads(output.read_text())
    assert result["task"] == "lift" and result["n_episodes"] == 2
    episodes = result["episodes"]
    assert [episode["seed"] for episode in episodes] == [7, 8]
    assert [episode["steps"] for episode in episodes] == [MAX_STEPS, MAX_STEPS]
    assert result["success_rate"] == np.mean([episode["success"] for episode in episodes])
    assert result["mean_steps"] == MAX_STEPS
    # Only the first episode is filmed, into <output without .json>_videos by default.
    assert episodes[1]["video"] is None
    video = tmp_path / "eval" / "lift_videos" / "lift_seed7.mp4"
    assert episodes[0]["video"] == str(video)
    frames = read_video(video)
    assert len(frames) == episodes[0]["steps"]
    # Both cameras side by side, each scaled up.
    assert frames[0].shape == (SIZE * DEFAULT_SCALE, 2 * SIZE * DEFAULT_SCALE, 3)
    assert not np.array_equal(frames[0], frames[-1])  # the robot moved


@pytest.mark.sim
def test_eval_hook_of_a_state_policy_returns_metrics_and_films_on_request(
    state_checkpoint, tmp_path
):
    hook = make_eval_hook(
        "lift",
        n_episodes=2,
        first_seed=3,
        max_episode_steps=MAX_STEPS,
        output_dir=tmp_path / "evals",
        n_videos=1,
        video_size=SIZE,  # the state policy renders cameras only for the filmed episode
    )
    metrics = hook(state_checkpoint)
    assert metrics == {"success_rate": 0.0, "mean_steps": float(MAX_STEPS)}
    saved = json.loads((tmp_path / "evals" / "state" / "eval.json").read_text())
    assert [episode["seed"] for episode in saved["episodes"]] == [3, 4]
    frames = read_video(tmp_path / "evals" / "state" / "lift_seed3.mp4")
    assert len(frames) == MAX_STEPS
    assert frames[0].shape == (SIZE * DEFAULT_SCALE, 2 * SIZE * DEFAULT_SCALE, 3)


class CountingEnv:
    """A stand-in env for the loop's bookkeeping: done after `limit` steps."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.actions: list[np.ndarray] = []

    def reset(self, seed: int) -> dict[str, np.ndarray]:
        self.actions.clear()
        return {"x": np.zeros(1, np.float32)}

    def step(self, action):
        self.actions.append(np.asarray(action))
        n = len(self.actions)
        return {"x": np.full(1, n, np.float32)}, 0.0, n >= self.limit, {"success": False}


class RecordingRunner:
    """Returns chunk rows numbered by call, and records the obs history it was given."""

    n_obs_steps, n_action_steps, obs_keys = 2, 3, ("x",)

    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []

    def reset(self) -> None:
        self.seen.clear()

    def predict(self, obs):
        self.seen.append(obs["x"][:, 0].copy())
        call = len(self.seen)
        executed = np.full((self.n_action_steps, 7), call / 10, np.float32)

        class Prediction:
            pass

        prediction = Prediction()
        prediction.executed = executed
        return prediction


def test_policy_loop_pads_history_executes_ta_actions_and_stops_on_done():
    env, runner = CountingEnv(limit=7), RecordingRunner()
    outcome = policy_episode(env, runner, seed=0)
    assert outcome.steps == 7 and not outcome.success
    # Obs history (To=2): the first obs repeated, then the last two after every Ta=3 steps.
    assert [list(seen) for seen in runner.seen] == [[0, 0], [2, 3], [5, 6]]
    # Three actions from each chunk; the third chunk is cut off by done after one action.
    assert [float(action[0]) for action in env.actions] == pytest.approx(
        [0.1, 0.1, 0.1, 0.2, 0.2, 0.2, 0.3]
    )


def test_obs_history_names_keys_the_simulator_lacks():
    history = ObsHistory(2, ["x", "agentview_image"])
    with pytest.raises(ValueError, match="agentview_image"):
        history.reset({"x": np.zeros(1)})


def test_policy_image_size_needs_one_square_size():
    square = image_shape_meta(image_hw=(32, 32)).to_dict()
    assert policy_image_size(square) == 32
    state = image_shape_meta(cameras=()).to_dict()
    assert policy_image_size(state) is None
    with pytest.raises(ValueError, match="square"):
        policy_image_size(image_shape_meta(image_hw=(32, 48)).to_dict())


def test_eval_config_errors_name_field_value_and_rule(tmp_path):
    with pytest.raises(EvalConfigError, match="checkpoint=.*no such directory"):
        SimEvalConfig(str(tmp_path / "missing"), "lift", 1)
    with pytest.raises(EvalConfigError, match=r"n_videos=3.*\[0, n_episodes=2\]"):
        SimEvalConfig(str(tmp_path), "lift", 2, n_videos=3, video_dir=str(tmp_path))
    with pytest.raises(EvalConfigError, match="video_dir=None.*n_videos=1"):
        make_eval_hook("lift", 2, n_videos=1)


@pytest.mark.sim
def test_dp_eval_progress_counts_steps_and_a_state_policy_runs_on_one_thread(
    state_checkpoint, tmp_path, capfd
):
    import torch

    threads = torch.get_num_threads()
    output = tmp_path / "state.json"
    argv = [str(state_checkpoint), "--task", "lift", "--episodes", "2"]
    argv += ["--max-episode-steps", str(MAX_STEPS), "--output", str(output)]
    try:
        assert main(argv) == 0
        assert torch.get_num_threads() == 1  # chosen for a state policy (in-process here)
    finally:
        torch.set_num_threads(threads)
    err = capfd.readouterr().err
    # tqdm's bar counts steps (each episode as its step limit), not episodes.
    assert f"{2 * MAX_STEPS}/{2 * MAX_STEPS}" in err and "step" in err
    assert "episodes=2/2" in err


def test_eval_threads_one_for_state_policies_cores_shared_for_image_ones():
    import os

    assert eval_threads(workers=1, cameras=False) == 1
    assert eval_threads(workers=2, cameras=False) == 1
    assert eval_threads(workers=1, cameras=True) == max(1, os.cpu_count() or 1)
    assert eval_threads(workers=64, cameras=True) == 1
