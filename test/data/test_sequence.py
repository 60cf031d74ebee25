"""SequenceDataset: window indices and padding at episode edges, the split, stats, images."""

import numpy as np
import pytest
import torch

from dp_ros.data.sequence import SequenceDataset, make_windows, split_episodes
from dp_ros.data.store import EpisodeStore, StoreError
from dp_ros.keys import ACTION, AGENTVIEW_IMAGE, EEF_POS


def frame_valued_episode(first: int, T: int) -> dict[str, np.ndarray]:
    """Every array holds its global frame number, so samples show which frames they took."""
    frames = np.arange(first, first + T)
    image = np.zeros((T, 4, 6, 3), np.uint8)
    image[...] = (frames % 256)[:, None, None, None]
    image[:, 0, 0, 1] = 7  # marks (row 0, col 0, channel 1) to check the HWC -> CHW transpose
    return {
        AGENTVIEW_IMAGE: image,
        EEF_POS: np.stack([frames, frames * 2, -frames], 1).astype(np.float32),
        ACTION: np.repeat(frames[:, None], 7, 1).astype(np.float32),
    }


@pytest.fixture
def store_path(tmp_path):
    """Episodes of 10, 3 and 12 frames: global frames 0-9, 10-12, 13-24."""
    path = tmp_path / "s.zarr"
    with EpisodeStore.create(path) as store:
        first = 0
        for T in (10, 3, 12):
            store.append_episode(frame_valued_episode(first, T))
            first += T
    return path


def test_windows_follow_diffusion_policy_padding():
    # T=8, To=2, Ta=4: starts from -(To-1) = -1 to L - T + (Ta-1) = L - 5 relative.
    windows = make_windows(np.array([10, 13, 25]), np.array([0, 1, 2]), 8, 1, 3)
    starts = windows[:, 0].tolist()
    assert starts == [-1, 0, 1, 2, 3, 4, 5] + [12, 13, 14, 15, 16, 17, 18, 19, 20]
    assert windows[0].tolist() == [-1, 0, 10]
    assert windows[-1].tolist() == [20, 13, 25]
    # The 3-frame episode is shorter than T - 1 - 3 = 4 frames: no window.
    assert not np.any(windows[:, 1] == 10)


def test_samples_at_episode_edges_have_the_right_frames(store_path):
    data = SequenceDataset(store_path, horizon=8, n_obs_steps=2, n_action_steps=4)
    assert len(data) == 7 + 9
    first = data[0]
    assert first["obs"][EEF_POS][:, 0].tolist() == [0, 0]  # first frame repeated
    assert first["action"][:, 0].tolist() == [0, 0, 1, 2, 3, 4, 5, 6]
    last_of_first = data[6]  # start 5 in a 10-frame episode
    assert last_of_first["obs"][EEF_POS][:, 0].tolist() == [5, 6]
    assert last_of_first["action"][:, 0].tolist() == [5, 6, 7, 8, 9, 9, 9, 9]
    # The executed slice actions[To-1 : To-1+Ta] of the last window ends with the episode.
    assert last_of_first["action"][1:5, 0].tolist() == [6, 7, 8, 9]
    middle = data[10]  # third episode (frames 13-24), start 15
    assert middle["obs"][EEF_POS].tolist() == [[15, 30, -15], [16, 32, -16]]
    assert middle["action"][:, 0].tolist() == list(range(15, 23))
    assert data[15]["action"][:, 0].tolist() == [20, 21, 22, 23, 24, 24, 24, 24]
    obs, action = data.window_indices(7)
    assert obs.tolist() == [13, 13] and action.tolist() == [13, 13, 14, 15, 16, 17, 18, 19]


