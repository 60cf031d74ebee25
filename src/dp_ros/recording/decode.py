"""Recorded messages -> arrays: one decoder per stream, shared by recorder_node and the converter.

The decoders take either rclpy messages (the node) or rosbags' deserialised messages (the bag
converter): both have the same field names, and dp_ros.conversions reads nothing else, so the
node and the converter turn a message into exactly the same arrays. Imports message packages
through dp_ros.conversions, never rclpy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dp_ros import conversions as conv
from dp_ros.acting.inputs import Stream
from dp_ros.keys import ACTION_DIM, EEF_POS, EEF_QUAT, LOW_DIM_SIZES

Decoder = Callable[[Any], dict[str, np.ndarray]]


@dataclass(frozen=True)
class AppliedAction:
    stamp_ns: int
    action: np.ndarray  # (Da,) float32
    source: int  # ActionChunk.source: 0 unknown, 1 hold, 2 policy, 3 teleop


def make_decoder(
    stream: Stream,
    topic: str,
    keys: Sequence[str],
    compressed: bool = False,
    joint_names: Sequence[str] = (),
    use_bridge: bool = True,
    image_hw: tuple[int, int] | None = None,
    center_crop: bool = False,
) -> Decoder:
    """A function msg -> {key: array} for the recorded `keys` this stream provides.

    `image_hw`: store camera frames at this (H, W) (dp_ros.image_fit: optional centre crop,
    INTER_AREA), as policy_node feeds them to a policy; None: as they came.
    Raises ValueError (naming the topic) for a message that cannot be decoded.
    """
    wanted = [key for key in stream.keys if key in keys]
    if stream.kind == "image":
        key = wanted[0]
        if image_hw is not None:
            return lambda msg: {
                key: conv.camera_to_rgb(msg, topic, compressed, image_hw, center_crop)
            }
        if compressed:
            return lambda msg: {key: conv.compressed_image_to_rgb(msg, topic)}
        return lambda msg: {key: conv.image_to_rgb(msg, topic, use_bridge=use_bridge)}
    if stream.kind == "pose":

        def decode_pose(msg: Any) -> dict[str, np.ndarray]:
            position, quaternion = conv.pose_to_arrays(msg, topic)
            values = {EEF_POS: position, EEF_QUAT: quaternion}
            return {key: values[key] for key in wanted}

        return decode_pose
    key = wanted[0]
    names = tuple(joint_names)
    fixed_size = len(names) or LOW_DIM_SIZES.get(key)

    def decode_joints(msg: Any) -> dict[str, np.ndarray]:
        # The object stream's size (Do) depends on the task: take it from the message.
        size = fixed_size or len(msg.position)
        return {key: conv.joint_state_to_array(msg, topic, size, names)}

    return decode_joints


def decode_applied_action(msg: Any, topic: str) -> AppliedAction:
    """dp_msgs/ActionChunk with one row (the action applied at header.stamp) -> AppliedAction."""
    chunk = conv.msg_to_timed_chunk(msg, topic, ACTION_DIM)
    if len(chunk.rows) != 1:
        raise ValueError(
            f"{topic}: expected applied actions, one row per message; got {len(chunk.rows)} rows"
        )
    return AppliedAction(chunk.first_stamp_ns, chunk.rows[0], int(msg.source))


def joint_names_from(text: str) -> tuple[str, ...]:
    """Comma-separated joint names -> tuple (empty text: read every position in order)."""
    return tuple(name.strip() for name in text.split(",") if name.strip())
