"""The one way a dp_ros node process runs: init, build, spin, close (every node's main()).

A node that cannot be built from its parameters (ValueError, OSError: a bad value, a missing
store, no terminal) is refused at start with the reason on stderr and exit code 2. The node may
have `start()` (called once spinning can begin), `close()` (called on the way out, whatever
happened), `done` (a threading.Event that ends the process) and `exit_code`.
"""

import sys
from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

REFUSED_AT_START = 2


def run_node(name: str, make_node: Callable[[], Node], args=None) -> int:
    rclpy.init(args=args)
    try:
        node = make_node()
    except (ValueError, OSError) as error:
        print(f"{name}: {error}", file=sys.stderr)
        rclpy.try_shutdown()
        return REFUSED_AT_START
    # Single-threaded on purpose: rclpy's multi-threaded executor busy-spins while a ready
    # callback waits for its group. Nodes that must not block use threads of their own.
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    done = getattr(node, "done", None)
    try:
        if hasattr(node, "start"):
            node.start()
        if done is None:
            executor.spin()
        else:  # a node that finishes by itself (teleop after N episodes): check between waits
            while rclpy.ok() and not done.is_set():
                executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if hasattr(node, "close"):
            node.close()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return getattr(node, "exit_code", 0)
