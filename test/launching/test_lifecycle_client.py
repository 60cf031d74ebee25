"""LifecycleClient when a change_state request or its reply is lost (seen on DDS: a request sent
just as the service is discovered, answered by nothing for 120 s).

The managed node is a stand-in in its own process that serves lifecycle_msgs' services for real
over DDS, but never answers its first change_state request: in `lost_request` mode it leaves the
state as it was (the request never arrived), in `lost_reply` mode it makes the transition (the
reply was lost). DDS does not lose messages on demand, so this is the only way to exercise it.
"""

import time

import pytest

from dp_ros.launching import lifecycle
from dp_ros.launching.lifecycle import LifecycleClient
from dp_ros.testing.observer import GraphObserver
from dp_ros.testing.processes import ChildProcess

pytestmark = pytest.mark.ros

STAND_IN = """
import sys, threading
import rclpy
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from lifecycle_msgs.msg import State
from lifecycle_msgs.srv import ChangeState, GetState

name, mode = sys.argv[1], sys.argv[2]
rclpy.init()
node = rclpy.create_node(name)
state = [State.PRIMARY_STATE_UNCONFIGURED, "unconfigured"]
requests = [0]
never = threading.Event()

def change(request, response):
    requests[0] += 1
    print(f"change_state request {requests[0]}", flush=True)
    if requests[0] == 1:
        if mode == "lost_reply":
            state[:] = [State.PRIMARY_STATE_INACTIVE, "inactive"]
        never.wait()  # this request is never answered
    state[:] = [State.PRIMARY_STATE_INACTIVE, "inactive"]
    response.success = True
    return response

def get(request, response):
    response.current_state.id, response.current_state.label = state
    return response

group = ReentrantCallbackGroup()
node.create_service(ChangeState, f"/{name}/change_state", change, callback_group=group)
node.create_service(GetState, f"/{name}/get_state", get, callback_group=group)
print("serving", flush=True)
executor = MultiThreadedExecutor(num_threads=4)
executor.add_node(node)
executor.spin()
"""


@pytest.mark.parametrize("mode, requests", [("lost_request", 2), ("lost_reply", 1)])
def test_a_lost_transition_request_or_reply_is_recovered(context, monkeypatch, mode, requests):
    monkeypatch.setattr(lifecycle, "UNANSWERED_CHECK_S", 1.0)
    name = f"stand_in_{mode}"
    process = ChildProcess.python("-c", STAND_IN, name, mode, name=name)
    observer = GraphObserver(f"client_{mode}", context)
    try:
        process.wait_for("serving", timeout=60)
        client = LifecycleClient(observer.node, observer.executor, f"/{name}")
        assert client.wait_for_services(60), process.output()
        started = time.monotonic()
        assert client.transition("configure", timeout=60), process.output()
        assert time.monotonic() - started < 20  # not the whole timeout
        assert client.state() == "inactive"
        assert process.output().count("change_state request") == requests, process.output()
    finally:
        observer.close()
        process.kill()
