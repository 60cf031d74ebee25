"""Policy checkpoints: a directory with ``policy.safetensors`` and ``policy.json``.

The JSON holds the format version, the policy config (shape meta included), the normaliser
statistics, the SHA-256 of the weights file and free-form metadata. Weights are safetensors, so
loading never unpickles (no ``torch.load``). Loading refuses, with a ``CheckpointError`` naming
what is wrong: an unknown format version, a config that does not validate, a missing or
unexpected tensor, a shape or dtype that does not match the config, a weights file whose hash
differs from the one recorded or has none recorded, a tensor holding NaN or infinity, and
normaliser tensors that disagree with the recorded statistics.

The hash is required: without it, tampered or damaged weights would load silently. A checkpoint
written before the field existed is loaded only after someone records the hash on purpose
(`python -m dp_ros.policy.checkpoint --record-hash DIR`, which checks the weights first). The
weights file may be a symlink, also out of the directory: the hash in policy.json binds its
content, wherever it lies.

NaN weights are checked at load, not left to the output guard: fp16-packed kernels turn them
into finite numbers, so a broken policy would publish finite, meaningless chunks.

Weights are float32, or float16 for the network and float32 for the normaliser in a checkpoint
made for shipping (`python -m dp_ros.policy.checkpoint --half-weights SRC DST`); either loads
into a float32 policy.

Where a path is expected, the name of a checkpoint shipped with dp_ros (`bundled_checkpoints()`,
e.g. `lift_state`) works too.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from dp_ros.files import atomic_write
from dp_ros.policy.config import PolicyConfig
from dp_ros.policy.normalizer import stats_from_jsonable, stats_to_jsonable, validate_stats
from dp_ros.policy.policy import DiffusionPolicy, make_policy
from dp_ros.policy.shape_meta import ConfigError

FORMAT_NAME = "dp_ros.policy"
FORMAT_VERSION = 1
WEIGHTS_FILE = "policy.safetensors"
META_FILE = "policy.json"
NORMALIZER_PREFIX = "normalizer."


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt or does not match the policy it claims to hold."""


def save_policy(
    policy: DiffusionPolicy,
    path: str | os.PathLike,
    metadata: Mapping[str, Any] | None = None,
    half_weights: bool = False,
) -> Path:
    """Write ``path/policy.safetensors`` and ``path/policy.json``; returns the directory.

    Weights are saved as float32 whatever dtype the policy computes in, so a checkpoint does
    not depend on how the runner that produced it was configured. ``half_weights`` stores the
    network's weights as float16 instead, half the size on disk (for shipping); loading casts
    them back to float32, and the normaliser stays float32 because its maps are checked against
    the recorded statistics to 1e-6. Each file is written to a temporary name and renamed, so a
    crash never leaves a half-written checkpoint.
    """
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {
        name: tensor.detach()
        .to("cpu", _stored_dtype(name, tensor, half_weights))
        .contiguous()
        .clone()
        for name, tensor in policy.state_dict().items()
    }
    weights_path = directory / WEIGHTS_FILE
    atomic_write(weights_path, lambda tmp: save_file(tensors, str(tmp)))
    stats = policy.normalizer.stats
    document = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "config": policy.config.to_dict(),
        "normalizer_stats": stats_to_jsonable(stats) if stats else None,
        "weights_sha256": _sha256(weights_path),
        "metadata": dict(metadata or {}),
    }
    text = json.dumps(document, indent=2, sort_keys=False)
    atomic_write(directory / META_FILE, lambda tmp: Path(tmp).write_text(text + "\n"))
    return directory


def _stored_dtype(name: str, tensor: torch.Tensor, half_weights: bool) -> torch.dtype | None:
    if not tensor.is_floating_point():
        return None
    if half_weights and not name.startswith(NORMALIZER_PREFIX):
        return torch.float16
    return torch.float32


def save_half_weights(source: str | os.PathLike, destination: str | os.PathLike) -> Path:
    """Copy a checkpoint with its network weights stored as float16 (see save_policy)."""
    document = read_checkpoint_json(source)
    metadata = {**document.get("metadata", {}), "weights_stored_as": "float16"}
    return save_policy(load_policy(source), destination, metadata, half_weights=True)


def bundled_checkpoints() -> dict[str, Path]:
    """Checkpoints shipped in the package (dp_ros/assets/checkpoints/<name>), by name."""
    root = Path(str(resources.files("dp_ros"))) / "assets" / "checkpoints"
    if not root.is_dir():
        return {}
    return {entry.name: entry for entry in sorted(root.iterdir()) if (entry / META_FILE).is_file()}


def resolve_checkpoint(path_or_name: str | os.PathLike) -> Path:
    """A checkpoint directory: `path_or_name` itself, or the bundled checkpoint of that name."""
    path = Path(path_or_name)
    if not path.exists() and len(path.parts) == 1:
        return bundled_checkpoints().get(path.name, path)
    return path


