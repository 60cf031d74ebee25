"""Which robot streams provide which observation keys, and which a given policy needs (ROS-free).

A stream is one topic of one message kind. The pose stream provides two keys (position and
orientation share a stamp), the others one each. The policy's shape meta decides which streams a
node must subscribe to; the recorder uses the same table to know what to record.
"""

from dataclasses import dataclass

from dp_ros.keys import (
    AGENTVIEW_IMAGE,
    EEF_POS,
    EEF_QUAT,
    GRIPPER_QPOS,
    OBJECT_STATE,
    WRIST_IMAGE,
)


@dataclass(frozen=True)
class Stream:
    name: str  # also the prefix of its topic parameter: f"{name}_topic"
    kind: str  # "image" | "pose" | "joint_state"
    keys: tuple[str, ...]


STREAMS = (
    Stream("agentview", "image", (AGENTVIEW_IMAGE,)),
    Stream("wrist", "image", (WRIST_IMAGE,)),
    Stream("eef_pose", "pose", (EEF_POS, EEF_QUAT)),
    Stream("gripper", "joint_state", (GRIPPER_QPOS,)),
    # Task object state: simulation only (state-based policies); a JointState whose positions
    # are the object features, because no standard stamped float-vector message exists.
    Stream("object", "joint_state", (OBJECT_STATE,)),
)
STREAM_BY_NAME = {stream.name: stream for stream in STREAMS}


def streams_for(keys: tuple[str, ...] | list[str]) -> dict[str, Stream]:
    """{stream name: Stream} of the streams that provide `keys`.

    Raises ValueError naming a key that no stream provides.
    """
    provider = {key: stream for stream in STREAMS for key in stream.keys}
    needed: dict[str, Stream] = {}
    for key in keys:
        stream = provider.get(key)
        if stream is None:
            raise ValueError(
                f"observation {key!r} is provided by no input stream "
                f"(streams provide: {sorted(provider)})"
            )
        needed[stream.name] = stream
    return needed


def plan_inputs(obs_keys: tuple[str, ...] | list[str], topics: dict[str, str]) -> dict[str, str]:
    """{stream name: topic} for the streams that provide `obs_keys`.

    Raises ValueError when a key has no stream or a needed stream has no topic configured, naming
    the key, the stream and the parameter to set.
    """
    plan: dict[str, str] = {}
    for name, stream in streams_for(obs_keys).items():
        topic = topics.get(name, "")
        if not topic:
            raise ValueError(
                f"the policy needs {list(stream.keys)} from the {name!r} input, but parameter "
                f"{name}_topic is empty"
            )
        plan[name] = topic
    return plan
