"""The shapes a policy reads and writes (ShapeMeta), and the validation rules every policy
config shares: a ConfigError names the field, the value and the rule it broke."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dp_ros import keys


class ConfigError(ValueError):
    """A configuration value broke a rule; the message names field, value and rule."""


def require(ok: bool, owner: str, name: str, value: Any, rule: str) -> None:
    if not ok:
        raise ConfigError(f"{owner}.{name}={value!r} is invalid: {rule}")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int(owner: str, name: str, value: Any) -> None:
    require(is_int(value) and value > 0, owner, name, value, "must be a positive int")


def choice(owner: str, name: str, value: Any, options: tuple[str, ...]) -> None:
    require(value in options, owner, name, value, f"must be one of {list(options)}")


@dataclass(frozen=True)
class ShapeMeta:
    """Observation and action shapes.

    ``rgb`` maps camera key -> (C, H, W); ``low_dim`` maps state key -> feature size;
    ``action_dim`` is Da. Key order is kept: it fixes the order features are concatenated in.
    """

    rgb: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    low_dim: dict[str, int] = field(default_factory=dict)
    action_dim: int = keys.ACTION_DIM

    def __post_init__(self) -> None:
        owner = "ShapeMeta"
        object.__setattr__(self, "rgb", {k: tuple(v) for k, v in self.rgb.items()})
        object.__setattr__(self, "low_dim", dict(self.low_dim))
        positive_int(owner, "action_dim", self.action_dim)
        require(bool(self.rgb or self.low_dim), owner, "obs", {}, "needs at least one obs key")
        for key, shape in self.rgb.items():
            require(
                keys.is_image_key(key), owner, f"rgb[{key!r}]", shape, "key must end in '_image'"
            )
            require(
                len(shape) == 3 and all(is_int(s) and s > 0 for s in shape),
                owner,
                f"rgb[{key!r}]",
                shape,
                "must be (C, H, W) of positive ints",
            )
        for key, size in self.low_dim.items():
            require(
                not keys.is_image_key(key), owner, f"low_dim[{key!r}]", size, "is an image key"
            )
            positive_int(owner, f"low_dim[{key!r}]", size)
        for key in (*self.rgb, *self.low_dim):
            # '.' would split a tensor name in the state dict.
            require(
                "." not in key and key != keys.ACTION, owner, "key", key, "no '.'; not 'action'"
            )

    @property
    def obs_keys(self) -> tuple[str, ...]:
        """Camera keys first, then low-dim keys."""
        return (*self.rgb, *self.low_dim)

    @property
    def low_dim_size(self) -> int:
        return sum(self.low_dim.values())

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able shape-meta convention shared with the dataset (see common contracts)."""
        obs: dict[str, Any] = {}
        for key, shape in self.rgb.items():
            obs[key] = {"shape": list(shape), "type": "rgb"}
        for key, size in self.low_dim.items():
            obs[key] = {"shape": [size], "type": "low_dim"}
        return {"obs": obs, "action": {"shape": [self.action_dim]}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ShapeMeta:
        """Parse the shape-meta convention; a missing ``type`` means low-dim."""
        # Files are untrusted: every level must be a mapping before it is read as one.
        require(isinstance(data, Mapping), "ShapeMeta", "", data, "must be a mapping")
        unknown = set(data) - {"obs", "action"}
        require(not unknown, "ShapeMeta", "fields", sorted(unknown), "unknown fields")
        require("obs" in data, "ShapeMeta", "obs", None, "is required")
        require(isinstance(data["obs"], Mapping), "ShapeMeta", "obs", data["obs"], "not a mapping")
        action = data.get("action", {"shape": [keys.ACTION_DIM]})
        require(isinstance(action, Mapping), "ShapeMeta", "action", action, "not a mapping")
        action_shape = list(action.get("shape", []))
        require(len(action_shape) == 1, "ShapeMeta", "action.shape", action_shape, "must be [Da]")
        rgb: dict[str, tuple[int, int, int]] = {}
        low_dim: dict[str, int] = {}
        for key, spec in data["obs"].items():
            require(isinstance(spec, Mapping), "ShapeMeta", f"obs[{key!r}]", spec, "not a mapping")
            shape = list(spec.get("shape", []))
            kind = spec.get("type", "low_dim")
            choice("ShapeMeta", f"obs[{key!r}].type", kind, ("rgb", "low_dim"))
            if kind == "rgb":
                rgb[key] = tuple(shape)  # type: ignore[assignment]
            else:
                require(len(shape) == 1, "ShapeMeta", f"obs[{key!r}].shape", shape, "must be [D]")
                low_dim[key] = shape[0]
        return cls(rgb=rgb, low_dim=low_dim, action_dim=action_shape[0])


def image_shape_meta(
    cameras: tuple[str, ...] = keys.CAMERA_KEYS,
    image_hw: tuple[int, int] = (84, 84),
    low_dim: Mapping[str, int] | None = None,
    action_dim: int = keys.ACTION_DIM,
) -> ShapeMeta:
    """Shape meta of the robomimic-style image task: two 84x84 cameras + 9-D robot state."""
    sizes = dict(keys.LOW_DIM_SIZES if low_dim is None else low_dim)
    rgb = {camera: (3, image_hw[0], image_hw[1]) for camera in cameras}
    return ShapeMeta(rgb=rgb, low_dim=sizes, action_dim=action_dim)
