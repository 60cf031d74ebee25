"""Trainer state pieces: optimiser round trip, random generators, the epoch sampler."""

import json
import random

import numpy as np
import torch

from dp_ros.train import state
from dp_ros.train.sampling import EpochSampler


def trained_adamw() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.95))
    for _ in range(3):
        model(torch.randn(5, 4)).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    return model, optimizer


def test_optimizer_state_survives_safetensors_and_json(tmp_path):
    model, optimizer = trained_adamw()
    tensors, document = state.optimizer_to_flat(optimizer)
    state.save_state(tmp_path, tensors, {"optimizer": document})
    loaded_tensors, loaded_document = state.load_state(tmp_path)

    other = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
    other.load_state_dict(model.state_dict())
    restored = torch.optim.AdamW(other.parameters(), lr=1.0)
    state.optimizer_from_flat(restored, loaded_tensors, loaded_document["optimizer"])
    assert restored.param_groups[0]["betas"] == (0.9, 0.95)
    assert restored.param_groups[0]["lr"] == 1e-2
    x = torch.randn(5, 4)
    for net, opt in ((model, optimizer), (other, restored)):  # one more identical step each
        net(x).square().mean().backward()
        opt.step()
    for a, b in zip(model.parameters(), other.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob("*.pkl"))


def test_rng_capture_restores_every_generator(tmp_path):
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    state.save_rng(tmp_path, rank=1)
    first = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    assert state.load_rng(tmp_path, rank=1)
    again = (torch.rand(3), np.random.rand(3), random.random())
    torch.testing.assert_close(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert first[2] == again[2]
    assert not state.load_rng(tmp_path, rank=0)
    json.loads(state.rng_file(tmp_path, 1).read_text())  # plain JSON


def test_epoch_sampler_splits_pads_reshuffles_and_skips():
    ranks = [EpochSampler(10, rank, 3, seed=5, shuffle=True) for rank in range(3)]
    parts = [list(sampler) for sampler in ranks]
    assert [len(p) for p in parts] == [4, 4, 4]  # equal steps on every rank (padded)
    assert set().union(*parts) == set(range(10))
    first_epoch = parts[0]
    ranks[0].start(1)
    assert list(ranks[0]) != first_epoch  # a new order each epoch ...
    ranks[0].start(0)
    assert list(ranks[0]) == first_epoch  # ... the same order for the same epoch
    ranks[0].start(0, skip=3)
    assert list(ranks[0]) == first_epoch[3:] and len(ranks[0]) == 1
    assert list(EpochSampler(5, 1, 2, seed=0, shuffle=False)) == [1, 3, 0]
