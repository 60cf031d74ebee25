"""Child processes that are observable line by line and always stopped cleanly.

The dp-ros runner and the tests need the same three things from a node process: its output as
lines (echoed with a prefix, or waited for), a clean stop (SIGINT to its whole process group, as
Ctrl-C and ros2 launch do, then SIGKILL), and no orphan left behind when something fails.
"""

import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the parent dies, however it dies.

    Nodes run in their own sessions (so a stop reaches their children too); without this, a
    runner killed with SIGKILL would leave them running.
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the runner's own signal handling still stops its nodes


class ManagedProcess:
    """A child process whose merged stdout/stderr is read line by line by a thread.

    `echo`, if given, is called with each line as it arrives (the runner prints them prefixed);
    lines are also queued for `wait_for`.
    """

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        name: str | None = None,
        cwd: str | None = None,
        echo: Callable[[str, str], None] | None = None,
    ) -> None:
        child_env = self.environment(env)
        child_env["PYTHONUNBUFFERED"] = "1"
        self.name = name or os.path.basename(argv[0])
        self.echo = echo
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.process = subprocess.Popen(
            list(argv),
            env=child_env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, so stop() reaches its children
            preexec_fn=_die_with_parent,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @staticmethod
    def environment(extra: Mapping[str, str] | None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(extra or {})
        return env

    @classmethod
    def python(cls, *args: str, **kwargs) -> "ManagedProcess":
        """Run this interpreter with `args` (a script path or `-m module`, then its arguments)."""
        return cls([sys.executable, *args], **kwargs)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            line = line.rstrip("\n")
            if self.echo is not None:
                self.echo(self.name, line)
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, predicate: Callable[[str], bool] | str, timeout: float) -> str:
        """Return the first new line satisfying `predicate` (or starting with a string).

        Raises TimeoutError (with the output so far) when none comes in `timeout` seconds or the
        process ends first.
        """
        if isinstance(predicate, str):
            prefix = predicate
            predicate = lambda line: line.startswith(prefix)  # noqa: E731
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"{self.name}: no matching line in {timeout}s.\n{self.output()}"
                )
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise TimeoutError(
                    f"{self.name} exited (code {self.process.wait()}) before a matching line.\n"
                    f"{self.output()}"
                )
            self.lines.append(line)
            if predicate(line):
                return line

    def printed(self, text: str, timeout: float) -> bool:
        """Whether `text` appears in the output, already or within `timeout` seconds: a line
        the child printed travels through a pipe and this reader thread, so it may lag what the
        child sent over DDS at the same moment."""
        if text in self.output():
            return True
        try:
            self.wait_for(lambda line: text in line, timeout)
        except TimeoutError:
            return False
        return True

    def output(self) -> str:
        """Everything the process printed so far (drains the queue)."""
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        return "\n".join(f"[{self.name}] {line}" for line in self.lines)

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit on its own; its return code."""
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)  # so that output() holds its last lines
        return code

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT (what Ctrl-C and launch send), then SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            self._signal_group(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)  # so that output() holds its last lines
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL the whole process group at once (crash simulation)."""
        self._signal_group(signal.SIGKILL)
        self.process.wait(timeout=10)

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass

    def __enter__(self) -> "ManagedProcess":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
