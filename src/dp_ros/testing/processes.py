"""Start ROS processes for tests and benchmarks: isolated, observable by line, stopped cleanly.

Multi-process tests need three things from a child: that it runs with the isolation variables,
that the test can wait for a line it prints ("ready", a JSON result) without blocking forever, and
that it goes away when the test ends, even when the test fails.
"""

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from dp_ros.testing.ros_isolation import isolation_environment


class ChildProcess:
    """A child process whose merged stdout/stderr is collected line by line by a thread."""

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        name: str | None = None,
        cwd: str | None = None,
    ) -> None:
        child_env = dict(os.environ)
        child_env.update(env or {})
        child_env.update(isolation_environment(child_env))
        child_env["PYTHONUNBUFFERED"] = "1"
        self.name = name or os.path.basename(argv[0])
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
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @classmethod
    def python(cls, *args: str, **kwargs) -> "ChildProcess":
        """Run this interpreter with `args` (a script path or `-m module`, then its arguments)."""
        return cls([sys.executable, *args], **kwargs)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
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
        return self.process.wait(timeout=timeout)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT (what Ctrl-C and launch send), then SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            self._signal_group(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.process.wait(timeout=timeout)
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

    def __enter__(self) -> "ChildProcess":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
