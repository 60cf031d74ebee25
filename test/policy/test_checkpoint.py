"""Checkpoints: bit-identical round trip, golden sampler outputs, refusals that say why."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from dp_ros import keys
from dp_ros.policy import golden
from dp_ros.policy.checkpoint import (
    FORMAT_VERSION,
    META_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    load_policy,
    main,
    read_checkpoint_json,
    record_weights_hash,
    save_half_weights,
    save_policy,
)
from dp_ros.policy.config import tiny_config
from dp_ros.policy.policy import make_policy
from dp_ros.policy.random_inputs import random_obs, random_stats
from dp_ros.policy.schedulers import EMA
from dp_ros.policy.shape_meta import image_shape_meta

GOLDEN_FILE = Path(__file__).parent / "golden" / "tiny_policy.json"


def _policy(denoiser="unet", seed=0):
    meta = image_shape_meta(image_hw=(40, 40))
    torch.manual_seed(seed)
    return make_policy(tiny_config(meta, denoiser=denoiser), random_stats(meta, seed)).eval()


def _sample(policy, obs, seed=5):
    with torch.inference_mode():
        return policy.predict_action(obs, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("denoiser", ["unet", "transformer"])
def test_round_trip_gives_bit_identical_predictions(tmp_path, denoiser):
    policy = _policy(denoiser)
    path = save_policy(policy, tmp_path / "ckpt", metadata={"epoch": 3, "task": "lift"})
    assert sorted(p.name for p in path.iterdir()) == [META_FILE, WEIGHTS_FILE]
    loaded = load_policy(path, "cpu")
    assert not loaded.training
    assert loaded.config == policy.config
    obs = random_obs(policy.config.shape_meta, B=2, To=2, seed=1)
    a, b = _sample(policy, obs), _sample(loaded, obs)
    assert torch.equal(a["action_pred"], b["action_pred"])
    for key, stats in policy.normalizer.stats.items():
        for name, value in stats.items():
            assert np.array_equal(loaded.normalizer.stats[key][name], value)
    document = read_checkpoint_json(path)
    assert document["format_version"] == FORMAT_VERSION
    assert document["metadata"] == {"epoch": 3, "task": "lift"}
    assert document["config"]["shape_meta"]["obs"][keys.AGENTVIEW_IMAGE]["type"] == "rgb"


def test_saved_weights_are_float32_even_from_a_bf16_policy(tmp_path):
    policy = _policy()
    reference = {k: v.clone() for k, v in policy.state_dict().items()}
    policy.to_compute_dtype(torch.bfloat16)
    path = save_policy(policy, tmp_path / "ckpt")
    tensors = load_file(str(path / WEIGHTS_FILE))
    assert all(t.dtype == torch.float32 for t in tensors.values())
    name = "denoiser.head.1.weight"
    assert torch.allclose(tensors[name], reference[name], atol=1e-2)


def test_half_weights_halve_the_file_and_load_as_the_rounded_float32_policy(tmp_path):
    policy = _policy()
    full = save_policy(policy, tmp_path / "full", {"epoch": 3})
    assert main(["--half-weights", str(full), str(tmp_path / "half")]) == 0
    half = tmp_path / "half"
    stored = load_file(str(half / WEIGHTS_FILE))
    assert stored["denoiser.head.1.weight"].dtype == torch.float16
    assert all(t.dtype == torch.float32 for k, t in stored.items() if k.startswith("normalizer."))
    ratio = (half / WEIGHTS_FILE).stat().st_size / (full / WEIGHTS_FILE).stat().st_size
    assert 0.45 < ratio < 0.6
    assert read_checkpoint_json(half)["metadata"] == {"epoch": 3, "weights_stored_as": "float16"}
    loaded = load_policy(half)
    for name, value in loaded.state_dict().items():
        assert value.dtype == policy.state_dict()[name].dtype
        rounded = policy.state_dict()[name]
        if value.is_floating_point() and not name.startswith("normalizer."):
            rounded = rounded.half().float()
        assert torch.equal(value, rounded), name
    obs = random_obs(policy.config.shape_meta, B=2, To=2, seed=1)
    a, b = _sample(loaded, obs), _sample(policy, obs)
    assert torch.allclose(a["action"], b["action"], atol=5e-2)


def test_half_weights_refuse_a_damaged_source_and_keep_the_hash(tmp_path, capsys):
    full = save_policy(_policy(), tmp_path / "full")
    half = save_half_weights(full, tmp_path / "half")
    with open(half / WEIGHTS_FILE, "r+b") as handle:  # the copy is hashed like any checkpoint
        handle.seek(-3, os.SEEK_END)
        handle.write(b"\x00\x01\x02")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_policy(half)
    with open(full / WEIGHTS_FILE, "r+b") as handle:
        handle.seek(-3, os.SEEK_END)
        handle.write(b"\x00\x01\x02")
    assert main(["--half-weights", str(full), str(tmp_path / "other")]) == 2
    assert "corrupt" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


def test_ema_weights_save_as_tensors_and_follow_the_schedule(tmp_path):
    policy = _policy()
    ema = EMA(policy, power=0.75, max_decay=0.9999)
    assert ema.decay(0) == ema.decay(1) == 0.0  # the reference's first two updates copy
    assert ema.decay(10) == pytest.approx(1 - 10**-0.75)
    assert ema.decay(10**9) == 0.9999
    name, param = next(iter(policy.named_parameters()))
    for _ in range(2):
        with torch.no_grad():
            for p in policy.parameters():
                p.add_(1.0)
        ema.update(policy)  # decay 0: copies
        assert torch.equal(dict(ema.averaged.named_parameters())[name], param)
    before = dict(ema.averaged.named_parameters())[name].clone()
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(1.0)
    ema.update(policy)  # decay 1 - 2**-0.75 ~ 0.405: moves 59.5% of the way
    moved = dict(ema.averaged.named_parameters())[name] - before
    assert torch.allclose(moved, torch.full_like(moved, 2**-0.75), atol=1e-5)
    save_file(ema.state_dict(), str(tmp_path / "ema.safetensors"))
    again = EMA(_policy(seed=1))
    again.load_state_dict(load_file(str(tmp_path / "ema.safetensors")))
    assert again.step == 3
    assert torch.equal(dict(again.averaged.named_parameters())[name], before + moved)


# ---------------------------------------------------------------------------------------------
# Golden outputs
# ---------------------------------------------------------------------------------------------


def test_golden_sampler_outputs_are_unchanged():
    """Regenerate with `python -m dp_ros.policy.golden test/policy/golden/tiny_policy.json`."""
    expected = json.loads(GOLDEN_FILE.read_text())
    assert len(expected["cases"]) == len(golden.CASES)
    for case in expected["cases"]:
        policy = golden.golden_policy(case["denoiser"], case["sampler"])
        got = golden.sample_case(policy, case["sampler"], case["num_inference_steps"])
        want = np.asarray(case["action_pred"], dtype=np.float32)
        assert got.shape == want.shape == (golden.BATCH, 8, 7)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5, err_msg=str(case)[:80])


def test_golden_policy_does_not_disturb_the_global_rng():
    torch.manual_seed(42)
    expected = torch.rand(3)
    torch.manual_seed(42)
    golden.golden_policy("unet")
    assert torch.equal(torch.rand(3), expected)


# ---------------------------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def checkpoint(tmp_path):
    return save_policy(_policy(), tmp_path / "ckpt")


def _edit_json(path, edit):
    document = json.loads((path / META_FILE).read_text())
    edit(document)
    (path / META_FILE).write_text(json.dumps(document))


def test_missing_directory_or_files_are_refused(tmp_path, checkpoint):
    with pytest.raises(CheckpointError, match=r"policy\.json: missing"):
        load_policy(tmp_path / "nowhere")
    (checkpoint / WEIGHTS_FILE).unlink()
    with pytest.raises(CheckpointError, match=r"policy\.safetensors: missing"):
        load_policy(checkpoint)


def test_unknown_format_version_is_refused(checkpoint):
    _edit_json(checkpoint, lambda d: d.update(format_version=99))
    with pytest.raises(CheckpointError, match=r"format_version=99 is not supported"):
        load_policy(checkpoint)


def test_not_json_is_refused(checkpoint):
    (checkpoint / META_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match=r"not valid JSON"):
        load_policy(checkpoint)


def test_bit_flip_in_weights_is_refused(checkpoint):
    data = bytearray((checkpoint / WEIGHTS_FILE).read_bytes())
    data[-10] ^= 0xFF
    (checkpoint / WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"corrupt \(SHA-256 differs"):
        load_policy(checkpoint)


def _rehash(checkpoint):
    """What a tamperer who also edits policy.json does: record the new weights' hash."""
    digest = hashlib.sha256((checkpoint / WEIGHTS_FILE).read_bytes()).hexdigest()
    _edit_json(checkpoint, lambda d: d.update(weights_sha256=digest))


