"""dp-ros: start a node graph as separate processes, without `ros2 launch`.

    dp-ros list                                   graphs and their arguments
    dp-ros show policy checkpoint:=ckpt           the commands it would run
    dp-ros launch policy checkpoint:=ckpt device:=cuda [--duration 30]

It starts the nodes of the graph (the same description launch/<graph>.launch.py uses), drives
the lifecycle transitions the graph asks for, prints every node's output prefixed with its name,
forwards SIGINT/SIGTERM, and stops everything cleanly: when it is interrupted, when --duration
runs out, or as soon as any node exits (that node's exit code becomes the runner's).
"""

import argparse
import signal
import subprocess
import sys
import threading
import time

from dp_ros.launching.graph import (
    ResolvedNode,
    argument_values,
    check_required,
    graph_names,
    load_graph,
    node_exit_outcome,
    refused_transition_message,
    resolve,
    ros_arguments,
)
from dp_ros.launching.processes import ManagedProcess

STOP_TIMEOUT_S = 15.0
SERVICE_POLL_S = 0.5  # lifecycle services are awaited in slices, so a stopping graph is noticed
_print_lock = threading.Lock()


def node_command(node: ResolvedNode) -> list[str]:
    return [sys.executable, "-m", node.module, *ros_arguments(node)]


def parse_assignments(items: list[str]) -> dict[str, str]:
    """`name:=value` launch-style arguments (as `ros2 launch` takes them)."""
    values = {}
    for item in items:
        name, separator, value = item.partition(":=")
        if not separator or not name:
            raise ValueError(f"argument {item!r} is not of the form name:=value")
        values[name] = value
    return values


def echo(name: str, line: str) -> None:
    with _print_lock:
        print(f"[{name}] {line}", flush=True)


