"""robomimic HDF5 -> episode store: demo order, shapes, values, image row order, errors."""

import json

import h5py
import numpy as np
import pytest

from dp_ros.data.robomimic_import import RobomimicFormatError, import_robomimic, main
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

N_DEMOS = 12


def demo_arrays(n: int) -> dict[str, np.ndarray]:
    """Demo n: T = 3 + n % 4 frames; values encode (demo, frame)."""
    T = 3 + n % 4
    t = np.arange(T, dtype=np.float64)
    image = np.zeros((T, 6, 5, 3), np.uint8)
    image[:, 0] = n  # row 0 of the file (the bottom row in OpenGL order)
    image[:, -1] = 200 + t[:, None, None]
    return {
        AGENTVIEW_IMAGE: image,
        WRIST_IMAGE: np.full((T, 4, 4, 3), n, np.uint8),
        EEF_POS: np.stack([n + t, t, t], 1),
        EEF_QUAT: np.tile([0.0, 0.0, 0.0, 1.0], (T, 1)),
        GRIPPER_QPOS: np.stack([t, -t], 1),
        OBJECT_STATE: np.tile(np.arange(10, dtype=np.float64), (T, 1)) + n,
        "robot0_joint_pos": np.zeros((T, 7)),
        "actions": np.stack([n + t / 10.0] * 7, 1),
    }


@pytest.fixture
def robomimic_file(tmp_path):
    path = tmp_path / "lift_ph_image.hdf5"
    with h5py.File(path, "w") as file:
        data = file.create_group("data")
        data.attrs["env_args"] = json.dumps({"env_name": "Lift", "type": 1, "env_kwargs": {}})
        for n in np.random.default_rng(0).permutation(N_DEMOS):  # stored out of order
            demo = data.create_group(f"demo_{n}")
            arrays = demo_arrays(int(n))
            demo.attrs["num_samples"] = len(arrays["actions"])
            demo.create_dataset("actions", data=arrays.pop("actions"))
            for key, value in arrays.items():
                demo.create_dataset(f"obs/{key}", data=value)
        file.create_dataset("mask/valid", data=np.array([b"demo_3", b"demo_10"]))
    return path


def test_import_keeps_demo_order_shapes_and_values(robomimic_file, tmp_path):
    keys = [AGENTVIEW_IMAGE, EEF_POS, GRIPPER_QPOS]
    with import_robomimic(robomimic_file, tmp_path / "s.zarr", obs_keys=keys, progress=False):
        pass
    store = EpisodeStore.open(tmp_path / "s.zarr")
    assert store.n_episodes == N_DEMOS
    assert store.keys == tuple(sorted([*keys, ACTION]))
    lengths = [3 + n % 4 for n in range(N_DEMOS)]
    np.testing.assert_array_equal(store.episode_ends, np.cumsum(lengths))
    for n in (0, 9, 10, 11):  # numeric order: demo_10 follows demo_9
        episode, source = store.episode(n), demo_arrays(n)
        assert store.episode_metadata(n) == {
            "demo": f"demo_{n}",
            "file": robomimic_file.name,
            "source": "robomimic",
            "task": "Lift",
        }
        assert episode[ACTION].dtype == np.float32 and episode[ACTION].shape == (lengths[n], 7)
        np.testing.assert_allclose(episode[ACTION], source["actions"], rtol=1e-6)
        np.testing.assert_allclose(episode[EEF_POS], source[EEF_POS], rtol=1e-6)
        np.testing.assert_allclose(episode[GRIPPER_QPOS], source[GRIPPER_QPOS])
        image = episode[AGENTVIEW_IMAGE]
        assert image.dtype == np.uint8 and image.shape == (lengths[n], 6, 5, 3)
        # OpenGL rows flipped: the file's first row is now the last.
        np.testing.assert_array_equal(image[:, -1], source[AGENTVIEW_IMAGE][:, 0])
        np.testing.assert_array_equal(image, source[AGENTVIEW_IMAGE][:, ::-1])


def test_default_keys_filter_key_and_opencv_convention(robomimic_file, tmp_path):
    with import_robomimic(
        robomimic_file,
        tmp_path / "s.zarr",
        image_convention="opencv",
        filter_key="valid",
        progress=False,
    ) as store:
        assert store.keys == tuple(
            sorted(
                [
                    AGENTVIEW_IMAGE,
                    WRIST_IMAGE,
                    EEF_POS,
                    EEF_QUAT,
                    GRIPPER_QPOS,
                    OBJECT_STATE,
                    ACTION,
                ]
            )
        )
        assert [store.episode_metadata(i)["demo"] for i in range(2)] == ["demo_3", "demo_10"]
        np.testing.assert_array_equal(
            store.episode(1)[AGENTVIEW_IMAGE], demo_arrays(10)[AGENTVIEW_IMAGE]
        )
        assert store.episode(0)[OBJECT_STATE].shape == (6, 10)


