"""dp-train on bad files: one line naming the file (or key) and what was wrong, exit code 2."""

import re
import shutil

import pytest

from dp_ros.data.synthetic import write_synthetic_store
from dp_ros.keys import AGENTVIEW_IMAGE
from dp_ros.train.cli import main

CONFIGS = {
    "syntax_error": ("optim:\n  lr: [1, 2\n", r"syntax_error.yaml: not valid YAML: .*expected"),
    "unsafe_tag": (
        'optim: !!python/object/apply:os.system ["echo pwned"]\n',
        r"unsafe_tag.yaml: not valid YAML: could not determine a constructor for the tag",
    ),
    "infinite_lr": ("optim:\n  lr: .inf\n", r"optim.lr=inf is invalid: must be finite"),
    "nan_lr": ("optim:\n  lr: .nan\n", r"optim.lr=nan is invalid: must be finite"),
}


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize("case", list(CONFIGS))
def test_bad_config_file_is_one_line_naming_it_and_exit_2(tmp_path, capsys, case):
    text, message = CONFIGS[case]
    config = tmp_path / f"{case}.yaml"
    config.write_text(text)
    code, err = run_cli(capsys, str(config), f"dataset.path={tmp_path}")
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("dp-train: error: "), err
    assert re.search(message, err), err


@pytest.fixture(scope="module")
def good_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("stores") / "good.zarr"
    write_synthetic_store(
        path, n_episodes=4, length=40, seed=1, cameras=(AGENTVIEW_IMAGE,), image_hw=(24, 24)
    )
    return path


def _missing_image_chunk(store):
    (store / "data" / AGENTVIEW_IMAGE / "45.0.0.0").unlink()  # frame 45: episode 1
    return rf"data/{AGENTVIEW_IMAGE} chunk file '45.0.0.0' is missing \(frames 45..45, episode 1\)"


def _corrupt_action_chunk(store):
    chunk = store / "data" / "action" / "0.0"
    chunk.write_bytes(chunk.read_bytes()[:20])
    return r"data/action \(frames 0..159, episodes 0..3\) does not decode: RuntimeError"


def _bad_array_metadata(store):
    (store / "data" / "object" / ".zarray").write_text("{not json")
    return r"data/object has unreadable metadata \(not valid JSON"


def _bad_episode_index(store):
    (store / "meta" / "episode_ends" / ".zarray").write_text("{not json")
    return r"meta/episode_ends is unreadable"


DAMAGES = [_missing_image_chunk, _corrupt_action_chunk, _bad_array_metadata, _bad_episode_index]


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_store_is_refused_before_training_naming_array_and_episode(
    tmp_path, capsys, good_store, damage
):
    store = tmp_path / "damaged.zarr"
    shutil.copytree(good_store, store)
    message = damage(store)
    code, err = run_cli(
        capsys,
        "config/train/tiny_test.yaml",
        f"dataset.path={store}",
        f"output.dir={tmp_path / 'run'}",
        f"dataset.obs_keys=[robot0_eef_pos, object, {AGENTVIEW_IMAGE}]",
    )
    assert code == 2, err
    assert len(err.splitlines()) == 1 and str(store) in err, err
    assert re.search(message, err), err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_overwrite_keeps_the_old_run_when_the_new_store_is_damaged(tmp_path, capsys, good_store):
    run = tmp_path / "run"
    (run / "checkpoints" / "best").mkdir(parents=True)
    (run / "checkpoints" / "best" / "policy.json").write_text("{}")
    store = tmp_path / "damaged.zarr"
    shutil.copytree(good_store, store)
    _missing_image_chunk(store)
    code, err = run_cli(
        capsys,
        "config/train/tiny_test.yaml",
        f"dataset.path={store}",
        f"output.dir={run}",
        "output.overwrite=true",
        f"dataset.obs_keys=[robot0_eef_pos, object, {AGENTVIEW_IMAGE}]",
    )
    assert code == 2 and "is missing" in err, err
    assert (run / "checkpoints" / "best" / "policy.json").read_text() == "{}"
