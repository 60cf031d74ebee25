"""Keyboard teleop: the key -> command core, and teleop_node driven through a pseudo-terminal."""

import importlib.util
import os
import pty
import subprocess
import sys
import time

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor

from dp_msgs.msg import ActionChunk
from dp_ros import conversions as conv
from dp_ros.keys import EEF_POS, GRIPPER_QPOS
from dp_ros.nodes.qos import EVENT_QOS
from dp_ros.recording.keyboard import KeyboardConfig, KeyboardTeleop
from dp_ros.recording.scripted import StateAssembler
from dp_ros.testing.ros_isolation import isolation_environment


def test_keys_map_to_axes_speed_and_gripper_with_a_hold_window():
    teleop = KeyboardTeleop(KeyboardConfig(speed=0.4, hold_s=0.2))
    np.testing.assert_array_equal(teleop.command(0.0), [0, 0, 0, 0, 0, 0, -1])
    teleop.press("w", 1.0)
    teleop.press("f", 1.1)
    teleop.press("u", 1.1)
    np.testing.assert_allclose(teleop.command(1.15), [0.4, 0, -0.4, 0, 0, 0.4, -1])
    np.testing.assert_allclose(teleop.command(1.25), [0, 0, -0.4, 0, 0, 0.4, -1])  # w expired
    teleop.press("s", 1.26)  # the opposite key on the same axis: latest wins
    assert teleop.command(1.27)[0] == pytest.approx(-0.4)
    assert teleop.press(" ", 2.0) is None and teleop.command(2.0)[6] == 1.0
    teleop.press("+", 2.0)
    assert teleop.speed == pytest.approx(0.5)
    for _ in range(10):
        teleop.press("+", 2.0)
    assert teleop.speed == 1.0  # capped
    teleop.press("d", 3.0)
    np.testing.assert_allclose(teleop.command(3.0), [0, -1, 0, 0, 0, 0, 1])
    assert [teleop.press(k, 4.0) for k in "zbecq"] == ["reset", "start", "stop", "discard", "quit"]
    teleop.reset()
    np.testing.assert_array_equal(teleop.command(4.0), [0, 0, 0, 0, 0, 0, -1])
    with pytest.raises(ValueError, match="speed=1.5"):
        KeyboardConfig(speed=1.5)


def test_state_assembler_joins_one_instant_and_re_yields_a_republished_one():
    states = StateAssembler((EEF_POS, GRIPPER_QPOS))
    assert states.add(10, {EEF_POS: np.zeros(3)}) is None
    assert states.add(20, {EEF_POS: np.ones(3)}) is None
    joined = states.add(10, {GRIPPER_QPOS: np.zeros(2)})
    assert joined is not None and joined[EEF_POS][0] == 0
    again = states.add(10, {EEF_POS: np.full(3, 5.0)})  # a reset re-publishes instant 10
    assert again[EEF_POS][0] == 5.0


class CommandListener:
    def __init__(self, context, topic: str) -> None:
        self.node = rclpy.create_node("command_listener", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.commands: list[tuple[float, np.ndarray]] = []
        self.node.create_subscription(ActionChunk, topic, self._on_command, EVENT_QOS)

    def _on_command(self, msg: ActionChunk) -> None:
        chunk = conv.msg_to_timed_chunk(msg, "command")
        assert msg.horizon == 1 and msg.source == ActionChunk.SOURCE_TELEOP
        self.commands.append((time.monotonic(), chunk.rows[0].copy()))

    def spin_until(self, condition, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not condition():
            self.executor.spin_once(timeout_sec=0.02)
        return condition()

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


@pytest.mark.ros
def test_keyboard_teleop_through_a_pty_publishes_the_expected_commands(context, tmp_path):
    topic = "/pty_test/command"
    master, slave = pty.openpty()
    log = open(tmp_path / "teleop.log", "a+")  # O_APPEND: the child shares the offset
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.update(isolation_environment(env))
    args = [sys.executable, "-m", "dp_ros.nodes.teleop_node", "--ros-args"]
    for item in (
        "mode:=keyboard",
        f"command_topic:={topic}",
        "speed:=0.4",
        "key_hold:=0.3",
        "reset_service:=''",
        "recorder:=''",
    ):
        args += ["-p", item]
    process = subprocess.Popen(
        args, stdin=slave, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    os.close(slave)
    listener = CommandListener(context, topic)
    try:
        # Idle commands at the control rate: zero motion, gripper open.
        assert listener.spin_until(lambda: len(listener.commands) >= 5, 60), log_text(log)
        np.testing.assert_array_equal(listener.commands[-1][1], [0, 0, 0, 0, 0, 0, -1])
        sent_at = type_keys(master, "w")
        assert listener.spin_until(lambda: moving(listener, sent_at, 0, 0.4), 10), log_text(log)
        sent_at = type_keys(master, " +")  # close the gripper, speed 0.4 -> 0.5
        assert listener.spin_until(lambda: last_after(listener, sent_at)[6] == 1.0, 10)
        sent_at = type_keys(master, "j")
        assert listener.spin_until(lambda: moving(listener, sent_at, 4, 0.5), 10), log_text(log)
        # A key press moves for key_hold only: later commands are still again.
        assert listener.spin_until(
            lambda: (
                time.monotonic() > sent_at + 0.6 and np.all(last_after(listener, sent_at)[:6] == 0)
            ),
            10,
        )
        type_keys(master, "z")  # no reset service configured: said, not fatal
        type_keys(master, "q")
        assert process.wait(timeout=30) == 0, log_text(log)
        output = log_text(log)
        assert "speed 0.50" in output and "gripper closed" in output
        assert "no reset_service configured" in output
    finally:
        listener.close()
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
        log.close()


def type_keys(master: int, keys: str) -> float:
    os.write(master, keys.encode())
    return time.monotonic()


def last_after(listener: CommandListener, since: float) -> np.ndarray:
    later = [command for at, command in listener.commands if at > since]
    return later[-1] if later else np.full(7, np.nan)


def moving(listener: CommandListener, since: float, axis: int, value: float) -> bool:
    command = last_after(listener, since)
    expected = np.zeros(6)
    expected[axis] = value
    return bool(np.allclose(command[:6], expected))


def log_text(log) -> str:
    log.flush()
    log.seek(0)
    text = log.read()
    log.seek(0, os.SEEK_END)
    return text


def run_teleop(*params: str) -> subprocess.CompletedProcess:
    """teleop_node with stdin not a terminal (even when pytest runs in one)."""
    env = dict(os.environ)
    env.update(isolation_environment(env))
    args = [sys.executable, "-m", "dp_ros.nodes.teleop_node", "--ros-args"]
    for item in params:
        args += ["-p", item]
    return subprocess.run(
        args, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=60
    )


@pytest.mark.ros
def test_keyboard_without_a_terminal_and_spacemouse_without_its_library_are_refused():
    result = run_teleop("mode:=keyboard")
    assert result.returncode == 2
    assert "keyboard teleop needs a terminal on stdin" in result.stderr
    if importlib.util.find_spec("pyspacemouse") is None:
        result = run_teleop("mode:=spacemouse")
        assert result.returncode == 2
        assert "mode spacemouse needs the pyspacemouse package" in result.stderr
