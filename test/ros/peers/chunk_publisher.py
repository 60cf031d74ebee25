"""Publish ActionChunk messages once a subscriber is matched; print each as JSON ("SENT {...}")."""

import json
import sys

import rclpy
from builtin_interfaces.msg import Duration, Time
from msg_json import to_plain
from rclpy.qos import QoSProfile, ReliabilityPolicy

from dp_msgs.msg import ActionChunk
from dp_ros.keys import ACTION_DIM, ACTION_NAMES


def make_chunk(index: int) -> ActionChunk:
    """A chunk whose every field differs from its default, so a dropped field shows."""
    horizon = 16
    chunk = ActionChunk()
    chunk.header.stamp = Time(sec=1_700_000_000 + index, nanosec=123_456_789)
    chunk.header.frame_id = "panda_link0"
    chunk.observation_stamp = Time(sec=1_699_999_999, nanosec=987_654_321)
    chunk.period = Duration(sec=0, nanosec=50_000_000)
    chunk.horizon = horizon
    chunk.action_dim = ACTION_DIM
    chunk.action_names = list(ACTION_NAMES)
    # Values that are exact in float32 but not trivial: negative, fractional, large, tiny.
    chunk.data = [(i - 50) * 0.125 + index for i in range(horizon * ACTION_DIM)]
    chunk.data[0] = 3.0e38
    chunk.data[1] = -1.0e-38
    chunk.sequence = 2**40 + index
    return chunk


def main() -> None:
    count = int(sys.argv[1])
    rclpy.init()
    node = rclpy.create_node("chunk_publisher")
    qos = QoSProfile(depth=count, reliability=ReliabilityPolicy.RELIABLE)
    publisher = node.create_publisher(ActionChunk, "action_chunk", qos)
    while publisher.get_subscription_count() == 0:
        rclpy.spin_once(node, timeout_sec=0.05)
    for index in range(count):
        chunk = make_chunk(index)
        publisher.publish(chunk)
        print("SENT " + json.dumps(to_plain(chunk)), flush=True)
    # Stay until the subscriber has what it needs (it exits; the test then stops us).
    while rclpy.ok():
        rclpy.spin_once(node, timeout_sec=0.1)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
