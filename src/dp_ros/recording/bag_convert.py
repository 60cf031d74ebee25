"""dp-bag-to-store: demonstrations recorded with `ros2 bag record` -> an episode store.

    dp-bag-to-store BAG STORE [--sim] [--topics agentview=/cam/image ...] [--keys ...]
                    [--task NAME] [--keep-failed] [--append]

The bag contract (CONTRACT below, printed by --help) says which topics, types and keys it reads.
Topic defaults are policy_node's for a real robot; `--sim` switches to sim_node's topics and adds
the object key.

Reads rosbag2 (MCAP or sqlite3) with the `rosbags` library (no ROS install needed), decodes
every message with the decoders recorder_node uses (dp_ros.recording.decode) and assembles
episodes with the same RecordingSession, so a bag and a live recording of the same messages give
the same store.

Episode boundaries, in order of preference:

1. `/recorder/episode_marker` (dp_msgs/EpisodeOutcome, written by recorder_node): reason
   "start" opens an episode at header.stamp (task = `task`, operator = header.frame_id), "stop"
   closes it there (success = `success`), "discard" drops the open episode.
2. `/sim/episode_outcome`: each outcome, stamped S, ends the episode running up to S (success
   from the outcome) and begins the next one at S (the instant of the reset observation). The
   steps before the first outcome and after the last belong to episodes whose start or end the
   bag did not see: skipped, unless --keep-partial.
3. Neither topic in the bag: the whole bag is one episode (success unknown).

Unsuccessful episodes are left out unless --keep-failed. Incomplete ones (dropped frames) are
refused by the assembler's rules and reported. A bag the store already holds episodes from is
refused unless --append (and with it, episodes identical to stored ones are still skipped). When
no episode is saved, nothing is written and the command exits 1. A bag refused part-way (a
corrupt message) adds none of its episodes: those already appended are rolled back, and a store
the conversion created is removed.

This module reads the bag and is the command line; dp_ros.recording.bag_episodes turns the
messages into episodes.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

from dp_ros.acting.inputs import streams_for
from dp_ros.recording.bag_episodes import (
    DEFAULT_KEYS,
    DEFAULT_TOPICS,
    SIM_KEYS,
    SIM_TOPICS,
    BagConverter,
    ConvertOptions,
    ConvertReport,
)
from dp_ros.recording.session import open_store

CONTRACT = """\
bag contract (topic name -> default topic [--sim topic], type, what it gives):
  agentview  /agentview/image_raw      sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) or
                                       CompressedImage -> agentview_image uint8 (H, W, 3)
  wrist      /wrist/image_raw          same -> robot0_eye_in_hand_image uint8 (H, W, 3)
  eef_pose   /eef_pose                 geometry_msgs/PoseStamped -> robot0_eef_pos (3,),
                                       robot0_eef_quat (4,) xyzw
  gripper    /gripper/joint_states     sensor_msgs/JointState (position; --gripper-joints picks
                                       names) -> robot0_gripper_qpos (2,)
  object     none [/sim/object_state]  sensor_msgs/JointState -> object (Do,) (key `object`)
  action     /applied_action [/sim/applied_action]
                                       dp_msgs/ActionChunk, ONE row per message: the 7-D action
                                       (dx dy dz drx dry drz gripper, in [-1, 1]) applied at
                                       header.stamp; `source` says hold/policy/teleop
  outcome    /episode_outcome [/sim/episode_outcome]
                                       dp_msgs/EpisodeOutcome: an episode ends at header.stamp
                                       (success, reason) and the next begins there (next_seed)
  marker     /recorder/episode_marker  dp_msgs/EpisodeOutcome with reason start/stop/discard
                                       (recorder_node's boundaries; preferred when present)
Every message is stamped (header.stamp); each action at t is paired with the message of each key
nearest t within --tolerance. Keys default to the cameras and robot state (--sim adds object);
--keys picks others. dp_msgs .msg definitions: src/dp_msgs/msg (ActionChunk, EpisodeOutcome)."""
# The message types each topic may carry (a topic with another type is refused up front).
_IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
_JOINT_STATE = ("sensor_msgs/msg/JointState",)
_OUTCOME = ("dp_msgs/msg/EpisodeOutcome",)
TOPIC_TYPES = {
    "agentview": _IMAGE_TYPES,
    "wrist": _IMAGE_TYPES,
    "eef_pose": ("geometry_msgs/msg/PoseStamped",),
    "gripper": _JOINT_STATE,
    "object": _JOINT_STATE,
    "action": ("dp_msgs/msg/ActionChunk",),
    "outcome": _OUTCOME,
    "marker": _OUTCOME,
}


def dp_msgs_dir() -> Path:
    """Directory of dp_msgs' .msg files: the installed package's share, else the source tree."""
    try:
        from ament_index_python.packages import get_package_share_directory

        installed = Path(get_package_share_directory("dp_msgs")) / "msg"
        if installed.is_dir():
            return installed
    except (ImportError, LookupError, ValueError, OSError):
        pass
    source = Path(__file__).resolve().parents[2] / "dp_msgs" / "msg"
    if source.is_dir():
        return source
    raise FileNotFoundError("dp_msgs .msg files not found (neither installed nor in source)")


def make_typestore():
    """rosbags typestore: ROS 2 Kilted's standard types plus dp_msgs from its .msg files."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    typestore = get_typestore(Stores.ROS2_KILTED)
    types: dict = {}
    for path in sorted(dp_msgs_dir().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"dp_msgs/msg/{path.stem}"))
    typestore.register(types)
    return typestore


