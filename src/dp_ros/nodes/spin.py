"""The one way a dp_ros node process runs: init, build, spin, close (every node's main()).

A node that cannot be built from its parameters (ValueError, OSError: a bad value, a missing
store, no terminal) is refused at start with the reason on stderr and exit code 2. The node may
have `start()` (called once spinning can begin), `close()` (called on the way out, whatever
happened), `done` (a threading.Event that ends the process) and `exit_code`.

Stopping (SIGINT from a terminal or launch, SIGTERM from launch's escalation) is ours, not
rclpy's: rclpy's own handler shuts the context down the moment the signal arrives, while the
node's threads still run, so a worker that publishes a moment later fails ("publisher's context
is invalid") and log lines in close() cannot reach /rosout. Here a signal only asks to stop; the
node is closed (its threads joined) while the context is still valid, and the context goes
last. A signal during construction (robosuite takes seconds to build) aborts it at once. A second
signal, which a terminal Ctrl-C under ros2 launch always brings (once from the terminal, once
from launch), is absorbed. Either way the process exits 0 without a traceback.
"""

import os
import signal
import sys
import threading
from collections.abc import Callable

import rclpy
from rclpy._rclpy_pybind11 import RCLError
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from dp_ros import nodes

REFUSED_AT_START = 2
HELP_FLAGS = ("-h", "--help")
SPIN_SLICE_S = 0.1  # how long a stop request can wait for the spin loop to notice it


class StopSignals:
    """SIGINT/SIGTERM turned into a stop request (installed for the life of a node process).

    While `abort_construction` is set (the node is being built) the first signal raises
    KeyboardInterrupt in the main thread, so a slow constructor is abandoned at once; afterwards
    a signal only sets `requested`, which the spin loop checks every SPIN_SLICE_S.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.abort_construction = True
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopSignals":
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc_info) -> None:
        if nodes.STARTED_AS_PROGRAM:  # the process ends next: later signals change nothing
            nodes.ignore_stop_signals()
            return
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum, frame) -> None:
        first = not self.requested.is_set()
        self.requested.set()
        if first and self.abort_construction:
            self.abort_construction = False
            if nodes.STARTED_AS_PROGRAM:
                # Not an exception: one raised inside an import (constructors import lazily)
                # comes out as an ImportError traceback. Nothing is built that needs closing.
                _exit_now(0)
            raise KeyboardInterrupt


def help_requested(args: list[str] | None) -> bool:
    """`--help` before any `--ros-args` (after it, the flags belong to ROS)."""
    argv = sys.argv[1:] if args is None else args
    own = argv[: argv.index("--ros-args")] if "--ros-args" in argv else argv
    return any(flag in own for flag in HELP_FLAGS)


def print_help(name: str, config_type: type, summary: str) -> None:
    from dp_ros.nodes.params import describe_parameters

    print(f"usage: {name} [--ros-args -p NAME:=VALUE ... --params-file FILE ...]\n")
    if summary:
        print(summary.strip() + "\n")
    print("parameters (read once at start; bad values stop the node naming the parameter):")
    print(describe_parameters(config_type))


def run_node(
    name: str,
    make_node: Callable[[], Node],
    args: list[str] | None = None,
    config_type: type | None = None,
    summary: str = "",
) -> int:
    if config_type is not None and help_requested(args):
        print_help(name, config_type, summary)
        return 0
    with StopSignals() as stop:
        try:
            try:
                rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
            except RCLError as error:  # malformed --ros-args: rcl has logged which
                print(f"{name}: bad ROS arguments: {error}", file=sys.stderr)
                return REFUSED_AT_START
            node = make_node()
            stop.abort_construction = False
        except KeyboardInterrupt:  # stopped while starting: nothing to close yet
            rclpy.try_shutdown()
            _abandon_construction()
            return 0
        except (ValueError, OSError) as error:
            stop.abort_construction = False
            print(f"{name}: {error}", file=sys.stderr)
            rclpy.try_shutdown()
            return REFUSED_AT_START
        code = _spin_and_close(node, stop)
    if nodes.STARTED_AS_PROGRAM:
        # Everything is closed and flushed by now. Python's own teardown of torch and friends
        # took 1.6-2.3 s more (measured under load), most of a 2 s stop budget, for nothing.
        _exit_now(code)
    return code


def _exit_now(code: int) -> None:
    nodes.ignore_stop_signals()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _abandon_construction() -> None:
    """Leave at once when a stop came during construction.

    The node's own threads may still be building (sim_node's env thread inside robosuite and
    EGL): letting the interpreter tear down under them crashed it (SIGSEGV, measured), and
    waiting for them takes seconds. A node process has nothing left to save at this point.
    """
    if nodes.STARTED_AS_PROGRAM and threading.active_count() > 1:
        _exit_now(0)


def _spin_and_close(node: Node, stop: StopSignals) -> int:
    # Single-threaded on purpose: rclpy's multi-threaded executor busy-spins while a ready
    # callback waits for its group. Nodes that must not block use threads of their own.
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    done = getattr(node, "done", None) or threading.Event()
    try:
        if hasattr(node, "start"):
            node.start()
        while rclpy.ok() and not stop.requested.is_set() and not done.is_set():
            executor.spin_once(timeout_sec=SPIN_SLICE_S)
    except ExternalShutdownException:
        pass
    finally:
        # Node first (threads joined, last logs sent), context last: nothing publishes into a
        # context that is gone.
        if hasattr(node, "close"):
            node.close()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return getattr(node, "exit_code", 0)
