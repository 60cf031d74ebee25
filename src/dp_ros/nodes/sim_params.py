"""sim_node's parameters and constants, declared once with descriptors and validated into a
frozen dataclass (code moved out of sim_node.py, not changed).
"""

from dataclasses import dataclass

from dp_ros.nodes.params import NodeConfig, param

NS = 1_000_000_000
# Simulated time starts here rather than at 0: ROS treats time 0 as "no clock received yet".
SIM_EPOCH_NS = 1_000 * NS
GRIPPER_JOINTS = ("panda_finger_joint1", "panda_finger_joint2")
GRIPPER_OPEN_M, GRIPPER_CLOSED_M = 0.04, 0.0  # finger position commands: action -1 and +1
COMMAND_INTERFACES = ("chunk", "twist", "pose")
RESET_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class SimNodeConfig(NodeConfig):
    task: str = param("lift", "Simulated task.", choices=("lift", "can", "square"))
    seed: int = param(0, "Seed of the first episode; each new episode adds one.", 0, 2**31 - 1)
    cameras: bool = param(True, "Render and publish the agent-view and wrist cameras.")
    image_size: int = param(84, "Camera images are image_size x image_size.", 16, 1024)
    fast_render: bool = param(True, "Turn MSAA and reflections off (faster on CPU).")
    control_rate: float = param(20.0, "Control steps per simulated second.", 1.0, 1000.0)
    real_time_factor: float = param(
        1.0, "Simulated seconds per wall second; 0 steps as fast as possible.", 0.0, 100.0
    )
    publish_clock: bool = param(True, "Publish /clock so use_sim_time nodes follow the sim.")
    max_episode_steps: int = param(0, "Steps before an episode ends; 0: the task's own.", 0, 10**6)
    time_limit: bool = param(
        True, "End episodes at max_episode_steps; false for teleop recording (operator ends)."
    )
    auto_reset: bool = param(True, "Begin a new episode when one ends (success or step limit).")
    command_wait: float = param(
        0.0,
        "Seconds each step waits for a command answering the current observation (lockstep "
        "for scripted teleop); 0: never wait.",
        0.0,
        60.0,
    )
    frame_id: str = param("world", "Frame of the published pose.")
    agentview_topic: str = param("/agentview/image_raw", "Agent-view camera output.")
    wrist_topic: str = param("/wrist/image_raw", "Wrist camera output.")
    eef_pose_topic: str = param("/eef_pose", "End-effector pose output.")
    gripper_topic: str = param("/gripper/joint_states", "Gripper joint state output.")
    object_topic: str = param("/sim/object_state", "Object state output (JointState).")
    action_topic: str = param("/action_chunk", "ActionChunk input (from policy_node).")
    command_topic: str = param("/teleop/command", "Single-step command input (teleop).")
    applied_action_topic: str = param("/sim/applied_action", "The action applied at each step.")
    outcome_topic: str = param("/sim/episode_outcome", "EpisodeOutcome output.")
    command_interface: str = param(
        "chunk", "Policy input: ActionChunks, or a controller's twist or pose commands.",
        choices=COMMAND_INTERFACES,
    )  # fmt: skip
    twist_topic: str = param("/servo_node/delta_twist_cmds", "TwistStamped input (twist).")
    pose_command_topic: str = param("/target_pose", "PoseStamped target input (pose).")
    gripper_command_topic: str = param(
        "/gripper_controller/commands", "Float64MultiArray gripper input (twist, pose)."
    )
    command_timeout: float = param(
        0.1, "Twist/pose commands apply until this old (s), as Servo's incoming_command_timeout.",
        0.0, 10.0,
    )  # fmt: skip

    def validate(self) -> None:
        if self.real_time_factor == 0 and not self.publish_clock:
            raise ValueError(
                "parameter real_time_factor=0 (as fast as possible) needs publish_clock=true: "
                "stamps would otherwise run ahead of the wall clock"
            )

    @property
    def period_ns(self) -> int:
        return round(NS / self.control_rate)
