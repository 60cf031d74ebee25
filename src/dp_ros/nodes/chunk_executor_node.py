"""chunk_executor_node: plays policy_node's ActionChunks on a standard ROS 2 controller.

In: `action_topic` (dp_msgs/ActionChunk), the policy's `~/status` (dp_msgs/PolicyStatus, for the
watchdog), the end-effector pose (geometry_msgs/PoseStamped: pose mode, and the workspace box),
optionally the sim's episode outcomes (rows planned in an ended episode are dropped).
Out, once per control tick (`control_rate`, on the node's clock: simulated time with
use_sim_time): `twist_topic` (geometry_msgs/TwistStamped: MoveIt Servo, Cartesian velocity
controllers) or `pose_topic` (geometry_msgs/PoseStamped: Cartesian pose / impedance
controllers), and the gripper position on `gripper_topic` (std_msgs/Float64MultiArray:
ros2_control's forward_command_controller) and/or as control_msgs/GripperCommand goals to
`gripper_action` (a goal each time the command changes between open and closed).
`~/enable` (std_srvs/SetBool) starts and stops it;
`diagnostics_topic` (diagnostic_msgs/DiagnosticArray) reports its state and every counter.

The logic (timing, conversions, limits, watchdog) is dp_ros.acting.chunk_executor; the action
convention (scales, rotation encoding, frame) is the checkpoint's unless parameters override it.

control_msgs comes with every ROS install; the PyPI wheels this project is tested with have none,
so scripts/setup.sh builds its GripperCommand definitions (test/interfaces/control_msgs) there.
"""

import sys
from dataclasses import dataclass

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.node import Node
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool

from dp_msgs.msg import ActionChunk, EpisodeOutcome, PolicyStatus
from dp_ros import conversions as conv
from dp_ros.acting.action_convention import (
    ROTATION_TYPES,
    ActionConvention,
    GripperGoals,
    convention_from_metadata,
    gripper_to_position,
    resolve_convention,
)
from dp_ros.acting.chunk_executor import (
    INTERFACES,
    ChunkExecutor,
    Command,
    ExecutorSettings,
)
from dp_ros.acting.executor_safety import SafetyLimits
from dp_ros.keys import ACTION_DIM
from dp_ros.nodes.params import NodeConfig, declare_and_load, param
from dp_ros.nodes.qos import ACTION_QOS, EVENT_QOS, SENSOR_QOS, STATUS_QOS
from dp_ros.nodes.spin import run_node

NS = 1_000_000_000
# Franka Hand finger joint positions (m): what forward_command_controller expects for it.
FRANKA_OPEN, FRANKA_CLOSED = 0.04, 0.0
LEVEL_OK, LEVEL_WARN, LEVEL_ERROR = 0, 1, 2


@dataclass(frozen=True)
class ChunkExecutorConfig(NodeConfig):
    command_interface: str = param("twist", "Controller input to command.", choices=INTERFACES)
    control_rate: float = param(20.0, "Commands per second (the policy's rate).", 1.0, 1000.0)
    checkpoint: str = param(
        "", "Checkpoint (directory or bundled name) whose metadata gives the action convention."
    )
    translation_scale: float = param(0.0, "Metres per action unit; 0: the checkpoint's.", 0, 10)
    rotation_scale: float = param(0.0, "Radians per action unit; 0: the checkpoint's.", 0, 10)
    rotation_type: str = param(
        "", "Rotation columns: axis_angle or rpy; empty: the checkpoint's.",
        choices=("", *ROTATION_TYPES),
    )  # fmt: skip
    action_frame: str = param(
        "", "Deltas act in the base or tool frame; empty: the checkpoint's.",
        choices=("", "base", "tool"),
    )  # fmt: skip
    command_frame: str = param("world", "frame_id of the commands (the base frame's name).")
    action_topic: str = param("/action_chunk", "ActionChunk input (from policy_node).")
    policy_status_topic: str = param(
        "/policy_node/status", "PolicyStatus input for the watchdog; empty: no watchdog."
    )
    episode_topic: str = param("", "EpisodeOutcome input (simulation); empty: none.")
    eef_pose_topic: str = param("/eef_pose", "End-effector pose input (pose mode, the box).")
    twist_topic: str = param("/servo_node/delta_twist_cmds", "TwistStamped output (twist mode).")
    pose_topic: str = param("/target_pose", "PoseStamped output (pose mode).")
    gripper_topic: str = param(
        "/gripper_controller/commands", "Float64MultiArray gripper output; empty: none."
    )
    gripper_action: str = param(
        "",
        "control_msgs/GripperCommand action server (e.g. /gripper_controller/gripper_cmd); "
        "a goal each time the command changes between open and closed; empty: none.",
    )
    gripper_max_effort: float = param(20.0, "max_effort of GripperCommand goals (N).", 0, 1e4)
    gripper_open_position: float = param(FRANKA_OPEN, "Gripper position for action -1.", -10, 10)
    gripper_closed_position: float = param(
        FRANKA_CLOSED, "Gripper position for action +1.", -10, 10
    )
    workspace_min: list[float] = param([], "Box corner [x, y, z] (m, base); empty: no box.")
    workspace_max: list[float] = param([], "Box corner [x, y, z] (m, base); empty: no box.")
    max_linear_speed: float = param(0.25, "Largest commanded linear speed (m/s).", 1e-3, 10.0)
    max_angular_speed: float = param(1.0, "Largest commanded angular speed (rad/s).", 1e-3, 50.0)
    watchdog_timeout: float = param(
        1.0, "Stop when the policy status is stale or not ACTING this long (s).", 0.01, 60.0
    )
    watchdog_latch: bool = param(True, "A watchdog stop lasts until ~/enable is called.")
    start_enabled: bool = param(True, "Command from the start (else wait for ~/enable).")
    pose_tolerance: float = param(
        0.0, "Pose mode: the eef pose must be this close to the tick (s); 0: half a period.", 0, 1
    )
    diagnostics_topic: str = param("/diagnostics", "DiagnosticArray output.")
    diagnostics_rate: float = param(2.0, "Diagnostics per second (plus one per change).", 0.1, 50)

    def validate(self) -> None:
        if self.gripper_open_position == self.gripper_closed_position:
            raise ValueError(
                "parameters gripper_open_position and gripper_closed_position are equal"
            )

    @property
    def period_ns(self) -> int:
        return round(NS / self.control_rate)

    def limits(self) -> SafetyLimits:
        try:
            return SafetyLimits(
                tuple(self.workspace_min),
                tuple(self.workspace_max),
                self.max_linear_speed,
                self.max_angular_speed,
            )
        except ValueError as error:
            raise ValueError(f"parameters {error}") from error

    def convention(self) -> ActionConvention:
        fallback = None
        if self.checkpoint:
            from dp_ros.policy.checkpoint import read_checkpoint_json  # torch: only when needed

            metadata = read_checkpoint_json(self.checkpoint).get("metadata", {})
            fallback = convention_from_metadata(metadata)
        return resolve_convention(
            fallback,
            self.translation_scale,
            self.rotation_scale,
            self.rotation_type,
            self.action_frame,
        )


class ChunkExecutorNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("chunk_executor_node", **kwargs)
        self.config: ChunkExecutorConfig = declare_and_load(self, ChunkExecutorConfig)
        cfg = self.config
        watchdog_ns = round(cfg.watchdog_timeout * NS) if cfg.policy_status_topic else None
        settings = ExecutorSettings(
            interface=cfg.command_interface,
            period_ns=cfg.period_ns,
            convention=cfg.convention(),
            limits=cfg.limits(),
            watchdog_timeout_ns=watchdog_ns,
            latch=cfg.watchdog_latch,
            pose_tolerance_ns=round(cfg.pose_tolerance * NS) or None,
        )
        self.core = ChunkExecutor(settings, enabled=cfg.start_enabled)
        self.chunks_refused = 0
        self._last_report: tuple = ()
        self._make_publishers()
        self._make_subscriptions()
        self.create_service(SetBool, "~/enable", self._on_enable)
        self.create_timer(cfg.period_ns / NS, self._on_tick)
        self.create_timer(1.0 / cfg.diagnostics_rate, self._publish_diagnostics)
        convention = settings.convention
        self.get_logger().info(
            f"{cfg.command_interface} commands at {cfg.control_rate:g} Hz; actions: "
            f"{convention.translation_scale:g} m and {convention.rotation_scale:g} rad per unit, "
            f"{convention.rotation_type}, {convention.frame} frame"
        )

    def _make_publishers(self) -> None:
        cfg = self.config
        if cfg.command_interface == "twist":
            self._command_pub = self.create_publisher(TwistStamped, cfg.twist_topic, 10)
        else:
            self._command_pub = self.create_publisher(PoseStamped, cfg.pose_topic, 10)
        self._gripper_pub = (
            self.create_publisher(Float64MultiArray, cfg.gripper_topic, 10)
            if cfg.gripper_topic
            else None
        )
        self._diagnostics_pub = self.create_publisher(
            DiagnosticArray, cfg.diagnostics_topic, STATUS_QOS
        )
        self._gripper_action = GripperActionOutput(self, cfg) if cfg.gripper_action else None

    def _make_subscriptions(self) -> None:
        cfg = self.config
        self.create_subscription(ActionChunk, cfg.action_topic, self._on_chunk, ACTION_QOS)
        if cfg.policy_status_topic:
            self.create_subscription(
                PolicyStatus, cfg.policy_status_topic, self._on_status, STATUS_QOS
            )
        if cfg.episode_topic:
            self.create_subscription(
                EpisodeOutcome, cfg.episode_topic, self._on_outcome, EVENT_QOS
            )
        if cfg.command_interface == "pose" or cfg.workspace_min:
            self.create_subscription(PoseStamped, cfg.eef_pose_topic, self._on_pose, SENSOR_QOS)

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    # ---- inputs -----------------------------------------------------------------------------

    def _on_chunk(self, msg: ActionChunk) -> None:
        try:
            chunk = conv.msg_to_timed_chunk(msg, self.config.action_topic, ACTION_DIM)
        except ValueError as error:
            self.chunks_refused += 1
            self.get_logger().warning(f"chunk refused: {error}", throttle_duration_sec=2.0)
            return
        if self.core.submit(chunk, conv.stamp_to_ns(msg.observation_stamp)):
            command = self.core.catch_up(self._now_ns())
            if command is not None:
                self._send(command)

    def _on_status(self, msg: PolicyStatus) -> None:
        # The receipt instant on this node's clock, not the message's stamp: a stalled or
        # clock-skewed publisher must not look fresh.
        self.core.policy_status(msg.state == PolicyStatus.STATE_ACTING, self._now_ns())

    def _on_outcome(self, msg: EpisodeOutcome) -> None:
        self.core.episode_ended(conv.stamp_to_ns(msg.header.stamp))

    def _on_pose(self, msg: PoseStamped) -> None:
        try:
            position, quat = conv.pose_to_arrays(msg, self.config.eef_pose_topic)
        except ValueError as error:
            self.get_logger().warning(f"pose refused: {error}", throttle_duration_sec=2.0)
            return
        command = self.core.add_eef_pose(conv.stamp_to_ns(msg.header.stamp), position, quat)
        if command is not None:
            self._send(command)

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response):
        response.message = self.core.set_enabled(bool(request.data))
        response.success = True
        self._publish_diagnostics()
        return response

    # ---- output -----------------------------------------------------------------------------

    def _on_tick(self) -> None:
        command = self.core.tick(self._now_ns())
        if command is not None:
            self._send(command)
        report = (self.core.enabled, self.core.stop_reason)
        if report != self._last_report:
            self._last_report = report
            if self.core.stop_reason:
                self.get_logger().warning(f"holding: {self.core.stop_reason}")
            self._publish_diagnostics()

    def _send(self, command: Command) -> None:
        cfg = self.config
        if command.linear is not None:
            msg = conv.arrays_to_twist(
                command.linear, command.angular, command.stamp_ns, cfg.command_frame
            )
        else:
            msg = conv.arrays_to_pose(
                command.position, command.quaternion, command.stamp_ns, cfg.command_frame
            )
        self._command_pub.publish(msg)
        if self._gripper_pub is not None:
            position = gripper_to_position(
                command.gripper, cfg.gripper_open_position, cfg.gripper_closed_position
            )
            self._gripper_pub.publish(conv.positions_to_multi_array([position]))
        if self._gripper_action is not None:
            self._gripper_action.command(command.gripper)

    def _publish_diagnostics(self) -> None:
        core = self.core
        if core.stop_reason:
            level, message = LEVEL_ERROR, core.stop_reason
        elif any(core.counts[name] for name in LIMIT_COUNTERS):
            level, message = LEVEL_WARN, "commanding; safety limits have been hit"
        else:
            level, message = LEVEL_OK, "commanding"
        values = {
            "enabled": core.enabled,
            "interface": self.config.command_interface,
            "pending_rows": core.player.pending_rows,
            "chunks_refused": self.chunks_refused,
            **core.counts,
            **(self._gripper_action.counts if self._gripper_action else {}),
        }
        self._diagnostics_pub.publish(
            conv.diagnostic_array(self._now_ns(), self.get_name(), level, message, values)
        )


