"""Named QoS profiles (DESIGN.md style rule 5): one definition per kind of traffic.

Cameras and robot state use rclpy's sensor-data profile (best effort, keep last 5): a late frame
is worth less than the next one. Action chunks are reliable: a dropped chunk is a robot that stops.
Status is transient-local depth 1, so a monitor that joins late sees the current state at once.
"""

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

SENSOR_QOS = qos_profile_sensor_data
ACTION_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE
)
STATUS_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
# Episode outcomes and teleop commands: reliable, a few queued.
EVENT_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE
)
# Applied actions, one per control step: a recorder must not lose one even when it stalls for a
# while (the writer keeps this many unacknowledged samples for retransmission: 10 s at 20 Hz).
STEP_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=200, reliability=ReliabilityPolicy.RELIABLE
)
