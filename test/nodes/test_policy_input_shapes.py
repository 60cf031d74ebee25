"""A checkpoint on the wrong robot or task is refused at configure, once, naming both shapes
(issue 14: a Can checkpoint on the Lift sim warned every 2 s forever instead)."""

import threading
import time

import pytest
import rclpy

from dp_ros import conversions as conv
from dp_ros.keys import EEF_POS, OBJECT_STATE
from dp_ros.launching.lifecycle import LifecycleClient
from dp_ros.nodes.qos import SENSOR_QOS
from dp_ros.policy.deployment import task_of
from dp_ros.policy.shape_meta import image_shape_meta
from dp_ros.testing.checkpoints import make_tiny_checkpoint
from dp_ros.testing.processes import ChildProcess
from dp_ros.testing.robot_feed import RobotFeed

pytestmark = pytest.mark.ros
OBJECT_TOPIC = "/shape_test/object_state"


class ObjectFeed:
    """Publishes a JointState with `size` positions on OBJECT_TOPIC at 20 Hz."""

    def __init__(self, context, size: int) -> None:
        self.node = rclpy.create_node("object_feed", context=context)
        from sensor_msgs.msg import JointState

        self.publisher = self.node.create_publisher(JointState, OBJECT_TOPIC, SENSOR_QOS)
        self.size = size
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.05):
            stamp = self.node.get_clock().now().nanoseconds
            names = [f"o{i}" for i in range(self.size)]
            self.publisher.publish(conv.array_to_joint_state([0.1] * self.size, stamp, names))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2)
        self.node.destroy_node()


def test_object_state_of_another_task_is_refused_at_configure_naming_both_shapes(
    context, tmp_path
):
    meta = image_shape_meta(cameras=(), low_dim={EEF_POS: 3, OBJECT_STATE: 10})
    checkpoint = make_tiny_checkpoint(
        tmp_path / "can_state", meta, metadata={"deployment": {"task": "can"}}
    )
    robot = RobotFeed(context, rate_hz=20)
    objects = ObjectFeed(context, size=14)  # what the Lift sim publishes
    node = ChildProcess.python(
        "-m", "dp_ros.nodes.policy_node", "--ros-args", "-r", "__node:=shape_policy",
        "-p", f"checkpoint:={checkpoint}", "-p", f"object_topic:={OBJECT_TOPIC}",
        "-p", "input_check_timeout:=20.0", name="policy_node",
    )  # fmt: skip
    client_node = rclpy.create_node("shape_test_client", context=context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(client_node)
    try:
        lifecycle = LifecycleClient(client_node, executor, "/shape_policy")
        assert lifecycle.wait_for_services(60), node.output()
        assert not lifecycle.transition("configure", timeout=90)
        assert lifecycle.state() == "unconfigured"
        line = node.wait_for(lambda text: "configure failed" in text, timeout=10)
        assert f"{OBJECT_TOPIC} gives object with shape (14,)" in line
        assert "expects (10,)" in line and "task 'can'" in line
        # Refused at once: the per-message warning ("has 14 positions") never appears.
        time.sleep(1.0)
        assert "positions; expected" not in node.output()
    finally:
        node.stop()
        executor.shutdown()
        client_node.destroy_node()
        objects.close()
        robot.close()


def test_task_of_reads_old_and_new_metadata():
    assert task_of({}) == ""
    assert task_of({"deployment": {"task": "lift"}}) == "lift"
    assert task_of({"deployment": {"task": ["can", "lift"]}}) == "can/lift"
