"""Everything that can be wrong with a training run's inputs, found before training starts.

`check_inputs` raises TrainConfigError naming the first input that cannot work: an unwritable
or already-used output directory, a missing or empty dataset, observation keys the dataset lacks,
a chunk of the data it reads that is missing or does not decode (named by array and episode),
shapes that differ from the ones the config expects, a policy config that does not validate, and
a resume point that is missing or was trained with another policy.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dp_ros.data.store import EpisodeStore, StoreError
from dp_ros.data.store_check import verify_store
from dp_ros.keys import ACTION, is_image_key
from dp_ros.policy import ConfigError, PolicyConfig, tiny_config
from dp_ros.policy.checkpoint import CheckpointError, read_checkpoint_json
from dp_ros.policy.deployment import DEFAULT_CONTROL_PERIOD_S, deployment_metadata
from dp_ros.train import state as train_state
from dp_ros.train.config import TrainConfig, TrainConfigError
from dp_ros.train.run_files import RunPaths

EvalHook = Callable[[Path], Mapping[str, float]]


@dataclass(frozen=True)
class TrainInputs:
    """What the checks found: the observation keys, the dataset's shapes, the policy to build
    and where to resume from (None: a new run)."""

    obs_keys: tuple[str, ...]
    shape_meta: dict[str, Any]
    policy_config: PolicyConfig
    resume_dir: Path | None
    deployment: dict[str, Any]  # policy.json metadata.deployment (dp_ros.policy.deployment)


def check_inputs(config: TrainConfig, paths: RunPaths) -> TrainInputs:
    """Raise TrainConfigError naming the first input that cannot work."""
    _check_output_dir(config, paths)
    store = _open_dataset(config)
    obs_keys = _check_obs_keys(config, store)
    _verify_dataset(config, store, obs_keys)
    shape_meta = _dataset_shape_meta(store, obs_keys)
    _check_expected_shapes(config, shape_meta)
    policy_config = _build_policy_config(config, shape_meta)
    resume_dir = _check_resume_point(config, paths, policy_config)
    deployment = _deployment(store, obs_keys)
    return TrainInputs(obs_keys, shape_meta, policy_config, resume_dir, deployment)


def _deployment(store: EpisodeStore, obs_keys: tuple[str, ...]) -> dict[str, Any]:
    """Task, per-step observation shapes as stored, control period, action convention."""
    metadata = [store.episode_metadata(i) for i in range(store.n_episodes)]
    periods = {m["control_period"] for m in metadata if "control_period" in m}
    period = periods.pop() if len(periods) == 1 else DEFAULT_CONTROL_PERIOD_S
    shapes = {key: store.array(key).shape[1:] for key in obs_keys}
    return deployment_metadata(shapes, [str(m.get("task", "")) for m in metadata], period)


def _check_output_dir(config: TrainConfig, paths: RunPaths) -> None:
    root = paths.root
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write_probe.{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise TrainConfigError(
            f"output.dir={str(root)!r} is not writable: {error.strerror or error}"
        ) from error
    existing = paths.checkpoints.is_dir() and any(paths.checkpoints.iterdir())
    output = config.output
    if existing and output.resume is None and not output.overwrite:
        raise TrainConfigError(
            f"output.dir={str(root)!r} already holds checkpoints: set output.resume=last to "
            "continue that run, or output.overwrite=true to start over in it"
        )


def _open_dataset(config: TrainConfig) -> EpisodeStore:
    path = Path(config.dataset.path)
    if not path.exists():
        raise TrainConfigError(f"dataset.path={str(path)!r} does not exist")
    try:
        store = EpisodeStore.open(path, mode="r")
        verify_store(store, ())  # the episode index parses
    except (StoreError, OSError) as error:
        raise TrainConfigError(f"dataset.path={str(path)!r}: {error}") from error
    if store.n_episodes == 0:
        raise TrainConfigError(f"dataset.path={str(path)!r} is empty: no finished episodes")
    return store


def _check_obs_keys(config: TrainConfig, store: EpisodeStore) -> tuple[str, ...]:
    dataset = config.dataset
    if dataset.obs_keys is not None:
        wanted, source = list(dataset.obs_keys), "dataset.obs_keys"
    elif dataset.shape_meta is not None:
        wanted, source = list(dataset.shape_meta.get("obs", {})), "dataset.shape_meta.obs"
    else:
        wanted, source = [k for k in store.keys if k != ACTION], "the dataset"
    missing = [key for key in (*wanted, ACTION) if key not in store.keys]
    if missing:
        raise TrainConfigError(
            f"{source} names key(s) {missing} that dataset {dataset.path} lacks "
            f"(it has {list(store.keys)})"
        )
    if ACTION in wanted or not wanted:
        raise TrainConfigError(f"{source}={wanted} must name observation keys, not 'action'")
    return tuple(wanted)


def _verify_dataset(config: TrainConfig, store: EpisodeStore, obs_keys: tuple[str, ...]) -> None:
    """Every chunk the run reads exists and decodes (a lost chunk file reads back as zeros)."""
    try:
        verify_store(store, (*obs_keys, ACTION))
    except StoreError as error:
        raise TrainConfigError(f"dataset.path={str(config.dataset.path)!r}: {error}") from error


def _dataset_shape_meta(store: EpisodeStore, obs_keys: tuple[str, ...]) -> dict[str, Any]:
    """Shape meta read from the store's array shapes, without loading any frames."""
    obs = {}
    for key in obs_keys:
        frame = store.array(key).shape[1:]
        if is_image_key(key):
            if len(frame) != 3:
                raise TrainConfigError(f"dataset key {key!r}: images must be (H, W, C)")
            obs[key] = {"shape": [frame[2], frame[0], frame[1]], "type": "rgb"}
        else:
            if len(frame) != 1:
                raise TrainConfigError(f"dataset key {key!r}: low-dim frames must be (D,)")
            obs[key] = {"shape": [frame[0]], "type": "low_dim"}
    return {"obs": obs, "action": {"shape": list(store.array(ACTION).shape[1:])}}


