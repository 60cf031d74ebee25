"""Receive N ActionChunk messages; print each as JSON ("RECEIVED {...}"), then exit."""

import json
import sys

import rclpy
from msg_json import to_plain
from rclpy.qos import QoSProfile, ReliabilityPolicy

from dp_msgs.msg import ActionChunk


def main() -> None:
    count = int(sys.argv[1])
    rclpy.init()
    node = rclpy.create_node("chunk_subscriber")
    received = []
    qos = QoSProfile(depth=count, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(ActionChunk, "action_chunk", received.append, qos)
    print("READY", flush=True)
    while len(received) < count:
        rclpy.spin_once(node, timeout_sec=0.1)
    for chunk in received:
        print("RECEIVED " + json.dumps(to_plain(chunk)), flush=True)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
