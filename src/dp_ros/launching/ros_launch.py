"""Build a ROS 2 LaunchDescription from a dp_ros graph (used by launch/<graph>.launch.py).

Only imported where ROS 2 launch is installed. Arguments become DeclareLaunchArgument; at launch
time an OpaqueFunction reads their values and calls the same `resolve()` the dp-ros runner uses,
so both start the same nodes with the same parameters, remappings and conditions. Lifecycle
nodes are configured and activated through launch_ros's lifecycle events.
"""

import lifecycle_msgs.msg
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState

from dp_ros.launching.graph import ResolvedNode, load_graph, resolve

TRANSITION_IDS = {
    "configure": lifecycle_msgs.msg.Transition.TRANSITION_CONFIGURE,
    "activate": lifecycle_msgs.msg.Transition.TRANSITION_ACTIVATE,
}


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
        return [Node(**common)]
    action = LifecycleNode(**common)
    actions = [action]
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
    declared = [
        DeclareLaunchArgument(arg.name, default_value=arg.default, description=arg.description)
        for arg in graph.arguments
    ]

    def build(context, *args, **kwargs):
        values = {
            arg.name: LaunchConfiguration(arg.name).perform(context) for arg in graph.arguments
        }
        return [action for node in resolve(graph, values) for action in node_actions(node)]

    return LaunchDescription([*declared, OpaqueFunction(function=build)])
