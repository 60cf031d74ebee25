"""Test-wide isolation: every process a test starts stays on this machine's loopback DDS.

The variables are set at import time, before any test module imports rclpy, so the test
process and every child it spawns inherit them. scripts/test.sh sets them too; this file keeps a
bare `pytest` run just as isolated.
"""

import os
import tempfile

import pytest

from dp_ros.testing.ros_isolation import isolation_environment

os.environ.update(isolation_environment(os.environ, tempfile.gettempdir()))


def pytest_collection_modifyitems(config, items):
    """Leave `slow` tests out unless asked for with -m."""
    if config.getoption("-m"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with `-m slow`")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(scope="module")
def context():
    """An rclpy context of the test module's own (its observers' nodes live in it); rclpy is
    imported here, after the isolation variables above are set."""
    import rclpy

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.shutdown(context=ctx)