class GraphRun:
    """The processes of one resolved graph, and their lifecycle driving."""

    def __init__(self, nodes: list[ResolvedNode]) -> None:
        self.nodes = nodes
        self.processes: dict[str, ManagedProcess] = {}
        self.stopping = threading.Event()

    def start(self) -> None:
        for node in self.nodes:
            self.processes[node.name] = ManagedProcess(
                node_command(node), name=node.name, echo=echo
            )

    def drive_lifecycles(self, timeout: float = 300.0) -> bool:
        """Apply each lifecycle node's autostart transitions; False if one was refused."""
        managed = [node for node in self.nodes if node.autostart]
        if not managed:
            return True
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        from dp_ros.launching.lifecycle import LifecycleClient

        context = rclpy.Context()
        # Not sys.argv: the runner's own name:=value arguments are not ROS remap rules.
        rclpy.init(
            args=["dp-ros"], context=context, signal_handler_options=SignalHandlerOptions.NO
        )
        node = rclpy.create_node("dp_ros_runner", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        try:
            for target in managed:
                client = LifecycleClient(node, executor, f"/{target.name}", self.stopping)
                if not self._wait_for_services(client, timeout):
                    if not self.stopping.is_set():
                        echo("dp-ros", f"{target.name}: lifecycle services not available")
                    return False
                for transition in target.autostart:
                    if self.stopping.is_set():
                        return False
                    try:
                        ok = client.transition(transition, timeout)
                    except TimeoutError as error:
                        if not self.stopping.is_set():
                            echo("dp-ros", f"{target.name}: {transition}: {error}")
                        return False
                    echo("dp-ros", f"{target.name}: {transition} {'done' if ok else 'REFUSED'}")
                    if not ok:
                        echo("dp-ros", refused_transition_message(target.name, transition))
                        return False
            return True
        finally:
            executor.shutdown()
            node.destroy_node()
            rclpy.shutdown(context=context)

    def _wait_for_services(self, client, timeout: float) -> bool:
        """True once `client`'s services are up; False after `timeout` or once stopping."""
        deadline = time.monotonic() + timeout
        while not self.stopping.is_set() and time.monotonic() < deadline:
            if client.wait_for_services(SERVICE_POLL_S):
                return True
        return False

    def first_exited(self) -> tuple[str, int] | None:
        for name, process in self.processes.items():
            code = process.process.poll()
            if code is not None:
                return name, code
        return None

    def stop(self) -> None:
        """SIGTERM every node at once, then wait; SIGKILL what does not exit in time.

        SIGTERM, not SIGINT: dp_ros nodes treat both as Ctrl-C (dp_ros.nodes.spin), but a node
        that is still starting Python (site and its .pth hooks run before any of our code) ends
        silently on SIGTERM where SIGINT prints a KeyboardInterrupt traceback.
        """
        self.stopping.set()
        for process in self.processes.values():
            if process.process.poll() is None:
                process._signal_group(signal.SIGTERM)
        started = time.monotonic()
        deadline = started + STOP_TIMEOUT_S
        took = {}
        for process in self.processes.values():
            try:
                process.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                echo("dp-ros", f"{process.name} did not stop in {STOP_TIMEOUT_S}s: SIGKILL")
                process.kill()
            took[process.name] = time.monotonic() - started
        if took:
            echo("dp-ros", "stopped in " + ", ".join(f"{n} {s:.1f} s" for n, s in took.items()))


def run_graph(nodes: list[ResolvedNode], duration: float | None) -> int:
    run = GraphRun(nodes)
    interrupted = threading.Event()

    def on_signal(signum, frame) -> None:
        # Only ever a request: a second Ctrl-C while the graph stops must not raise anywhere.
        interrupted.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    exit_code = 0
    # A daemon: the runner never waits for it at exit (it may wait on a node that is gone).
    driver = threading.Thread(target=lambda: lifecycle_ok.append(run.drive_lifecycles()))
    driver.daemon = True
    lifecycle_ok: list[bool] = []
    try:
        run.start()
        driver.start()
        exit_code = _watch(run, interrupted, lifecycle_ok, duration)
    finally:
        run.stop()
        if driver.is_alive():
            driver.join(timeout=2 * SERVICE_POLL_S + 1)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    echo("dp-ros", "all nodes stopped")
    return exit_code


def _watch(
    run: GraphRun, interrupted: threading.Event, lifecycle_ok: list, duration: float | None
) -> int:
    """Wait until the graph should stop; the runner's exit code."""
    deadline = None if duration is None else time.monotonic() + duration
    while not interrupted.is_set():
        exited = run.first_exited()
        if exited is not None:
            message, code = node_exit_outcome(*exited)
            echo("dp-ros", message)
            return code
        if lifecycle_ok == [False]:
            return 1
        if deadline is not None and time.monotonic() >= deadline:
            echo("dp-ros", f"--duration {duration}s reached; stopping the graph")
            return 0
        time.sleep(0.1)
    return 0


def describe_graphs() -> str:
    lines = []
    for name in graph_names():
        graph = load_graph(name)
        lines.append(f"{name}: {' '.join(graph.description.split())}")
        for argument in graph.arguments:
            assignment = (
                f"{argument.name}:={'(required)' if argument.required else argument.default}"
            )
            lines.append(f"    {assignment:<40} {argument.description}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dp-ros",
        description="Start a dp_ros node graph as processes (what `ros2 launch dp_ros "
        "<graph>.launch.py` starts, without needing ROS 2 launch).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="graphs and their arguments")
    for command, text in (("show", "print the commands"), ("launch", "start the graph")):
        cmd = sub.add_parser(command, help=text)
        cmd.add_argument("graph", help=f"one of: {', '.join(graph_names())}")
        cmd.add_argument("arguments", nargs="*", help="launch arguments, name:=value")
        if command == "launch":
            cmd.add_argument("--duration", type=float, help="stop after this many seconds")
    options = parser.parse_args(argv)
    if options.command == "list":
        print(describe_graphs())
        return 0
    try:
        graph = load_graph(options.graph)
        overrides = parse_assignments(options.arguments)
        argument_values(graph, overrides)
        check_required(graph, overrides)
        nodes = resolve(graph, overrides)
    except (ValueError, FileNotFoundError) as error:
        print(f"dp-ros: {error}", file=sys.stderr)
        return 2
    if options.command == "show":
        for node in nodes:
            lifecycle = f"  (lifecycle: {' -> '.join(node.autostart)})" if node.autostart else ""
            print(" ".join(node_command(node)) + lifecycle)
        return 0
    return run_graph(nodes, options.duration)


if __name__ == "__main__":
    sys.exit(main())
