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


def plan_inputs(obs_keys: tuple[str, ...] | list[str], topics: dict[str, str]) -> dict[str, str]:
    """{stream name: topic} for the streams that provide `obs_keys`.

    Raises ValueError when a key has no stream or a needed stream has no topic configured, naming
    the key, the stream and the parameter to set.
    """
    provider = {key: stream for stream in STREAMS for key in stream.keys}
    plan: dict[str, str] = {}
    for key in obs_keys:
        stream = provider.get(key)
        if stream is None:
            raise ValueError(
                f"the policy needs observation {key!r}, which no input stream provides "
                f"(streams provide: {sorted(provider)})"
            )
        topic = topics.get(stream.name, "")
        if not topic:
            raise ValueError(
                f"the policy needs {key!r} from the {stream.name!r} input, but parameter "
                f"{stream.name}_topic is empty"
            )
        plan[stream.name] = topic
    return plan
