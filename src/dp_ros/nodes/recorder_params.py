"""recorder_node's parameters: declared once with descriptions and ranges, validated into a
frozen dataclass at start (a bad value stops the node naming the parameter)."""

from __future__ import annotations

from dataclasses import dataclass

from dp_ros.acting.inputs import streams_for
from dp_ros.image_fit import parse_hw
from dp_ros.keys import CAMERA_KEYS, OBJECT_STATE, ROBOT_STATE_KEYS
from dp_ros.nodes.params import RobotStreamParams, param
from dp_ros.recording.assembler import AssemblyConfig

NS = 1_000_000_000


@dataclass(frozen=True)
class RecorderNodeConfig(RobotStreamParams):
    store: str = param("", "Episode store directory (created if missing; one writer at a time).")
    keys: list[str] = param(
        [*CAMERA_KEYS, *ROBOT_STATE_KEYS, OBJECT_STATE], "Observation keys recorded per step."
    )
    object_topic: str = param("/sim/object_state", "Object state (sensor_msgs/JointState).")
    action_topic: str = param(
        "/sim/applied_action", "Applied actions (dp_msgs/ActionChunk, one row stamped t)."
    )
    outcome_topic: str = param("/sim/episode_outcome", "Episode outcomes (auto start/stop).")
    marker_topic: str = param(
        "/recorder/episode_marker", "Where episode boundaries are published; empty: nowhere."
    )
    control_period: float = param(0.05, "Seconds between steps (applied actions).", 1e-3, 10)
    sync_tolerance: float = param(
        0.025, "Max seconds between a step's instant and the observation used for it.", 0, 10
    )
    history: int = param(256, "Messages kept per key while waiting for actions.", 2, 100000)
    queue_depth: int = param(50, "Subscription queue per observation topic.", 1, 10000)
    max_dropped_frames: int = param(
        0, "Steps without an observation an episode may have (they are cut out).", 0, 10**6
    )
    stop_timeout: float = param(
        2.0, "Seconds a stopped episode waits for its last messages.", 0.0, 600.0
    )
    auto_start: bool = param(False, "Start an episode at every EpisodeOutcome's stamp.")
    auto_stop: bool = param(False, "Stop the current episode at every EpisodeOutcome.")
    keep_failed: bool = param(False, "Also save episodes that end unsuccessfully.")
    task: str = param("", "Task name stored when a start request gives none.")
    operator: str = param("", "Operator name stored when a start request gives none.")
    source: str = param(
        "", "How demonstrations are produced (scripted, keyboard, ...), stored per episode."
    )
    unique_seeds: bool = param(
        True,
        "One episode per (task, seed): a simulated scene is reproducible from its seed, so a "
        "second one is a re-recording; false allows several demonstrations of one scene.",
    )
    reset_service: str = param(
        "",
        "The simulator's dp_msgs/ResetEnv service: an episode about to begin from a seed the "
        "store already holds is skipped by a reset to the first free seed; empty: refused only.",
    )
    image_size: str = param(
        "",
        "Store camera frames at HxW (e.g. 84x84), resized with INTER_AREA exactly as "
        "policy_node resizes them; empty: the store's size when it has frames, else as received.",
    )
    center_crop: bool = param(
        False, "Before resizing, crop the centre to image_size's aspect ratio."
    )

    def validate(self) -> None:
        if not self.store:
            raise ValueError("parameter store is empty: set it to an episode store directory")
        try:
            parse_hw(self.image_size)
        except ValueError as error:
            raise ValueError(f"parameter image_size: {error}") from error
        if self.sync_tolerance >= self.control_period:
            raise ValueError(
                f"parameter sync_tolerance={self.sync_tolerance} must be < control_period="
                f"{self.control_period} (else one message could serve two steps)"
            )
        for name in streams_for(self.keys):
            if not getattr(self, f"{name}_topic"):
                raise ValueError(
                    f"parameter {name}_topic is empty but keys {self.keys} need the {name!r} "
                    "stream"
                )

    def assembly_config(self) -> AssemblyConfig:
        return AssemblyConfig(
            keys=tuple(self.keys),
            period_ns=round(self.control_period * NS),
            tolerance_ns=round(self.sync_tolerance * NS),
            history=self.history,
            max_dropped_steps=self.max_dropped_frames,
        )