def test_cli_imports_with_progress_and_reports_errors(robomimic_file, tmp_path, capsys):
    out = tmp_path / "cli.zarr"
    assert main([str(robomimic_file), str(out), "--obs-keys", EEF_POS, "--max-episodes", "3"]) == 0
    assert "imported 3 episodes" in capsys.readouterr().out
    assert EpisodeStore.open(out).keys == (ACTION, EEF_POS)
    assert main([str(robomimic_file), str(out), "--obs-keys", EEF_POS]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main([str(robomimic_file), str(out), "--overwrite", "--obs-keys", "nope"]) == 2
    assert "has no obs key 'nope'" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.hdf5"), str(tmp_path / "x.zarr")]) == 2
    assert "no robomimic file" in capsys.readouterr().err
    with pytest.raises(RobomimicFormatError, match="no filter key 'train'"):
        import_robomimic(robomimic_file, tmp_path / "y.zarr", filter_key="train")


def _cli(capsys, *argv) -> tuple[int, str]:
    """Exit code and the last line on stderr (the progress bar's lines come before it)."""
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err.strip().splitlines()[-1]


def test_unreadable_files_end_in_one_line_naming_the_file(robomimic_file, tmp_path, capsys):
    not_hdf5 = tmp_path / "notes.hdf5"
    not_hdf5.write_text("hello")
    truncated = tmp_path / "truncated.hdf5"
    truncated.write_bytes(robomimic_file.read_bytes()[:3000])
    for bad in (not_hdf5, truncated):
        code, err = _cli(capsys, bad, tmp_path / "out.zarr")
        assert code == 2 and err.startswith("dp-import-robomimic: error: "), err
        assert f"{bad}: not a readable HDF5 file" in err, err
        assert not (tmp_path / "out.zarr").exists()


def _swap_kinds(path, demo: str, key: str) -> None:
    """Make data/<demo>/<key> the other kind: a group for a dataset, a dataset for a group."""
    with h5py.File(path, "a") as file:
        group = file["data"][demo]
        was_group = isinstance(group[key], h5py.Group)
        del group[key]
        if was_group:
            group.create_dataset(key, data=np.zeros(3))
        else:
            group.create_group(key).create_dataset("x", data=np.zeros(3))


@pytest.mark.parametrize(
    "demo, key, message",
    [
        ("demo_5", "obs", "data/demo_5/obs is a dataset; it must be a group"),
        ("demo_5", "actions", "data/demo_5/actions is a group; it must be a dataset"),
        ("demo_0", "obs", "data/demo_0/obs is a dataset; it must be a group"),
    ],
)
def test_a_dataset_where_a_group_belongs_or_the_reverse_is_named(
    robomimic_file, tmp_path, capsys, demo, key, message
):
    _swap_kinds(robomimic_file, demo, key)
    code, err = _cli(capsys, robomimic_file, tmp_path / "out.zarr", "--obs-keys", EEF_POS)
    assert code == 2 and err.startswith("dp-import-robomimic: error: "), err
    assert message in err, err
    assert not (tmp_path / "out.zarr").exists()  # nothing partial left behind
    assert not list(tmp_path.glob(".out.zarr*"))


def _replace_images(path, make) -> None:
    with h5py.File(path, "a") as file:
        for name in file["data"]:
            obs = file["data"][name]["obs"]
            image = obs[AGENTVIEW_IMAGE][()]
            del obs[AGENTVIEW_IMAGE]
            obs.create_dataset(AGENTVIEW_IMAGE, data=make(image))


def test_images_convert_when_unambiguous_and_are_refused_otherwise(robomimic_file, tmp_path):
    original = tmp_path / "original.zarr"
    import_robomimic(robomimic_file, original, obs_keys=[AGENTVIEW_IMAGE], progress=False)
    expected = EpisodeStore.open(original).episode(0)[AGENTVIEW_IMAGE]
    # Floats in [0, 1] (normalised images): scaled, not truncated to zeros.
    _replace_images(robomimic_file, lambda image: image.astype(np.float32) / 255.0)
    store = import_robomimic(
        robomimic_file, tmp_path / "float.zarr", obs_keys=[AGENTVIEW_IMAGE], progress=False
    )
    np.testing.assert_array_equal(store.episode(0)[AGENTVIEW_IMAGE], expected)
    # int16 within [0, 255]: cast; with 300 in it: refused (it would wrap to 44).
    _replace_images(robomimic_file, lambda image: np.round(image * 255.0).astype(np.int16))
    store = import_robomimic(
        robomimic_file, tmp_path / "int16.zarr", obs_keys=[AGENTVIEW_IMAGE], progress=False
    )
    np.testing.assert_array_equal(store.episode(0)[AGENTVIEW_IMAGE], expected)
    _replace_images(robomimic_file, lambda image: image + np.int16(100))
    with pytest.raises(RobomimicFormatError, match=r"obs/agentview_image is int16 with values in"):
        import_robomimic(
            robomimic_file, tmp_path / "wrap.zarr", obs_keys=[AGENTVIEW_IMAGE], progress=False
        )
    assert not (tmp_path / "wrap.zarr").exists()


def test_overwrite_keeps_the_old_store_when_a_late_demo_is_bad(robomimic_file, tmp_path, capsys):
    out = tmp_path / "kept.zarr"
    assert main([str(robomimic_file), str(out), "--obs-keys", EEF_POS]) == 0
    before = EpisodeStore.open(out).n_episodes
    with h5py.File(robomimic_file, "a") as file:  # demo_9 (the 10th imported) holds a NaN
        obs = file["data"]["demo_9"]["obs"]
        values = obs[EEF_POS][()]
        values[1, 0] = np.nan
        del obs[EEF_POS]
        obs.create_dataset(EEF_POS, data=values)
    code, err = _cli(capsys, robomimic_file, out, "--overwrite", "--obs-keys", EEF_POS)
    assert code == 2 and "data/demo_9/obs/robot0_eef_pos holds NaN or infinite values" in err
    assert EpisodeStore.open(out).n_episodes == before == N_DEMOS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.zarr", "lift_ph_image.hdf5"]