def test_truncated_weights_are_refused_even_with_a_matching_hash(checkpoint):
    data = (checkpoint / WEIGHTS_FILE).read_bytes()
    (checkpoint / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    _rehash(checkpoint)
    with pytest.raises(CheckpointError, match=r"unreadable safetensors file"):
        load_policy(checkpoint)


def test_config_that_does_not_match_the_weights_is_refused(checkpoint):
    _edit_json(checkpoint, lambda d: d["config"]["unet"].update(down_dims=[32, 128]))
    with pytest.raises(CheckpointError, match=r"tensor '.*' has shape .* the config expects"):
        load_policy(checkpoint)


def test_config_with_another_denoiser_is_refused_naming_tensors(checkpoint):
    _edit_json(checkpoint, lambda d: d["config"].update(denoiser="transformer"))
    with pytest.raises(CheckpointError, match=r"missing tensors \['denoiser\."):
        load_policy(checkpoint)


def test_invalid_config_is_refused_with_the_field(checkpoint):
    _edit_json(checkpoint, lambda d: d["config"].update(n_action_steps=40))
    with pytest.raises(CheckpointError, match=r"bad config: PolicyConfig\.n_action_steps=40"):
        load_policy(checkpoint)
    _edit_json(checkpoint, lambda d: d["config"].update(n_action_steps=8, surprise=1))
    with pytest.raises(CheckpointError, match=r"bad config: .*\['surprise'\].*unknown"):
        load_policy(checkpoint)


def test_missing_and_unexpected_tensors_are_refused(checkpoint):
    tensors = load_file(str(checkpoint / WEIGHTS_FILE))
    for edit, pattern in [
        (
            lambda t: t.pop("normalizer.action.scale"),
            r"missing tensors \['normalizer\.action\.scale",
        ),
        (lambda t: t.update(extra=torch.zeros(1)), r"unexpected tensors \['extra'\]"),
    ]:
        changed = dict(tensors)
        edit(changed)
        save_file(changed, str(checkpoint / WEIGHTS_FILE))
        _rehash(checkpoint)
        with pytest.raises(CheckpointError, match=pattern):
            load_policy(checkpoint)


def test_normaliser_tensors_must_agree_with_recorded_stats(checkpoint):
    def shift(document):
        document["normalizer_stats"]["action"]["max"][0] += 1.0

    _edit_json(checkpoint, shift)
    with pytest.raises(CheckpointError, match=r"normaliser tensor 'action\.scale' disagrees"):
        load_policy(checkpoint)


def test_stats_with_wrong_shape_are_refused(checkpoint):
    _edit_json(checkpoint, lambda d: d["normalizer_stats"]["action"].update(min=[0.0]))
    with pytest.raises(CheckpointError, match=r"bad normalizer_stats: .*\['action'\]\['min'\]"):
        load_policy(checkpoint)


def test_never_unpickles(checkpoint, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("torch.load called")

    monkeypatch.setattr(torch, "load", refuse)
    load_policy(checkpoint)


def test_consistency_student_round_trip_and_sampler_refusal(tmp_path):
    """A few-step student saves and loads like any policy, reproduces its samples under a seed,
    and refuses a sampler its network was not trained for."""
    policy = golden.golden_policy("unet", "consistency")
    path = save_policy(policy, tmp_path / "student")
    loaded = load_policy(path, "cpu")
    assert loaded.config == policy.config
    assert loaded.config.consistency.teacher_steps == 8
    obs = golden.golden_obs(policy.config)
    a, b = _sample(policy, obs), _sample(loaded, obs)
    assert torch.equal(a["action_pred"], b["action_pred"])
    with torch.inference_mode(), pytest.raises(ValueError, match="sampler 'ddim' cannot sample"):
        loaded.predict_action(obs, sampler="ddim")


@pytest.mark.parametrize("edit", ["remove", "null", "number"])
def test_weights_without_a_recorded_hash_are_refused_naming_the_field(checkpoint, edit):
    # Tampered weights (a bit flipped) with the hash field gone: today's loader took them.
    data = bytearray((checkpoint / WEIGHTS_FILE).read_bytes())
    data[-10] ^= 0x01
    (checkpoint / WEIGHTS_FILE).write_bytes(bytes(data))
    change = {
        "remove": lambda d: d.pop("weights_sha256"),
        "null": lambda d: d.update(weights_sha256=None),
        "number": lambda d: d.update(weights_sha256=5),
    }[edit]
    _edit_json(checkpoint, change)
    with pytest.raises(CheckpointError, match=r"field weights_sha256 is missing .*--record-hash"):
        load_policy(checkpoint)


def test_recording_the_hash_is_the_explicit_escape_for_old_checkpoints(checkpoint):
    _edit_json(checkpoint, lambda d: d.pop("weights_sha256"))
    env = dict(os.environ)
    command = [sys.executable, "-m", "dp_ros.policy.checkpoint", "--record-hash", str(checkpoint)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    recorded = read_checkpoint_json(checkpoint)["weights_sha256"]
    assert recorded == hashlib.sha256((checkpoint / WEIGHTS_FILE).read_bytes()).hexdigest()
    load_policy(checkpoint)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_naming_the_tensor(checkpoint, value):
    tensors = load_file(str(checkpoint / WEIGHTS_FILE))
    name = next(n for n in tensors if n.startswith("denoiser.") and tensors[n].numel() > 1)
    tensors[name][0] = value
    save_file(tensors, str(checkpoint / WEIGHTS_FILE))
    _rehash(checkpoint)
    with pytest.raises(CheckpointError, match=rf"tensor '{name}' holds \d+ NaN or infinite"):
        load_policy(checkpoint)
    # Nor can the escape hatch bless them.
    with pytest.raises(CheckpointError, match=rf"tensor '{name}'"):
        record_weights_hash(checkpoint)


@pytest.mark.parametrize("obs", [[1, 2], 3, "x", None, {"a": 1}])
def test_malformed_shape_meta_is_refused_naming_the_field(checkpoint, obs):
    _edit_json(checkpoint, lambda d: d["config"]["shape_meta"].update(obs=obs))
    with pytest.raises(CheckpointError, match=r"bad config: ShapeMeta\.obs"):
        load_policy(checkpoint)


def test_weights_may_be_a_symlink_out_of_the_directory(checkpoint, tmp_path):
    # Documented choice: the recorded hash binds the content, wherever the file lies.
    elsewhere = tmp_path / "elsewhere.safetensors"
    (checkpoint / WEIGHTS_FILE).rename(elsewhere)
    (checkpoint / WEIGHTS_FILE).symlink_to(elsewhere)
    load_policy(checkpoint)
    data = bytearray(elsewhere.read_bytes())
    data[-10] ^= 0x01
    elsewhere.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"corrupt \(SHA-256 differs"):
        load_policy(checkpoint)