def read_checkpoint_json(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``policy.json`` of a checkpoint directory, format checked."""
    meta_path = resolve_checkpoint(path) / META_FILE
    if not meta_path.is_file():
        raise CheckpointError(
            f"{meta_path}: missing (a checkpoint is a directory with {META_FILE}; bundled "
            f"ones: {', '.join(bundled_checkpoints()) or 'none'})"
        )
    try:
        document = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{meta_path}: not valid JSON ({exc})") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{meta_path}: 'format' is not {FORMAT_NAME!r}")
    version = document.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{meta_path}: format_version={version!r} is not supported (this code reads "
            f"{FORMAT_VERSION})"
        )
    return document


def load_policy(path: str | os.PathLike, device: str | torch.device = "cpu") -> DiffusionPolicy:
    """Rebuild the policy from a checkpoint directory, in eval mode on ``device``."""
    directory = resolve_checkpoint(path)
    document = read_checkpoint_json(directory)
    config = _config_from(document, directory)
    policy = make_policy(config)
    stats = _stats_from(document, config, directory)
    if stats is not None:
        policy.normalizer.stats = stats
    tensors = _read_weights(directory, document)
    _check_tensors(policy, tensors, directory)
    check_finite(tensors, directory / WEIGHTS_FILE)
    policy.load_state_dict(tensors, strict=True)
    if stats is not None:
        _check_normalizer(policy, directory)
    return policy.to(device).eval()


def _config_from(document: Mapping[str, Any], directory: Path) -> PolicyConfig:
    try:
        return PolicyConfig.from_dict(document["config"])
    except KeyError as exc:
        raise CheckpointError(f"{directory / META_FILE}: missing field {exc}") from exc
    except (ConfigError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{directory / META_FILE}: bad config: {exc}") from exc


def _stats_from(document: Mapping[str, Any], config: PolicyConfig, directory: Path):
    raw = document.get("normalizer_stats")
    if raw is None:
        return None
    try:
        return validate_stats(stats_from_jsonable(raw), config.shape_meta)
    except (ValueError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{directory / META_FILE}: bad normalizer_stats: {exc}") from exc


def _read_weights(directory: Path, document: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path}: missing")
    recorded = document.get("weights_sha256")
    if not isinstance(recorded, str) or not recorded:
        raise CheckpointError(
            f"{directory / META_FILE}: field weights_sha256 is missing or not a string "
            f"({recorded!r}): the weights cannot be verified. For a checkpoint written before "
            "the field existed, check where it came from, then run: python -m "
            f"dp_ros.policy.checkpoint --record-hash {directory}"
        )
    if recorded != _sha256(weights_path):
        raise CheckpointError(
            f"{weights_path}: corrupt (SHA-256 differs from the one recorded in {META_FILE})"
        )
    try:
        return load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights_path}: unreadable safetensors file ({exc})") from exc


def _check_tensors(
    policy: DiffusionPolicy, tensors: Mapping[str, torch.Tensor], directory: Path
) -> None:
    expected = policy.state_dict()
    where = directory / WEIGHTS_FILE
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise CheckpointError(f"{where}: missing tensors {missing[:5]} ({len(missing)} in all)")
    unexpected = sorted(set(tensors) - set(expected))
    if unexpected:
        raise CheckpointError(
            f"{where}: unexpected tensors {unexpected[:5]} ({len(unexpected)} in all); the "
            "config does not describe these weights"
        )
    for name, tensor in tensors.items():
        want = expected[name]
        if tuple(tensor.shape) != tuple(want.shape):
            raise CheckpointError(
                f"{where}: tensor {name!r} has shape {tuple(tensor.shape)}, the config expects "
                f"{tuple(want.shape)}"
            )
        if tensor.is_floating_point() != want.is_floating_point():
            raise CheckpointError(f"{where}: tensor {name!r} has dtype {tensor.dtype}")


def check_finite(tensors: Mapping[str, torch.Tensor], where: Path | str) -> None:
    """Refuse, naming the first such tensor, any floating tensor holding NaN or infinity."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(
                f"{where}: tensor {name!r} holds {bad} NaN or infinite values of {tensor.numel()}"
            )


def record_weights_hash(path: str | os.PathLike) -> str:
    """Record the SHA-256 of a checkpoint's weights in its policy.json (the explicit escape for
    checkpoints written before the field existed); refuses weights that do not load."""
    directory = resolve_checkpoint(path)
    document = read_checkpoint_json(directory)
    weights_path = directory / WEIGHTS_FILE
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights_path}: unreadable safetensors file ({exc})") from exc
    check_finite(tensors, weights_path)
    document["weights_sha256"] = _sha256(weights_path)
    text = json.dumps(document, indent=2, sort_keys=False)
    atomic_write(directory / META_FILE, lambda tmp: Path(tmp).write_text(text + "\n"))
    load_policy(directory)  # everything else a load checks must hold too
    return document["weights_sha256"]


def main(argv: list[str] | None = None) -> int:
    """`python -m dp_ros.policy.checkpoint --record-hash DIR | --half-weights SRC DST`."""
    import argparse

    parser = argparse.ArgumentParser(description="Maintenance of policy checkpoints.")
    verbs = parser.add_mutually_exclusive_group(required=True)
    verbs.add_argument("--record-hash", metavar="DIR", help=record_weights_hash.__doc__)
    verbs.add_argument(
        "--half-weights", nargs=2, metavar=("SRC", "DST"), help=save_half_weights.__doc__
    )
    args = parser.parse_args(argv)
    try:
        if args.record_hash:
            digest = record_weights_hash(args.record_hash)
            print(f"{args.record_hash}: weights_sha256 = {digest}")
        else:
            source, destination = args.half_weights
            save_half_weights(source, destination)
            size = (Path(destination) / WEIGHTS_FILE).stat().st_size
            print(f"{destination}: float16 weights, {size / 1e6:.1f} MB")
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _check_normalizer(policy: DiffusionPolicy, directory: Path) -> None:
    """The saved affine maps must be those the recorded statistics give."""
    loaded = {k: v.clone() for k, v in policy.normalizer.state_dict().items()}
    policy.normalizer.fit(policy.normalizer.stats)
    for name, value in policy.normalizer.state_dict().items():
        if not torch.allclose(value, loaded[name], rtol=1e-6, atol=1e-6):
            raise CheckpointError(
                f"{directory}: normaliser tensor {name!r} disagrees with normalizer_stats in "
                f"{META_FILE}"
            )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


if __name__ == "__main__":
    sys.exit(main())
