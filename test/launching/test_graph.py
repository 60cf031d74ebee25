"""Graph descriptions: one source for the launch files and the dp-ros runner."""

import ast
from pathlib import Path

import pytest

from dp_ros.launching.graph import (
    Argument,
    Graph,
    NodeSpec,
    _check_references,
    config_dir,
    graph_names,
    launch_exit_verdict,
    load_graph,
    node_exit_outcome,
    refused_transition_message,
    resolve,
    ros_arguments,
)

LAUNCH_DIR = Path(__file__).resolve().parents[2] / "launch"


def launch_graph_name(launch_file: Path) -> str:
    """The graph name a launch file passes to launch_description_for(...)."""
    tree = ast.parse(launch_file.read_text())
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "launch_description_for"
    ]
    assert len(calls) == 1, f"{launch_file.name}: expected one launch_description_for call"
    return calls[0].args[0].value


def test_every_launch_file_builds_from_the_graph_of_its_name_and_vice_versa():
    launch_files = sorted(LAUNCH_DIR.glob("*.launch.py"))
    assert launch_files
    names = {
        path.name.removesuffix(".launch.py"): launch_graph_name(path) for path in launch_files
    }
    assert all(stem == graph for stem, graph in names.items()), names
    assert sorted(names) == graph_names()


@pytest.mark.parametrize("name", graph_names())
def test_each_graph_resolves_with_defaults_and_names_real_modules(name):
    import importlib.util

    graph = load_graph(name)
    for node in resolve(graph, {"checkpoint": "/ckpt"} if name == "policy" else {}):
        assert importlib.util.find_spec(node.module) is not None, node.module
        assert all(path.is_file() for path in node.parameter_files)


def test_policy_graph_substitutes_arguments_and_applies_conditions():
    graph = load_graph("policy")
    with_sim = resolve(graph, {"checkpoint": "/ckpt", "device": "cuda:1", "task": "can"})
    assert [node.name for node in with_sim] == ["sim_node", "policy_node"]
    sim, policy = with_sim
    assert sim.parameters["task"] == "can" and sim.parameters["publish_clock"] is True
    assert policy.parameters["checkpoint"] == "/ckpt"
    assert policy.parameters["device"] == "cuda:1"
    assert policy.parameters["use_sim_time"] is True
    assert policy.lifecycle and policy.autostart == ("configure", "activate")
    assert policy.parameter_files == (config_dir() / "policy_node.yaml",)

    robot = resolve(graph, {"checkpoint": "/ckpt", "with_sim": "false", "object_topic": ""})
    assert [node.name for node in robot] == ["policy_node"]
    assert robot[0].parameters["use_sim_time"] is False
    assert "object_topic" not in robot[0].parameters  # empty: the node's default applies


def test_bad_arguments_are_refused_by_name(tmp_path):
    graph = load_graph("policy")
    with pytest.raises(ValueError, match=r"has no argument\(s\) \['devcie'\]"):
        resolve(graph, {"devcie": "cuda"})
    with pytest.raises(ValueError, match="'maybe' is not a boolean"):
        resolve(graph, {"with_sim": "maybe"})
    with pytest.raises(FileNotFoundError, match="parameter file .*missing.yaml not found"):
        resolve(graph, {"policy_config": str(tmp_path / "missing.yaml")})
    own = tmp_path / "mine.yaml"
    own.write_text("/**:\n  ros__parameters:\n    device: cpu\n")
    (policy,) = resolve(graph, {"policy_config": str(own), "with_sim": "false"})
    assert policy.parameter_files == (own,)


def test_undeclared_argument_use_is_refused():
    node = NodeSpec("n", "n", "m", parameters={"x": "$(arg nope)"})
    graph = Graph("g", "", (Argument("yes", "", ""),), (node,))
    with pytest.raises(ValueError, match=r"uses \$\(arg nope\), which is not declared"):
        _check_references(graph)


def test_ros_arguments_are_what_a_launch_would_pass():
    (policy,) = resolve(load_graph("policy"), {"checkpoint": "/c k", "with_sim": "false"})
    args = ros_arguments(policy)
    assert args[:3] == ["--ros-args", "-r", "__node:=policy_node"]
    assert ["--params-file", str(config_dir() / "policy_node.yaml")] == args[3:5]
    assert "checkpoint:=/c k" in args and "use_sim_time:=false" in args


def test_any_node_exit_ends_the_graph_with_its_code():
    assert node_exit_outcome("eval_node", 0) == (
        "eval_node exited with code 0 (finished); stopping the graph",
        0,
    )
    assert node_exit_outcome("eval_node", 1)[1] == 1
    assert "(failed)" in node_exit_outcome("sim_node", 2)[0]
    assert node_exit_outcome("sim_node", -9)[1] == 128 + 9  # killed by SIGKILL, as a shell says


