"""Encoder, denoisers and the whole policy: parameter counts, shapes, masks, gradients."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dp_ros import keys
from dp_ros.policy.config import (
    EncoderConfig,
    PolicyConfig,
    ShapeMeta,
    TransformerConfig,
    UnetConfig,
    tiny_config,
)
from dp_ros.policy.matmul_layers import (
    MatmulConv1d,
    MatmulConvTranspose1d,
    PackedLinear,
    half_weights_available,
    use_matmul_layers,
)
from dp_ros.policy.policy import count_parameters, make_policy
from dp_ros.policy.random_inputs import random_batch, random_obs, random_stats
from dp_ros.policy.shape_meta import image_shape_meta
from dp_ros.policy.transformer import TransformerDenoiser, memory_mask
from dp_ros.policy.unet import ConditionalUnet1D
from dp_ros.policy.vision import (
    ImageEncoder,
    ObsEncoder,
    ResNet18Trunk,
    SpatialSoftmax,
    crop_images,
)

# torchvision's resnet18 has 11,689,512 parameters; its fc head has 512*1000 + 1000.
RESNET18_WITHOUT_HEAD = 11_689_512 - 513_000


def test_full_width_resnet18_trunk_has_11_18m_parameters():
    trunk = ResNet18Trunk(in_channels=3, width=64)
    assert count_parameters(trunk) == RESNET18_WITHOUT_HEAD == 11_176_512
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in trunk.modules())
    assert sum(isinstance(m, torch.nn.GroupNorm) for m in trunk.modules()) == 20


def test_resnet_trunk_downsamples_76_crop_to_3x3():
    trunk = ResNet18Trunk(width=16)
    out = trunk(torch.rand(2, 3, 76, 76))
    assert out.shape == (2, 128, 3, 3)


def test_spatial_softmax_finds_the_peak():
    pool = SpatialSoftmax(in_channels=1, num_keypoints=1)
    with torch.no_grad():
        pool.keypoint_conv.weight.fill_(1.0)
        pool.keypoint_conv.bias.zero_()
    features = torch.zeros(1, 1, 5, 9)
    features[0, 0, 4, 0] = 100.0  # bottom-left corner -> x=-1, y=+1
    keypoints = pool(features)
    assert keypoints.shape == (1, 2)
    assert torch.allclose(keypoints, torch.tensor([[-1.0, 1.0]]), atol=1e-4)


def test_reference_image_range_and_projection_relu():
    """image_range "symmetric" is the unit-range encoder fed 2x - 1 (same weights);
    projection_relu clips the same projection at 0 and adds no weights."""
    base = EncoderConfig(width=16, num_keypoints=4, feature_dim=8, crop_shape=None)
    torch.manual_seed(0)
    unit = ImageEncoder(3, base).eval()
    variants = {
        name: ImageEncoder(3, dataclasses.replace(base, **change)).eval()
        for name, change in {
            "symmetric": {"image_range": "symmetric"},
            "relu": {"projection_relu": True},
        }.items()
    }
    for encoder in variants.values():
        encoder.load_state_dict(unit.state_dict())  # strict: the same tensors exist
    images = torch.rand(2, 3, 84, 84)  # 3x3 keypoint maps (a 1x1 map pins them at 0)
    with torch.no_grad():
        plain = unit(images)
        assert torch.allclose(variants["symmetric"](images), unit(images * 2 - 1), atol=1e-6)
        assert not torch.allclose(variants["symmetric"](images), plain)
        assert (plain < 0).any()
        assert torch.equal(variants["relu"](images), plain.clamp(min=0.0))


def test_encoder_options_are_validated_and_default_to_the_original_encoder():
    with pytest.raises(ValueError, match="image_range"):
        EncoderConfig(image_range="pixels")
    with pytest.raises(ValueError, match="projection_relu"):
        EncoderConfig(projection_relu="yes")
    # A config written before the fields existed: the original encoder.
    old = tiny_config(image_shape_meta()).to_dict()
    for name in ("image_range", "projection_relu"):
        del old["encoder"][name]
    encoder = PolicyConfig.from_dict(old).encoder
    assert (encoder.image_range, encoder.projection_relu) == ("unit", False)


def test_crop_random_in_training_centre_in_eval():
    images = torch.arange(10 * 10, dtype=torch.float32).reshape(1, 1, 10, 10).repeat(64, 3, 1, 1)
    centre = crop_images(images, (6, 6), random=False)
    assert centre.shape == (64, 3, 6, 6)
    assert torch.equal(centre[:, :, 0, 0], torch.full((64, 3), 22.0))  # row 2, col 2
    crops = crop_images(images, (6, 6), random=True, generator=torch.Generator().manual_seed(0))
    assert crops.shape == (64, 3, 6, 6)
    corners = crops[:, 0, 0, 0]
    rows, cols = corners // 10, corners % 10
    assert rows.max() <= 4 and cols.max() <= 4
    assert len(set(corners.tolist())) > 5  # independent windows per image
    # Each crop is a contiguous window of the original: right neighbour is +1, lower is +10.
    assert torch.equal(crops[:, :, :, 1:] - crops[:, :, :, :-1], torch.ones(64, 3, 6, 5))
    assert torch.equal(crops[:, :, 1:, :] - crops[:, :, :-1, :], torch.full((64, 3, 5, 6), 10.0))
    # Channels share the window.
    assert torch.equal(crops[:, 0], crops[:, 2])


@pytest.mark.parametrize("share", [False, True])
def test_obs_encoder_feature_layout(share):
    meta = image_shape_meta(image_hw=(40, 40))
    encoder = ObsEncoder(
        meta, EncoderConfig(width=16, feature_dim=12, crop_shape=(36, 36), share_rgb_model=share)
    )
    assert encoder.feature_dim == 2 * 12 + 9
    n_trunks = sum(isinstance(m, ResNet18Trunk) for m in encoder.modules())
    assert n_trunks == (1 if share else 2)
    obs = random_obs(meta, B=3, To=2)
    nobs = {k: (v.float() / 255 if k in meta.rgb else v) for k, v in obs.items()}
    features = encoder(nobs)
    assert features.shape == (3, 2, 33)
    low_dim = torch.cat([nobs[k] for k in meta.low_dim], dim=-1)
    assert torch.equal(features[..., 24:], low_dim)  # low-dim appended unchanged


def test_unet_shapes_and_dependence_on_condition():
    cfg = UnetConfig(
        down_dims=(32, 64, 128), kernel_size=5, n_groups=8, diffusion_step_embed_dim=32
    )
    net = ConditionalUnet1D(action_dim=7, global_cond_dim=20, cfg=cfg).eval()
    x = torch.randn(4, 16, 7)
    cond = torch.randn(4, 20)
    out = net(x, torch.tensor(5), cond)
    assert out.shape == (4, 16, 7)
    assert not torch.allclose(out, net(x, torch.tensor(50), cond))
    assert not torch.allclose(out, net(x, torch.tensor(5), cond + 1))
    per_sample = net(x, torch.tensor([5, 5, 5, 5]), cond)
    assert torch.allclose(out, per_sample, atol=1e-6)


def test_paper_size_unet_parameter_count():
    # DP-C at down_dims [256, 512, 1024], kernel 5, for the two-camera image task (To=2,
    # F = 2 * 64 + 9): pins the architecture (levels, FiLM, skip connections) to one count.
    net = ConditionalUnet1D(7, 2 * (2 * 64 + 9), UnetConfig())
    assert count_parameters(net) == 69_146_887


def test_transformer_masks():
    mask = memory_mask(T=4, To=2)
    allowed = mask == 0
    # Column 0 is the step token (always visible); column j+1 is obs step j, seen from action j.
    expected = torch.tensor(
        [[True, True, False], [True, True, True], [True, True, True], [True, True, True]]
    )
    assert torch.equal(allowed, expected)


def test_transformer_is_causal_over_actions_and_obs():
    cfg = TransformerConfig(n_layer=2, n_head=2, n_emb=32, p_drop_attn=0.0)
    net = TransformerDenoiser(action_dim=3, obs_feature_dim=5, horizon=6, n_obs_steps=2, cfg=cfg)
    net.eval()
    torch.manual_seed(0)
    with torch.no_grad():  # larger weights than the init, so every path has a visible effect
        for param in net.parameters():
            param.normal_(std=0.3)
    x = torch.randn(2, 6, 3)
    obs = torch.randn(2, 2, 5)
    step = torch.tensor(10)
    base = net(x, step, obs)
    assert base.shape == (2, 6, 3)
    later = x.clone()
    later[:, 3:] += 1.0
    out = net(later, step, obs)
    assert torch.allclose(out[:, :3], base[:, :3], atol=1e-4)  # past unaffected by the future
    assert (out[:, 3:] - base[:, 3:]).abs().min(dim=-1).values.min() > 1e-3
    newer_obs = obs.clone()
    newer_obs[:, 1] += 1.0
    out = net(x, step, newer_obs)
    assert torch.allclose(out[:, 0], base[:, 0], atol=1e-4)  # action 0 does not see obs 1
    assert (out[:, 1:] - base[:, 1:]).abs().min(dim=-1).values.min() > 1e-3


def _configs():
    image = image_shape_meta(image_hw=(40, 40))
    low_dim = ShapeMeta(low_dim={**keys.LOW_DIM_SIZES, keys.OBJECT_STATE: 10})
    single_camera = ShapeMeta(rgb={keys.AGENTVIEW_IMAGE: (3, 40, 40)})
    cases = {}
    for denoiser in ("unet", "transformer"):
        cases[f"{denoiser}-separate"] = tiny_config(image, denoiser=denoiser)
        shared = tiny_config(image, denoiser=denoiser)
        cases[f"{denoiser}-shared"] = shared.replace(
            encoder=EncoderConfig(
                width=16,
                num_keypoints=8,
                feature_dim=16,
                crop_shape=(36, 36),
                share_rgb_model=True,
            )
        )
        cases[f"{denoiser}-lowdim"] = tiny_config(low_dim, denoiser=denoiser)
        cases[f"{denoiser}-image-only"] = tiny_config(
            single_camera, denoiser=denoiser, n_obs_steps=3, horizon=12, n_action_steps=6
        )
    return cases


CONFIGS = _configs()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_policy_loss_and_prediction_shapes(name):
    config: PolicyConfig = CONFIGS[name]
    meta, To, T, Ta = config.shape_meta, config.n_obs_steps, config.horizon, config.n_action_steps
    torch.manual_seed(0)
    policy = make_policy(config, random_stats(meta))
    batch = random_batch(meta, B=3, To=To, T=T)
    loss = policy.compute_loss(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    no_grad = [n for n, p in policy.named_parameters() if p.grad is None]
    assert no_grad == []  # every weight, encoder included, is trained by the loss
    policy.eval()
    with torch.inference_mode():
        out = policy.predict_action(batch["obs"], generator=torch.Generator().manual_seed(0))
    assert out["action_pred"].shape == (3, T, meta.action_dim)
    assert out["action"].shape == (3, Ta, meta.action_dim)
    assert torch.equal(out["action"], out["action_pred"][:, To - 1 : To - 1 + Ta])
    # Unnormalised into the statistics' range (the sampler clips to [-1, 1] inside).
    stats = policy.normalizer.stats["action"]
    assert torch.all(out["action_pred"] >= torch.from_numpy(stats["min"]) - 1e-4)
    assert torch.all(out["action_pred"] <= torch.from_numpy(stats["max"]) + 1e-4)


def test_obs_steps_beyond_to_are_ignored():
    config = CONFIGS["unet-lowdim"]
    policy = make_policy(config, random_stats(config.shape_meta)).eval()
    obs = random_obs(config.shape_meta, B=2, To=2)
    longer = {k: torch.cat([v, v + 5.0], dim=1) for k, v in obs.items()}  # (B, 4, D)
    with torch.inference_mode():
        a = policy.predict_action(obs, generator=torch.Generator().manual_seed(3))["action"]
        b = policy.predict_action(longer, generator=torch.Generator().manual_seed(3))["action"]
    assert torch.equal(a, b)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_seeded_generator_reproduces_samples(sampler):
    config = CONFIGS["transformer-separate"]
    policy = make_policy(config, random_stats(config.shape_meta)).eval()
    obs = random_obs(config.shape_meta, B=2, To=2)

    def sample(seed):
        with torch.inference_mode():
            return policy.predict_action(
                obs, torch.Generator().manual_seed(seed), num_inference_steps=3, sampler=sampler
            )["action_pred"]

    assert torch.equal(sample(1), sample(1))
    assert not torch.allclose(sample(1), sample(2))


def test_training_mode_crops_randomly_eval_is_deterministic():
    config = CONFIGS["unet-separate"]
    policy = make_policy(config)
    obs = random_obs(config.shape_meta, B=2, To=2)
    nobs = policy.normalizer.normalize_obs(obs)
    policy.train()
    torch.manual_seed(0)
    a = policy.obs_encoder(nobs)
    b = policy.obs_encoder(nobs)
    assert not torch.allclose(a, b)
    policy.eval()
    assert torch.equal(policy.obs_encoder(nobs), policy.obs_encoder(nobs))


needs_fbgemm = pytest.mark.skipif(not half_weights_available(), reason="no fbgemm in this torch")


@pytest.mark.parametrize("half_weights", [False, pytest.param(True, marks=needs_fbgemm)])
@pytest.mark.parametrize(
    ("layer", "replacement", "kernel", "stride", "padding", "length"),
    [
        (torch.nn.Conv1d, MatmulConv1d, 5, 1, 2, 16),
        (torch.nn.Conv1d, MatmulConv1d, 3, 2, 1, 8),
        (torch.nn.Conv1d, MatmulConv1d, 1, 1, 0, 4),
        (torch.nn.ConvTranspose1d, MatmulConvTranspose1d, 4, 2, 1, 4),
        (torch.nn.ConvTranspose1d, MatmulConvTranspose1d, 3, 2, 0, 5),
    ],
)
def test_matmul_layer_matches_the_layer_it_replaces(
    layer, replacement, kernel, stride, padding, length, half_weights
):
    torch.manual_seed(0)
    original = layer(24, 40, kernel, stride=stride, padding=padding)
    x = torch.randn(3, 24, length)
    with torch.no_grad():
        expected = original(x)
        got = replacement(original, half_weights)(x)
    assert got.shape == expected.shape
    # fp16 weights: about 3 decimal digits, relative to the output's size.
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-3 if half_weights else 1e-5)


@needs_fbgemm
def test_packed_linear_rounds_weights_to_fp16_and_nothing_else():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 32)
    x = torch.randn(5, 64)
    rounded = torch.nn.Linear(64, 32)
    with torch.no_grad():
        rounded.weight.copy_(linear.weight.half().float())
        rounded.bias.copy_(linear.bias)
        got = PackedLinear(linear, half_weights=True)(x)
        torch.testing.assert_close(got, rounded(x), rtol=0, atol=1e-5)
        assert (got - linear(x)).abs().max() > 0  # the rounding is real


def test_matmul_layers_refuse_what_they_do_not_compute():
    with pytest.raises(ValueError, match="groups"):
        MatmulConv1d(torch.nn.Conv1d(4, 4, 3, groups=2))
    with pytest.raises(ValueError, match="output_padding"):
        MatmulConvTranspose1d(torch.nn.ConvTranspose1d(4, 4, 3, stride=2, output_padding=1))


@pytest.mark.parametrize(
    ("half_weights", "atol"), [(False, 1e-5), pytest.param(True, 2e-3, marks=needs_fbgemm)]
)
def test_unet_with_matmul_layers_gives_the_same_noise_estimate(half_weights, atol):
    torch.manual_seed(0)
    net = ConditionalUnet1D(7, 20, UnetConfig(down_dims=(32, 64, 128), kernel_size=5)).eval()
    sample, cond = torch.randn(2, 16, 7), torch.randn(2, 20)
    steps = torch.tensor([3, 70])
    originals = (torch.nn.Conv1d, torch.nn.ConvTranspose1d) + (
        (torch.nn.Linear,) if half_weights else ()
    )
    with torch.no_grad():
        before = net(sample, steps, cond)
        count = sum(1 for m in net.modules() if type(m) in originals)
        assert use_matmul_layers(net, half_weights) == count > 10
        assert not any(type(m) in originals for m in net.modules())
        torch.testing.assert_close(net(sample, steps, cond), before, rtol=0, atol=atol)


def test_unet_films_computed_for_all_steps_at_once_match_per_step_ones():
    torch.manual_seed(0)
    net = ConditionalUnet1D(7, 20, UnetConfig(down_dims=(32, 64, 128), kernel_size=5)).eval()
    sample, cond = torch.randn(2, 16, 7), torch.randn(2, 20)
    timesteps = torch.tensor([90, 60, 30, 0])
    with torch.no_grad():
        films = net.films_for_steps(timesteps, cond)
        assert len(films) == 4 and len(films[0]) == len(net.film_blocks()) == 12
        for t, step_films in zip(timesteps, films, strict=True):
            expected = net(sample, t, cond)
            torch.testing.assert_close(
                net(sample, t, cond, step_films), expected, atol=1e-5, rtol=0
            )
        # The steps differ, so a film of the wrong step would be caught.
        assert not torch.allclose(films[0][0], films[1][0])
