"""Build a ROS 2 LaunchDescription from a dp_ros graph (used by launch/<graph>.launch.py).

Only imported where ROS 2 launch is installed. Arguments become DeclareLaunchArgument; at launch
time an OpaqueFunction reads their values and calls the same `resolve()` the dp-ros runner uses,
so both start the same nodes with the same parameters, remappings and conditions. Lifecycle
nodes are configured and activated through launch_ros's lifecycle events.

The graph also ends the way the runner ends it (launch by itself ends only when idle or on
Ctrl-C): when any node exits (eval_node and the scripted teleop finish by exiting) an
OnProcessExit handler shuts launch down, or fails it (exit code 1) when the node failed; when a
lifecycle node refuses configure or activate, an OnStateTransition handler fails it. The
decisions are dp_ros.launching.graph's, shared with the runner.
"""

import lifecycle_msgs.msg
from launch import LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    LogInfo,
    OpaqueFunction,
    RegisterEventHandler,
)
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown, matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState

from dp_ros.launching.graph import (
    ResolvedNode,
    launch_exit_verdict,
    load_graph,
    refused_transition_message,
    resolve,
)

TRANSITION_IDS = {
    "configure": lifecycle_msgs.msg.Transition.TRANSITION_CONFIGURE,
    "activate": lifecycle_msgs.msg.Transition.TRANSITION_ACTIVATE,
}
# The transition states a refused transition returns from: (from, back to) as launch_ros labels
# the node's transition events (on_configure FAILURE: configuring -> unconfigured).
REFUSALS = {"configure": ("configuring", "unconfigured"), "activate": ("activating", "inactive")}


class GraphFailedError(RuntimeError):
    """Raised from an event handler: launch logs it, shuts down and exits with code 1."""


def end_graph_on_exit(action, name: str) -> RegisterEventHandler:
    """When `action`'s process exits, end the launch: cleanly, or as a failure."""

    def on_exit(event, context):
        verdict = launch_exit_verdict(name, event.returncode, context.is_shutdown)
        if verdict is None:
            return None
        kind, message = verdict
        if kind == "fail":
            raise GraphFailedError(message)
        return [LogInfo(msg=message), EmitEvent(event=Shutdown(reason=message))]

    return RegisterEventHandler(OnProcessExit(target_action=action, on_exit=on_exit))


def fail_on_refusal(action, name: str, transition: str) -> RegisterEventHandler:
    start, goal = REFUSALS[transition]

    def refused(context):
        raise GraphFailedError(refused_transition_message(name, transition))

    return RegisterEventHandler(
        OnStateTransition(
            target_lifecycle_node=action,
            start_state=start,
            goal_state=goal,
            entities=[OpaqueFunction(function=refused)],
        )
    )


def node_actions(node: ResolvedNode) -> list:
    common = dict(
        package="dp_ros",
        executable=node.executable,
        name=node.name,
        namespace="",
        parameters=[*map(str, node.parameter_files), node.parameters],
        remappings=list(node.remappings),
        output="screen",
    )
    if not node.lifecycle:
        action = Node(**common)
        return [action, end_graph_on_exit(action, node.name)]
    action = LifecycleNode(**common)
    actions = [action, end_graph_on_exit(action, node.name)]
    actions += [fail_on_refusal(action, node.name, step) for step in node.autostart]
    if "configure" in node.autostart:
        actions.append(_change_state(action, "configure"))
    if "activate" in node.autostart:
        actions.append(
            RegisterEventHandler(
                OnStateTransition(
                    target_lifecycle_node=action,
                    goal_state="inactive",
                    entities=[_change_state(action, "activate")],
                )
            )
        )
    return actions


def _change_state(action, transition: str) -> EmitEvent:
    return EmitEvent(
        event=ChangeState(
            lifecycle_node_matcher=matches_action(action),
            transition_id=TRANSITION_IDS[transition],
        )
    )


def launch_description_for(graph_name: str) -> LaunchDescription:
    graph = load_graph(graph_name)
    # A required argument has no default: launch itself refuses to start without it.
    declared = [
        DeclareLaunchArgument(arg.name, description=arg.description)
        if arg.required
        else DeclareLaunchArgument(
            arg.name, default_value=arg.default, description=arg.description
        )
        for arg in graph.arguments
    ]

    def build(context, *args, **kwargs):
        values = {
            arg.name: LaunchConfiguration(arg.name).perform(context) for arg in graph.arguments
        }
        return [action for node in resolve(graph, values) for action in node_actions(node)]

    return LaunchDescription([*declared, OpaqueFunction(function=build)])