def deserialize(typestore, raw: bytes | memoryview, msgtype: str) -> Any:
    """CDR bytes -> rosbags message, accepting trailing bytes after a complete message.

    rclpy's serialize_message sizes its buffer by rmw's size estimate, so Python tools that
    write bags with it leave a few slack bytes after the message. rosbag2 (rmw deserialisation)
    reads those bags; rosbags' strict size check refuses them, so it is skipped here.
    """
    from rosbags.serde import SerdeError

    try:
        return typestore.deserialize_cdr(raw, msgtype)
    except SerdeError as error:
        if "size mismatch" not in str(error) or bytes(raw[:2]) != b"\x00\x01":
            raise
        msgdef = typestore.get_msgdef(msgtype)
        message, _ = msgdef.deserialize_cdr_le(memoryview(raw)[4:], 0, msgdef.cls, typestore)
        return message


def convert_bag(
    bag: str | Path, store_path: str | Path, options: ConvertOptions, progress: bool = True
) -> ConvertReport:
    """Convert one rosbag2 directory into the store at `store_path` (created if missing)."""
    from rosbags.rosbag2 import Reader
    from tqdm import tqdm

    typestore = make_typestore()
    with Reader(Path(bag)) as reader:
        wanted = {*options.topics.values()}
        connections = [c for c in reader.connections if c.topic in wanted]
        check_topic_types(bag, connections, options.topics)
        present = {c.topic for c in connections if c.msgcount}
        if options.topics["action"] not in present:
            raise ValueError(
                f"{bag}: no messages on the action topic {options.topics['action']!r} "
                f"(topics in the bag: {sorted(reader.topics)})"
            )
        if options.topics["marker"] in present:
            boundaries = "markers"
        elif options.topics["outcome"] in present:
            boundaries = "outcomes"
        else:
            boundaries = "whole bag"
        existed = Path(store_path).exists()
        store = open_store(store_path)
        episodes_before = store.n_episodes
        try:
            converter = BagConverter(store, options, str(Path(bag).resolve()))
            converter.begin(boundaries)
            total = sum(c.msgcount for c in connections)
            messages = reader.messages(connections=connections)
            for index, (connection, timestamp, raw) in enumerate(
                tqdm(messages, total=total, unit="msg", disable=not progress, desc="converting")
            ):
                msg = _deserialize_or_refuse(bag, typestore, raw, connection, index, timestamp)
                converter.on_message(connection.topic, connection.msgtype, msg)
            converter.end()
        except BaseException:
            store.roll_back_to(episodes_before)  # a refused bag adds nothing, not half of itself
            raise
        finally:
            store.close()
            if not existed and store.n_episodes == 0:
                shutil.rmtree(store_path)  # nothing saved: leave nothing behind
    return converter.report


def check_topic_types(bag, connections, topics: dict[str, str]) -> None:
    """ValueError naming the topic, its type in the bag and the types expected on it."""
    expected = {topic: TOPIC_TYPES[name] for name, topic in topics.items()}
    for connection in connections:
        allowed = expected.get(connection.topic, ())
        if connection.msgtype not in allowed:
            raise ValueError(
                f"{bag}: topic {connection.topic} carries {connection.msgtype}; expected "
                f"{' or '.join(allowed)}"
            )