def _check_expected_shapes(config: TrainConfig, shape_meta: dict[str, Any]) -> None:
    expected = config.dataset.shape_meta
    if expected is None:
        return
    got = shape_meta
    for key, spec in expected.get("obs", {}).items():
        want = list(spec.get("shape", []))
        have = got["obs"].get(key, {}).get("shape")
        if have != want:
            raise TrainConfigError(
                f"dataset.shape_meta.obs.{key}.shape={want} does not match the dataset, "
                f"which has {have}"
            )
    want_action = list(expected.get("action", {}).get("shape", got["action"]["shape"]))
    if want_action != got["action"]["shape"]:
        raise TrainConfigError(
            f"dataset.shape_meta.action.shape={want_action} does not match the dataset, "
            f"which has {got['action']['shape']}"
        )


def _build_policy_config(config: TrainConfig, shape_meta: dict[str, Any]) -> PolicyConfig:
    """The preset, with the YAML's policy fields merged over it, on the dataset's shapes."""
    overrides = dict(config.policy)
    preset = overrides.pop("preset", "default")
    try:
        if overrides.get("objective") == "consistency":
            base = _student_base(overrides)
        elif preset == "tiny":
            base = tiny_config(shape_meta).to_dict()
        else:
            base = PolicyConfig(shape_meta=shape_meta).to_dict()
        merged = _deep_merge(base, overrides)
        merged["shape_meta"] = shape_meta
        return PolicyConfig.from_dict(merged)
    except ConfigError as error:
        raise TrainConfigError(f"policy: {error}") from error


def _student_base(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A consistency student is its teacher's architecture (it starts from its weights) with a
    consistency sampler; the teacher's DDIM step count is the student's time grid."""
    settings = overrides.get("consistency") or {}
    teacher_path = settings.get("teacher") if isinstance(settings, Mapping) else None
    if not teacher_path:
        raise TrainConfigError(
            "policy.consistency.teacher is empty: objective 'consistency' distils a trained "
            "diffusion checkpoint; name its directory"
        )
    try:
        teacher = read_checkpoint_json(teacher_path)["config"]
    except CheckpointError as error:
        raise TrainConfigError(f"policy.consistency.teacher={teacher_path!r}: {error}") from error
    if teacher.get("objective", "diffusion") != "diffusion":
        raise TrainConfigError(
            f"policy.consistency.teacher={teacher_path!r} was trained with objective "
            f"{teacher.get('objective')!r}; a teacher must be a diffusion policy"
        )
    base = dict(teacher)
    teacher_steps = teacher.get("sampler", {}).get("num_inference_steps", 16)
    base["consistency"] = {"teacher": str(teacher_path), "teacher_steps": teacher_steps}
    base["sampler"] = {"name": "consistency", "num_inference_steps": 1}
    return base


def _check_resume_point(
    config: TrainConfig, paths: RunPaths, policy_config: PolicyConfig
) -> Path | None:
    resume = config.output.resume
    if resume is None:
        return None
    directory = paths.checkpoints / "last" if resume == "last" else Path(resume)
    if not directory.is_dir():
        raise TrainConfigError(f"output.resume={resume!r}: no checkpoint at {directory}")
    for name in (train_state.STATE_JSON, train_state.STATE_TENSORS):
        if not (directory / name).is_file():
            raise TrainConfigError(
                f"output.resume={resume!r}: {directory} has no {name} (policy-only "
                "checkpoints such as 'best' cannot be resumed)"
            )
    try:
        saved = read_checkpoint_json(directory)["config"]
    except CheckpointError as error:
        raise TrainConfigError(f"output.resume={resume!r}: {error}") from error
    mine = policy_config.to_dict()
    if saved != mine:
        diff = sorted(k for k in set(saved) | set(mine) if saved.get(k) != mine.get(k))
        raise TrainConfigError(
            f"output.resume={resume!r}: the checkpoint's policy differs from this config "
            f"in {diff} (shape meta or architecture changed)"
        )
    return directory


def resolve_eval_hook(spec: str, kwargs: Mapping[str, Any]) -> EvalHook:
    """Import the factory named "package.module.function" (or "...:function") and call it."""
    module_name, _, attribute = spec.replace(":", ".").rpartition(".")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise TrainConfigError(f"eval.hook={spec!r} cannot be imported: {error}") from error
    hook = factory(**kwargs)
    if not callable(hook):
        raise TrainConfigError(f"eval.hook={spec!r} returned {hook!r}, not a callable")
    return hook


def _deep_merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
