"""Trainer state for resuming: tensors in safetensors, everything else in JSON, never pickle.

A checkpoint directory holds the policy (`policy.safetensors` + `policy.json`, the EMA weights,
written by `dp_ros.policy.save_policy`) and, beside it:

    trainer_state.safetensors   model.* (training weights), ema.*, optimizer.<param>.<name>
    trainer_state.json          step, epoch, position in the epoch, optimiser hyper-parameters,
                                learning-rate scheduler, best metric, the training config
    rng_state.rank<R>.json      every random generator of process R (torch, CUDA, numpy, random)

With these, a resumed run draws the same noise, timesteps, crops and batches as the run that
stopped, so it continues the same loss curve.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from dp_ros.files import atomic_write, atomic_write_text

STATE_FORMAT = "dp_ros.trainer_state"
STATE_VERSION = 1
STATE_TENSORS = "trainer_state.safetensors"
STATE_JSON = "trainer_state.json"


class StateError(ValueError):
    """A trainer state that is missing, of another format, or does not fit the run."""


# ---- optimiser ---------------------------------------------------------------------------------


def optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split `optimizer.state_dict()` into tensors {"optimizer.<i>.<name>"} and a JSON part."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{name}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(index), {})[name] = value
    groups = [_jsonable(group) for group in state["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_flat(
    optimizer: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor], document: Mapping
) -> None:
    """Load what `optimizer_to_flat` wrote back into `optimizer`."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, values in document.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(values)
    groups = []
    for group in document["param_groups"]:
        # JSON turned tuples (betas) into lists; only `params` is a list in torch's format.
        groups.append({k: (tuple(v) if isinstance(v, list) and k != "params" else v)
                       for k, v in group.items()})  # fmt: skip
    optimizer.load_state_dict({"state": state, "param_groups": groups})


# ---- random generators -------------------------------------------------------------------------


def capture_rng() -> dict[str, Any]:
    """Every generator a training step may draw from, as JSON-able values."""
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    python_version, python_state, python_gauss = random.getstate()
    document: dict[str, Any] = {
        "torch_cpu": torch.get_rng_state().tolist(),
        "numpy": [np_name, np_keys.tolist(), int(np_pos), int(np_has_gauss), float(np_cached)],
        "python": [python_version, list(python_state), python_gauss],
    }
    if torch.cuda.is_available():
        document["torch_cuda"] = [state.tolist() for state in torch.cuda.get_rng_state_all()]
    return document


def restore_rng(document: Mapping[str, Any]) -> None:
    torch.set_rng_state(torch.tensor(document["torch_cpu"], dtype=torch.uint8))
    np_name, np_keys, np_pos, np_has_gauss, np_cached = document["numpy"]
    np.random.set_state((np_name, np.array(np_keys, dtype=np.uint32), np_pos, np_has_gauss,
                         np_cached))  # fmt: skip
    python_version, python_state, python_gauss = document["python"]
    random.setstate((python_version, tuple(python_state), python_gauss))
    if "torch_cuda" in document and torch.cuda.is_available():
        states = [torch.tensor(s, dtype=torch.uint8) for s in document["torch_cuda"]]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


def rng_file(directory: Path, rank: int) -> Path:
    return directory / f"rng_state.rank{rank}.json"


def save_rng(directory: Path, rank: int) -> None:
    atomic_write_text(rng_file(directory, rank), json.dumps(capture_rng()))


def load_rng(directory: Path, rank: int) -> bool:
    """Restore this rank's generators; False when the checkpoint has none for this rank."""
    path = rng_file(directory, rank)
    if not path.is_file():
        return False
    restore_rng(json.loads(path.read_text()))
    return True


# ---- the state files ---------------------------------------------------------------------------


def save_state(
    directory: Path,
    tensors: Mapping[str, torch.Tensor],
    document: Mapping[str, Any],
) -> None:
    """Write trainer_state.safetensors and trainer_state.json into `directory`."""
    cpu = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    atomic_write(directory / STATE_TENSORS, lambda tmp: save_file(cpu, tmp))
    full = {"format": STATE_FORMAT, "format_version": STATE_VERSION, **document}
    atomic_write_text(directory / STATE_JSON, json.dumps(_jsonable(full), indent=1))


def load_state(directory: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, document) of a checkpoint's trainer state; StateError says what is missing."""
    json_path, tensor_path = directory / STATE_JSON, directory / STATE_TENSORS
    for path in (json_path, tensor_path):
        if not path.is_file():
            raise StateError(
                f"cannot resume from {directory}: {path.name} is missing (a policy-only "
                "checkpoint such as 'best' holds no trainer state)"
            )
    document = json.loads(json_path.read_text())
    if document.get("format") != STATE_FORMAT or document.get("format_version") != STATE_VERSION:
        raise StateError(
            f"{json_path}: format {document.get('format')!r} version "
            f"{document.get('format_version')!r}; this code reads {STATE_FORMAT!r} "
            f"v{STATE_VERSION}"
        )
    return load_file(str(tensor_path)), document


def prefixed(prefix: str, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in tensors.items()}


def unprefixed(prefix: str, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    start = len(prefix) + 1
    return {k[start:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def publish_directory(staging: Path, final: Path) -> None:
    """Move a finished checkpoint into place, replacing an older one of the same name.

    The old directory is renamed aside first, so a crash leaves either the old or the new one
    whole (plus, at worst, a `.old-*` directory that the next save removes).
    """
    old = final.with_name(f".old-{final.name}")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    if old.exists():
        shutil.rmtree(old)


def _jsonable(value: Any) -> Any:
    """Tuples to lists, numpy and torch scalars to Python; anything else unknown is an error."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise StateError(f"cannot store {type(value).__name__} {value!r} in trainer_state.json")
