"""Every node executable explains itself: `--help` lists its parameters and exits 0, without
starting ROS (with an invalid domain id no node could be created) or importing robosuite."""

import dataclasses
import os
import subprocess
import sys

import pytest

from dp_ros.nodes.eval_node import EvalNodeConfig
from dp_ros.nodes.policy_params import PolicyNodeConfig
from dp_ros.nodes.recorder_params import RecorderNodeConfig
from dp_ros.nodes.sim_params import SimNodeConfig
from dp_ros.nodes.spin import help_requested
from dp_ros.nodes.teleop_node import TeleopNodeConfig

NODES = {
    "policy_node": PolicyNodeConfig,
    "sim_node": SimNodeConfig,
    "recorder_node": RecorderNodeConfig,
    "teleop_node": TeleopNodeConfig,
    "eval_node": EvalNodeConfig,
}


@pytest.mark.parametrize("name", sorted(NODES))
def test_node_help_lists_every_parameter_without_starting_ros(name):
    config_type = NODES[name]
    result = subprocess.run(
        [sys.executable, "-m", f"dp_ros.nodes.{name}", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "ROS_DOMAIN_ID": "99999"},  # no node could start
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith(f"usage: {name} ")
    for item in dataclasses.fields(config_type):
        assert f"\n  {item.name} (" in out, item.name
        assert item.metadata["description"].split(".")[0] in out
    assert "[robosuite" not in result.stdout + result.stderr  # its import logs warnings
    assert "[INFO]" not in out


def test_help_shows_type_default_and_range():
    result = subprocess.run(
        [sys.executable, "-m", "dp_ros.nodes.policy_node", "-h"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "  control_period (double; default 0.05; range [0.001, 10])" in result.stdout
    assert (
        "  sampler (string; default ''; one of '', 'ddpm', 'ddim', 'consistency')" in result.stdout
    )
    assert "  start_enabled (bool; default true)" in result.stdout


def test_help_flags_after_ros_args_belong_to_ros():
    assert help_requested(["--help"])
    assert help_requested(["-h", "--ros-args", "-p", "a:=1"])
    assert not help_requested(["--ros-args", "-p", "a:=1", "--help"])
    assert not help_requested([])
