"""PolicyConfig: paper defaults, validation messages, JSON round trip."""

from __future__ import annotations

import json

import pytest

from dp_ros import keys
from dp_ros.policy.config import (
    ConsistencyConfig,
    EncoderConfig,
    PolicyConfig,
    SamplerConfig,
    TransformerConfig,
    UnetConfig,
    tiny_config,
)
from dp_ros.policy.shape_meta import ConfigError, ShapeMeta, image_shape_meta

IMAGE_META_DICT = {
    "obs": {
        keys.AGENTVIEW_IMAGE: {"shape": [3, 84, 84], "type": "rgb"},
        keys.WRIST_IMAGE: {"shape": [3, 84, 84], "type": "rgb"},
        keys.EEF_POS: {"shape": [3], "type": "low_dim"},
        keys.EEF_QUAT: {"shape": [4]},  # type defaults to low_dim
        keys.GRIPPER_QPOS: {"shape": [2], "type": "low_dim"},
    },
    "action": {"shape": [7]},
}


def test_defaults_follow_the_paper():
    config = PolicyConfig(shape_meta=IMAGE_META_DICT)
    assert (config.n_obs_steps, config.horizon, config.n_action_steps) == (2, 16, 8)
    assert config.unet.down_dims == (256, 512, 1024)
    assert (config.unet.kernel_size, config.unet.n_groups) == (5, 8)
    assert config.noise.num_train_timesteps == 100
    assert config.noise.beta_schedule == "squaredcos_cap_v2"
    assert config.noise.prediction_type == "epsilon"
    assert config.encoder.crop_shape == (76, 76)
    assert config.encoder.width == 64 and not config.encoder.share_rgb_model
    assert config.shape_meta.rgb[keys.AGENTVIEW_IMAGE] == (3, 84, 84)
    assert config.shape_meta.low_dim == {keys.EEF_POS: 3, keys.EEF_QUAT: 4, keys.GRIPPER_QPOS: 2}
    assert config.shape_meta.action_dim == keys.ACTION_DIM


def test_shape_meta_dict_round_trip():
    meta = ShapeMeta.from_dict(IMAGE_META_DICT)
    assert meta.obs_keys == (
        keys.AGENTVIEW_IMAGE,
        keys.WRIST_IMAGE,
        keys.EEF_POS,
        keys.EEF_QUAT,
        keys.GRIPPER_QPOS,
    )
    again = ShapeMeta.from_dict(meta.to_dict())
    assert again == meta
    assert meta.to_dict()["obs"][keys.EEF_QUAT] == {"shape": [4], "type": "low_dim"}


@pytest.mark.parametrize("denoiser", ["unet", "transformer"])
def test_config_json_round_trip(denoiser):
    config = tiny_config(image_shape_meta(), denoiser=denoiser)
    text = json.dumps(config.to_dict())
    again = PolicyConfig.from_dict(json.loads(text))
    assert again == config
    assert again.to_dict() == config.to_dict()