LIMIT_COUNTERS = ("workspace_hits", "linear_speed_hits", "angular_speed_hits")


class GripperActionOutput:
    """Goals to a control_msgs/GripperCommand action server, sent when the command toggles."""

    def __init__(self, node: Node, cfg: ChunkExecutorConfig) -> None:
        try:
            from control_msgs.action import GripperCommand
        except ImportError as error:
            raise ValueError(
                f"parameter gripper_action={cfg.gripper_action!r} needs control_msgs "
                f"(ros-<distro>-control-msgs, or scripts/setup.sh here): {error}"
            ) from error
        from rclpy.action import ActionClient

        self._goal_type = GripperCommand.Goal
        self._client = ActionClient(node, GripperCommand, cfg.gripper_action)
        self._goals = GripperGoals(cfg.gripper_open_position, cfg.gripper_closed_position)
        self._max_effort = cfg.gripper_max_effort
        self.counts = {"gripper_goals": 0, "gripper_goals_rejected": 0, "gripper_no_server": 0}

    def command(self, gripper: float) -> None:
        position = self._goals.update(gripper)
        if position is None:
            return
        if not self._client.server_is_ready():
            self.counts["gripper_no_server"] += 1
            self._goals.forget()  # send it on a later tick, once the server is there
            return
        goal = self._goal_type()
        goal.command.position = position
        goal.command.max_effort = self._max_effort
        self.counts["gripper_goals"] += 1
        self._client.send_goal_async(goal).add_done_callback(self._on_goal_response)

    def _on_goal_response(self, future) -> None:
        if not future.result().accepted:
            self.counts["gripper_goals_rejected"] += 1


def main(args: list[str] | None = None) -> int:
    return run_node("chunk_executor_node", ChunkExecutorNode, args)


if __name__ == "__main__":
    sys.exit(main())
