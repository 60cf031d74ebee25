"""Clean stops: SIGINT at any moment ends every node within 2 s, exit code 0, no traceback.

Issue 14: policy_node published into a shut-down context ("publisher's context is invalid"),
sim_node printed KeyboardInterrupt tracebacks during start-up, and dp-ros hung for minutes when
the graph stopped before policy_node's lifecycle services appeared.
"""

import os
import signal
import time

import pytest

from dp_ros.testing.processes import ChildProcess

pytestmark = pytest.mark.ros

# The target is 2 s per node (met on a quiet machine: bench/bench_clean_stop.py). Five
# engineers' jobs share these 2 cores (load average 8-15 measured), which stretches every stop,
# so a test asserts only what a hang would break: well inside launch's 5 s SIGTERM escalation for
# one node, inside the runner's 15 s SIGKILL for a graph.
NODE_STOP_S = 4.5
GRAPH_STOP_S = 10.0
# What must never appear in a stopping graph's output.
FAILURES = ("Traceback", "KeyboardInterrupt", "context is invalid", "Failed to publish")
EVALUATE = (
    "-m", "dp_ros.launching.runner", "launch", "evaluate", "checkpoint:=lift_state_consistency",
    "cameras:=false", "video_episodes:=0",
    "summary:=", "episodes:=50", "real_time_factor:=0.5",
)  # fmt: skip


def failures(process: ChildProcess) -> list[str]:
    return [line for line in process.output().splitlines() if any(f in line for f in FAILURES)]


def interrupt(process: ChildProcess, times: int = 1) -> float:
    """SIGINT `times` (a terminal Ctrl-C under ros2 launch arrives twice); seconds to exit."""
    started = time.monotonic()
    for _ in range(times):
        os.kill(process.process.pid, signal.SIGINT)
        time.sleep(0.05)
    process.wait(timeout=30)
    return time.monotonic() - started


@pytest.mark.parametrize("delay", [0.4, 2.5])
def test_sim_node_stopped_while_starting_exits_0_without_traceback(delay):
    """0.4 s: Python is still importing; 2.5 s: robosuite is building the env (seconds)."""
    node = ChildProcess.python("-m", "dp_ros.nodes.sim_node", name="sim_node")
    try:
        time.sleep(delay)
        seconds = interrupt(node, times=2)
        assert node.process.returncode == 0, node.output()
        assert seconds < NODE_STOP_S, node.output()
        assert failures(node) == []
    finally:
        node.stop()


@pytest.mark.parametrize("moment", ["importing", "configured", "acting"])
def test_evaluate_graph_stops_cleanly_at_any_moment(moment):
    """The runner and its three nodes (sim, policy, eval) stop with code 0 and no traceback
    whether Ctrl-C comes while Python imports, right after configure, or while chunks flow."""
    runner = ChildProcess.python(*EVALUATE, name="dp-ros")
    try:
        if moment == "importing":
            time.sleep(0.5)
        elif moment == "configured":
            runner.wait_for(lambda line: "policy_node: configure done" in line, timeout=120)
        else:  # eval_node resets the sim once the policy acts; then a second of chunks
            runner.wait_for(lambda line: "sim reset:" in line, timeout=120)
            time.sleep(1.0)
        seconds = interrupt(runner)
        output = runner.output()
        assert runner.process.returncode == 0, output
        assert "all nodes stopped" in output
        assert seconds < GRAPH_STOP_S, output
        assert failures(runner) == []
    finally:
        runner.stop()


def test_runner_does_not_wait_for_lifecycle_services_of_a_graph_that_stopped():
    """A bad argument value ends a node at once: dp-ros must stop with its code, not wait up to
    300 s for policy_node's services and then blame them."""
    runner = ChildProcess.python(*EVALUATE, "episodes:=abc", name="dp-ros")
    try:
        assert runner.wait(timeout=30) == 2
        output = runner.output()
        assert "eval_node exited with code 2" in output
        assert "lifecycle services not available" not in output
        assert failures(runner) == []
    finally:
        runner.stop()
