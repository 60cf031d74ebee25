"""Normalizer: min-max to [-1, 1], constant-feature guard, images to [0, 1], saved buffers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dp_ros import keys
from dp_ros.policy.config import ShapeMeta
from dp_ros.policy.normalizer import Normalizer, stats_from_jsonable, stats_to_jsonable

META = ShapeMeta(rgb={keys.AGENTVIEW_IMAGE: (3, 4, 4)}, low_dim={keys.EEF_POS: 3}, action_dim=2)


def _stats():
    return {
        keys.EEF_POS: {
            "min": np.array([0.0, -1.0, 2.0], np.float32),
            "max": np.array([1.0, 3.0, 2.0], np.float32),  # last feature is constant
            "mean": np.zeros(3, np.float32),
            "std": np.ones(3, np.float32),
        },
        keys.ACTION: {
            "min": np.array([-0.5, 10.0], np.float32),
            "max": np.array([0.5, 20.0], np.float32),
            "mean": np.zeros(2, np.float32),
            "std": np.ones(2, np.float32),
        },
    }


def test_min_max_maps_to_minus_one_one_and_back():
    norm = Normalizer(META)
    norm.fit(_stats())
    action = torch.tensor([[-0.5, 10.0], [0.5, 20.0], [0.0, 15.0]])
    normalized = norm.normalize_action(action)
    assert torch.allclose(normalized, torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]]))
    assert torch.allclose(norm.unnormalize_action(normalized), action, atol=1e-6)


def test_constant_feature_maps_to_zero_not_to_infinity():
    norm = Normalizer(META)
    norm.fit(_stats())
    pos = torch.tensor([[[0.0, -1.0, 2.0], [1.0, 3.0, 2.00001]]])  # (B=1, To=2, 3)
    image = torch.zeros(1, 2, 3, 4, 4, dtype=torch.uint8)
    out = norm.normalize_obs({keys.EEF_POS: pos, keys.AGENTVIEW_IMAGE: image})[keys.EEF_POS]
    assert torch.allclose(out[0, :, :2], torch.tensor([[-1.0, -1.0], [1.0, 1.0]]))
    assert torch.allclose(out[0, :, 2], torch.tensor([0.0, 0.0]), atol=1e-4)


def test_images_uint8_to_unit_range_and_float_passthrough():
    norm = Normalizer(META)
    image = (
        torch.tensor([0, 51, 255], dtype=torch.uint8).reshape(1, 1, 3, 1, 1).expand(1, 1, 3, 4, 4)
    )
    pos = torch.zeros(1, 1, 3)
    out = norm.normalize_obs({keys.AGENTVIEW_IMAGE: image, keys.EEF_POS: pos})
    assert out[keys.AGENTVIEW_IMAGE].dtype == torch.float32
    assert torch.allclose(out[keys.AGENTVIEW_IMAGE][0, 0, :, 0, 0], torch.tensor([0.0, 0.2, 1.0]))
    already = torch.full((1, 1, 3, 4, 4), 0.5)
    out = norm.normalize_obs({keys.AGENTVIEW_IMAGE: already, keys.EEF_POS: pos})
    assert torch.equal(out[keys.AGENTVIEW_IMAGE], already)


def test_affine_maps_are_buffers_in_the_state_dict():
    norm = Normalizer(META)
    norm.fit(_stats())
    state = norm.state_dict()
    assert set(state) == {
        f"low_dim.{keys.EEF_POS}.scale",
        f"low_dim.{keys.EEF_POS}.offset",
        "action.scale",
        "action.offset",
    }
    fresh = Normalizer(META)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.action.scale, torch.tensor([2.0, 0.2]))
    assert list(norm.parameters()) == []  # never trained by the optimiser


@pytest.mark.parametrize(
    ("mutate", "pattern"),
    [
        (lambda s: s.pop(keys.ACTION), r"missing key 'action'"),
        (lambda s: s[keys.EEF_POS].pop("std"), r"stats\['robot0_eef_pos'\]: missing 'std'"),
        (
            lambda s: s[keys.EEF_POS].update(min=np.zeros(4, np.float32)),
            r"stats\['robot0_eef_pos'\]\['min'\]: shape \(4,\), expected \(3,\)",
        ),
        (
            lambda s: s[keys.ACTION].update(max=np.array([np.nan, 1], np.float32)),
            r"\['action'\]\['max'\]: not finite",
        ),
        (lambda s: s[keys.ACTION].update(max=np.array([-1, 0], np.float32)), r"max < min"),
    ],
)
def test_bad_stats_are_refused_with_the_key_named(mutate, pattern):
    stats = _stats()
    mutate(stats)
    with pytest.raises(ValueError, match=pattern):
        Normalizer(META).fit(stats)


def test_stats_json_round_trip_is_exact():
    stats = _stats()
    stats[keys.ACTION]["mean"] = np.array([0.1, 1 / 3], np.float32)
    again = stats_from_jsonable(stats_to_jsonable(stats))
    for key in stats:
        for name in stats[key]:
            assert again[key][name].dtype == np.float32
            assert np.array_equal(again[key][name], stats[key][name])
