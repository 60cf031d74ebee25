"""Node graphs described once, read by both the ROS 2 launch files and the dp-ros runner.

A graph (src/dp_ros/graphs/<name>.yaml) lists launch arguments and nodes: executable, parameter
files, parameter values, remappings, a condition, and the lifecycle transitions to drive after
start. Values may contain `$(arg NAME)`, replaced by the argument's value. `resolve()` turns a
graph plus argument values into concrete `ResolvedNode`s; the runner starts those as processes,
and launch/<name>.launch.py hands the very same list to launch_ros (dp_ros.launching.ros_launch),
so both start the same nodes with the same parameters.
"""

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

ARG_PATTERN = re.compile(r"\$\(arg ([A-Za-z_][A-Za-z0-9_]*)\)")
TRUE_WORDS = {"true", "1", "yes", "on"}
FALSE_WORDS = {"false", "0", "no", "off", ""}
KNOWN_TRANSITIONS = ("configure", "activate")


@dataclass(frozen=True)
class Argument:
    name: str
    default: str
    description: str
    required: bool = False  # no default: dp-ros and ros2 launch both refuse to start without it


@dataclass(frozen=True)
class NodeSpec:
    name: str
    executable: str  # console script: `ros2 run dp_ros <executable>`, or `<executable>` here
    module: str  # python module with main(), for starting without an install's scripts
    lifecycle: bool = False
    autostart: tuple[str, ...] = ()
    parameter_files: tuple[str, ...] = ()  # under the package's config directory, or absolute
    parameters: dict = field(default_factory=dict)
    remappings: dict = field(default_factory=dict)
    condition: str = ""  # "$(arg x)": start only if it resolves to true


@dataclass(frozen=True)
class Graph:
    name: str
    description: str
    arguments: tuple[Argument, ...]
    nodes: tuple[NodeSpec, ...]


@dataclass(frozen=True)
class ResolvedNode:
    name: str
    executable: str
    module: str
    lifecycle: bool
    autostart: tuple[str, ...]
    parameter_files: tuple[Path, ...]
    parameters: dict  # name -> typed value (YAML scalars), empty values left out
    remappings: tuple[tuple[str, str], ...]


def graph_names() -> list[str]:
    folder = resources.files("dp_ros") / "graphs"
    return sorted(
        entry.name[: -len(".yaml")] for entry in folder.iterdir() if entry.name.endswith(".yaml")
    )


def load_graph(name: str) -> Graph:
    """Read and check src/dp_ros/graphs/<name>.yaml."""
    path = resources.files("dp_ros") / "graphs" / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"no graph named {name!r}; known graphs: {graph_names()}")
    document = yaml.safe_load(path.read_text())
    arguments = tuple(
        Argument(
            arg_name,
            str(spec.get("default", "")),
            spec.get("description", ""),
            bool(spec.get("required", False)),
        )
        for arg_name, spec in (document.get("arguments") or {}).items()
    )
    nodes = tuple(_node_spec(name, entry) for entry in document["nodes"])
    graph = Graph(name, document.get("description", ""), arguments, nodes)
    _check_references(graph)
    return graph


def _node_spec(graph_name: str, entry: dict) -> NodeSpec:
    unknown = set(entry) - {f for f in NodeSpec.__dataclass_fields__}
    if unknown:
        raise ValueError(
            f"graph {graph_name!r}: node {entry.get('name')!r} has unknown keys {unknown}"
        )
    spec = NodeSpec(
        name=entry["name"],
        executable=entry["executable"],
        module=entry["module"],
        lifecycle=bool(entry.get("lifecycle", False)),
        autostart=tuple(entry.get("autostart", ())),
        parameter_files=tuple(entry.get("parameter_files", ())),
        parameters=dict(entry.get("parameters") or {}),
        remappings=dict(entry.get("remappings") or {}),
        condition=str(entry.get("condition", "")),
    )
    bad = [t for t in spec.autostart if t not in KNOWN_TRANSITIONS]
    if bad or (spec.autostart and not spec.lifecycle):
        raise ValueError(
            f"graph {graph_name!r}: node {spec.name!r} autostart {list(spec.autostart)} needs "
            f"lifecycle: true and transitions from {list(KNOWN_TRANSITIONS)}"
        )
    return spec


def _check_references(graph: Graph) -> None:
    """Every $(arg x) used must be a declared argument."""
    declared = {argument.name for argument in graph.arguments}
    for node in graph.nodes:
        texts = [node.condition, *node.parameter_files, *node.remappings.values()]
        texts += [str(value) for value in node.parameters.values()]
        for text in texts:
            for used in ARG_PATTERN.findall(text):
                if used not in declared:
                    raise ValueError(
                        f"graph {graph.name!r}: node {node.name!r} uses $(arg {used}), "
                        f"which is not declared in arguments"
                    )


