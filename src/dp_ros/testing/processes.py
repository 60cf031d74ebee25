"""Processes for tests and benchmarks: a ManagedProcess that always runs ROS-isolated."""

from collections.abc import Mapping

from dp_ros.launching.processes import ManagedProcess
from dp_ros.testing.ros_isolation import isolation_environment


class ChildProcess(ManagedProcess):
    """A ManagedProcess whose environment always carries the ROS isolation variables."""

    @staticmethod
    def environment(extra: Mapping[str, str] | None) -> dict[str, str]:
        env = ManagedProcess.environment(extra)
        env.update(isolation_environment(env))
        return env
