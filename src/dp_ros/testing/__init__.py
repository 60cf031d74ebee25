"""Helpers for tests and benchmarks that start ROS processes (no rclpy import here)."""
