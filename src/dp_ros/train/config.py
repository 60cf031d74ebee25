"""Training configuration: YAML -> validated dataclasses, with `section.field=value` overrides.

Every section validates itself in `__post_init__`; an error names the field as written in the
YAML (`training.epochs`), the value and the rule it broke. Unknown fields are errors too, so a
typo never silently falls back to a default. Values are parsed with `yaml.safe_load` (never
`eval`), and float fields accept YAML's `1e-4` (which YAML 1.1 reads as a string).

The `policy` section is a partial `PolicyConfig` (everything but `shape_meta`, which comes from
the dataset) on top of a preset: "default" (the paper's sizes) or "tiny" (`tiny_config`, for
tests and CPU smoke runs). It is checked against the dataset before training starts.

Defaults follow Diffusion Policy's robomimic configs: AdamW lr 1e-4, betas (0.95, 0.999),
weight decay 1e-6, 500 warm-up steps then cosine decay, EMA power 0.75 up to 0.9999.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

PRESETS = ("default", "tiny")
ACCELERATORS = ("auto", "cpu", "cuda", "gpu")
STRATEGIES = ("auto", "ddp")
PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed")
SCHEDULES = ("cosine", "constant")
BEST_MODES = ("min", "max")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


class TrainConfigError(ValueError):
    """A training configuration, or an input it names, that cannot work; says which and why."""


def _fail(section: str, name: str, value: Any, rule: str) -> None:
    raise TrainConfigError(f"{section}.{name}={value!r} is invalid: {rule}")


def _check(ok: bool, section: str, name: str, value: Any, rule: str) -> None:
    if not ok:
        _fail(section, name, value, rule)


@dataclass
class DatasetConfig:
    """Which episode store to train on, and how to split it."""

    SECTION: ClassVar[str] = "dataset"
    path: str = ""
    obs_keys: list[str] | None = None  # None: every key but `action`
    val_ratio: float = 0.02
    max_train_episodes: int | None = None
    image_cache_gb: float = 8.0  # images above this size are read from disk per sample
    shape_meta: dict[str, Any] | None = None  # expected shapes; a dataset that differs is refused

    def __post_init__(self) -> None:
        s = self.SECTION
        _check(bool(self.path), s, "path", self.path, "is required (an episode store)")
        _check(0.0 <= self.val_ratio < 1.0, s, "val_ratio", self.val_ratio, "must be in [0, 1)")
        if self.max_train_episodes is not None:
            _check(self.max_train_episodes >= 1, s, "max_train_episodes",
                   self.max_train_episodes, "must be >= 1 or null")  # fmt: skip
        _check(self.image_cache_gb >= 0, s, "image_cache_gb", self.image_cache_gb, "must be >= 0")
        if self.obs_keys is not None:
            _check(len(self.obs_keys) > 0, s, "obs_keys", self.obs_keys, "must not be empty")
            _check(len(set(self.obs_keys)) == len(self.obs_keys), s, "obs_keys", self.obs_keys,
                   "must not repeat a key")  # fmt: skip


@dataclass
class OptimConfig:
    """AdamW with linear warm-up and cosine (or constant) learning rate; gradient clipping.

    ``weight_decay`` applies to every parameter, except with a transformer denoiser, whose
    weight matrices decay by ``transformer_weight_decay`` and whose biases, LayerNorms and
    position embeddings do not decay (the reference implementation's groups; its transformer
    recipes also use betas (0.9, 0.95) and horizon 10, as
    config/train/lift_state_transformer_cpu.yaml does).
    """

    SECTION: ClassVar[str] = "optim"
    lr: float = 1.0e-4
    betas: tuple[float, float] = (0.95, 0.999)
    eps: float = 1.0e-8
    weight_decay: float = 1.0e-6
    transformer_weight_decay: float = 1.0e-3
    warmup_steps: int = 500
    schedule: str = "cosine"
    grad_clip_norm: float | None = 1.0

    def __post_init__(self) -> None:
        s = self.SECTION
        _check(self.lr > 0, s, "lr", self.lr, "must be > 0")
        _check(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), s, "betas",
               self.betas, "must be two numbers in [0, 1)")  # fmt: skip
        _check(self.eps > 0, s, "eps", self.eps, "must be > 0")
        _check(self.weight_decay >= 0, s, "weight_decay", self.weight_decay, "must be >= 0")
        _check(self.transformer_weight_decay >= 0, s, "transformer_weight_decay",
               self.transformer_weight_decay, "must be >= 0")  # fmt: skip
        _check(self.warmup_steps >= 0, s, "warmup_steps", self.warmup_steps, "must be >= 0")
        _check(self.schedule in SCHEDULES, s, "schedule", self.schedule,
               f"must be one of {list(SCHEDULES)}")  # fmt: skip
        if self.grad_clip_norm is not None:
            _check(self.grad_clip_norm > 0, s, "grad_clip_norm", self.grad_clip_norm,
                   "must be > 0 or null (no clipping)")  # fmt: skip


@dataclass
class EmaConfig:
    """EMA of the weights; the average is what checkpoints hold as the policy."""

    SECTION: ClassVar[str] = "ema"
    enabled: bool = True
    power: float = 0.75
    max_decay: float = 0.9999
    min_decay: float = 0.0

    def __post_init__(self) -> None:
        s = self.SECTION
        _check(self.power > 0, s, "power", self.power, "must be > 0")
        _check(0 <= self.min_decay <= self.max_decay < 1, s, "max_decay", self.max_decay,
               f"needs 0 <= min_decay ({self.min_decay}) <= max_decay < 1")  # fmt: skip


@dataclass
class TrainingConfig:
    """The loop: epochs, batches, validation and checkpoint cadence."""

    SECTION: ClassVar[str] = "training"
    seed: int = 42
    epochs: int = 100
    max_steps: int | None = None  # stop early after this many optimiser steps (resumable)
    batch_size: int = 64
    val_batch_size: int | None = None  # None: batch_size
    num_workers: int = 2
    val_every_epochs: int = 1
    val_max_batches: int | None = None
    action_mse_batches: int = 1  # validation batches whose actions are sampled and compared
    val_at_start: bool = False  # validate the untrained policy too (the curve's baseline)
    checkpoint_every_epochs: int = 10
    log_every_steps: int = 10
    best_metric: str = "val/loss"
    best_mode: str = "min"
    progress_bar: bool = True

    def __post_init__(self) -> None:
        s = self.SECTION
        for name in ("epochs", "batch_size", "val_every_epochs", "checkpoint_every_epochs",
                     "log_every_steps"):  # fmt: skip
            _check(getattr(self, name) >= 1, s, name, getattr(self, name), "must be >= 1")
        for name in ("max_steps", "val_batch_size", "val_max_batches"):
            value = getattr(self, name)
            _check(value is None or value >= 1, s, name, value, "must be >= 1 or null")
        _check(self.num_workers >= 0, s, "num_workers", self.num_workers, "must be >= 0")
        _check(self.action_mse_batches >= 0, s, "action_mse_batches", self.action_mse_batches,
               "must be >= 0")  # fmt: skip
        _check(self.best_mode in BEST_MODES, s, "best_mode", self.best_mode,
               f"must be one of {list(BEST_MODES)}")  # fmt: skip


@dataclass
class FabricConfig:
    """Devices through Lightning Fabric: CPU, one GPU, N GPUs, several nodes (DDP)."""

    SECTION: ClassVar[str] = "fabric"
    accelerator: str = "auto"
    devices: int | str = 1  # a count, or "auto"
    num_nodes: int = 1
    strategy: str = "auto"  # "auto": DDP when more than one process
    precision: str = "auto"  # "auto": bf16-mixed on GPU, 32-true on CPU

    def __post_init__(self) -> None:
        s = self.SECTION
        _check(self.accelerator in ACCELERATORS, s, "accelerator", self.accelerator,
               f"must be one of {list(ACCELERATORS)}")  # fmt: skip
        _check(self.devices == "auto" or (isinstance(self.devices, int) and self.devices >= 1),
               s, "devices", self.devices, "must be a count >= 1 or 'auto'")  # fmt: skip
        _check(self.num_nodes >= 1, s, "num_nodes", self.num_nodes, "must be >= 1")
        _check(self.strategy in STRATEGIES, s, "strategy", self.strategy,
               f"must be one of {list(STRATEGIES)}")  # fmt: skip
        _check(self.precision in PRECISIONS, s, "precision", self.precision,
               f"must be one of {list(PRECISIONS)}")  # fmt: skip


@dataclass
class OutputConfig:
    """Where the run writes, and what it resumes from."""

    SECTION: ClassVar[str] = "output"
    dir: str = "outputs/train"
    resume: str | None = None  # "last", or a checkpoint directory
    overwrite: bool = False  # allow a fresh run into a directory that has checkpoints
    final_checkpoint: bool = True  # false: no `last` at the end (benchmarks; not resumable)

    def __post_init__(self) -> None:
        _check(bool(self.dir), self.SECTION, "dir", self.dir, "is required")


@dataclass
class EvalConfig:
    """An optional evaluation hook run on saved checkpoints (e.g. simulated success rate).

    `hook` names a factory, "package.module.function" or "package.module:function"; it is
    called with `kwargs` and returns a callable (checkpoint_dir) -> dict[str, float].
    """

    SECTION: ClassVar[str] = "eval"
    hook: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    every_epochs: int = 10

    def __post_init__(self) -> None:
        s = self.SECTION
        if self.hook is not None:
            _check(bool(re.match(r"^[\w.]+[.:]\w+$", self.hook)), s, "hook", self.hook,
                   "must be 'package.module.function' or 'package.module:function'")  # fmt: skip
        _check(self.every_epochs >= 1, s, "every_epochs", self.every_epochs, "must be >= 1")


@dataclass
class TrainConfig:
    """The whole training configuration (one YAML file)."""

    dataset: DatasetConfig
    policy: dict[str, Any] = field(default_factory=dict)
    optim: OptimConfig = field(default_factory=OptimConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    fabric: FabricConfig = field(default_factory=FabricConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        preset = self.policy.get("preset", "default")
        _check(preset in PRESETS, "policy", "preset", preset, f"must be one of {list(PRESETS)}")
        _check("shape_meta" not in self.policy, "policy", "shape_meta", "...",
               "comes from the dataset; put expected shapes in dataset.shape_meta")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-able dict; `TrainConfig.from_dict` inverts it."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        return _build(cls, data, "")

    @classmethod
    def from_yaml(
        cls, path: str | Path | None, overrides: Sequence[str] = ()
    ) -> TrainConfig:  # fmt: skip
        """Load a YAML file (or start empty with None) and apply `a.b=value` overrides."""
        data: dict[str, Any] = {}
        if path is not None:
            path = Path(path)
            if not path.is_file():
                raise TrainConfigError(f"config file {path} does not exist")
            try:
                loaded = yaml.safe_load(path.read_text())
            except yaml.YAMLError as error:  # syntax errors and tags safe_load refuses
                problem = " ".join(str(error).split())
                raise TrainConfigError(f"config file {path}: not valid YAML: {problem}") from error
            except (OSError, UnicodeDecodeError) as error:
                raise TrainConfigError(f"config file {path}: unreadable: {error}") from error
            if not isinstance(loaded, dict):
                raise TrainConfigError(f"config file {path} must hold a mapping at the top")
            data = loaded
        for override in overrides:
            apply_override(data, override)
        return cls.from_dict(data)


def parse_value(text: str) -> Any:
    """A command-line value as YAML (numbers, lists, null, true); `1e-4` is a float too."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise TrainConfigError(f"cannot parse value {text!r}: {error}") from error
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        return float(value)
    return value