def test_from_dict_refuses_unknown_fields():
    data = PolicyConfig(shape_meta=IMAGE_META_DICT).to_dict()
    data["n_obs_step"] = 3
    with pytest.raises(ConfigError, match=r"PolicyConfig\.fields=\['n_obs_step'\].*unknown"):
        PolicyConfig.from_dict(data)
    data = PolicyConfig(shape_meta=IMAGE_META_DICT).to_dict()
    data["unet"]["downdims"] = [1, 2]
    with pytest.raises(ConfigError, match=r"UnetConfig\.fields=\['downdims'\]"):
        PolicyConfig.from_dict(data)
    data = PolicyConfig(shape_meta=IMAGE_META_DICT).to_dict()
    data["shape_meta"]["extra"] = {}
    with pytest.raises(ConfigError, match=r"ShapeMeta\.fields=\['extra'\]"):
        PolicyConfig.from_dict(data)


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        (
            {"n_action_steps": 16},
            r"PolicyConfig\.n_action_steps=16 is invalid: must be <= horizon - n_obs_steps \+ 1"
            r" = 16 - 2 \+ 1 = 15",
        ),
        ({"n_obs_steps": 0}, r"PolicyConfig\.n_obs_steps=0 is invalid: must be a positive int"),
        ({"denoiser": "mlp"}, r"PolicyConfig\.denoiser='mlp' is invalid: must be one of"),
        ({"objective": "l1"}, r"PolicyConfig\.objective='l1' is invalid: must be one of"),
        ({"horizon": 10, "n_action_steps": 4}, r"PolicyConfig\.horizon=10 is invalid: .*= 4"),
        (
            {"encoder": EncoderConfig(crop_shape=(90, 76))},
            r"PolicyConfig\.encoder\.crop_shape=\(90, 76\) is invalid: must fit inside "
            r"agentview_image",
        ),
        (
            {"sampler": SamplerConfig(num_inference_steps=200)},
            r"PolicyConfig\.sampler\.num_inference_steps=200 is invalid: must be <= "
            r"noise\.num_train_timesteps = 100",
        ),
        (
            {"sampler": SamplerConfig(name="consistency")},
            r"PolicyConfig\.sampler\.name='consistency' is invalid: objective 'diffusion' "
            r"samples with one of \('ddpm', 'ddim'\)",
        ),
        (
            {"objective": "consistency"},
            r"PolicyConfig\.sampler\.name='ddim' is invalid: objective 'consistency'",
        ),
        (
            {
                "objective": "consistency",
                "sampler": SamplerConfig(name="consistency", num_inference_steps=8),
                "consistency": ConsistencyConfig(teacher_steps=4),
            },
            r"PolicyConfig\.sampler\.num_inference_steps=8 is invalid: a consistency student "
            r"chains at most consistency\.teacher_steps = 4",
        ),
    ],
)
def test_bad_policy_configs_name_the_field(changes, pattern):
    with pytest.raises(ConfigError, match=pattern):
        PolicyConfig(shape_meta=IMAGE_META_DICT, **changes)


@pytest.mark.parametrize(
    ("build", "pattern"),
    [
        (lambda: EncoderConfig(width=24), r"EncoderConfig\.width=24 is invalid: .*multiple of 16"),
        (lambda: EncoderConfig(backbone="vit"), r"EncoderConfig\.backbone='vit' is invalid"),
        (lambda: EncoderConfig(crop_shape=(76,)), r"EncoderConfig\.crop_shape=\(76,\)"),
        (
            lambda: UnetConfig(down_dims=(256, 100)),
            r"UnetConfig\.down_dims=\(256, 100\) .*n_groups=8",
        ),
        (lambda: UnetConfig(kernel_size=4), r"UnetConfig\.kernel_size=4 is invalid: .*odd"),
        (lambda: TransformerConfig(n_emb=30, n_head=4), r"TransformerConfig\.n_emb=30 .*n_head=4"),
        (lambda: TransformerConfig(p_drop_attn=1.0), r"TransformerConfig\.p_drop_attn=1\.0"),
        (lambda: SamplerConfig(name="euler"), r"SamplerConfig\.name='euler' is invalid"),
        (
            lambda: ConsistencyConfig(first_step_share=1.5),
            r"ConsistencyConfig\.first_step_share=1\.5 is invalid: must be in \[0, 1\]",
        ),
        (lambda: ShapeMeta(low_dim={"x": 0}), r"ShapeMeta\.low_dim\['x'\]=0 is invalid"),
        (lambda: ShapeMeta(rgb={"cam": (3, 8, 8)}), r"ShapeMeta\.rgb\['cam'\].*_image"),
        (lambda: ShapeMeta(), r"ShapeMeta\.obs=\{\} is invalid: needs at least one obs key"),
        (lambda: ShapeMeta(low_dim={"a.b": 2}), r"ShapeMeta\.key='a\.b' is invalid"),
    ],
)
def test_bad_component_configs_name_the_field(build, pattern):
    with pytest.raises(ConfigError, match=pattern):
        build()


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_low_dim_only_config_needs_no_crop_check():
    meta = ShapeMeta(low_dim={keys.EEF_POS: 3}, action_dim=7)
    config = tiny_config(meta)
    assert config.encoder.crop_shape is None
    assert config.shape_meta.rgb == {}


def test_tiny_config_crops_about_ninety_percent():
    config = tiny_config(image_shape_meta(image_hw=(84, 84)))
    assert config.encoder.crop_shape == (75, 75)
    assert config.encoder.width == 16
