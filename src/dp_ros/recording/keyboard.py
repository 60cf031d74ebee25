"""Keyboard teleoperation without a display: key presses -> 7-D delta-pose commands (ROS-free).

A terminal sends key presses, never key releases, and repeats a held key only after a delay
(about 0.25-0.5 s, then ~30 per second). So a motion key commands its axis for `hold_s` after
each press: a held key keeps moving, a released key stops within `hold_s`. Opposite keys on one
axis: the latest press wins.

Keys (shown by `help_text()`):
    w / s    +x / -x          i / k    +rx / -rx
    a / d    +y / -y          j / l    +ry / -ry
    r / f    +z / -z          u / o    +rz / -rz
    space    toggle gripper (open <-> closed)
    + / -    speed up / down (x 1.25, within [min_speed, 1])
    z        reset the environment (ends nothing: stop or cancel the episode first)
    b / e    begin recording / end recording, saved as a success
    x        end recording, saved as a failure
    c        cancel (discard) the episode being recorded
    q        quit (Ctrl-C works too)

Commands are (dx, dy, dz, drx, dry, drz, gripper): motion axes in {-speed, 0, +speed} (values in
[-1, 1], as OSC_POSE delta actions are normalised), gripper -1 open / +1 closed.
"""

import os
import select
import sys
import termios
from dataclasses import dataclass

import numpy as np

from dp_ros.keys import ACTION_DIM

GRIPPER_OPEN, GRIPPER_CLOSED = -1.0, 1.0
# key -> (axis, direction)
MOTION_KEYS = {
    "w": (0, 1.0), "s": (0, -1.0), "a": (1, 1.0), "d": (1, -1.0), "r": (2, 1.0), "f": (2, -1.0),
    "i": (3, 1.0), "k": (3, -1.0), "j": (4, 1.0), "l": (4, -1.0), "u": (5, 1.0), "o": (5, -1.0),
}  # fmt: skip
# key -> event the node acts on
EVENT_KEYS = {
    "z": "reset", "b": "start", "e": "stop", "x": "stop_failure", "c": "discard", "q": "quit"
}  # fmt: skip
SPEED_FACTOR = 1.25


@dataclass(frozen=True)
class KeyboardConfig:
    speed: float = 0.5
    min_speed: float = 0.05
    hold_s: float = 0.2

    def __post_init__(self) -> None:
        if not 0 < self.min_speed <= self.speed <= 1:
            raise ValueError(
                f"KeyboardConfig.speed={self.speed}, min_speed={self.min_speed}: must satisfy "
                "0 < min_speed <= speed <= 1"
            )
        if self.hold_s <= 0:
            raise ValueError(f"KeyboardConfig.hold_s={self.hold_s}: must be > 0")


class KeyboardTeleop:
    """Key presses in, the command at any instant out."""

    def __init__(self, config: KeyboardConfig = KeyboardConfig()) -> None:
        self.config = config
        self.speed = config.speed
        self.gripper = GRIPPER_OPEN
        self._direction = np.zeros(6, dtype=np.float32)
        self._until = np.full(6, -np.inf)  # per axis: the motion lasts until this time (s)

    def press(self, key: str, now_s: float) -> str | None:
        """Apply one key press at `now_s`; returns the event name for event keys."""
        if key in MOTION_KEYS:
            axis, direction = MOTION_KEYS[key]
            self._direction[axis] = direction
            self._until[axis] = now_s + self.config.hold_s
        elif key == " ":
            self.gripper = GRIPPER_CLOSED if self.gripper == GRIPPER_OPEN else GRIPPER_OPEN
        elif key in ("+", "="):
            self.speed = min(1.0, self.speed * SPEED_FACTOR)
        elif key in ("-", "_"):
            self.speed = max(self.config.min_speed, self.speed / SPEED_FACTOR)
        return EVENT_KEYS.get(key)

    def command(self, now_s: float) -> np.ndarray:
        """(Da,) float32 command at `now_s`."""
        active = self._until > now_s
        action = np.zeros(ACTION_DIM, dtype=np.float32)
        action[:6] = np.where(active, self._direction * self.speed, 0.0)
        action[6] = self.gripper
        return action

    def reset(self) -> None:
        """Stop every motion and open the gripper (a new episode starts open)."""
        self._until[:] = -np.inf
        self.gripper = GRIPPER_OPEN


def help_text() -> str:
    return __doc__.split("Keys (shown by `help_text()`):\n", 1)[1].split("\n\n", 1)[0]


class TerminalKeys:
    """Unbuffered, unechoed key reads from a terminal; restores its settings on exit.

    Canonical mode and echo are turned off (each key arrives at once, invisibly), but signal
    keys are kept, so Ctrl-C still stops the node the usual way.
    """

    def __init__(self, fd: int | None = None) -> None:
        self.fd = sys.stdin.fileno() if fd is None else fd
        if not os.isatty(self.fd):
            raise ValueError(
                "keyboard teleop needs a terminal on stdin (run teleop_node in its own "
                "terminal, e.g. `ros2 run dp_ros teleop_node`; under ros2 launch use "
                "prefix:='xterm -e' or the scripted/spacemouse modes)"
            )
        self._saved: list | None = None

    def __enter__(self) -> "TerminalKeys":
        self._saved = termios.tcgetattr(self.fd)
        attributes = termios.tcgetattr(self.fd)
        attributes[3] &= ~(termios.ICANON | termios.ECHO)  # lflags; ISIG stays on
        attributes[6][termios.VMIN] = 0
        attributes[6][termios.VTIME] = 0
        termios.tcsetattr(self.fd, termios.TCSANOW, attributes)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._saved is not None:
            termios.tcsetattr(self.fd, termios.TCSANOW, self._saved)

    def read(self, timeout_s: float) -> str:
        """Keys typed within `timeout_s` ('' when none); EOFError once the terminal closed."""
        ready, _, _ = select.select([self.fd], [], [], timeout_s)
        if not ready:
            return ""
        data = os.read(self.fd, 64)
        if not data:
            raise EOFError("terminal closed")
        return data.decode("utf-8", errors="ignore")
