"""policy_node's configure-time check: one message of each joint-state input against the
checkpoint's input sizes, so a robot whose gripper or object state has another size is refused
at configure, naming both shapes, instead of failing on every message once active."""

import time

from rclpy.node import Node
from rclpy.wait_for_message import wait_for_message
from sensor_msgs.msg import JointState

from dp_ros.acting.inputs import STREAM_BY_NAME
from dp_ros.nodes.qos import SENSOR_QOS
from dp_ros.policy.checkpoint import read_checkpoint_json
from dp_ros.policy.deployment import check_input_shape, task_of


def check_joint_state_inputs(
    node: Node,
    plan: dict[str, str],
    expected: dict[str, tuple[int, ...]],
    checkpoint: str,
    timeout_s: float,
    gripper_joint_names: list[str],
) -> None:
    """One message of each joint-state input in `plan` (stream name -> topic; the sizes that
    differ between tasks and robots, the pose is always 3 + 4), checked against the
    checkpoint's (To, D) shapes.

    Raises ValueError naming both shapes. An input silent for `timeout_s` is left to the
    per-message check (the robot may start later); `timeout_s` <= 0 skips the check."""
    if timeout_s <= 0:
        return
    task = task_of(read_checkpoint_json(checkpoint).get("metadata", {}))
    deadline = time.monotonic() + timeout_s
    for stream_name, topic in plan.items():
        stream = STREAM_BY_NAME[stream_name]
        if stream.kind != "joint_state":
            continue
        remaining = max(0.0, deadline - time.monotonic())
        received, msg = wait_for_message(
            JointState, node, topic, qos_profile=SENSOR_QOS, time_to_wait=remaining
        )
        if not received:
            node.get_logger().warning(
                f"no message on {topic} in {timeout_s} s at configure:"
                " its size is checked as messages arrive"
            )
            continue
        names = gripper_joint_names if stream_name == "gripper" else []
        size = len(names) if names else len(msg.position)
        key = stream.keys[0]
        check_input_shape(key, topic, size, expected[key][-1], task)
