"""Inpainting continuation in the sampler: held rows end on their targets, nothing else moves."""

import numpy as np
import pytest
import torch

from dp_ros.policy.config import ShapeMeta, tiny_config
from dp_ros.policy.policy import HeldRows, make_policy
from dp_ros.policy.runtime import HeldActions, PolicyRunner
from dp_ros.testing.checkpoints import unit_stats

META = ShapeMeta(low_dim={"robot0_eef_pos": 3, "object": 4})


def tiny_policy(denoiser: str):
    torch.manual_seed(0)
    return make_policy(tiny_config(META, denoiser=denoiser), unit_stats(META)).eval()


def sample(policy, sampler: str, held: HeldRows | None, seed: int = 3) -> torch.Tensor:
    obs = {"robot0_eef_pos": torch.zeros(1, 2, 3), "object": torch.ones(1, 2, 4)}
    cond = policy.encode_obs(obs)
    generator = torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        return policy.sample_normalized(cond, generator, num_inference_steps=8, sampler=sampler,
                                        held=held)  # fmt: skip


@pytest.mark.parametrize("denoiser", ["unet", "transformer"])
@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_frozen_rows_end_exactly_on_their_targets(denoiser, sampler):
    policy = tiny_policy(denoiser)
    T, Da = policy.horizon, META.action_dim
    target = torch.linspace(-0.9, 0.9, T * Da).reshape(1, T, Da)
    weights = torch.zeros(T)
    weights[:3] = 1.0
    weights[3:5] = torch.tensor([0.6, 0.3])
    result = sample(policy, sampler, HeldRows(target, weights))
    assert torch.equal(result[0, :3], target[0, :3])
    free = sample(policy, sampler, None)
    # The free rows are sampled, not copied: they differ from the targets and from plain samples.
    assert not torch.allclose(result[0, 5:], target[0, 5:], atol=1e-3)
    assert not torch.allclose(result[0, 3:], free[0, 3:], atol=1e-4)


@pytest.mark.parametrize("denoiser", ["unet", "transformer"])
@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_nothing_held_is_bit_identical_to_plain_sampling(denoiser, sampler):
    policy = tiny_policy(denoiser)
    T, Da = policy.horizon, META.action_dim
    plain = sample(policy, sampler, None)
    zero_weights = HeldRows(torch.ones(1, T, Da), torch.zeros(T))
    assert torch.equal(sample(policy, sampler, zero_weights), plain)


def test_soft_rows_move_towards_their_targets():
    """Averaged over seeds, a soft weight pulls its row part of the way to the target."""
    policy = tiny_policy("unet")
    T, Da = policy.horizon, META.action_dim
    target = torch.full((1, T, Da), 0.8)
    weights = torch.zeros(T)
    weights[0], weights[1] = 1.0, 0.5

    def mean_distance(held, row):
        return np.mean([float((sample(policy, "ddim", held, s)[0, row] - 0.8).abs().mean())
                        for s in range(6)])  # fmt: skip

    held = HeldRows(target, weights)
    assert mean_distance(held, 1) < mean_distance(None, 1)


def test_bad_held_rows_are_refused():
    with pytest.raises(ValueError, match="must be"):
        HeldRows(torch.zeros(1, 4, 7), torch.zeros(5))
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        HeldRows(torch.zeros(1, 4, 7), torch.full((4,), 1.5))


def test_runner_returns_frozen_actions_exactly(tmp_path):
    """In action units too: unnormalising would round, so the runner hands back the originals."""
    policy = tiny_policy("unet")
    stats = unit_stats(META)
    stats["action"]["min"] = np.full(7, -0.3, np.float32)
    stats["action"]["max"] = np.full(7, 0.7, np.float32)
    policy.set_normalizer(stats)
    runner = PolicyRunner(policy)
    obs = {"robot0_eef_pos": np.zeros((2, 3), np.float32), "object": np.zeros((2, 4), np.float32)}
    actions = np.random.default_rng(0).uniform(-0.3, 0.7, (runner.horizon, 7)).astype(np.float32)
    weights = np.zeros(runner.horizon, np.float32)
    weights[:4] = 1.0
    chunk = runner.predict(obs, HeldActions(actions, weights)).chunk
    np.testing.assert_array_equal(chunk[:4], actions[:4])
    assert not np.allclose(chunk[4:], actions[4:], atol=1e-3)
    with pytest.raises(ValueError, match="held actions"):
        runner.predict(obs, HeldActions(actions[:3], weights[:3]))
