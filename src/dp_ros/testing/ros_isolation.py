"""Keep DDS traffic on this machine: the variables every rclpy process here must run with.

Kilted ignores ROS_LOCALHOST_ONLY; ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST is what keeps discovery
multicast off the network. A per-run ROS_DOMAIN_ID keeps concurrent runs from seeing each other,
and a per-run ROS_LOG_DIR keeps logs out of the home directory.
"""

import os
import random
import tempfile
from collections.abc import Mapping

DISCOVERY_RANGE = "LOCALHOST"
# Domain IDs 1..101 are safe on Linux for any participant count (0 is everyone's default).
DOMAIN_ID_RANGE = (1, 101)
ISOLATION_KEYS = ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID", "ROS_LOG_DIR")


def isolation_environment(current: Mapping[str, str], temp_root: str | None = None) -> dict:
    """The isolation variables to add to `current`.

    The discovery range is always forced to LOCALHOST. A domain ID and log directory already
    chosen by the caller (scripts/test.sh picks them once per run) are kept, so that all
    processes of one run share them.
    """
    env = {"ROS_AUTOMATIC_DISCOVERY_RANGE": DISCOVERY_RANGE}
    env["ROS_DOMAIN_ID"] = current.get("ROS_DOMAIN_ID") or str(random.randint(*DOMAIN_ID_RANGE))
    log_dir = current.get("ROS_LOG_DIR")
    if not log_dir:
        log_dir = tempfile.mkdtemp(prefix="dp_ros_roslog_", dir=temp_root)
    env["ROS_LOG_DIR"] = log_dir
    return env


def assert_isolated(env: Mapping[str, str] | None = None) -> None:
    """Raise if `env` (default: this process) would let DDS discovery leave the machine."""
    env = os.environ if env is None else env
    problems = []
    if env.get("ROS_AUTOMATIC_DISCOVERY_RANGE") != DISCOVERY_RANGE:
        problems.append(
            f"ROS_AUTOMATIC_DISCOVERY_RANGE={env.get('ROS_AUTOMATIC_DISCOVERY_RANGE')!r} "
            f"(must be {DISCOVERY_RANGE!r})"
        )
    domain = env.get("ROS_DOMAIN_ID", "")
    if not domain.isdigit() or not DOMAIN_ID_RANGE[0] <= int(domain) <= DOMAIN_ID_RANGE[1]:
        problems.append(f"ROS_DOMAIN_ID={domain!r} (must be a per-run id in {DOMAIN_ID_RANGE})")
    if not env.get("ROS_LOG_DIR"):
        problems.append("ROS_LOG_DIR is unset (must be a per-run directory)")
    if problems:
        raise RuntimeError("ROS isolation is not in force: " + "; ".join(problems))
