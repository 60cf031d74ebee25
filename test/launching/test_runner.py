"""dp-ros runner: starts a graph's nodes as processes, drives lifecycles, stops cleanly."""

import os
import signal
import sys

import pytest

from dp_ros.launching.runner import main as runner_main
from dp_ros.testing.checkpoints import make_tiny_checkpoint
from dp_ros.testing.processes import ChildProcess
from dp_ros.testing.robot_feed import RobotFeed

pytestmark = pytest.mark.ros


def child_pids(pid: int) -> list[int]:
    """Processes whose parent is `pid` (from /proc)."""
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                        children.append(int(entry))
            except (OSError, IndexError):
                pass
    return children


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_runner_configures_activates_and_stops_everything_on_sigint(context, tmp_path):
    checkpoint = make_tiny_checkpoint(tmp_path / "tiny")
    feed = RobotFeed(context)
    runner = ChildProcess.python(
        "-m", "dp_ros.launching.runner", "launch", "policy", f"checkpoint:={checkpoint}",
        "with_sim:=false", name="dp-ros",
    )  # fmt: skip
    try:
        runner.wait_for(lambda line: "policy_node: configure done" in line, timeout=90)
        runner.wait_for(lambda line: "policy_node: activate done" in line, timeout=60)
        # The policy node acts on the feed: its log says so through the runner's prefix.
        nodes = child_pids(runner.process.pid)
        assert len(nodes) == 1
        os.kill(runner.process.pid, signal.SIGINT)
        runner.wait_for(lambda line: "all nodes stopped" in line, timeout=30)
        assert runner.wait(timeout=30) == 0
        assert not any(alive(pid) for pid in nodes)
        assert any(line.startswith("[policy_node] ") for line in runner.lines)
    finally:
        runner.stop()
        feed.close()


def test_runner_stops_the_graph_when_a_lifecycle_transition_fails(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "policy.json").write_text("{not json")
    runner = ChildProcess.python(
        "-m", "dp_ros.launching.runner", "launch", "policy", f"checkpoint:={broken}",
        "with_sim:=false", name="dp-ros",
    )  # fmt: skip
    try:
        runner.wait_for(lambda line: "policy_node: configure REFUSED" in line, timeout=90)
        runner.wait_for(lambda line: "all nodes stopped" in line, timeout=30)
        assert runner.wait(timeout=30) == 1
    finally:
        runner.stop()


def test_cli_refuses_unknown_graph_and_arguments(capsys):
    assert runner_main(["show", "nope"]) == 2
    assert "no graph named 'nope'" in capsys.readouterr().err
    assert runner_main(["show", "policy", "device=cuda"]) == 2
    assert "not of the form name:=value" in capsys.readouterr().err
    assert runner_main(["show", "policy", "checkpoint:=/c", "with_sim:=false"]) == 0
    shown = capsys.readouterr().out
    assert f"{sys.executable} -m dp_ros.nodes.policy_node --ros-args" in shown
    assert "(lifecycle: configure -> activate)" in shown


def test_show_and_launch_refuse_a_missing_required_argument(capsys):
    """The same refusal from show as from launch, before anything starts."""
    for command in ("show", "launch"):
        assert runner_main([command, "record"]) == 2
        error = capsys.readouterr().err
        assert "graph 'record' needs store:=..." in error
        assert runner_main([command, "policy", "checkpoint:="]) == 2
        assert "needs checkpoint:=..." in capsys.readouterr().err
    assert runner_main(["list"]) == 0
    assert "checkpoint:=(required)" in capsys.readouterr().out


def test_nodes_do_not_outlive_a_killed_runner(tmp_path):
    """A runner that crashes (SIGKILL: no handler runs) must not leave nodes behind."""
    import time

    checkpoint = make_tiny_checkpoint(tmp_path / "tiny")
    runner = ChildProcess.python(
        "-m", "dp_ros.launching.runner", "launch", "policy", f"checkpoint:={checkpoint}",
        "with_sim:=false", name="dp-ros",
    )  # fmt: skip
    try:
        runner.wait_for(lambda line: "policy_node: configure done" in line, timeout=90)
        nodes = child_pids(runner.process.pid)
        assert len(nodes) == 1
        os.kill(runner.process.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in nodes) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(alive(pid) for pid in nodes)
    finally:
        runner.stop()
