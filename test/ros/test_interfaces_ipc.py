"""dp_msgs over real DDS between separate OS processes: messages round-trip, services answer."""

import json
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from std_srvs.srv import SetBool, Trigger

from dp_msgs.srv import ResetEnv, StartEpisode, StopEpisode
from dp_ros.testing.processes import ChildProcess

PEERS = Path(__file__).parent / "peers"
pytestmark = pytest.mark.ros


def collect_json(process: ChildProcess, prefix: str, count: int, timeout: float) -> list[dict]:
    return [json.loads(process.wait_for(prefix, timeout)[len(prefix) :]) for _ in range(count)]


def test_action_chunk_every_field_round_trips_between_processes():
    count = 5
    with ChildProcess.python(str(PEERS / "chunk_subscriber.py"), str(count)) as subscriber:
        subscriber.wait_for("READY", timeout=30)
        with ChildProcess.python(str(PEERS / "chunk_publisher.py"), str(count)) as publisher:
            sent = collect_json(publisher, "SENT ", count, timeout=60)
            received = collect_json(subscriber, "RECEIVED ", count, timeout=60)
            assert subscriber.wait(timeout=30) == 0, subscriber.output()

    assert received == sent
    first = received[0]
    # Every field carries a non-default value, so the equality above covers each one.
    assert first["header"]["frame_id"] == "panda_link0"
    assert first["header"]["stamp"] == {"sec": 1_700_000_000, "nanosec": 123_456_789}
    assert first["observation_stamp"] == {"sec": 1_699_999_999, "nanosec": 987_654_321}
    assert first["period"] == {"sec": 0, "nanosec": 50_000_000}
    assert (first["horizon"], first["action_dim"]) == (16, 7)
    assert first["action_names"] == ["dx", "dy", "dz", "drx", "dry", "drz", "gripper"]
    assert len(first["data"]) == 16 * 7
    as_float32 = [float(np.float32(value)) for value in (3.0e38, -1.0e-38, -6.0)]
    assert first["data"][:3] == as_float32
    assert [chunk["sequence"] for chunk in received] == [2**40 + i for i in range(count)]


@pytest.fixture
def client_node():
    """An rclpy node in this test process, in its own context, torn down afterwards."""
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("service_client", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    yield node, executor
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=context)


def call(node, executor, service_type, name: str, request):
    client = node.create_client(service_type, name)
    assert client.wait_for_service(timeout_sec=30), f"service {name} not found"
    future = client.call_async(request)
    executor.spin_until_future_complete(future, timeout_sec=30)
    assert future.done(), f"service {name} did not answer"
    return future.result()


def test_services_answer_across_processes(client_node):
    node, executor = client_node
    with ChildProcess.python(str(PEERS / "episode_services.py")) as server:
        server.wait_for("READY", timeout=30)
        started = call(
            node,
            executor,
            StartEpisode,
            "start_episode",
            StartEpisode.Request(task="lift", operator_name="ada"),
        )
        assert (started.success, started.message) == (True, "recording lift by ada")
        assert started.episode_index == 41

        stopped = call(
            node, executor, StopEpisode, "stop_episode", StopEpisode.Request(success=True)
        )
        assert (stopped.saved, stopped.frames, stopped.episode_index) == (True, 137, 41)
        assert stopped.message == "outcome success=True"

        reset = call(node, executor, ResetEnv, "reset_env", ResetEnv.Request(seed=-3))
        assert (reset.success, reset.message, reset.episode) == (False, "seed -3", 42)

        discarded = call(node, executor, Trigger, "discard_episode", Trigger.Request())
        assert (discarded.success, discarded.message) == (True, "discarded")

        enabled = call(node, executor, SetBool, "enable", SetBool.Request(data=False))
        assert enabled.message == "acting=False"
