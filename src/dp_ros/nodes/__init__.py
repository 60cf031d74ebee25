"""ROS 2 nodes: thin adapters between topics/services and the dp_ros core.

When one of them is the program being started (`python -m dp_ros.nodes.<node>`, the console
script, `ros2 run`), a Ctrl-C or SIGTERM that arrives while Python is still importing (rclpy, cv2
and torch take a second or more) ends the process at once with code 0, instead of a
KeyboardInterrupt traceback from whatever module was loading. run_node() takes over the signals
once the node's main() runs (dp_ros.nodes.spin).
"""

import os
import signal
import sys

NODE_EXECUTABLES = frozenset(
    {"policy_node", "sim_node", "recorder_node", "teleop_node", "eval_node"}
)


def _starting_a_node() -> bool:
    # `python -m pkg.mod` sets argv[0] to "-m" while it imports the module's parent packages
    # (this one), and to the module's path only after; a console script keeps its own name.
    program = sys.argv[0] if sys.argv else ""
    return program == "-m" or os.path.basename(program) in NODE_EXECUTABLES


def ignore_stop_signals() -> None:
    """From now on SIGINT/SIGTERM do nothing (the process is already on its way out).

    Ignored rather than handled: Python resets its own handlers to the default at exit, so a
    second Ctrl-C during interpreter shutdown would otherwise kill the process (code -2).
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def _exit_quietly(signum, frame) -> None:
    # Leave at once: raising here (SystemExit) lands inside whatever is importing, and numpy,
    # for one, turns an exception in its C import into an ImportError traceback (seen).
    # Nothing has been built yet, so nothing needs closing.
    ignore_stop_signals()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


STARTED_AS_PROGRAM = _starting_a_node()
if STARTED_AS_PROGRAM:
    for _signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(_signal, _exit_quietly)
