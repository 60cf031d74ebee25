"""dp-dataset on real stores on disk: info, plot, video, remove, merge, view, export-lerobot
(with the LeRobot v3.0 round trip), and the duplicate rules recording relies on."""

import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from dp_ros.cli.dataset import main
from dp_ros.data.lerobot_export import LeRobotFormatError
from dp_ros.data.lerobot_read import read_lerobot
from dp_ros.data.store import EpisodeStore
from dp_ros.data.synthetic import synthetic_episode
from dp_ros.keys import (
    ACTION,
    AGENTVIEW_IMAGE,
    CAMERA_KEYS,
    EEF_POS,
    EEF_QUAT,
    GRIPPER_QPOS,
    OBJECT_STATE,
    WRIST_IMAGE,
)
from dp_ros.recording.stored import SeedClaims, StoredEpisodes, episode_digest

LENGTHS = (12, 15, 9, 11)


def make_store(path, lengths=LENGTHS, cameras=CAMERA_KEYS, seed=0):
    rng = np.random.default_rng(seed)
    with EpisodeStore.create(path) as store:
        for index, length in enumerate(lengths):
            episode = synthetic_episode(rng, length, cameras)
            metadata = {"task": "reach", "seed": 100 + index, "success": index % 2 == 0}
            store.append_episode(episode, {**metadata, "period_ns": 50_000_000})
    return EpisodeStore.open(path)


@pytest.fixture
def store(tmp_path):
    return make_store(tmp_path / "a.zarr")