def _deserialize_or_refuse(bag, typestore, raw, connection, index: int, timestamp: int) -> Any:
    """The message, or ValueError naming the bag, topic and message (a truncated or corrupt
    message is a corrupt bag: converting around it would hide the loss)."""
    try:
        return deserialize(typestore, raw, connection.msgtype)
    except Exception as error:  # rosbags raises SerdeError, struct, index and value errors
        raise ValueError(
            f"{bag}: message #{index} on {connection.topic} ({connection.msgtype}, recorded at "
            f"{timestamp} ns) does not deserialize: {type(error).__name__}: {error}"
        ) from error


def _sqlite_errors() -> tuple[type[BaseException], ...]:
    """The exceptions of the sqlite3 bindings rosbags reads sqlite3 bags with (apsw)."""
    import sqlite3

    try:
        import apsw
    except ImportError:
        return (sqlite3.Error,)
    return (sqlite3.Error, apsw.Error)


def parse_topics(items: list[str], sim: bool = False) -> dict[str, str]:
    topics = dict(SIM_TOPICS if sim else DEFAULT_TOPICS)
    for item in items:
        name, separator, topic = item.partition("=")
        if not separator or name not in DEFAULT_TOPICS:
            raise ValueError(
                f"--topics {item!r}: expected NAME=TOPIC with NAME one of {sorted(DEFAULT_TOPICS)}"
            )
        topics[name] = topic
    return topics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dp-bag-to-store",
        description="Convert a rosbag2 recording (MCAP or sqlite3) of demonstrations into an "
        "episode store, aligned the way recorder_node aligns live recordings. Exits 1 when no "
        "episode was saved (nothing is written), 2 on bad input.",
        epilog=CONTRACT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("bag", help="rosbag2 directory (with metadata.yaml)")
    parser.add_argument("store", help="episode store directory (created if missing)")
    parser.add_argument(
        "--topics",
        nargs="*",
        default=[],
        metavar="NAME=TOPIC",
        help=f"topic overrides; names: {', '.join(DEFAULT_TOPICS)}",
    )
    parser.add_argument(
        "--sim", action="store_true", help="sim_node's topics and the object key (a dp_ros sim)"
    )
    parser.add_argument("--keys", nargs="*", default=None, help="keys to record (see below)")
    parser.add_argument("--task", default="", help="task stored when the bag names none")
    parser.add_argument(
        "--append",
        action="store_true",
        help="convert a bag the store already holds episodes from (identical ones are skipped)",
    )
    parser.add_argument("--period", type=float, default=0.05, help="control period (s)")
    parser.add_argument("--tolerance", type=float, default=0.025, help="sync tolerance (s)")
    parser.add_argument("--max-dropped", type=int, default=0, help="dropped frames allowed")
    parser.add_argument("--gripper-joints", default="", help="comma-separated gripper joints")
    parser.add_argument("--keep-failed", action="store_true", help="keep failed episodes")
    parser.add_argument(
        "--keep-partial", action="store_true", help="keep episodes cut by the bag's ends"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    from rosbags.rosbag2 import ReaderError

    try:
        keys = args.keys if args.keys is not None else (SIM_KEYS if args.sim else DEFAULT_KEYS)
        options = ConvertOptions(
            topics=parse_topics(args.topics, args.sim),
            keys=tuple(keys),
            task=args.task,
            append=args.append,
            period_s=args.period,
            tolerance_s=args.tolerance,
            max_dropped_steps=args.max_dropped,
            gripper_joint_names=args.gripper_joints,
            keep_failed=args.keep_failed,
            keep_partial=args.keep_partial,
        )
        options.assembly_config()
        streams_for(options.keys)
        report = convert_bag(args.bag, args.store, options, progress=not args.no_progress)
    except (ValueError, OSError, ReaderError) as error:
        print(f"dp-bag-to-store: {error}", file=sys.stderr)
        return 2
    except _sqlite_errors() as error:  # a corrupt sqlite3 bag: rosbags lets these through
        print(f"dp-bag-to-store: {args.bag}: corrupt sqlite3 storage ({error})", file=sys.stderr)
        return 2
    print(report.text())
    if report.saved == 0:
        print(f"dp-bag-to-store: no episode saved; {args.store} unchanged", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
