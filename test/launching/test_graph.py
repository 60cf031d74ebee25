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
    load_graph,
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


def test_launch_files_load_where_ros_launch_is_installed():
    launch_ros = pytest.importorskip("launch_ros")  # absent from the PyPI wheels; present on ROS
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    assert launch_ros
    for path in LAUNCH_DIR.glob("*.launch.py"):
        description = PythonLaunchDescriptionSource(str(path)).get_launch_description(None)
        assert description.entities
