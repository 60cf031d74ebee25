"""Training config: YAML, overrides, and errors that name field, value and rule."""

from pathlib import Path

import pytest

from dp_ros.train.config import TrainConfig, TrainConfigError, apply_override, parse_value

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "train"


def test_example_configs_load_and_round_trip():
    names = sorted(path.name for path in CONFIG_DIR.glob("*.yaml"))
    assert {"lift_image.yaml", "lift_lowdim.yaml", "tiny_test.yaml"} <= set(names)
    for name in names:
        config = TrainConfig.from_yaml(CONFIG_DIR / name)
        assert TrainConfig.from_dict(config.to_dict()) == config
    image = TrainConfig.from_yaml(CONFIG_DIR / "lift_image.yaml")
    assert image.training.batch_size == 64 and image.optim.lr == pytest.approx(1e-4)
    assert image.dataset.shape_meta["obs"]["agentview_image"]["shape"] == [3, 84, 84]
    assert TrainConfig.from_yaml(CONFIG_DIR / "lift_lowdim.yaml").training.batch_size == 256


def test_overrides_parse_yaml_values(tmp_path):
    config = TrainConfig.from_yaml(
        CONFIG_DIR / "tiny_test.yaml",
        [
            "optim.lr=3e-4",
            "optim.betas=[0.9, 0.95]",
            "training.max_steps=7",
            "optim.grad_clip_norm=null",
            "dataset.obs_keys=[object]",
            "fabric.devices=2",
            "policy.unet.down_dims=[16, 32]",
            f"output.dir={tmp_path}",
        ],
    )
    assert config.optim.lr == pytest.approx(3e-4)
    assert config.optim.betas == (0.9, 0.95)
    assert config.training.max_steps == 7
    assert config.optim.grad_clip_norm is None
    assert config.dataset.obs_keys == ["object"]
    assert config.fabric.devices == 2
    assert config.policy["unet"]["down_dims"] == [16, 32]
    assert config.output.dir == str(tmp_path)
    assert parse_value("1e-4") == pytest.approx(1e-4) and parse_value("abc") == "abc"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("training.epochs=0", r"training\.epochs=0 is invalid: must be >= 1"),
        ("training.epoch=3", r"training: unknown field\(s\) \['epoch'\]"),
        ("optim.lr=-1", r"optim\.lr=-1\.0 is invalid: must be > 0"),
        ("optim.lr=fast", r"optim\.lr='fast' is invalid: must be of type float"),
        ("dataset.val_ratio=1.5", r"dataset\.val_ratio=1\.5 is invalid: must be in \[0, 1\)"),
        ("fabric.precision=fp8", r"fabric\.precision='fp8' is invalid: must be one of"),
        ("policy.preset=huge", r"policy\.preset='huge' is invalid"),
        ("optim.betas=[0.9]", r"optim\.betas=\[0\.9\] is invalid: needs 2 items"),
        ("eval.hook=not a name", r"eval\.hook='not a name' is invalid"),
        ("training", "must look like section.field=value"),
    ],
)
def test_bad_values_name_field_value_and_rule(override, message):
    with pytest.raises(TrainConfigError, match=message):
        TrainConfig.from_yaml(CONFIG_DIR / "tiny_test.yaml", [override])


def test_dataset_path_is_required_and_missing_file_is_named(tmp_path):
    with pytest.raises(TrainConfigError, match="dataset.path is required"):
        TrainConfig.from_dict({})
    with pytest.raises(TrainConfigError, match="does not exist"):
        TrainConfig.from_yaml(tmp_path / "nope.yaml")
    data = {}
    apply_override(data, "a.b.c=1")
    assert data == {"a": {"b": {"c": 1}}}
