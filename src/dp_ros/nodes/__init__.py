"""ROS 2 nodes: thin adapters between topics/services and the dp_ros core."""