def config_dir() -> Path:
    """The package's config directory: the install's share/dp_ros/config, else the source tree."""
    try:
        from ament_index_python.packages import get_package_share_directory

        installed = Path(get_package_share_directory("dp_ros")) / "config"
        if installed.is_dir():
            return installed
    except (ImportError, LookupError, ValueError, OSError):  # not installed via ament
        pass
    source = Path(__file__).resolve().parents[3] / "config"
    if source.is_dir():
        return source
    raise FileNotFoundError("dp_ros config directory not found (neither installed nor in source)")


def substitute(text: str, values: dict[str, str]) -> str:
    return ARG_PATTERN.sub(lambda match: values[match.group(1)], text)


def is_true(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in TRUE_WORDS | FALSE_WORDS:
        raise ValueError(f"{text!r} is not a boolean (use true or false)")
    return lowered in TRUE_WORDS


def argument_values(graph: Graph, overrides: dict[str, str]) -> dict[str, str]:
    """Defaults overlaid with `overrides`; unknown argument names are refused."""
    declared = {argument.name: argument.default for argument in graph.arguments}
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise ValueError(
            f"graph {graph.name!r} has no argument(s) {unknown}; arguments: {sorted(declared)}"
        )
    return {**declared, **{name: str(value) for name, value in overrides.items()}}


def check_required(graph: Graph, overrides: dict[str, str]) -> None:
    """Refuse a graph whose required arguments are missing or empty, naming each."""
    missing = [
        argument
        for argument in graph.arguments
        if argument.required and not str(overrides.get(argument.name, "")).strip()
    ]
    if missing:
        needed = "; ".join(f"{a.name}:=... ({a.description})" for a in missing)
        raise ValueError(f"graph {graph.name!r} needs {needed}")


def resolve(graph: Graph, overrides: dict[str, str] | None = None) -> list[ResolvedNode]:
    """The nodes to start, with every $(arg) substituted and conditions applied."""
    values = argument_values(graph, overrides or {})
    folder = config_dir()
    resolved = []
    for node in graph.nodes:
        if node.condition and not is_true(substitute(node.condition, values)):
            continue
        parameters = {}
        for name, value in node.parameters.items():
            if isinstance(value, str):
                text = substitute(value, values)
                if text == "":
                    continue  # unset: the node's own default applies
                value = yaml.safe_load(text)
            parameters[name] = value
        # Relative names are under the package's config directory; absolute paths are the user's.
        files = tuple(folder / substitute(file, values) for file in node.parameter_files)
        for file in files:
            if not file.is_file():
                raise FileNotFoundError(f"node {node.name!r}: parameter file {file} not found")
        remappings = tuple(
            (source, substitute(target, values)) for source, target in node.remappings.items()
        )
        resolved.append(
            ResolvedNode(
                node.name,
                node.executable,
                node.module,
                node.lifecycle,
                node.autostart,
                files,
                parameters,
                remappings,
            )
        )
    return resolved


def node_exit_outcome(name: str, returncode: int) -> tuple[str, int]:
    """What a graph does when one of its nodes exits: the line to log and the graph's exit code.

    Any node exiting ends the graph (eval_node and scripted teleop_node finish by exiting; any
    other exit is a crash): the dp-ros runner and launch/*.launch.py's exit handlers both apply
    this. A node killed by signal N (negative return code) gives 128 + N, as a shell reports it.
    """
    code = returncode if returncode >= 0 else 128 - returncode
    verdict = "finished" if code == 0 else "failed"
    return f"{name} exited with code {returncode} ({verdict}); stopping the graph", code


def launch_exit_verdict(name: str, returncode: int, shutting_down: bool) -> tuple[str, str] | None:
    """What ros2 launch does when node `name` exits: None (the graph is already stopping),
    ("shutdown", message) for a clean finish, or ("fail", message) to end launch with an error.

    launch's own exit code is 0 or 1 (1 when an action raises), so a failing node's code is
    named in the message and launch exits 1; the dp-ros runner returns the code itself.
    """
    if shutting_down:
        return None
    message, code = node_exit_outcome(name, returncode)
    return ("shutdown" if code == 0 else "fail"), message


def refused_transition_message(name: str, transition: str) -> str:
    """The error both dp-ros and ros2 launch end with when a lifecycle transition is refused."""
    return f"{name} refused {transition} (see its log above); stopping the graph"


def ros_arguments(node: ResolvedNode) -> list[str]:
    """`--ros-args ...` for starting `node` as a process (what launch_ros passes too)."""
    args = ["--ros-args", "-r", f"__node:={node.name}"]
    for file in node.parameter_files:
        args += ["--params-file", str(file)]
    for name, value in node.parameters.items():
        args += ["-p", f"{name}:={_yaml_scalar(value)}"]
    for source, target in node.remappings:
        args += ["-r", f"{source}:={target}"]
    return args


def _yaml_scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return yaml.safe_dump(value, default_style=None).strip().removesuffix("\n...")
    return str(value)