def test_info_prints_keys_ranges_and_per_episode_metadata(store, tmp_path, capsys):
    assert main(["info", str(store.path), "--image-sample", str(tmp_path / "s.png")]) == 0
    out = capsys.readouterr().out
    assert f"4 episodes, {sum(LENGTHS)} frames" in out and "successes 2/4" in out
    assert "agentview_image            uint8    (84, 84, 3)" in out
    assert "robot0_eef_quat            float32  (4,)" in out and "range [1, 1]" in out
    assert "    3      11  reach  103" in out
    sample = cv2.imread(str(tmp_path / "s.png"))
    assert sample.shape == (84, 168, 3)  # both cameras side by side
    assert main(["info", str(store.path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [e["seed"] for e in data["per_episode"]] == [100, 101, 102, 103]
    assert main(["info", str(tmp_path / "nowhere")]) == 2
    assert "no episode store at" in capsys.readouterr().err


def test_plot_and_video_of_one_episode(store, tmp_path):
    assert main(["plot", str(store.path), "1", "-o", str(tmp_path / "p.png")]) == 0
    assert cv2.imread(str(tmp_path / "p.png")).shape[0] > 400
    video = tmp_path / "v.mp4"
    assert main(["video", str(store.path), "-1", "-o", str(video), "--no-progress"]) == 0
    capture = cv2.VideoCapture(str(video))
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    width, height = capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)
    assert frames == LENGTHS[-1] and (width, height) == (168 * 4, 84 * 4 + 160)
    assert main(["plot", str(store.path), "4"]) == 2  # out of range


def test_remove_rewrites_the_store_without_them_and_refuses_bad_indices(store, capsys):
    before = [store.episode(i) for i in range(4)]
    path = str(store.path)
    assert main(["remove", path, "0", "2", "--no-progress"]) == 0
    after = EpisodeStore.open(path)
    assert after.n_episodes == 2
    for new, old in ((0, 1), (1, 3)):
        for key, value in before[old].items():
            np.testing.assert_array_equal(after.episode(new)[key], value)
        assert after.episode_metadata(new)["seed"] == 100 + old
    capsys.readouterr()
    assert main(["remove", path, "7"]) == 2
    assert "episode 7 out of range: " in capsys.readouterr().err
    assert main(["remove", path, "0", "1"]) == 2  # would empty it
    assert EpisodeStore.open(path).n_episodes == 2  # untouched by the refusals
    assert not [p for p in store.path.parent.iterdir() if p.name.endswith((".partial", ".old"))]
    with EpisodeStore.open(path, mode="a"):  # a writer holds it: no removal meanwhile
        assert main(["remove", path, "0"]) == 2
    assert "one writer at a time" in capsys.readouterr().err


def test_merge_joins_stores_skips_identical_episodes_and_refuses_other_shapes(
    store, tmp_path, capsys
):
    other = make_store(tmp_path / "b.zarr", lengths=(7, 8), seed=5)
    copy = tmp_path / "copy.zarr"
    shutil.copytree(store.path, copy)
    out = tmp_path / "merged.zarr"
    args = ["merge", str(store.path), str(other.path), str(copy), str(out), "--no-progress"]
    assert main(args) == 0
    merged = EpisodeStore.open(out)
    assert merged.n_episodes == 6 and "left out (duplicate)" in capsys.readouterr().out
    np.testing.assert_array_equal(merged.episode(5)[ACTION], other.episode(1)[ACTION])
    assert merged.episode_metadata(4)["copied_from"] == f"{other.path}#0"
    state_only = make_store(tmp_path / "c.zarr", lengths=(5,), cameras=())
    assert main(["merge", str(store.path), str(state_only.path), str(tmp_path / "x")]) == 2
    assert "has keys" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main(["merge", str(store.path), str(other.path), str(out)]) == 2  # exists


def test_view_writes_a_page_with_videos_and_plots(store, tmp_path):
    out = tmp_path / "view"
    assert main(["view", str(store.path), "-o", str(out), "--episodes", "2", "--no-progress"]) == 0
    page = (out / "index.html").read_text()
    for name in ("episode_0.mp4", "episode_1.png", "robot0_eef_pos"):
        assert name in page
    assert (out / "episode_1.mp4").stat().st_size > 0 and not (out / "episode_2.mp4").exists()


def test_export_lerobot_round_trip_and_layout(store, tmp_path):
    out = tmp_path / "lerobot"
    assert main(["export-lerobot", str(store.path), str(out), "--no-progress"]) == 0
    info, episodes = read_lerobot(out)
    assert info["codebase_version"] == "v3.0" and info["fps"] == 20.0
    assert (info["total_episodes"], info["total_frames"]) == (4, sum(LENGTHS))
    assert info["features"]["observation.images.wrist"]["shape"] == [84, 84, 3]
    assert info["features"]["observation.state"]["names"][:3] == [
        f"{EEF_POS}.{i}" for i in range(3)
    ]
    stats = json.loads((out / "meta" / "stats.json").read_text())
    assert np.array(stats["observation.images.agentview"]["mean"]).shape == (3, 1, 1)
    for index, episode in enumerate(episodes):
        original = store.episode(index)
        np.testing.assert_array_equal(episode[ACTION], original[ACTION])
        state = np.concatenate([original[k] for k in (EEF_POS, EEF_QUAT, GRIPPER_QPOS)], axis=1)
        np.testing.assert_array_equal(episode["observation.state"], state)
        np.testing.assert_array_equal(
            episode["observation.environment_state"], original[OBJECT_STATE]
        )
        np.testing.assert_array_equal(episode["frame_index"], np.arange(LENGTHS[index]))
        np.testing.assert_allclose(episode["timestamp"], np.arange(LENGTHS[index]) / 20, atol=1e-6)
        for key, feature in ((AGENTVIEW_IMAGE, "agentview"), (WRIST_IMAGE, "wrist")):
            frames = episode[f"observation.images.{feature}"]
            assert frames.shape == original[key].shape
            error = np.abs(frames.astype(float) - original[key].astype(float)).mean()
            assert error < 6.0, (key, index, error)  # mp4v is lossy; a wrong frame is ~30
    # The data file's columns are what LeRobot's reader asks for.
    import pyarrow.parquet as pq

    columns = pq.read_schema(out / "data" / "chunk-000" / "file-000.parquet").names
    assert {"index", "episode_index", "frame_index", "timestamp", "task_index"} <= set(columns)
    tasks = pq.read_table(out / "meta" / "tasks.parquet").to_pydict()
    assert tasks["task"] == ["reach"] and tasks["task_index"] == [0]
    assert main(["export-lerobot", str(store.path), str(out)]) == 2  # exists
    (out / "data" / "chunk-000" / "file-000.parquet").unlink()
    with pytest.raises(LeRobotFormatError, match="file-000.parquet is missing"):
        read_lerobot(out)


def test_digests_and_seeds_decide_what_a_store_already_holds(store):
    episode = store.episode(0)
    assert episode_digest(episode) == episode_digest(dict(reversed(list(episode.items()))))
    changed = {**episode, ACTION: episode[ACTION] + 1e-3}
    assert episode_digest(changed) != episode_digest(episode)
    known = StoredEpisodes.of(store)
    assert known.free_seed("reach") == 104 and known.free_seed("other") == 0
    assert "seed 101 is already stored (episode 1)" in known.refusal(
        {"task": "reach", "seed": 101}, "new"
    )
    assert known.refusal({"task": "reach", "seed": 104}, "new") is None
    assert known.refusal({"task": "reach", "seed": 101}, "new", seeds=False) is None
    known.add(4, {"task": "reach", "seed": 104, "digest": "abc"})
    assert "identical to stored episode 4" in known.refusal({"task": "x"}, "abc")


def test_a_recording_run_claims_seeds_until_its_episodes_are_discarded(store):
    claims = SeedClaims(StoredEpisodes.of(store))  # the store holds reach seeds 100-103
    assert claims.taken("reach", 101) and not claims.taken("reach", 104)
    claims.claim("reach", 104)  # an episode of this run began on seed 104
    assert claims.taken("reach", 104) and claims.free_seed("reach") == 105
    assert not claims.taken("other", 104) and claims.free_seed("other") == 0
    claims.release("reach", 104)  # discarded: seed 104 may be recorded again
    assert not claims.taken("reach", 104) and claims.free_seed("reach") == 104
    claims.claim("reach", -1)  # unknown seed: nothing claimed
    assert claims.free_seed("reach") == 104 and not claims.taken("reach", -1)
    repeats = SeedClaims(StoredEpisodes.of(store), unique=False)  # several demos per scene
    assert not repeats.taken("reach", 101)


def test_the_command_runs_as_a_module():
    result = subprocess.run(
        [sys.executable, "-m", "dp_ros.cli.dataset", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    for command in ("info", "video", "plot", "remove", "merge", "view", "export-lerobot"):
        assert command in result.stdout