def test_launch_ends_on_a_node_exit_unless_already_stopping():
    """What launch/*.launch.py's exit handlers do (the same rule as the runner's)."""
    assert launch_exit_verdict("eval_node", 0, shutting_down=False) == (
        "shutdown",
        node_exit_outcome("eval_node", 0)[0],
    )
    kind, message = launch_exit_verdict("eval_node", 1, shutting_down=False)
    assert kind == "fail" and "eval_node exited with code 1" in message
    # Ctrl-C: every node exits while launch stops; none of those exits is a verdict.
    assert launch_exit_verdict("sim_node", 1, shutting_down=True) is None
    refusal = refused_transition_message("policy_node", "configure")
    assert refusal.startswith("policy_node refused configure")


# ---- with the genuine ROS 2 launch API (any ROS install; not installable from PyPI here) -------


def launched_actions(graph: str, arguments: dict[str, str]) -> list:
    """The actions launch/<graph>.launch.py produces for `arguments`, evaluated by launch."""
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    path = LAUNCH_DIR / f"{graph}.launch.py"
    context = LaunchContext()
    description = PythonLaunchDescriptionSource(str(path)).get_launch_description(context)
    declared = [e for e in description.entities if isinstance(e, DeclareLaunchArgument)]
    assert [d.name for d in declared] == [a.name for a in load_graph(graph).arguments]
    defaults = {d.name: d.default_value[0].text for d in declared if d.default_value}
    context.launch_configurations.update(defaults)
    context.launch_configurations.update(arguments)
    actions = []
    for entity in description.entities:
        if isinstance(entity, OpaqueFunction):
            actions += entity.visit(context) or []
    return actions


@pytest.mark.parametrize(
    "graph, arguments",
    [
        ("policy", {"checkpoint": "/c"}),
        ("sim", {}),
        ("evaluate", {"video_episodes": "0"}),
        ("record", {"store": "/tmp/s.zarr"}),
    ],
)
def test_launch_files_produce_the_graphs_nodes_and_their_stop_handlers(graph, arguments):
    pytest.importorskip("launch_ros")  # absent from the PyPI wheels; present on any ROS install
    from launch.actions import RegisterEventHandler
    from launch.event_handlers import OnProcessExit
    from launch_ros.actions import LifecycleNode, Node
    from launch_ros.event_handlers import OnStateTransition

    actions = launched_actions(graph, arguments)
    expected = resolve(load_graph(graph), arguments)
    nodes = [action for action in actions if isinstance(action, Node)]
    executables = [node.node_executable for node in nodes]
    assert executables == [n.executable for n in expected]
    assert {node.node_package for node in nodes} == {"dp_ros"}
    handlers = [a.event_handler for a in actions if isinstance(a, RegisterEventHandler)]
    # Every node's exit ends the launch, as it ends dp-ros.
    assert sum(isinstance(h, OnProcessExit) for h in handlers) == len(nodes)
    lifecycle = [node for node in nodes if isinstance(node, LifecycleNode)]
    transitions = sum(len(n.autostart) for n in expected if n.lifecycle)
    # A refusal handler per autostart transition, plus the handler that activates.
    activations = sum("activate" in n.autostart for n in expected)
    assert sum(isinstance(h, OnStateTransition) for h in handlers) == transitions + activations
    assert len(lifecycle) == sum(n.lifecycle for n in expected)


@pytest.mark.parametrize("code, launch_code", [(0, 0), (3, 1)])
def test_real_launch_ends_when_a_node_exits_with_its_verdict(code, launch_code):
    """launch.LaunchService with our exit handler: a process exiting ends the launch (the other
    one, which would run 60 s, is stopped), with exit code 1 when it failed."""
    import sys
    import time

    pytest.importorskip("launch_ros")
    from launch import LaunchDescription, LaunchService
    from launch.actions import ExecuteProcess

    from dp_ros.launching.ros_launch import end_graph_on_exit

    finishing = ExecuteProcess(cmd=[sys.executable, "-c", f"raise SystemExit({code})"])
    staying = ExecuteProcess(cmd=[sys.executable, "-c", "import time; time.sleep(60)"])
    service = LaunchService()
    service.include_launch_description(
        LaunchDescription(
            [
                finishing,
                staying,
                end_graph_on_exit(finishing, "finishing"),
                end_graph_on_exit(staying, "staying"),
            ]
        )
    )
    started = time.monotonic()
    assert service.run() == launch_code
    assert time.monotonic() - started < 30