def test_sample_types_and_image_layout(store_path):
    for cache in (1 << 30, 0):  # in memory, then read lazily from the store
        data = SequenceDataset(store_path, 8, 2, 4, image_cache_bytes=cache)
        assert data.images_in_memory == bool(cache)
        sample = data[0]
        image = sample["obs"][AGENTVIEW_IMAGE]
        assert image.dtype == torch.uint8 and image.shape == (2, 3, 4, 6)  # (To, C, H, W)
        assert image[:, 1, 0, 0].tolist() == [7, 7] and image[:, 0, 0, 0].tolist() == [0, 0]
        assert data[10]["obs"][AGENTVIEW_IMAGE][:, 2, 3, 5].tolist() == [15, 16]
        assert sample["obs"][EEF_POS].dtype == torch.float32
        assert sample["action"].dtype == torch.float32 and sample["action"].shape == (8, 7)
        assert data.shape_meta == {
            "obs": {
                AGENTVIEW_IMAGE: {"shape": [3, 4, 6], "type": "rgb"},
                EEF_POS: {"shape": [3], "type": "low_dim"},
            },
            "action": {"shape": [7]},
        }
    batch = next(iter(torch.utils.data.DataLoader(data, batch_size=4)))
    assert batch["obs"][AGENTVIEW_IMAGE].shape == (4, 2, 3, 4, 6)


def test_split_by_episode_and_stats_from_training_only(tmp_path):
    path = tmp_path / "s.zarr"
    with EpisodeStore.create(path) as store:
        first = 0
        for _ in range(10):
            store.append_episode(frame_valued_episode(first, 6))
            first += 6
    train, val = split_episodes(10, 0.2, seed=3)
    assert len(val) == 2 and len(train) == 8 and set(train) | set(val) == set(range(10))
    assert split_episodes(10, 0.2, seed=3)[1].tolist() == val.tolist()  # seeded
    assert split_episodes(1, 0.5, seed=0)[1].tolist() == []  # never the only episode

    data = SequenceDataset(path, 4, 2, 2, obs_keys=[EEF_POS], val_ratio=0.2, seed=3)
    val_data = data.get_validation_dataset()
    assert data.val_episodes.tolist() == val.tolist()
    per_episode = 6 - 4 + 1 + 1 + 1  # L - T + (To-1) + (Ta-1) + 1
    assert len(data) == 8 * per_episode and len(val_data) == 2 * per_episode
    train_frames = {int(v) for i in range(len(data)) for v in data[i]["action"][:, 0]}
    val_frames = {int(v) for i in range(len(val_data)) for v in val_data[i]["action"][:, 0]}
    assert not train_frames & val_frames
    assert set(data[0]["obs"]) == {EEF_POS}

    stats = data.compute_stats()
    assert set(stats) == {EEF_POS, ACTION}
    train_values = np.concatenate([np.arange(6 * e, 6 * e + 6) for e in train])
    assert stats[ACTION]["min"].tolist() == [train_values.min()] * 7
    assert stats[ACTION]["max"].tolist() == [train_values.max()] * 7
    np.testing.assert_allclose(
        stats[EEF_POS]["mean"], [v * train_values.mean() for v in (1, 2, -1)], rtol=1e-6
    )
    np.testing.assert_allclose(
        stats[EEF_POS]["std"], train_values.std() * np.array([1, 2, 1]), rtol=1e-6
    )
    assert all(v.dtype == np.float32 and v.shape == (3,) for v in stats[EEF_POS].values())


def test_bad_dataset_arguments_are_named(tmp_path, store_path):
    with pytest.raises(StoreError, match=r"obs key\(s\) \['object'\] not in dataset"):
        SequenceDataset(store_path, 8, 2, 4, obs_keys=[EEF_POS, "object"])
    with pytest.raises(ValueError, match="n_action_steps must be in"):
        SequenceDataset(store_path, 8, 2, 8)
    with pytest.raises(ValueError, match="val_ratio"):
        SequenceDataset(store_path, 8, 2, 4, val_ratio=1.0)
    with pytest.raises(StoreError, match="no training window"):
        SequenceDataset(store_path, 30, 2, 4)
    EpisodeStore.create(tmp_path / "empty.zarr").close()
    with pytest.raises(StoreError, match="is empty"):
        SequenceDataset(tmp_path / "empty.zarr", 8, 2, 4)
    with pytest.raises(FileNotFoundError, match="no episode store"):
        SequenceDataset(tmp_path / "nowhere.zarr", 8, 2, 4)
