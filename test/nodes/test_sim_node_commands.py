"""sim_node as a robot behind standard controllers (command_interface twist / pose).

A stand-in controller client in this process answers observations with a command stamped for
that step: a twist (velocity held for one step) or a pose target (the observed pose moved), plus
a gripper position. The sim must apply exactly the delta action they encode (robosuite's
OSC_POSE: 0.05 m and 0.5 rad per unit), hold on a step whose only command is stamped for a later
step, and, like MoveIt Servo, keep applying a twist until `command_timeout`.
"""

import numpy as np
import pytest
from geometry_msgs.msg import PoseStamped, TwistStamped
from std_msgs.msg import Float64MultiArray

from dp_msgs.msg import ActionChunk
from dp_ros import conversions as conv
from dp_ros.acting.action_convention import SIM_CONVENTION, compose_pose
from dp_ros.nodes.qos import SENSOR_QOS, STEP_QOS
from dp_ros.testing.observer import GraphObserver
from dp_ros.testing.processes import ChildProcess

pytestmark = [pytest.mark.ros, pytest.mark.sim]
PERIOD_NS = 50_000_000
SOURCE_HOLD, SOURCE_COMMAND = ActionChunk.SOURCE_HOLD, ActionChunk.SOURCE_POLICY
# The action each command encodes: 0.4 units along x (0.02 m), -0.2 about z (0.1 rad), closed.
ACTION = np.array([0.4, 0.0, 0.0, 0.0, 0.0, -0.2, 1.0], np.float32)


class Controller(GraphObserver):
    def __init__(self, interface: str, skip: str) -> None:
        super().__init__(f"controller_{interface}")
        self.interface = interface
        self.skip = skip  # every 4th step: "future" stamps its command a step ahead, "silent"
        self.applied: list[ActionChunk] = []
        self.skip_every = 4
        self.silent_stamps: set[int] = set()  # steps given no command at all
        self.sent = 0
        node = self.node
        self.twist = node.create_publisher(TwistStamped, "/servo_node/delta_twist_cmds", 10)
        self.target = node.create_publisher(PoseStamped, "/target_pose", 10)
        self.gripper = node.create_publisher(Float64MultiArray, "/gripper_controller/commands", 10)
        node.create_subscription(PoseStamped, "/eef_pose", self._on_pose, SENSOR_QOS)
        node.create_subscription(ActionChunk, "/sim/applied_action", self.applied.append, STEP_QOS)

    def _on_pose(self, msg: PoseStamped) -> None:
        stamp_ns = conv.stamp_to_ns(msg.header.stamp)
        self.sent += 1
        if self.sent % self.skip_every == 0:
            if self.skip == "silent":
                self.silent_stamps.add(stamp_ns)
                return
            # For a step far ahead: newer commands replace it long before that step comes.
            stamp_ns += 10 * PERIOD_NS
        self.gripper.publish(conv.positions_to_multi_array([0.0]))  # closed: action +1
        if self.interface == "twist":
            linear = ACTION[:3] * SIM_CONVENTION.translation_scale / (PERIOD_NS / 1e9)
            angular = ACTION[3:6] * SIM_CONVENTION.rotation_scale / (PERIOD_NS / 1e9)
            self.twist.publish(conv.arrays_to_twist(linear, angular, stamp_ns, "world"))
        else:
            position, quat = conv.pose_to_arrays(msg, "/eef_pose")
            target = compose_pose(position, quat, ACTION, SIM_CONVENTION)
            self.target.publish(conv.arrays_to_pose(*target, stamp_ns, "world"))


def run_sim(controller: Controller, interface: str, timeout_s: float) -> list[ActionChunk]:
    """The actions the sim applied, after its start-up steps. At a quarter of real time (200 ms
    per step) so that this process, on a loaded machine, answers most steps in time."""
    sim = ChildProcess.python(
        "-m", "dp_ros.nodes.sim_node", "--ros-args", "-p", "task:=lift", "-p", "cameras:=false",
        "-p", "real_time_factor:=0.25", "-p", f"command_interface:={interface}",
        "-p", f"command_timeout:={timeout_s}", name="sim_node",
    )  # fmt: skip
    try:
        ok = controller.spin_until(lambda: len(controller.applied) >= 30, timeout=120)
        assert ok, sim.output()
    finally:
        controller.close()
        sim.stop()
    return controller.applied[5:]


def test_sim_applies_the_delta_a_pose_target_stamped_for_the_step_encodes():
    # A timeout below one step: only the command stamped for this very step is live.
    steps = run_sim(Controller("pose", skip="future"), "pose", timeout_s=0.02)
    commanded = [np.asarray(msg.data) for msg in steps if msg.source == SOURCE_COMMAND]
    held = [np.asarray(msg.data) for msg in steps if msg.source == SOURCE_HOLD]
    # One step in four gets no command stamped for it; on a loaded machine more may be late
    # (the sim does not wait for commands), which holds too.
    assert len(commanded) >= len(steps) // 3, [msg.source for msg in steps]
    assert len(held) >= len(steps) // 8, [msg.source for msg in steps]
    for action in commanded:
        np.testing.assert_allclose(action, ACTION, atol=1e-4)
    for action in held:  # zero motion, the gripper as last commanded
        np.testing.assert_allclose(action, [0, 0, 0, 0, 0, 0, 1.0], atol=1e-6)


def test_a_twist_is_applied_as_its_delta_and_persists_until_the_timeout_as_with_servo():
    # No command at all on every 4th step: the previous step's twist (50 ms old) still applies.
    controller = Controller("twist", skip="silent")
    steps = run_sim(controller, "twist", timeout_s=0.1)
    silent = [
        msg for msg in steps if conv.stamp_to_ns(msg.header.stamp) in controller.silent_stamps
    ]
    assert len(silent) >= 4
    # Without the timeout every one of them would hold; a loaded machine may make one twist
    # late enough to leave a silent step without a live twist.
    applied = [msg for msg in silent if msg.source == SOURCE_COMMAND]
    assert len(applied) >= len(silent) * 2 // 3, [msg.source for msg in steps]
    for msg in steps:
        if msg.source == SOURCE_COMMAND:
            np.testing.assert_allclose(np.asarray(msg.data), ACTION, atol=1e-4)
