"""eval_node ends by itself when nothing happens (issue 14: it waited forever by default)."""

import time

import pytest

from dp_ros.nodes.eval_node import EvalNodeConfig
from dp_ros.testing.processes import ChildProcess

pytestmark = pytest.mark.ros


def test_default_is_finite():
    assert 0 < EvalNodeConfig().stall_timeout < float("inf")


def test_eval_node_gives_up_when_the_policy_never_acts():
    node = ChildProcess.python(
        "-m", "dp_ros.nodes.eval_node", "--ros-args",
        "-p", "policy_status_topic:=/nobody/status", "-p", "stall_timeout:=2.0",
        name="eval_node",
    )  # fmt: skip
    try:
        started = time.monotonic()
        assert node.wait(timeout=60) == 1
        assert time.monotonic() - started < 30
        assert "gave up: waited 2 s for the policy to act (0 of 10 episodes" in node.output()
    finally:
        node.stop()
