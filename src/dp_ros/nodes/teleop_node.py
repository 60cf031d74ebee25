"""teleop_node: demonstrations by keyboard, space mouse, or a scripted expert.

Publishes one-row dp_msgs/ActionChunk commands on `command_topic` (sim_node applies each at its
next step; `source` is ActionChunk.SOURCE_TELEOP, `sequence` counts the commands) at
`control_rate`, values in [-1, 1].

Modes:
  keyboard    keys read from the terminal on stdin (dp_ros.recording.keyboard lists them):
              motion, gripper toggle, speed, environment reset, recorder begin/end (saved as a
              success or as a failure)/cancel. Keys answer with a one-line status (recorder
              episode, steps and seconds recorded, gripper, speed), from the recorder's episode
              markers and the sim's outcomes.
  spacemouse  a 3Dconnexion device through pyspacemouse (needs `pip install pyspacemouse` and
              hidapi); button 0 toggles the gripper, button 1 resets the environment.
  scripted    dp_ros.sim.experts maps the sim's state topics (pose, gripper, object) to actions,
              so collection runs unattended: the node resets the sim once, then lets the sim's
              own episode ends (auto_reset) delimit episodes. The recorder is expected to run
              with auto_start and auto_stop, which start and stop episodes at the sim's
              EpisodeOutcome stamps (exact to the step, with no service round trip in between).
              The node exits (code 0) after `episodes` successful episodes.
"""

import os
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger

from dp_msgs.msg import ActionChunk, EpisodeOutcome
from dp_msgs.srv import ResetEnv, StartEpisode, StopEpisode
from dp_ros import conversions as conv
from dp_ros.acting.chunk_timing import TimedChunk
from dp_ros.keys import ACTION_DIM, EEF_POS, EEF_QUAT, GRIPPER_QPOS, OBJECT_STATE
from dp_ros.nodes.params import NodeConfig, declare_and_load, param
from dp_ros.nodes.qos import EVENT_QOS, SENSOR_QOS
from dp_ros.nodes.spin import run_node
from dp_ros.recording.keyboard import (
    GRIPPER_CLOSED,
    GRIPPER_OPEN,
    MOTION_KEYS,
    KeyboardConfig,
    KeyboardTeleop,
    TerminalKeys,
    help_text,
)
from dp_ros.recording.scripted import StateAssembler, load_expert

NS = 1_000_000_000
STATE_KEYS = (EEF_POS, EEF_QUAT, GRIPPER_QPOS, OBJECT_STATE)
STATUS_PERIOD_S = 0.5


@dataclass(frozen=True)
class TeleopNodeConfig(NodeConfig):
    mode: str = param("keyboard", "Input device.", choices=("keyboard", "spacemouse", "scripted"))
    command_topic: str = param("/teleop/command", "Where one-row ActionChunk commands go.")
    control_rate: float = param(20.0, "Commands per second (keyboard, space mouse).", 1.0, 1000.0)
    speed: float = param(0.5, "Initial speed: motion commands are +-speed (of [-1, 1]).", 0.05, 1)
    key_hold: float = param(
        0.2, "Seconds one key press keeps its axis moving (terminals send no key release).", 0.01
    )
    reset_service: str = param("/sim_node/reset", "dp_msgs/ResetEnv service; empty: none.")
    recorder: str = param(
        "/recorder_node", "Recorder whose ~/start, ~/stop, ~/discard keys call; empty: none."
    )
    task: str = param("lift", "Task (scripted expert; start requests).")
    expert_mode: str = param(
        "default",
        "Scripted: the expert's routes (multimodal: one of two per episode, at random).",
        choices=("default", "multimodal"),
    )
    operator: str = param("", "Operator name for start requests (default: $USER).")
    seed: int = param(-1, "Seed of the first reset (-1: the simulator's own sequence).", -1)
    episodes: int = param(0, "Scripted: exit after this many successes (0: never).", 0, 10**6)
    max_attempts: int = param(0, "Scripted: give up after this many episodes (0: never).", 0)
    eef_pose_topic: str = param("/eef_pose", "Scripted: end-effector pose.")
    gripper_topic: str = param("/gripper/joint_states", "Scripted: gripper joint state.")
    object_topic: str = param("/sim/object_state", "Scripted: object state.")
    outcome_topic: str = param("/sim/episode_outcome", "Episode outcomes (scripted; status).")
    marker_topic: str = param(
        "/recorder/episode_marker", "Keyboard: the recorder's episode markers (status line)."
    )
    frame_id: str = param("teleop", "frame_id of the commands.")

    def validate(self) -> None:
        if self.mode == "scripted" and not self.reset_service:
            raise ValueError("parameter reset_service is empty: mode scripted resets the sim")


class TeleopNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("teleop_node", **kwargs)
        self.config: TeleopNodeConfig = declare_and_load(self, TeleopNodeConfig)
        cfg = self.config
        self.done = threading.Event()
        self.exit_code = 0
        self._lock = threading.Lock()
        self._publisher = self.create_publisher(ActionChunk, cfg.command_topic, EVENT_QOS)
        self._sent = 0  # ActionChunk.sequence of the commands
        self._reset_client = (
            self.create_client(ResetEnv, cfg.reset_service) if cfg.reset_service else None
        )
        self._recorder = {}
        if cfg.recorder:
            prefix = cfg.recorder.rstrip("/")
            self._recorder = {
                "start": self.create_client(StartEpisode, f"{prefix}/start"),
                "stop": self.create_client(StopEpisode, f"{prefix}/stop"),
                "discard": self.create_client(Trigger, f"{prefix}/discard"),
            }
        self._sources = []
        if cfg.mode == "keyboard":
            self._start_keyboard()
        elif cfg.mode == "spacemouse":
            self._start_spacemouse()
        else:
            self._start_scripted()

    # ---- publishing ----------------------------------------------------------------------

    def publish_command(self, action: np.ndarray, stamp_ns: int | None = None) -> None:
        stamp_ns = self.get_clock().now().nanoseconds if stamp_ns is None else stamp_ns
        row = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0).reshape(1, ACTION_DIM)
        period_ns = round(NS / self.config.control_rate)
        chunk = TimedChunk(stamp_ns, period_ns, row)
        self._sent += 1
        msg = conv.timed_chunk_to_msg(
            chunk, stamp_ns, self._sent, self.config.frame_id, source=ActionChunk.SOURCE_TELEOP
        )
        self._publisher.publish(msg)

    # ---- keyboard ------------------------------------------------------------------------

    def _start_keyboard(self) -> None:
        cfg = self.config
        self.terminal = TerminalKeys()  # ValueError without a terminal: refused at start
        self.keyboard = KeyboardTeleop(KeyboardConfig(speed=cfg.speed, hold_s=cfg.key_hold))
        self._say(f"keyboard teleop on {cfg.command_topic}, speed {cfg.speed:.2f}\n{help_text()}")
        self._recording: int | None = None  # recorder episode index while one is recorded
        self._recorded_steps = 0
        self._status_at = 0.0
        self.create_subscription(EpisodeOutcome, cfg.marker_topic, self._on_marker, EVENT_QOS)
        self.create_subscription(
            EpisodeOutcome, cfg.outcome_topic, self._on_sim_outcome, EVENT_QOS
        )
        self._key_thread = threading.Thread(target=self._read_keys, name="keys", daemon=True)
        self._key_thread.start()
        self.create_timer(1.0 / cfg.control_rate, self._keyboard_tick)

    def _read_keys(self) -> None:
        with self.terminal:
            while not self.done.is_set():
                try:
                    keys = self.terminal.read(0.05)
                except EOFError:
                    self._say("stdin closed: stopping")
                    self.done.set()
                    return
                for key in keys:
                    with self._lock:
                        speed_before = self.keyboard.speed
                        event = self.keyboard.press(key, time.monotonic())
                        changed = key == " " or self.keyboard.speed != speed_before
                    if event:
                        self._on_event(event)
                    elif changed or key in MOTION_KEYS:
                        self._show_status(force=changed)

    def _keyboard_tick(self) -> None:
        with self._lock:
            action = self.keyboard.command(time.monotonic())
            if self._recording is not None:
                self._recorded_steps += 1
        self.publish_command(action)

    def status_line(self) -> str:
        """One line for the operator: recording state, steps and seconds, gripper, speed."""
        with self._lock:
            recording, steps = self._recording, self._recorded_steps
            closed = self.keyboard.gripper == GRIPPER_CLOSED
            speed = self.keyboard.speed
        seconds = steps / self.config.control_rate
        state = (
            f"recording episode {recording}: {steps} steps, {seconds:.1f} s"
            if recording is not None
            else "not recording"
        )
        return f"[{state} | gripper {'closed' if closed else 'open'} | speed {speed:.2f}]"

    def _show_status(self, force: bool = False) -> None:
        """The status line, at most twice a second for motion keys (a held key repeats)."""
        now = time.monotonic()
        if force or now - self._status_at >= STATUS_PERIOD_S:
            self._status_at = now
            self._say(self.status_line())

    def _on_marker(self, msg: EpisodeOutcome) -> None:
        with self._lock:
            if msg.reason == "start":
                self._recording, self._recorded_steps = int(msg.episode), 0
            elif msg.reason in ("stop", "discard"):
                self._recording = None
        if msg.reason == "discard":
            self._say(f"episode {msg.episode} discarded ({msg.steps} steps)")
        self._show_status(force=True)

    def _on_sim_outcome(self, msg: EpisodeOutcome) -> None:
        if msg.success:
            self._say("the sim reports success: press e to save the episode")

    def _on_event(self, event: str) -> None:
        if event == "quit":
            self._say("quit")
            self.done.set()
        elif event == "reset":
            if hasattr(self, "keyboard"):
                with self._lock:
                    self.keyboard.reset()
            self.reset_sim()
        else:
            self.call_recorder(event)

    # ---- space mouse ---------------------------------------------------------------------

    def _start_spacemouse(self) -> None:
        try:
            import pyspacemouse
        except ImportError as error:
            raise ValueError(
                "mode spacemouse needs the pyspacemouse package and hidapi "
                f"(pip install pyspacemouse), which are not importable here: {error}"
            ) from error
        if not pyspacemouse.open():
            raise ValueError("mode spacemouse: no 3Dconnexion device found (check permissions)")
        self._spacemouse = pyspacemouse
        self._gripper = GRIPPER_OPEN
        self._buttons = (0, 0)
        self.create_timer(1.0 / self.config.control_rate, self._spacemouse_tick)

    def _spacemouse_tick(self) -> None:
        state = self._spacemouse.read()
        buttons = tuple(state.buttons[:2]) if len(state.buttons) >= 2 else (0, 0)
        if buttons[0] and not self._buttons[0]:
            self._gripper = GRIPPER_CLOSED if self._gripper == GRIPPER_OPEN else GRIPPER_OPEN
        if buttons[1] and not self._buttons[1]:
            self.reset_sim()
        self._buttons = buttons
        motion = np.array([state.y, -state.x, state.z, -state.roll, -state.pitch, -state.yaw])
        action = np.append(motion * self.config.speed, self._gripper)
        self.publish_command(action)

    # ---- scripted ------------------------------------------------------------------------

    def _start_scripted(self) -> None:
        cfg = self.config
        self.expert = load_expert(cfg.task, cfg.expert_mode, max(cfg.seed, 0))
        self.states = StateAssembler(STATE_KEYS)
        self.successes = 0
        self.attempts = 0
        self._reset_sent = False
        self._first_stamp: int | None = None
        self._latest_stamp = 0
        self._outcomes_seen = 0
        self.create_subscription(PoseStamped, cfg.eef_pose_topic, self._on_pose, SENSOR_QOS)
        self.create_subscription(JointState, cfg.gripper_topic, self._on_gripper, SENSOR_QOS)
        self.create_subscription(JointState, cfg.object_topic, self._on_object, SENSOR_QOS)
        self.create_subscription(EpisodeOutcome, cfg.outcome_topic, self._on_outcome, EVENT_QOS)
        self.create_timer(0.1, self._maybe_first_reset)
        self.get_logger().info(
            f"scripted {cfg.task} expert: {cfg.episodes or 'unlimited'} successful episodes"
        )

    def _on_pose(self, msg: PoseStamped) -> None:
        position, quaternion = conv.pose_to_arrays(msg, self.config.eef_pose_topic)
        stamp_ns = conv.stamp_to_ns(msg.header.stamp)
        self._on_state(stamp_ns, {EEF_POS: position, EEF_QUAT: quaternion})

    def _on_gripper(self, msg: JointState) -> None:
        value = conv.joint_state_to_array(msg, self.config.gripper_topic, len(msg.position))
        self._on_state(conv.stamp_to_ns(msg.header.stamp), {GRIPPER_QPOS: value})

    def _on_object(self, msg: JointState) -> None:
        value = conv.joint_state_to_array(msg, self.config.object_topic, len(msg.position))
        self._on_state(conv.stamp_to_ns(msg.header.stamp), {OBJECT_STATE: value})

    def _on_state(self, stamp_ns: int, values: dict[str, np.ndarray]) -> None:
        with self._lock:
            if self._first_stamp is None:
                self._first_stamp = stamp_ns
            self._latest_stamp = stamp_ns
            observation = self.states.add(stamp_ns, values)
            if observation is None or not self._reset_sent or self.done.is_set():
                return
            action = self.expert.act(observation)
        self.publish_command(action, stamp_ns)

    def _maybe_first_reset(self) -> None:
        """Reset once the sim has stepped and the recorder listens: that reset's outcome starts
        the recorder's first episode (the sim restarts its untouched first episode, so this
        costs no seed)."""
        if self._reset_sent or self._first_stamp is None:
            return
        if self._latest_stamp <= self._first_stamp:
            return
        if self._recorder:
            if not self._recorder["start"].service_is_ready():
                return
            # The recorder's outcome subscription must be matched, or it misses the first one.
            if self.count_subscribers(self.config.outcome_topic) < 2:
                return
        self._reset_sent = True
        with self._lock:
            self.expert.reset()
        self.reset_sim()

    def _on_outcome(self, msg: EpisodeOutcome) -> None:
        if not self._reset_sent:
            return
        with self._lock:
            self.expert.reset()  # pending states stay: the new episode's first may be among them
        if msg.reason == "reset":
            return  # our own reset: the first episode begins
        self.attempts += 1
        self.successes += bool(msg.success)
        self.get_logger().info(
            f"episode ended: {msg.reason} after {msg.steps} steps "
            f"({self.successes} successes in {self.attempts} episodes)"
        )
        cfg = self.config
        if cfg.episodes and self.successes >= cfg.episodes:
            self.get_logger().info(f"{self.successes} successful episodes: done")
            self.done.set()
        elif cfg.max_attempts and self.attempts >= cfg.max_attempts:
            self.get_logger().error(
                f"only {self.successes} successes in {self.attempts} episodes: giving up"
            )
            self.exit_code = 1
            self.done.set()

    def close(self) -> None:
        """Stop reading keys (which restores the terminal's settings)."""
        self.done.set()
        thread = getattr(self, "_key_thread", None)
        if thread is not None:
            thread.join(timeout=2)

    # ---- services ------------------------------------------------------------------------

    def reset_sim(self) -> None:
        if self._reset_client is None:
            self._say("no reset_service configured")
            return
        if not self._reset_client.service_is_ready():
            self._say(f"{self.config.reset_service} is not available")
            return
        future = self._reset_client.call_async(ResetEnv.Request(seed=self.config.seed))
        future.add_done_callback(lambda f: self._say(f"reset: {f.result().message}"))

    def call_recorder(self, event: str) -> None:
        service = "stop" if event == "stop_failure" else event  # x: stop, saved as a failure
        client = self._recorder.get(service)
        if client is None:
            self._say("no recorder configured")
            return
        if not client.service_is_ready():
            self._say(f"{client.srv_name} is not available")
            return
        if event == "start":
            operator = self.config.operator or os.environ.get("USER", "")
            request = StartEpisode.Request(
                task=self.config.task, operator_name=operator, source=self.config.mode
            )
        elif event in ("stop", "stop_failure"):
            request = StopEpisode.Request(success=event == "stop")
        else:
            request = Trigger.Request()
        future = client.call_async(request)
        future.add_done_callback(lambda f: self._say(f"recorder {service}: {f.result().message}"))

    def _say(self, text: str) -> None:
        """Operator feedback, one log line per line of text."""
        for line in text.splitlines() or [""]:
            self.get_logger().info(line)


def main(args: list[str] | None = None) -> int:
    return run_node("teleop_node", TeleopNode, args, config_type=TeleopNodeConfig, summary=__doc__)


if __name__ == "__main__":
    sys.exit(main())
