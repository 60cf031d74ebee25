"""EpisodeStore: round trips, the commit protocol against a killed writer, concurrent readers."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from dp_ros.data.store import EpisodeStore, StoreError
from dp_ros.keys import ACTION, AGENTVIEW_IMAGE, EEF_POS, GRIPPER_QPOS, WRIST_IMAGE

WRITER = Path(__file__).with_name("store_writer.py")
_spec = importlib.util.spec_from_file_location("store_writer", WRITER)
store_writer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(store_writer)


def random_episode(rng: np.random.Generator, T: int) -> dict[str, np.ndarray]:
    return {
        AGENTVIEW_IMAGE: rng.integers(0, 256, (T, 12, 10, 3), dtype=np.uint8),
        WRIST_IMAGE: rng.integers(0, 256, (T, 8, 8, 3), dtype=np.uint8),
        EEF_POS: rng.normal(size=(T, 3)).astype(np.float32),
        GRIPPER_QPOS: rng.normal(size=(T, 2)),  # float64 in: stored as float32
        ACTION: rng.normal(size=(T, 7)).astype(np.float32),
    }


def start_writer(path: Path, n_small: int, big: int = 0) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WRITER), str(path), str(n_small), str(big)],
        stdout=subprocess.PIPE,
        text=True,
    )


def test_round_trip_images_low_dim_actions_and_metadata(tmp_path):
    rng = np.random.default_rng(0)
    episodes = [random_episode(rng, T) for T in (5, 1, 9)]
    with EpisodeStore.create(tmp_path / "s.zarr") as store:
        for i, episode in enumerate(episodes):
            meta = {"task": "lift", "operator": "ann", "success": i != 1, "seed": np.int64(i)}
            assert store.append_episode(episode, meta) == i
    store = EpisodeStore.open(tmp_path / "s.zarr")
    assert store.n_episodes == 3
    assert store.n_frames == 15
    np.testing.assert_array_equal(store.episode_ends, [5, 6, 15])
    assert store.episode_ends.dtype == np.int64
    assert store.keys == tuple(sorted(episodes[0]))
    for i, episode in enumerate(episodes):
        got = store.episode(i)
        assert set(got) == set(episode)
        for key, value in episode.items():
            assert got[key].dtype == (np.uint8 if key.endswith("_image") else np.float32)
            np.testing.assert_array_equal(got[key], value.astype(got[key].dtype))
    assert store.episode_metadata(1) == {
        "operator": "ann",
        "seed": 1,
        "success": False,
        "task": "lift",
    }
    assert store.episode_metadata(-1)["seed"] == 2
    with pytest.raises(IndexError, match="out of range"):
        store.episode(3)


def test_layout_is_the_diffusion_policy_replay_buffer(tmp_path):
    """Plain zarr sees data/<key> concatenated over time and meta/episode_ends."""
    rng = np.random.default_rng(1)
    with EpisodeStore.create(tmp_path / "s.zarr") as store:
        store.append_episode(random_episode(rng, 4))
        store.append_episode(random_episode(rng, 6))
    root = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    assert root["meta/episode_ends"][:].tolist() == [4, 10]
    assert root["data"][AGENTVIEW_IMAGE].shape == (10, 12, 10, 3)
    assert root["data"][AGENTVIEW_IMAGE].chunks == (1, 12, 10, 3)  # one frame per chunk
    assert root["data"][AGENTVIEW_IMAGE].compressor.cname == "zstd"
    assert root["data"][ACTION].dtype == np.float32
    assert json.loads(root["meta/episode_metadata"][0]) == {}


def test_store_written_by_diffusion_policy_opens(tmp_path):
    """A replay buffer without our metadata array (as Diffusion Policy writes it) reads fine."""
    root = zarr.open_group(str(tmp_path / "dp.zarr"), mode="w")
    root.create_group("data").array(ACTION, np.ones((7, 7), np.float32))
    root.create_group("meta").array("episode_ends", np.array([3, 7], np.int64))
    store = EpisodeStore.open(tmp_path / "dp.zarr")
    assert store.n_episodes == 2
    assert store.episode(1)[ACTION].shape == (4, 7)
    assert store.episode_metadata(0) == {}
    with EpisodeStore.open(tmp_path / "dp.zarr", mode="a") as writer:  # adds the metadata array
        writer.append_episode({ACTION: np.zeros((2, 7), np.float32)}, {"added": True})
    assert EpisodeStore.open(tmp_path / "dp.zarr").episode_metadata(2) == {"added": True}


def test_bad_episodes_are_refused_with_the_reason(tmp_path):
    rng = np.random.default_rng(2)
    store = EpisodeStore.create(tmp_path / "s.zarr")
    store.append_episode(random_episode(rng, 3))
    good = random_episode(rng, 4)

    def refused(episode, match):
        with pytest.raises(StoreError, match=match):
            store.append_episode(episode)

    refused({**good, EEF_POS: good[EEF_POS][:3]}, "inconsistent episode length")
    refused({k: v for k, v in good.items() if k != WRIST_IMAGE}, "lacks key.*robot0_eye_in_hand")
    refused({**good, "extra": good[EEF_POS]}, "key.*'extra'.*does not hold")
    refused(
        {**good, AGENTVIEW_IMAGE: good[AGENTVIEW_IMAGE][:, :6]}, "agentview_image.*store holds"
    )
    refused({**good, AGENTVIEW_IMAGE: good[AGENTVIEW_IMAGE] / 255.0}, "images must be uint8")
    refused({**good, EEF_POS: np.ones((4, 3), np.int32)}, "floating point")
    refused({**good, EEF_POS: good[EEF_POS][:, :2]}, "robot0_eef_pos.*store holds")
    refused({**good, ACTION: np.zeros((4, 6), np.float32)}, r"actions must be \(T, 7\)")
    refused({k: v for k, v in good.items() if k != ACTION}, "lacks the 'action'")
    refused({**good, EEF_POS: np.full((4, 3), np.nan, np.float32)}, "NaN or inf at frame 0")
    with pytest.raises(StoreError, match="JSON"):
        store.append_episode(good, {"bad": object()})
    assert store.n_episodes == 1  # nothing half-added
    assert store.append_episode(good) == 1
    with pytest.raises(StoreError, match="read-only"):
        EpisodeStore.open(tmp_path / "s.zarr").append_episode(good)
    with pytest.raises(StoreError, match="one writer at a time"):
        EpisodeStore.open(tmp_path / "s.zarr", mode="a")


def test_open_and_create_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no episode store"):
        EpisodeStore.open(tmp_path / "missing.zarr")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("x")
    with pytest.raises(StoreError, match="not an episode store"):
        EpisodeStore.open(tmp_path / "plain")
    with pytest.raises(FileExistsError, match="not empty"):
        EpisodeStore.create(tmp_path / "plain")
    with pytest.raises(FileExistsError, match="not a zarr store"):
        EpisodeStore.create(tmp_path / "plain", overwrite=True)
    EpisodeStore.create(tmp_path / "s.zarr").close()
    with EpisodeStore.create(tmp_path / "s.zarr", overwrite=True) as store:
        assert store.n_episodes == 0 and store.keys == ()


def wait_for_line(process: subprocess.Popen, wanted: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.strip() == wanted:
            return
        if not line and process.poll() is not None:
            raise AssertionError(f"writer exited with {process.returncode} before {wanted!r}")
    raise AssertionError(f"writer never printed {wanted!r}")


def image_chunks_written(path: Path) -> int:
    return sum(1 for entry in os.scandir(path / "data" / AGENTVIEW_IMAGE) if entry.name[0] != ".")


def test_writer_killed_mid_episode_leaves_earlier_episodes_and_append_still_works(tmp_path):
    path = tmp_path / "s.zarr"
    EpisodeStore.create(path).close()
    writer = start_writer(path, n_small=3, big=40000)
    try:
        wait_for_line(writer, "big")
        committed = sum(store_writer.small_length(i) for i in range(3))
        # Kill only once the big episode has frames on disk: provably mid-episode.
        deadline = time.monotonic() + 60
        while image_chunks_written(path) < committed + 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    finally:
        writer.kill()
    assert writer.returncode == -signal.SIGKILL

    store = EpisodeStore.open(path)
    assert store.n_episodes == 3
    np.testing.assert_array_equal(store.episode_ends, np.cumsum([5, 6, 7]))
    assert store.array(AGENTVIEW_IMAGE).shape[0] > committed  # the leftovers are there ...
    for i in range(3):
        expected = store_writer.known_episode(i)
        got = store.episode(i)
        for key in expected:
            np.testing.assert_array_equal(got[key], expected[key])
        assert store.episode_metadata(i) == {"index": i, "task": "test"}

    with EpisodeStore.open(path, mode="a") as appender:  # ... and appending cuts them off
        assert zarr.open_array(str(path / "data" / EEF_POS), mode="r").shape[0] == committed
        assert appender.append_episode(store_writer.known_episode(3)) == 3
    store = EpisodeStore.open(path)
    assert store.n_episodes == 4
    assert store.n_frames == committed + store_writer.small_length(3)
    np.testing.assert_array_equal(
        store.episode(3)[EEF_POS], store_writer.known_episode(3)[EEF_POS]
    )
    assert not list(path.rglob("*.partial"))


def test_concurrent_reader_sees_only_finished_episodes(tmp_path):
    path = tmp_path / "s.zarr"
    EpisodeStore.create(path).close()
    n_total = 40
    writer = start_writer(path, n_small=n_total)
    reader = EpisodeStore.open(path)  # opened before most episodes exist
    seen = set()
    try:
        while writer.poll() is None or len(seen) == 0 or max(seen) < n_total:
            ends = reader.episode_ends  # re-read from disk on every access
            n = len(ends)
            seen.add(n)
            if n:
                expected = np.cumsum([store_writer.small_length(i) for i in range(n)])
                np.testing.assert_array_equal(ends, expected)
                last = reader.episode(n - 1)
                want = store_writer.known_episode(n - 1)
                for key in want:
                    np.testing.assert_array_equal(last[key], want[key])
            if writer.poll() is not None and n == n_total:
                break
    finally:
        writer.kill()
        writer.wait()
    assert writer.returncode == 0
    assert max(seen) == n_total
    assert len(seen - {0, n_total}) >= 1  # it really read while episodes were being added


def test_episode_end_is_published_last(tmp_path, monkeypatch):
    """A crash after everything but the shape of episode_ends was written hides the episode."""
    from dp_ros.data import store as store_module

    rng = np.random.default_rng(3)
    path = tmp_path / "s.zarr"
    with EpisodeStore.create(path) as store:
        store.append_episode(random_episode(rng, 4), {"n": 0})

        def crash(self):
            raise KeyboardInterrupt("killed before publishing the new shape")

        monkeypatch.setattr(store_module._HeldMetadataStore, "publish", crash)
        with pytest.raises(KeyboardInterrupt):
            store.append_episode(random_episode(rng, 6), {"n": 1})
        monkeypatch.undo()
    reader = EpisodeStore.open(path)
    assert reader.episode_ends.tolist() == [4]
    assert reader.array(EEF_POS).shape[0] == 10  # the frames did reach the disk
    with EpisodeStore.open(path, mode="a") as store:
        assert zarr.open_array(str(path / "meta" / "episode_metadata"), mode="r").shape == (1,)
        assert store.append_episode(random_episode(rng, 2), {"n": 2}) == 1
    assert reader.episode_ends.tolist() == [4, 6]
    assert reader.episode_metadata(1) == {"n": 2}
