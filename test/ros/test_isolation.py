"""The isolation variables are in force in this process and in every child it starts."""

import json
import os
from pathlib import Path

import pytest

from dp_ros.testing.processes import ChildProcess
from dp_ros.testing.ros_isolation import assert_isolated, isolation_environment

PEERS = Path(__file__).parent / "peers"


def test_this_process_is_isolated():
    assert_isolated()


def test_child_process_inherits_the_same_isolation():
    with ChildProcess.python(str(PEERS / "print_environment.py")) as child:
        seen = json.loads(child.wait_for("ENV ", timeout=30)[4:])
        child.wait_for("ISOLATED", timeout=30)
    assert seen == {
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_DOMAIN_ID": os.environ["ROS_DOMAIN_ID"],
        "ROS_LOG_DIR": os.environ["ROS_LOG_DIR"],
    }


def test_child_cannot_widen_discovery_even_if_asked(tmp_path):
    # A test that passes SUBNET by mistake still gets LOCALHOST: the range is always forced.
    env = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}
    with ChildProcess.python(str(PEERS / "print_environment.py"), env=env) as child:
        seen = json.loads(child.wait_for("ENV ", timeout=30)[4:])
    assert seen["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"ROS_DOMAIN_ID": "7", "ROS_LOG_DIR": "/tmp/x"}, "ROS_AUTOMATIC_DISCOVERY_RANGE=None"),
        (
            {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET", "ROS_DOMAIN_ID": "7", "ROS_LOG_DIR": "/x"},
            "ROS_AUTOMATIC_DISCOVERY_RANGE='SUBNET'",
        ),
        ({"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_LOG_DIR": "/x"}, "ROS_DOMAIN_ID=''"),
        (
            {
                "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
                "ROS_DOMAIN_ID": "0",
                "ROS_LOG_DIR": "/x",
            },
            "ROS_DOMAIN_ID='0'",
        ),
        ({"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_DOMAIN_ID": "7"}, "ROS_LOG_DIR"),
    ],
)
def test_assert_isolated_names_what_is_wrong(env, complaint):
    with pytest.raises(RuntimeError, match=complaint.replace("(", r"\(")):
        assert_isolated(env)


def test_isolation_keeps_a_run_wide_domain_and_log_dir(tmp_path):
    chosen = isolation_environment({"ROS_DOMAIN_ID": "33", "ROS_LOG_DIR": str(tmp_path)})
    assert chosen == {
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_DOMAIN_ID": "33",
        "ROS_LOG_DIR": str(tmp_path),
    }
    fresh = isolation_environment({}, str(tmp_path))
    assert 1 <= int(fresh["ROS_DOMAIN_ID"]) <= 101
    assert Path(fresh["ROS_LOG_DIR"]).is_dir()