def apply_override(data: dict[str, Any], override: str) -> None:
    """Set `section.sub.field=value` in a nested dict, creating sections as needed."""
    if "=" not in override:
        raise TrainConfigError(f"override {override!r} must look like section.field=value")
    dotted, text = override.split("=", 1)
    parts = dotted.strip().split(".")
    if not all(parts):
        raise TrainConfigError(f"override {override!r}: empty name in {dotted!r}")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise TrainConfigError(f"override {override!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = parse_value(text)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _build(cls: type, data: Any, where: str) -> Any:
    """Instantiate dataclass `cls` from a dict, coercing values to the annotated types."""
    if not isinstance(data, Mapping):
        raise TrainConfigError(f"{where or 'config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise TrainConfigError(
            f"{where or 'config'}: unknown field(s) {unknown}; known: {sorted(fields)}"
        )
    if cls is TrainConfig and "dataset" not in data:
        raise TrainConfigError("dataset.path is required (an episode store)")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}.{name}" if where else name)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """`value` as type `hint` (dataclass, int, float, str, bool, list, tuple, dict, unions)."""
    if dataclasses.is_dataclass(hint):
        return _build(hint, value if value is not None else {}, where)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(option, value, where)
            except TrainConfigError as error:
                errors.append(str(error))
        raise TrainConfigError(errors[0] if len(errors) == 1 else f"{where}={value!r}: "
                               f"matches none of {[a for a in args]}")  # fmt: skip
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is float:
        number = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str) and _NUMBER.match(value.strip()):
            number = float(value)
        if number is not None:
            if not math.isfinite(number):  # YAML's .inf and .nan parse as floats
                raise TrainConfigError(f"{where}={value!r} is invalid: must be finite")
            return number
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin in (list, tuple):
        if isinstance(value, list | tuple):
            item_hints = args if origin is tuple else (args[0],) * len(value)
            if origin is tuple and len(args) != len(value):
                raise TrainConfigError(f"{where}={value!r} is invalid: needs {len(args)} items")
            items = [_coerce(h, v, f"{where}[{i}]") for i, (h, v) in
                     enumerate(zip(item_hints, value, strict=True))]  # fmt: skip
            return origin(items)
    elif origin is dict:
        if isinstance(value, Mapping):
            return dict(value)
    name = getattr(hint, "__name__", str(hint))
    raise TrainConfigError(f"{where}={value!r} is invalid: must be of type {name}")
