"""Node parameters: declared from the dataclass, overridden as on a command line, validated."""

from dataclasses import dataclass

import pytest
import rclpy
from rclpy.parameter import Parameter

from dp_ros.nodes.params import NodeConfig, declare_and_load, param

pytestmark = pytest.mark.ros


@dataclass(frozen=True)
class ExampleConfig(NodeConfig):
    rate: float = param(20.0, "Steps per second.", 0.0, 100.0)
    count: int = param(3, "How many.", 0, 10)
    mode: str = param("a", "Mode.", choices=("a", "b"))
    names: list[str] = param(["x"], "Names.")
    corner: list[float] = param([], "Empty unless given.")


def load(*overrides: Parameter) -> ExampleConfig:
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node(
            "params_example", context=context, parameter_overrides=list(overrides)
        )
        try:
            return declare_and_load(node, ExampleConfig)
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_defaults_and_overrides_load_into_the_frozen_config():
    assert load() == ExampleConfig()
    config = load(Parameter("rate", value=5.5), Parameter("names", value=["p", "q"]))
    assert config.rate == 5.5 and config.names == ["p", "q"] and config.count == 3
    with pytest.raises(AttributeError):
        config.rate = 1.0  # frozen


def test_a_list_that_defaults_to_empty_takes_a_value_of_its_type():
    # rclpy would type an empty default as a byte array and refuse [0.1, 0.2, 0.3].
    assert load().corner == []
    assert load(Parameter("corner", value=[0.1, 0.2, 0.3])).corner == [0.1, 0.2, 0.3]
    with pytest.raises(ValueError, match="parameter corner: .*type"):
        load(Parameter("corner", value=["a"]))


def test_an_integer_for_a_float_parameter_is_converted():
    # `-p rate:=0` on a command line arrives as an integer.
    config = load(Parameter("rate", value=0))
    assert config.rate == 0.0 and isinstance(config.rate, float)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (Parameter("rate", value="fast"), "parameter rate='fast': expected a number"),
        (Parameter("rate", value=True), "parameter rate=True: expected a number"),
        (Parameter("rate", value=100.5), "parameter rate: .*out of range"),
        (Parameter("rate", value=101), r"parameter rate=101.0: must be <= 100.0"),
        (Parameter("count", value=-1), "parameter count: .*out of range"),  # rclpy's check
        (Parameter("count", value=1.5), "parameter count: .*type"),
        (Parameter("mode", value="c"), r"parameter mode='c': must be one of \['a', 'b'\]"),
    ],
)
def test_bad_values_are_refused_naming_the_parameter(override, message):
    with pytest.raises(ValueError, match=message):
        load(override)
