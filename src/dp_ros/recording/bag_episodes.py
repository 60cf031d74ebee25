"""A bag's messages into episodes: what dp-bag-to-store converts with (dp_ros.recording.bag_convert
reads the bag and is the command line).

BagConverter feeds every decoded message to the RecordingSession recorder_node uses, finds the
episode boundaries (recorder markers, else the sim's outcomes, else the whole bag) and saves the
finished episodes to the store; ConvertOptions says which topics and keys, ConvertReport what
was saved and why the rest was not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dp_ros import conversions as conv
from dp_ros.acting.inputs import streams_for
from dp_ros.keys import CAMERA_KEYS, OBJECT_STATE, ROBOT_STATE_KEYS
from dp_ros.recording.assembler import AssemblyConfig
from dp_ros.recording.decode import decode_applied_action, joint_names_from, make_decoder
from dp_ros.recording.session import (
    MARKER_DISCARD,
    MARKER_START,
    MARKER_STOP,
    FinishedEpisode,
    RecordingSession,
    SaveResult,
    save_finished,
)
from dp_ros.recording.stored import StoredEpisodes

NS = 1_000_000_000
# A real robot: cameras and robot state (policy_node's default inputs), no object state.
DEFAULT_KEYS = (*CAMERA_KEYS, *ROBOT_STATE_KEYS)
# policy_node's default topics; the applied actions and outcomes come from the robot's driver.
DEFAULT_TOPICS = {
    "agentview": "/agentview/image_raw",
    "wrist": "/wrist/image_raw",
    "eef_pose": "/eef_pose",
    "gripper": "/gripper/joint_states",
    "object": "",
    "action": "/applied_action",
    "outcome": "/episode_outcome",
    "marker": "/recorder/episode_marker",
}
# --sim: what sim_node publishes (and recorder_node records by default).
SIM_KEYS = (*CAMERA_KEYS, *ROBOT_STATE_KEYS, OBJECT_STATE)
SIM_TOPICS = {
    **DEFAULT_TOPICS,
    "object": "/sim/object_state",
    "action": "/sim/applied_action",
    "outcome": "/sim/episode_outcome",
}
# Beyond any real stamp: the end of a partial last episode.
END_OF_TIME_NS = 2**62


@dataclass(frozen=True)
class ConvertOptions:
    topics: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_TOPICS))
    keys: tuple[str, ...] = DEFAULT_KEYS
    period_s: float = 0.05
    tolerance_s: float = 0.025
    history: int = 256
    max_dropped_steps: int = 0
    gripper_joint_names: str = ""
    keep_failed: bool = False
    keep_partial: bool = False
    task: str = ""  # stored when the bag's boundaries name no task
    append: bool = False  # convert a bag the store already holds episodes from

    def assembly_config(self) -> AssemblyConfig:
        return AssemblyConfig(
            keys=self.keys,
            period_ns=round(self.period_s * NS),
            tolerance_ns=round(self.tolerance_s * NS),
            history=self.history,
            max_dropped_steps=self.max_dropped_steps,
        )


@dataclass
class ConvertReport:
    boundaries: str = ""  # "markers", "outcomes" or "whole bag"
    topic_counts: dict[str, int] = field(default_factory=dict)
    decode_errors: dict[str, int] = field(default_factory=dict)
    first_errors: dict[str, str] = field(default_factory=dict)
    stream_gaps: dict[str, int] = field(default_factory=dict)  # key -> stamp jumps
    skipped_partial: int = 0  # partial episodes left out (steps outside complete episodes)
    episodes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def saved(self) -> int:
        return sum(1 for episode in self.episodes if episode["saved"])

    def text(self) -> str:
        lines = [f"episode boundaries from: {self.boundaries}", "messages per topic:"]
        for topic, count in sorted(self.topic_counts.items()):
            errors = self.decode_errors.get(topic, 0)
            note = f"  ({errors} refused: {self.first_errors[topic]})" if errors else ""
            lines.append(f"  {topic:<32} {count:>8}{note}")
        jumps = {key: n for key, n in self.stream_gaps.items() if n}
        lines.append(f"stamp jumps (> 1.5 x median interval): {jumps or 'none'}")
        if self.skipped_partial:
            lines.append(f"partial episodes skipped (use --keep-partial): {self.skipped_partial}")
        lines.append(f"episodes found: {len(self.episodes)}, saved: {self.saved}")
        for episode in self.episodes:
            mark = "saved" if episode["saved"] else "not saved"
            lines.append(f"  [{mark}] task={episode.get('task')!r}: {episode['message']}")
        return "\n".join(lines)


class BagConverter:
    """One pass over a bag: messages into a RecordingSession, finished episodes into a store."""

    def __init__(self, store, options: ConvertOptions, source: str) -> None:
        self.store = store
        self.options = options
        self.source = source
        self.session = RecordingSession(options.assembly_config())
        self.report = ConvertReport()
        self.known = StoredEpisodes.of(store)
        if source in self.known.bags and not options.append:
            raise ValueError(
                f"{store.path} already holds episodes converted from {source}; pass --append "
                "to convert it again (episodes identical to stored ones are still skipped)"
            )
        topics = options.topics
        names = joint_names_from(options.gripper_joint_names)
        streams = streams_for(options.keys)
        for name in streams:
            if not topics.get(name):
                raise ValueError(
                    f"keys {list(options.keys)} need the {name!r} stream but its topic is empty "
                    f"(--topics {name}=TOPIC, or --sim)"
                )
        self.stream_topics = {topics[name]: stream for name, stream in streams.items()}
        self._joint_names = {topics["gripper"]: names}
        self._decoders: dict[str, Any] = {}

    def decoder(self, topic: str, msgtype: str):
        decoder = self._decoders.get(topic)
        if decoder is None:
            stream = self.stream_topics[topic]
            compressed = msgtype.endswith("CompressedImage")
            decoder = make_decoder(
                stream,
                topic,
                self.options.keys,
                compressed=compressed,
                joint_names=self._joint_names.get(topic, ()),
                use_bridge=False,  # rosbags messages are not rclpy messages
            )
            self._decoders[topic] = decoder
        return decoder

    def refuse(self, topic: str, error: Exception) -> None:
        self.report.decode_errors[topic] = self.report.decode_errors.get(topic, 0) + 1
        self.report.first_errors.setdefault(topic, str(error))

    def on_message(self, topic: str, msgtype: str, msg: Any) -> None:
        self.report.topic_counts[topic] = self.report.topic_counts.get(topic, 0) + 1
        topics = self.options.topics
        try:
            if topic in self.stream_topics:
                stamp_ns = conv.stamp_to_ns(msg.header.stamp)
                for key, value in self.decoder(topic, msgtype)(msg).items():
                    self.session.add_observation(key, stamp_ns, value)
            elif topic == topics["action"]:
                applied = decode_applied_action(msg, topic)
                self.session.add_action(applied.stamp_ns, applied.action, applied.source)
            elif topic == topics["marker"] and self.report.boundaries == "markers":
                self.on_marker(msg)
            elif topic == topics["outcome"] and self.report.boundaries == "outcomes":
                self.on_outcome(msg)
        except ValueError as error:
            self.refuse(topic, error)
        self.save(self.session.collect())

    def on_marker(self, msg: Any) -> None:
        stamp_ns = conv.stamp_to_ns(msg.header.stamp)
        if msg.reason == MARKER_START:
            if self.session.recording:  # a start without a stop: the recorder crashed
                self.session.discard()
                self.report.skipped_partial += 1
            metadata = {"task": msg.task, "operator": msg.header.frame_id, "seed": msg.seed}
            self.session.start(stamp_ns, self.metadata(metadata))
        elif msg.reason == MARKER_STOP and self.session.recording:
            self.session.stop(stamp_ns, success=bool(msg.success))
        elif msg.reason == MARKER_DISCARD:
            self.session.discard()

    def on_outcome(self, msg: Any) -> None:
        stamp_ns = conv.stamp_to_ns(msg.header.stamp)
        if self.session.recording:
            self.session.stop(
                stamp_ns,
                success=bool(msg.success),
                outcome=msg.reason,
                sim_episode=int(msg.episode),
                sim_steps=int(msg.steps),
            )
        else:
            self.report.skipped_partial += 1  # the segment before the first outcome
        self.session.start(stamp_ns, self.metadata({"task": msg.task, "seed": msg.next_seed}))

    def metadata(self, extra: dict[str, Any]) -> dict[str, Any]:
        metadata = {"recorder": "dp-bag-to-store", "bag": self.source, **extra}
        metadata["task"] = metadata.get("task") or self.options.task
        seed = metadata.get("seed")
        metadata["seed"] = int(seed) if seed is not None and seed >= 0 else None
        return metadata

    def begin(self, boundaries: str) -> None:
        self.report.boundaries = boundaries
        if boundaries == "whole bag" or (boundaries == "outcomes" and self.options.keep_partial):
            self.session.start(0, self.metadata({}))
            if boundaries == "outcomes":
                self.report.skipped_partial -= 1  # the first outcome will not skip anything

    def end(self) -> None:
        """End of the bag: close or drop the open episode, assemble everything left."""
        if self.session.recording:
            if self.report.boundaries == "whole bag" or self.options.keep_partial:
                self.session.stop(END_OF_TIME_NS)
            else:
                self.session.discard()
                self.report.skipped_partial += 1
        self.save(self.session.collect(force=True))
        self.report.stream_gaps = {
            key: len(stats.gaps) for key, stats in self.session.buffer.stats.items()
        }

    def save(self, finished: list[FinishedEpisode]) -> None:
        for episode in finished:
            result: SaveResult = save_finished(
                self.store, episode, self.options.keep_failed, known=self.known
            )
            entry = {"saved": result.saved, "message": result.message, "index": result.index}
            entry.update({k: episode.metadata.get(k) for k in ("task", "success")})
            entry["frames"] = result.frames
            self.report.episodes.append(entry)
