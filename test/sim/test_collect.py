"""dp-collect: real robosuite episodes from the scripted expert, written to a real store."""

import json
import shutil

import numpy as np
import pytest

from dp_ros.data.store import EpisodeStore
from dp_ros.keys import (
    ACTION,
    AGENTVIEW_IMAGE,
    EEF_POS,
    EEF_QUAT,
    GRIPPER_QPOS,
    OBJECT_STATE,
    WRIST_IMAGE,
)
from dp_ros.sim.collect import CollectConfig, CollectConfigError, collect, main, next_seed
from dp_ros.sim.experts import make_expert

SIZE = 32  # small renders keep the test fast; the layout is what is checked
MAX_STEPS = 45  # the expert lifts the cube in about 33 steps; a failing seed stops here
EXPECTED_SHAPES = {
    AGENTVIEW_IMAGE: (SIZE, SIZE, 3),
    WRIST_IMAGE: (SIZE, SIZE, 3),
    EEF_POS: (3,),
    EEF_QUAT: (4,),
    GRIPPER_QPOS: (2,),
    OBJECT_STATE: (10,),  # Lift's cube state
    ACTION: (7,),
}


@pytest.fixture(scope="module")
def collected(tmp_path_factory, flaky_expert_spec):
    """Seeds 0, 1, 2 with two workers; the flaky expert fails seed 1."""
    config = CollectConfig(
        task="lift",
        n_episodes=3,
        first_seed=0,
        image_size=SIZE,
        max_episode_steps=MAX_STEPS,
        workers=2,
        expert=flaky_expert_spec,
    )
    path = tmp_path_factory.mktemp("collect") / "lift.zarr"
    summary = collect(config, path, progress=False)
    return config, path, summary


@pytest.mark.sim
def test_collect_keeps_only_successful_episodes(collected, is_flaky_seed):
    config, path, summary = collected
    kept_seeds = [seed for seed in config.seeds if not is_flaky_seed(seed)]
    assert kept_seeds == [0, 2]
    with EpisodeStore.open(path) as store:
        assert store.n_episodes == len(kept_seeds)
        assert set(store.keys) == set(EXPECTED_SHAPES)
        metadata = [store.episode_metadata(i) for i in range(store.n_episodes)]
        assert [m["seed"] for m in metadata] == kept_seeds  # seed order, whatever the workers
        for index, meta in enumerate(metadata):
            assert meta["task"] == "lift" and meta["success"] is True
            assert meta["expert_mode"] == "default"
            episode = store.episode(index)
            T = meta["steps"]
            assert 10 < T < MAX_STEPS  # ended by success, not by the step limit
            for key, shape in EXPECTED_SHAPES.items():
                assert episode[key].shape == (T, *shape), key
            assert episode[AGENTVIEW_IMAGE].dtype == np.uint8
            assert episode[ACTION].dtype == np.float32
            # The scene moves: the first and last wrist images differ.
            assert np.any(episode[WRIST_IMAGE][0] != episode[WRIST_IMAGE][-1])
        assert summary.kept == store.n_episodes == summary.store_episodes
        assert summary.frames == store.n_frames
    assert summary.attempted == 3
    assert summary.success_rate == pytest.approx(2 / 3)
    # The failed seed ran to the step limit and was counted, though not stored.
    assert summary.env_steps == summary.frames + MAX_STEPS
    assert summary.env_steps_per_s > 0


@pytest.mark.sim
def test_stored_actions_are_the_experts_choice_for_the_stored_observation(collected):
    """Replaying the stored observations through a fresh expert gives the stored actions:
    action t was chosen from observation t (no off-by-one between the two)."""
    config, path, _ = collected
    with EpisodeStore.open(path) as store:
        episode = store.episode(0)
        seed = store.episode_metadata(0)["seed"]
    expert = make_expert("lift", seed)
    T = episode[ACTION].shape[0]
    frames = [{key: episode[key][t] for key in episode if key != ACTION} for t in range(T)]
    expert.reset(frames[0])
    replayed = np.stack([expert.act(frame) for frame in frames])
    np.testing.assert_allclose(replayed, episode[ACTION], atol=1e-6)


@pytest.mark.sim
def test_append_continues_seeds_and_refuses_a_mismatching_run(
    collected, tmp_path, capsys, flaky_expert_spec
):
    _, path, _ = collected
    store_path = tmp_path / "lift.zarr"
    shutil.copytree(path, store_path)
    assert next_seed(store_path) == 3
    common = ["--task", "lift", "--output", str(store_path), "--expert", flaky_expert_spec]
    common += ["--max-episode-steps", str(MAX_STEPS), "--no-progress"]

    # Without --append or --overwrite an existing store is refused before any simulation.
    assert main([*common, "--episodes", "1", "--image-size", str(SIZE)]) == 2
    assert "not empty" in capsys.readouterr().err
    # A different image size cannot join the store.
    assert main([*common, "--episodes", "1", "--image-size", "48", "--append"]) == 2
    assert "image_size=48" in capsys.readouterr().err

    # Seeds 3 and 4; the flaky expert fails seed 4.
    assert main([*common, "--episodes", "2", "--image-size", str(SIZE), "--append"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["first_seed"] == 3 and summary["attempted"] == 2 and summary["kept"] == 1
    with EpisodeStore.open(store_path) as store:
        seeds = [store.episode_metadata(i)["seed"] for i in range(store.n_episodes)]
        assert seeds == [0, 2, 3]
        assert summary["store_episodes"] == store.n_episodes
        assert summary["frames"] == store.episode_metadata(2)["steps"]


def test_collect_config_errors_name_field_value_and_rule():
    with pytest.raises(CollectConfigError, match=r"CollectConfig.task='stack'.*one of"):
        CollectConfig(task="stack", n_episodes=1)
    with pytest.raises(CollectConfigError, match=r"CollectConfig.mode='random'"):
        CollectConfig(task="lift", n_episodes=1, mode="random")
    with pytest.raises(CollectConfigError, match=r"CollectConfig.workers=0.*>= 1"):
        CollectConfig(task="lift", n_episodes=1, workers=0)


def test_next_seed_of_a_missing_store_is_zero(tmp_path):
    assert next_seed(tmp_path / "nothing.zarr") == 0
