"""sim_node: the robosuite simulation as a ROS robot.

Out (all stamped with the same simulated instant): both cameras (sensor_msgs/Image rgb8), the
end-effector pose (geometry_msgs/PoseStamped), the gripper (sensor_msgs/JointState), the object
state (sensor_msgs/JointState, for state-based policies), the action applied at each control step
(`applied_action`, dp_msgs/ActionChunk with one row, what a recorder records), episode outcomes,
and /clock when `publish_clock` is set.

In: ActionChunks, played the way a robot driver should (dp_ros.acting.chunk_timing.ChunkPlayer:
each row at its stamp, late rows dropped, a newer chunk replaces the rest of an older one, hold
when nothing is left; a chunk conditioned on an observation from before the current episode
began is ignored); single-step teleop commands (ActionChunk with one row, applied at the next
step); `~/reset` (dp_msgs/ResetEnv).

Controller inputs (`command_interface`): `chunk` plays ActionChunks as above; `twist` and
`pose` make the sim a robot behind standard controllers, driven by chunk_executor_node. The
newest geometry_msgs/TwistStamped (a velocity, held for the step) or PoseStamped (a target pose)
is turned back into the OSC delta action that moves that much
(dp_ros.acting.action_convention.SIM_CONVENTION) while it is younger than `command_timeout`
(stamped at most half a step ahead): like MoveIt Servo, a velocity persists until a newer one
or the timeout, so a command a few ms late delays motion instead of losing the whole step. The
gripper follows the newest std_msgs/Float64MultiArray position (Franka finger positions, open
0.04 .. closed 0 m). A step without a live command holds.

Time: with publish_clock, simulated time advances one control period per step and is published
on /clock; steps are paced at `real_time_factor` x real time (0: as fast as possible).

Lockstep: with `command_wait` > 0 each step first waits (up to that many seconds) for a teleop
command stamped at or after the current observation, i.e. one that answers it. A scripted expert
then drives every step whatever the machine's load, instead of a late command turning into a hold.
Live teleop and policies leave it at 0: a robot does not wait for its operator.

Episodes are numbered from 0, as the episode store numbers them. Each outcome carries the seed of
the episode that ended and the seed of the one beginning at its stamp (`next_seed`, -1 when none
begins), so a recorder can store seeds. An episode in which nothing but holds was applied is not
an episode yet: a reset asking for the sim's own next seed (seed < 0) restarts it with its seed
and number (no 1-step pseudo-episode before the first real one). With `time_limit` false the step
limit is off (teleop recording: the operator ends episodes, and a time-out mid-demonstration
would reset the scene under them); with `auto_reset` false an outcome is published once and the
episode goes on until a reset.
"""

import sys
import threading
import time

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState

from dp_msgs.msg import ActionChunk, EpisodeOutcome
from dp_msgs.srv import ResetEnv
from dp_ros import conversions as conv
from dp_ros.acting.chunk_timing import ChunkPlayer, TimedChunk
from dp_ros.keys import (
    ACTION_DIM,
    AGENTVIEW_IMAGE,
    EEF_POS,
    EEF_QUAT,
    GRIPPER_QPOS,
    OBJECT_STATE,
    WRIST_IMAGE,
)
from dp_ros.nodes.params import declare_and_load
from dp_ros.nodes.qos import ACTION_QOS, EVENT_QOS, SENSOR_QOS, STEP_QOS
from dp_ros.nodes.sim_commands import ControllerCommandInputs
from dp_ros.nodes.sim_params import (
    GRIPPER_JOINTS,
    NS,
    RESET_TIMEOUT_S,
    SIM_EPOCH_NS,
    SimNodeConfig,
)
from dp_ros.nodes.spin import run_node


