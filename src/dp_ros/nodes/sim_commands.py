"""sim_node's controller command inputs (command_interface twist or pose): TwistStamped,
PoseStamped targets and the Float64MultiArray gripper, turned back into the simulator's delta
action. A mixin of SimNode (code moved out of sim_node.py, not changed).
"""

import numpy as np
from geometry_msgs.msg import PoseStamped, TwistStamped
from std_msgs.msg import Float64MultiArray

from dp_msgs.msg import ActionChunk
from dp_ros import conversions as conv
from dp_ros.acting.action_convention import (
    SIM_CONVENTION,
    pose_to_delta,
    position_to_gripper,
    twist_to_delta,
)
from dp_ros.acting.chunk_timing import GRIPPER_COLUMN
from dp_ros.keys import (
    EEF_POS,
    EEF_QUAT,
)
from dp_ros.nodes.sim_params import (
    GRIPPER_CLOSED_M,
    GRIPPER_OPEN_M,
    NS,
)


class ControllerCommandInputs:
    """SimNode's methods for controller commands; they use its config, lock, player and
    observation."""

    def _subscribe_controller_commands(self) -> None:
        cfg = self.config
        if cfg.command_interface == "twist":
            self.create_subscription(TwistStamped, cfg.twist_topic, self._on_twist, 10)
        else:
            self.create_subscription(PoseStamped, cfg.pose_command_topic, self._on_target, 10)
        self.create_subscription(
            Float64MultiArray, cfg.gripper_command_topic, self._on_gripper_command, 10
        )

    def _frame_ok(self, frame_id: str, topic: str) -> bool:
        if frame_id == self.config.frame_id:
            return True
        self.get_logger().warning(
            f"{topic}: command in frame {frame_id!r} ignored; expected {self.config.frame_id!r}",
            throttle_duration_sec=2.0,
        )
        return False

    def _on_twist(self, msg: TwistStamped) -> None:
        topic = self.config.twist_topic
        try:
            linear, angular = conv.twist_to_arrays(msg, topic)
        except ValueError as error:
            self.get_logger().warning(f"twist refused: {error}", throttle_duration_sec=2.0)
            return
        if self._frame_ok(msg.header.frame_id, topic):
            with self._lock:
                self._controller_command = (conv.stamp_to_ns(msg.header.stamp), linear, angular)

    def _on_target(self, msg: PoseStamped) -> None:
        topic = self.config.pose_command_topic
        try:
            position, quat = conv.pose_to_arrays(msg, topic)
        except ValueError as error:
            self.get_logger().warning(f"target refused: {error}", throttle_duration_sec=2.0)
            return
        if self._frame_ok(msg.header.frame_id, topic):
            with self._lock:
                self._controller_command = (conv.stamp_to_ns(msg.header.stamp), position, quat)

    def _on_gripper_command(self, msg: Float64MultiArray) -> None:
        try:
            position = conv.multi_array_to_position(msg, self.config.gripper_command_topic)
        except ValueError as error:
            self.get_logger().warning(f"gripper refused: {error}", throttle_duration_sec=2.0)
            return
        with self._lock:
            gripper = position_to_gripper(position, GRIPPER_OPEN_M, GRIPPER_CLOSED_M)
            self.player.set_gripper(gripper)

    def _controller_action(self, tick_ns: int) -> tuple[np.ndarray, int]:
        """The live command as the OSC delta action (SOURCE_POLICY), else a hold (SOURCE_HOLD).
        Called with the lock held, before the step."""
        action = self.player.hold_action()
        command = self._controller_command
        period_ns = self.config.period_ns
        if command is None or not self._command_live(command[0], tick_ns):
            return action, ActionChunk.SOURCE_HOLD
        _, first, second = command
        if self.config.command_interface == "twist":
            delta = twist_to_delta(first, second, SIM_CONVENTION, period_ns / NS)
        else:
            now = self._observation
            delta = pose_to_delta(now[EEF_POS], now[EEF_QUAT], first, second, SIM_CONVENTION)
        action[:GRIPPER_COLUMN] = np.clip(delta, -1.0, 1.0)
        self._commands_applied += 1
        self._acted = True
        return action, ActionChunk.SOURCE_POLICY

    def _command_live(self, stamp_ns: int, tick_ns: int) -> bool:
        """Stamped no more than half a step ahead of this step, and younger than the timeout."""
        age_ns = tick_ns - stamp_ns
        return -self.config.period_ns // 2 <= age_ns < self.config.command_timeout * NS
