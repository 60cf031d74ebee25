"""Demonstration recording: observation/action alignment into episodes (ROS-free core), the
bag converter, and the message decoders shared by recorder_node and the converter."""
