"""Node parameters declared once: a frozen dataclass is the single source of truth.

Each field carries its description and range in `field(metadata=...)` (made with `param`). A node
declares every field as a ROS parameter with a ParameterDescriptor built from that metadata
(read-only, so nothing changes under a running node), reads them back once, and constructs the
dataclass, whose `__post_init__` validates cross-field rules. Callbacks use the dataclass and
never read parameters again (generate_parameter_library's discipline, without code generation).
"""

import dataclasses
import typing
from typing import Any

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
)
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.parameter import Parameter

_ROS_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
    list[str]: ParameterType.PARAMETER_STRING_ARRAY,
    list[float]: ParameterType.PARAMETER_DOUBLE_ARRAY,
}


def param(
    default: Any,
    description: str,
    low: float | None = None,
    high: float | None = None,
    choices: tuple[str, ...] = (),
) -> Any:
    """A dataclass field that is also a ROS parameter (range and choices checked on load)."""
    metadata = {"description": description, "low": low, "high": high, "choices": choices}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def check_ranges(config: Any) -> None:
    """Raise ValueError naming the field, value and rule for any out-of-range field."""
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        low, high = item.metadata.get("low"), item.metadata.get("high")
        choices = item.metadata.get("choices") or ()
        if low is not None and value < low:
            raise ValueError(f"parameter {item.name}={value!r}: must be >= {low}")
        if high is not None and value > high:
            raise ValueError(f"parameter {item.name}={value!r}: must be <= {high}")
        if choices and value not in choices:
            raise ValueError(f"parameter {item.name}={value!r}: must be one of {list(choices)}")


class NodeConfig:
    """Base of node configs: checks every field's range/choices, then the subclass's `validate`."""

    def __post_init__(self) -> None:
        check_ranges(self)
        self.validate()

    def validate(self) -> None:
        """Cross-field rules; raise ValueError naming the fields."""


@dataclasses.dataclass(frozen=True)
class RobotStreamParams(NodeConfig):
    """The robot's observation topics, shared by the nodes that read them (policy_node,
    recorder_node); each adds its own ``object_topic`` default."""

    agentview_topic: str = param("/agentview/image_raw", "Agent-view camera (sensor_msgs/Image).")
    wrist_topic: str = param("/wrist/image_raw", "Wrist camera (sensor_msgs/Image).")
    compressed_images: bool = param(False, "Cameras publish sensor_msgs/CompressedImage.")
    eef_pose_topic: str = param("/eef_pose", "End-effector pose (geometry_msgs/PoseStamped).")
    gripper_topic: str = param("/gripper/joint_states", "Gripper state (sensor_msgs/JointState).")
    gripper_joint_names: str = param(
        "", "Comma-separated gripper joints to read; empty reads all positions in order."
    )


def descriptor_for(item: dataclasses.Field, field_type: Any) -> ParameterDescriptor:
    meta = item.metadata
    description = meta.get("description", "")
    if meta.get("choices"):
        description += f" One of: {', '.join(meta['choices'])}."
    descriptor = ParameterDescriptor(
        name=item.name,
        type=_ROS_TYPES[field_type],
        description=description,
        read_only=True,
        # Floats accept integers too (`rate:=0` on a command line is an integer); declare_and_load
        # converts them, and refuses anything else by name.
        dynamic_typing=field_type is float,
    )
    low, high = meta.get("low"), meta.get("high")
    if low is not None and high is not None:
        if field_type is int:
            descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(high))]
        elif field_type is float:
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=float(low), to_value=float(high))
            ]
    return descriptor


def declare_and_load(node: Any, config_type: type) -> Any:
    """Declare every field of `config_type` on `node` and build the validated config from them."""
    hints = typing.get_type_hints(config_type)
    values = {}
    for item in dataclasses.fields(config_type):
        has_factory = item.default_factory is not dataclasses.MISSING
        default = item.default_factory() if has_factory else item.default
        field_type = hints[item.name]
        # rclpy types an empty list default as a byte array, refusing every later value: declare
        # such a parameter by its type instead (unset reads back as None: the empty default).
        initial = Parameter.Type(_ROS_TYPES[field_type]) if default == [] else default
        try:
            declared = node.declare_parameter(item.name, initial, descriptor_for(item, field_type))
        except (InvalidParameterTypeException, InvalidParameterValueException) as error:
            raise ValueError(f"parameter {item.name}: {error}") from error
        value = default if declared.value is None else declared.value
        if field_type is float:
            value = _as_float(item.name, value)
        values[item.name] = list(value) if isinstance(value, (list, tuple)) else value
    return config_type(**values)


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"parameter {name}={value!r}: expected a number")
    return float(value)


def _type_name(field_type: Any) -> str:
    names = {bool: "bool", int: "int", float: "double", str: "string"}
    return names.get(field_type, "string[]" if field_type == list[str] else "double[]")


def describe_parameters(config_type: type) -> str:
    """Every parameter of `config_type`: name, type, default, range or choices, description.

    What `ros2 param describe` shows on a running node, for `<node> --help` without ROS.
    """
    hints = typing.get_type_hints(config_type)
    blocks = []
    for item in dataclasses.fields(config_type):
        has_factory = item.default_factory is not dataclasses.MISSING
        default = item.default_factory() if has_factory else item.default
        meta = item.metadata
        shown = str(default).lower() if isinstance(default, bool) else repr(default)
        facts = [_type_name(hints[item.name]), f"default {shown}"]
        if meta.get("low") is not None and meta.get("high") is not None:
            facts.append(f"range [{meta['low']}, {meta['high']}]")
        elif meta.get("low") is not None:
            facts.append(f">= {meta['low']}")
        if meta.get("choices"):
            facts.append("one of " + ", ".join(repr(c) for c in meta["choices"]))
        blocks.append(f"  {item.name} ({'; '.join(facts)})\n      {meta.get('description', '')}")
    return "\n".join(blocks)
