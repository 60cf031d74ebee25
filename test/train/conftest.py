"""Shared fixtures of the trainer tests: synthetic stores and a tiny config.

The machine has 2 cores shared with other work; one torch thread per test process is several
times faster than two fighting for a busy core (measured: 50 ms vs 200-360 ms per tiny step).
"""

import pytest
import torch

from dp_ros.data.synthetic import write_synthetic_store
from dp_ros.keys import AGENTVIEW_IMAGE, EEF_POS, OBJECT_STATE
from dp_ros.train.config import TrainConfig
from dp_ros.train.trainer import Trainer


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def low_dim_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("stores") / "reach_low_dim.zarr"
    write_synthetic_store(path, n_episodes=20, length=40, seed=1)
    return path


@pytest.fixture(scope="session")
def image_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("stores") / "reach_image.zarr"
    write_synthetic_store(
        path, n_episodes=6, length=24, cameras=(AGENTVIEW_IMAGE,), image_hw=(24, 24), seed=2
    )
    return path


def tiny_train_config(store, out_dir, **overrides) -> TrainConfig:
    """The tiny test config on `store`, writing to `out_dir`, plus `section.field` overrides."""
    data = {
        "dataset": {"path": str(store), "obs_keys": [EEF_POS, OBJECT_STATE], "val_ratio": 0.2},
        "policy": {"preset": "tiny", "horizon": 8, "n_obs_steps": 2, "n_action_steps": 4},
        "optim": {"lr": 1.0e-3, "warmup_steps": 5},
        "training": {
            "seed": 0,
            "epochs": 2,
            "batch_size": 32,
            "num_workers": 0,
            "checkpoint_every_epochs": 1,
            "log_every_steps": 1,
            "progress_bar": False,
        },
        "fabric": {"accelerator": "cpu", "devices": 1},
        "output": {"dir": str(out_dir)},
    }
    for dotted, value in overrides.items():
        section, name = dotted.split("__")
        data.setdefault(section, {})[name] = value
    return TrainConfig.from_dict(data)


@pytest.fixture
def make_config():
    """`make_config(store, out_dir, training__epochs=3, ...)` -> TrainConfig."""
    return tiny_train_config


@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory, low_dim_store):
    """A tiny diffusion policy trained for 2 epochs with a DDIM-4 sampler (a student's grid)."""
    out = tmp_path_factory.mktemp("teacher")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    sampler = {"name": "ddim", "num_inference_steps": 4}
    Trainer(tiny_train_config(low_dim_store, out, policy__sampler=sampler)).run()
    torch.set_num_threads(threads)
    return out / "checkpoints" / "last"