class SimNode(ControllerCommandInputs, Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("sim_node", **kwargs)
        self.config: SimNodeConfig = declare_and_load(self, SimNodeConfig)
        cfg = self.config
        self.env = None  # made, used and closed by the sim thread only
        self.player = ChunkPlayer(cfg.period_ns, ACTION_DIM)
        self._lock = threading.Lock()  # the env and the player: step thread vs callbacks
        self._command: np.ndarray | None = None
        self._command_stamp_ns = 0
        self._command_arrived = threading.Condition(self._lock)
        self._episode = -1  # the first _reset_episode makes it 0
        self._seed = cfg.seed  # of the current episode
        self._next_seed = cfg.seed
        self._acted = False  # a command or chunk row was applied in this episode
        self._ended = False  # its outcome was published (it goes on without auto_reset)
        self._steps = 0
        self._applied_count = 0  # ActionChunk.sequence of the applied actions
        self._sim_ns = SIM_EPOCH_NS
        self._episode_start_ns = SIM_EPOCH_NS  # set again by every _reset_episode
        self._make_publishers()
        self._controller_command: tuple[int, np.ndarray, np.ndarray] | None = None
        self._commands_applied = 0  # this episode's steps driven by a controller command
        if cfg.command_interface == "chunk":
            self.create_subscription(ActionChunk, cfg.action_topic, self._on_chunk, ACTION_QOS)
        else:
            self._subscribe_controller_commands()
        self.create_subscription(ActionChunk, cfg.command_topic, self._on_command, EVENT_QOS)
        self.create_service(ResetEnv, "~/reset", self._on_reset)
        self._pending_reset: tuple[int, threading.Event, dict] | None = None
        self._stop = threading.Event()
        self._go = threading.Event()
        self._ready = threading.Event()
        self._startup_error: Exception | None = None
        self._stepper = threading.Thread(target=self._sim_thread, name="sim", daemon=True)
        self._stepper.start()
        self._ready.wait()
        if self._startup_error is not None:
            raise self._startup_error

    def start(self) -> None:
        self._go.set()

    def _sim_thread(self) -> None:
        """Owns the environment from creation to close. OpenGL (EGL) contexts belong to the
        thread that made them: rendering from any other thread returns garbage frames, so every
        env call (reset services included) runs here."""
        from dp_ros.sim.env import SimEnv  # robosuite import: seconds, only when needed

        cfg = self.config
        try:
            self.env = SimEnv(
                cfg.task,
                cameras=cfg.cameras,
                image_size=cfg.image_size,
                fast_render=cfg.fast_render,
                max_episode_steps=cfg.max_episode_steps or None,
            )
            self._observation = self._reset_episode(cfg.seed, SIM_EPOCH_NS)
        except Exception as error:  # refused at start, by the constructor that waits for this
            self._startup_error = error
            return
        finally:
            self._ready.set()
        try:
            while not self._go.wait(0.1):
                if self._stop.is_set():
                    return
            self._step_loop()
        finally:
            self.env.close()

    def _make_publishers(self) -> None:
        cfg = self.config
        self._pub = {
            AGENTVIEW_IMAGE: self.create_publisher(Image, cfg.agentview_topic, SENSOR_QOS),
            WRIST_IMAGE: self.create_publisher(Image, cfg.wrist_topic, SENSOR_QOS),
            "pose": self.create_publisher(PoseStamped, cfg.eef_pose_topic, SENSOR_QOS),
            GRIPPER_QPOS: self.create_publisher(JointState, cfg.gripper_topic, SENSOR_QOS),
            OBJECT_STATE: self.create_publisher(JointState, cfg.object_topic, SENSOR_QOS),
        }
        self._applied_pub = self.create_publisher(ActionChunk, cfg.applied_action_topic, STEP_QOS)
        self._outcome_pub = self.create_publisher(EpisodeOutcome, cfg.outcome_topic, EVENT_QOS)
        self._clock_pub = self.create_publisher(Clock, "/clock", 10) if cfg.publish_clock else None

    # ---- time ----------------------------------------------------------------------------

    def _now_ns(self) -> int:
        """The instant of the current step: simulated time, or the wall clock."""
        return self._sim_ns if self.config.publish_clock else self.get_clock().now().nanoseconds

    def _advance_time(self) -> None:
        self._sim_ns += self.config.period_ns
        if self._clock_pub is not None:
            self._clock_pub.publish(Clock(clock=conv.ns_to_stamp(self._sim_ns)))

    # ---- stepping ------------------------------------------------------------------------

    def _step_loop(self) -> None:
        rtf = self.config.real_time_factor
        wall_period = self.config.period_ns / NS / rtf if rtf > 0 else 0.0
        next_wall = time.monotonic()
        self._publish_observation(self._observation, self._now_ns())
        while not self._stop.is_set() and self.context.ok():
            if wall_period:
                next_wall += wall_period
                delay = next_wall - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                else:
                    next_wall = time.monotonic()  # running behind: do not try to catch up
            if self.config.command_wait:
                self._wait_for_command()
            if self._pending_reset is not None:
                self._reset_now()
                continue
            try:
                self._step_once()
            except Exception:
                if not self.context.ok():  # Ctrl-C shut rclpy down mid-step: just stop
                    return
                raise

    def _wait_for_command(self) -> None:
        """Lockstep: block until a command answers the current observation, or time out (the
        step then holds, as without lockstep)."""
        with self._command_arrived:
            self._command_arrived.wait_for(
                lambda: (
                    self._command is not None
                    and self._command_stamp_ns >= self._now_ns()
                    or self._stop.is_set()
                    or self._pending_reset is not None
                ),
                timeout=self.config.command_wait,
            )

    def _step_once(self) -> None:
        with self._lock:
            tick_ns = self._now_ns()
            action, source = self._action_for(tick_ns)
            observation, _, done, info = self.env.step(action)
            self._steps += 1
        self._publish_applied(action, tick_ns, source)
        self._advance_time()
        stamp_ns = self._now_ns()
        success = bool(info.get("success", False))
        ended = success or (done and self.config.time_limit)
        if ended and not self._ended:
            reset = self.config.auto_reset
            next_seed = self._next_seed if reset else -1
            self._publish_outcome(
                success, "success" if success else "horizon", stamp_ns, next_seed
            )
            self._ended = True
            if reset:
                with self._lock:
                    observation = self._reset_episode(self._next_seed, stamp_ns)
        self._observation = observation
        self._publish_observation(observation, stamp_ns)

    def _action_for(self, tick_ns: int) -> tuple[np.ndarray, int]:
        """Teleop command if one arrived since the last step, else the chunk row due now.

        The second value says where the action came from (ActionChunk.SOURCE_*).
        """
        if self._command is not None:
            command, self._command = self._command, None
            self.player.set_gripper(command[-1])  # holds after teleop keep its gripper state
            self._acted = True
            return command, ActionChunk.SOURCE_TELEOP
        if self.config.command_interface != "chunk":
            return self._controller_action(tick_ns)
        action, fresh = self.player.action_at(tick_ns)
        self._acted |= fresh
        return action, ActionChunk.SOURCE_POLICY if fresh else ActionChunk.SOURCE_HOLD

    def _reset_episode(self, seed: int, start_ns: int, renumber: bool = True) -> dict:
        """A new episode from `seed` whose first observation is stamped `start_ns`
        (`renumber` false: it replaces an episode that never began, under its number)."""
        observation = self.env.reset(seed=seed)
        self._episode_start_ns = start_ns
        self.player.clear()
        self._command = None
        self._controller_command = None
        self._commands_applied = 0
        self._episode += 1 if renumber else 0
        self._steps = 0
        self._seed = seed
        self._next_seed = seed + 1
        self._acted = False
        self._ended = False
        return observation

    # ---- publishing ----------------------------------------------------------------------

    def _publish_observation(self, observation: dict, stamp_ns: int) -> None:
        cfg = self.config
        if cfg.cameras:
            for key in (AGENTVIEW_IMAGE, WRIST_IMAGE):
                frame = (
                    AGENTVIEW_IMAGE.removesuffix("_image") if key == AGENTVIEW_IMAGE else "wrist"
                )
                self._pub[key].publish(conv.rgb_to_image(observation[key], stamp_ns, frame))
        self._pub["pose"].publish(
            conv.arrays_to_pose(
                observation[EEF_POS], observation[EEF_QUAT], stamp_ns, cfg.frame_id
            )
        )
        self._pub[GRIPPER_QPOS].publish(
            conv.array_to_joint_state(observation[GRIPPER_QPOS], stamp_ns, GRIPPER_JOINTS)
        )
        state = observation[OBJECT_STATE]
        names = [f"object_{i}" for i in range(len(state))]
        self._pub[OBJECT_STATE].publish(conv.array_to_joint_state(state, stamp_ns, names))

    def _publish_applied(self, action: np.ndarray, tick_ns: int, source: int) -> None:
        """One row: the action applied at `tick_ns`; `source` tells hold/chunk/teleop."""
        chunk = TimedChunk(tick_ns, self.config.period_ns, action[None, :])
        self._applied_count += 1
        msg = conv.timed_chunk_to_msg(
            chunk, tick_ns, self._applied_count, "applied", source=source
        )
        self._applied_pub.publish(msg)

    def _publish_outcome(
        self, success: bool, reason: str, stamp_ns: int, next_seed: int, log: bool = True
    ) -> None:
        msg = EpisodeOutcome(
            task=self.config.task, episode=self._episode, success=success, steps=self._steps
        )
        msg.reason = reason
        msg.seed = self._seed
        msg.next_seed = next_seed
        msg.header.stamp = conv.ns_to_stamp(stamp_ns)
        self._outcome_pub.publish(msg)
        if not log:
            return
        played, dropped = self.player.played_rows, self.player.dropped_rows
        inputs = f"chunk rows played {played}, dropped as late {dropped}"
        if self.config.command_interface != "chunk":
            applied, missed = self._commands_applied, self._steps - self._commands_applied
            inputs = f"{self.config.command_interface} commands applied {applied}, held {missed}"
        self.get_logger().info(
            f"episode {self._episode} (seed {self._seed}) ended: {reason} after {self._steps} "
            f"steps ({inputs})"
        )

    # ---- inputs --------------------------------------------------------------------------

    def _on_chunk(self, msg: ActionChunk) -> None:
        try:
            chunk = conv.msg_to_timed_chunk(msg, self.config.action_topic, ACTION_DIM)
        except ValueError as error:
            self.get_logger().warning(f"chunk refused: {error}", throttle_duration_sec=2.0)
            return
        observed_ns = conv.stamp_to_ns(msg.observation_stamp)
        with self._lock:
            if observed_ns < self._episode_start_ns:
                return  # conditioned on the episode that ended: not for this one
            self.player.submit(chunk)

    def _on_command(self, msg: ActionChunk) -> None:
        try:
            chunk = conv.msg_to_timed_chunk(msg, self.config.command_topic, ACTION_DIM)
        except ValueError as error:
            self.get_logger().warning(f"command refused: {error}", throttle_duration_sec=2.0)
            return
        with self._command_arrived:
            self._command = np.clip(chunk.rows[0], -1.0, 1.0)
            self._command_stamp_ns = chunk.first_stamp_ns
            self._command_arrived.notify_all()

    def _on_reset(self, request: ResetEnv.Request, response: ResetEnv.Response):
        """Hand the reset to the sim thread (it owns the env) and answer once it is done."""
        done, result = threading.Event(), {}
        with self._command_arrived:
            self._pending_reset = (int(request.seed), done, result)
            self._command_arrived.notify_all()
        if not done.wait(timeout=RESET_TIMEOUT_S):
            response.success = False
            response.message = f"the simulation did not reset within {RESET_TIMEOUT_S:.0f} s"
            return response
        response.success = True
        response.message = f"episode {result['episode']}, seed {result['seed']}"
        response.episode = result["episode"]
        return response

    def _reset_now(self) -> None:
        """Sim thread: carry out the pending reset request (seed < 0: the sim's own sequence).

        An episode that never began (only holds applied) is restarted under its own number, and
        with its own seed unless another is asked for: no pseudo-episode before the first one.
        """
        requested, done, result = self._pending_reset
        with self._lock:
            began = self._acted
            if requested >= 0:
                seed = requested
            else:
                seed = self._next_seed if began else self._seed
            # The new episode's first observation gets a fresh instant (stamps never repeat),
            # and the outcome carries it, as at the end of an episode that ran out.
            start_ns = self._now_ns() + self.config.period_ns
            # Always, even before any step: subscribers learn where the new scene begins and its
            # seed (a recorder skipping a stored seed resets twice in a row).
            self._publish_outcome(False, "reset", start_ns, seed, log=began)
            if not began:
                self.get_logger().info(
                    f"episode {self._episode} restarted (seed {seed}): nothing had acted yet"
                )
            self._advance_time()
            self._observation = self._reset_episode(seed, self._now_ns(), renumber=began)
            self._pending_reset = None
        self._publish_observation(self._observation, self._now_ns())
        result["episode"] = self._episode
        result["seed"] = seed
        done.set()

    def close(self) -> None:
        self._stop.set()
        with self._command_arrived:
            self._command_arrived.notify_all()
        if self._stepper.is_alive():
            self._stepper.join(timeout=10)


def main(args: list[str] | None = None) -> int:
    return run_node("sim_node", SimNode, args, config_type=SimNodeConfig, summary=__doc__)


if __name__ == "__main__":
    sys.exit(main())
