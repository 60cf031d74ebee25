"""recorder_node in its own process, fed over DDS by a sim-like publisher in this process.

The feed publishes, per step at instant t, both cameras, the pose, the gripper and the object
state stamped t, then the action applied at t (first value: the step number), like sim_node.
Every recorded row is checked against what the feed sent for the step its action names.
"""

import os
import threading
import time

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from std_srvs.srv import Trigger

from dp_msgs.msg import ActionChunk, EpisodeOutcome
from dp_msgs.srv import ResetEnv, StartEpisode, StopEpisode
from dp_ros import conversions as conv
from dp_ros.acting.chunk_timing import TimedChunk
from dp_ros.data.store import EpisodeStore
from dp_ros.keys import AGENTVIEW_IMAGE, EEF_POS, EEF_QUAT, GRIPPER_QPOS, OBJECT_STATE, WRIST_IMAGE
from dp_ros.nodes.qos import EVENT_QOS, SENSOR_QOS, STEP_QOS
from dp_ros.testing.processes import ChildProcess

pytestmark = pytest.mark.ros
PERIOD_S = 0.05
P_NS = round(PERIOD_S * 1e9)
MARKER_TOPIC = "/recorder/episode_marker"  # recorder_node's default marker_topic


def step_values(step: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(step)
    angle = 0.05 * step
    return {
        AGENTVIEW_IMAGE: rng.integers(0, 256, (84, 84, 3), np.uint8),
        WRIST_IMAGE: rng.integers(0, 256, (84, 84, 3), np.uint8),
        EEF_POS: np.array([0.001 * step, 0.2, 1.0], np.float32),
        EEF_QUAT: np.array([0, 0, np.sin(angle / 2), np.cos(angle / 2)], np.float32),
        GRIPPER_QPOS: np.array([0.04, -0.04], np.float32),
        OBJECT_STATE: np.arange(10, dtype=np.float32) + step,
    }


class SimLikeFeed:
    """Publishes sim_node's topics at 20 Hz (wall-clock stamps) from a background executor."""

    def __init__(self, context) -> None:
        self.node = rclpy.create_node("sim_like_feed", context=context)
        node = self.node
        from geometry_msgs.msg import PoseStamped
        from sensor_msgs.msg import Image, JointState

        self.pubs = {
            "agentview": node.create_publisher(Image, "/agentview/image_raw", SENSOR_QOS),
            "wrist": node.create_publisher(Image, "/wrist/image_raw", SENSOR_QOS),
            "pose": node.create_publisher(PoseStamped, "/eef_pose", SENSOR_QOS),
            "gripper": node.create_publisher(JointState, "/gripper/joint_states", SENSOR_QOS),
            "object": node.create_publisher(JointState, "/sim/object_state", SENSOR_QOS),
        }
        self.action_pub = node.create_publisher(ActionChunk, "/sim/applied_action", STEP_QOS)
        self.outcome_pub = node.create_publisher(EpisodeOutcome, "/sim/episode_outcome", EVENT_QOS)
        self.silent: set[str] = set()
        self.step = 0
        self.stamps: dict[int, int] = {}  # step -> stamp
        self._outcome: tuple[bool, str, int] | None = None
        self.outcome_steps: list[int] = []  # the step each outcome was stamped with
        self._lock = threading.Lock()
        node.create_timer(PERIOD_S, self._tick)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def use_outcome_topic(self, topic: str) -> None:
        """Outcomes on a topic of this test's own, so that only its recorder hears them."""
        with self._lock:
            self.outcome_pub = self.node.create_publisher(EpisodeOutcome, topic, EVENT_QOS)

    def end_episode(self, success: bool, reason: str, next_seed: int = -1) -> None:
        """At the next step: an outcome stamped with that step's instant (a sim's reset)."""
        with self._lock:
            self._outcome = (success, reason, next_seed)

    def _tick(self) -> None:
        with self._lock:
            stamp = self.node.get_clock().now().nanoseconds
            step, self.step = self.step, self.step + 1
            self.stamps[step] = stamp
            if self._outcome is not None:
                success, reason, next_seed = self._outcome
                self._outcome = None
                self.outcome_steps.append(step)
                msg = EpisodeOutcome(task="lift", episode=0, success=success, steps=0)
                msg.reason = reason
                msg.next_seed = next_seed
                msg.header.stamp = conv.ns_to_stamp(stamp)
                self.outcome_pub.publish(msg)
            values = step_values(step)
            messages = {
                "agentview": conv.rgb_to_image(values[AGENTVIEW_IMAGE], stamp, "agentview"),
                "wrist": conv.rgb_to_image(values[WRIST_IMAGE], stamp, "wrist"),
                "pose": conv.arrays_to_pose(values[EEF_POS], values[EEF_QUAT], stamp, "world"),
                "gripper": conv.array_to_joint_state(values[GRIPPER_QPOS], stamp, ["f1", "f2"]),
                "object": conv.array_to_joint_state(
                    values[OBJECT_STATE], stamp, [f"o{i}" for i in range(10)]
                ),
            }
            for name, msg in messages.items():
                if name not in self.silent:
                    self.pubs[name].publish(msg)
            row = np.array([[step, 0, 0, 0, 0, 0, 1]], np.float32)
            chunk = TimedChunk(stamp, P_NS, row)
            self.action_pub.publish(
                conv.timed_chunk_to_msg(
                    chunk, stamp, step, "applied", source=ActionChunk.SOURCE_TELEOP
                )
            )

    def unreached_topics(self, node_name: str) -> list[str]:
        """Topics of this feed that node `node_name` is not yet known to subscribe to, or that
        no subscription is matched on. By name, not by a change in the match count: a recorder
        stopped just before may still be counted while the new one is not yet."""
        publishers = [*self.pubs.values(), self.action_pub, self.outcome_pub]
        unreached = []
        for pub in publishers:
            infos = self.node.get_subscriptions_info_by_topic(pub.topic_name)
            known = any(info.node_name == node_name for info in infos)
            if not known or pub.get_subscription_count() == 0:
                unreached.append(pub.topic_name)
        return unreached

    def close(self) -> None:
        self.executor.shutdown()
        self._thread.join(timeout=5)
        self.node.destroy_node()


class RecorderClient:
    def __init__(self, context, name: str) -> None:
        self.node = rclpy.create_node(f"client_{name}", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.start_client = self.node.create_client(StartEpisode, f"/{name}/start")
        self.stop_client = self.node.create_client(StopEpisode, f"/{name}/stop")
        self.discard_client = self.node.create_client(Trigger, f"/{name}/discard")
        self.markers: list[EpisodeOutcome] = []
        self.node.create_subscription(EpisodeOutcome, MARKER_TOPIC, self.markers.append, EVENT_QOS)

    def wait_for_marker_publisher(self, recorder: str, timeout: float = 30.0) -> None:
        """Markers are volatile: one sent before DDS has matched the recorder's publisher with
        this subscription is lost (seen in a clean-clone run under load: the first "start"
        missing). Wait until the graph shows `recorder` publishing them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            publishers = self.node.get_publishers_info_by_topic(MARKER_TOPIC)
            if any(info.node_name == recorder for info in publishers):
                return
            self.spin_for(0.1)
        raise AssertionError(f"{recorder} not seen publishing {MARKER_TOPIC} in {timeout}s")

    def call(self, client, request, timeout: float = 60.0):
        assert client.wait_for_service(timeout_sec=timeout), client.srv_name
        future = client.call_async(request)
        self.executor.spin_until_future_complete(future, timeout_sec=timeout)
        assert future.done(), f"{client.srv_name} did not answer"
        return future.result()

    def start(self, task="lift", operator="tester"):
        return self.call(
            self.start_client, StartEpisode.Request(task=task, operator_name=operator)
        )

    def stop(self, success=True):
        return self.call(self.stop_client, StopEpisode.Request(success=success))

    def discard(self):
        return self.call(self.discard_client, Trigger.Request())

    def spin_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


def start_recorder(store, name: str, *params: str, feed: "SimLikeFeed | None" = None):
    """A recorder process; with `feed`, returns only once every feed topic reaches it.

    Until DDS has matched the feed's publishers with the new recorder's subscriptions, what the
    feed publishes is not delivered to it; on an idle machine a test could otherwise start an
    episode before then and see the recorder refuse it for missing observations.
    """
    args = ["-m", "dp_ros.nodes.recorder_node", "--ros-args", "-r", f"__node:={name}"]
    for item in (f"store:={store}", *params):
        args += ["-p", item]
    process = ChildProcess.python(*args, name=name)
    process.wait_for(lambda line: "recording [" in line, timeout=60)
    if feed is not None:
        deadline = time.monotonic() + 60
        while unreached := feed.unreached_topics(name):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} never subscribed to the feed's {unreached}")
            time.sleep(0.05)
        time.sleep(0.5)  # discovery seen here; give the match on the feed's side a moment
    return process


@pytest.fixture(scope="module")
def feed(context):
    feed = SimLikeFeed(context)
    yield feed
    feed.close()


def check_rows_match_the_feed(episode: dict[str, np.ndarray]) -> np.ndarray:
    """Every row's observations are the ones the feed sent for the step its action names."""
    steps = episode["action"][:, 0].astype(int)
    assert np.all(np.diff(steps) == 1), steps  # consecutive: nothing dropped in between
    for row, step in enumerate(steps):
        expected = step_values(step)
        for key, value in expected.items():
            np.testing.assert_array_equal(episode[key][row], value, err_msg=f"{key} step {step}")
    return steps


def test_start_stop_records_aligned_episodes_and_sigkill_keeps_finished_ones(
    context, feed, tmp_path
):
    store_path = tmp_path / "store"
    process = start_recorder(store_path, "recorder_a", feed=feed)
    client = RecorderClient(context, "recorder_a")
    try:
        client.wait_for_marker_publisher("recorder_a")
        for expected_index in (0, 1):
            before_start = feed.step
            started = client.start()
            assert started.success and started.episode_index == expected_index, started.message
            first_step = feed.step
            client.spin_for(1.0)
            last_step = feed.step
            stopped = client.stop(success=True)
            after_stop = feed.step
            assert stopped.saved, stopped.message
            assert stopped.episode_index == expected_index
            # Every step between the calls is in the episode, and none from outside them (service
            # round trips take a variable while, so the boundaries are bounds, not points).
            inner, outer = last_step - first_step, after_stop - before_start
            assert inner - 3 <= stopped.frames <= outer + 1, (stopped.message, inner, outer)
        assert not client.stop().saved  # nothing open
        assert not client.start(task="x").success or client.discard().success  # restarts fine
        client.start()
        client.spin_for(0.5)
        process.kill()  # SIGKILL mid-episode
        client.spin_for(0.3)
        reasons = [marker.reason for marker in client.markers]
        assert reasons[:4] == ["start", "stop", "start", "stop"], reasons
    finally:
        client.close()
        process.stop()
    store = EpisodeStore.open(store_path)
    assert store.n_episodes == 2
    for index in range(2):
        episode = store.episode(index)
        steps = check_rows_match_the_feed(episode)
        metadata = store.episode_metadata(index)
        assert metadata["task"] == "lift" and metadata["operator"] == "tester"
        assert metadata["success"] is True and metadata["frames"] == len(steps)
        assert metadata["dropped_frames"] == 0 and metadata["action_sources"] == {
            "teleop": len(steps)
        }
        assert metadata["start_stamp_ns"] == feed.stamps[int(steps[0])]
        assert metadata["last_stamp_ns"] == feed.stamps[int(steps[-1])]
    EpisodeStore.open(store_path, mode="a").close()  # the killed writer's lock is gone


def test_discard_leaves_no_trace_and_incomplete_streams_are_refused(context, feed, tmp_path):
    store_path = tmp_path / "store"
    process = start_recorder(store_path, "recorder_b", feed=feed)
    client = RecorderClient(context, "recorder_b")
    try:
        assert client.start().success
        client.spin_for(0.6)
        assert client.stop().saved
        before = sorted(p.relative_to(store_path) for p in store_path.rglob("*"))
        assert client.start().success
        client.spin_for(0.6)
        discarded = client.discard()
        assert discarded.success and "discarded" in discarded.message
        assert not client.stop().saved  # nothing left to stop
        after = sorted(p.relative_to(store_path) for p in store_path.rglob("*"))
        assert after == before  # not one file written
        feed.silent = {"wrist"}
        client.spin_for(0.5)  # let the wrist history fall behind the actions
        assert client.start().success
        client.spin_for(0.8)
        refused = client.stop()
        assert not refused.saved
        assert "refused" in refused.message and WRIST_IMAGE in refused.message, refused.message
    finally:
        feed.silent = set()
        client.close()
        process.stop()
    store = EpisodeStore.open(store_path)
    assert store.n_episodes == 1
    check_rows_match_the_feed(store.episode(0))


def test_auto_start_and_stop_follow_episode_outcomes(context, feed, tmp_path):
    store_path = tmp_path / "store"
    feed.use_outcome_topic("/recorder_c_test/outcome")
    process = start_recorder(
        store_path,
        "recorder_c",
        "auto_start:=true",
        "auto_stop:=true",
        "task:=lift",
        "outcome_topic:=/recorder_c_test/outcome",
        feed=feed,
    )
    client = RecorderClient(context, "recorder_c")
    try:
        deadline = time.monotonic() + 30
        while feed.outcome_pub.get_subscription_count() < 1 and time.monotonic() < deadline:
            client.spin_for(0.1)  # a reliable volatile outcome sent before matching is lost
        client.spin_for(0.3)
        feed.outcome_steps.clear()
        outcomes = ((False, "reset"), (True, "success"), (False, "horizon"), (True, "success"))
        for success, reason in outcomes:
            feed.end_episode(success, reason)
            client.spin_for(0.7)
        outcome_steps = list(feed.outcome_steps)
        assert len(outcome_steps) == 4
    finally:
        client.close()
        assert process.stop() == 0, process.output()
    # Episodes between outcomes: [reset, success) saved; [success, horizon) failed, discarded;
    # [horizon, success) saved; the one after the last outcome is discarded at shutdown.
    store = EpisodeStore.open(store_path)
    assert store.n_episodes == 2, process.output()
    for index, (first, end) in enumerate([outcome_steps[0:2], outcome_steps[2:4]]):
        steps = check_rows_match_the_feed(store.episode(index))
        assert steps[0] == first and steps[-1] == end - 1, (steps, first, end)
        assert store.episode_metadata(index)["outcome"] == "success"


class FakeSimReset:
    """A ResetEnv service that only notes the seeds asked for (the test plays the sim's part)."""

    def __init__(self, client: RecorderClient, name: str) -> None:
        self.seeds: list[int] = []
        client.node.create_service(ResetEnv, name, self._on_reset)

    def _on_reset(self, request, response):
        self.seeds.append(int(request.seed))
        response.success = True
        return response


def test_seeds_are_stored_no_episode_spans_a_reset_and_a_second_run_skips_stored_seeds(
    context, feed, tmp_path
):
    store_path = tmp_path / "store"
    feed.use_outcome_topic("/recorder_d_test/outcome")
    common = ("task:=lift", "outcome_topic:=/recorder_d_test/outcome")
    reset = "reset_service:=/recorder_d_test/reset"
    client = RecorderClient(context, "recorder_d")
    sim = FakeSimReset(client, "/recorder_d_test/reset")
    process = start_recorder(store_path, "recorder_d", *common, reset, "source:=kb", feed=feed)
    try:
        wait_for_outcome_subscriber(feed, client)
        client.wait_for_marker_publisher("recorder_d")
        feed.end_episode(False, "reset", next_seed=5)  # the sim's scene is now seed 5
        client.spin_for(0.4)
        assert client.start().success
        client.spin_for(0.6)
        stopped = client.stop(success=False)  # the operator saves a failure
        assert stopped.saved and "failure, seed 5" in stopped.message, stopped.message
        again = client.start()  # the same scene again: refused, and the sim asked to move on
        assert not again.success and "seed 5 of 'lift' is already recorded" in again.message
        client.spin_for(0.3)
        assert sim.seeds == [6], again.message
        feed.end_episode(False, "reset", next_seed=6)
        client.spin_for(0.4)
        assert client.start().success
        client.spin_for(0.6)
        feed.end_episode(False, "horizon", next_seed=7)  # the scene reset under the operator
        client.spin_for(0.4)
        assert not client.stop().saved  # discarded at the reset: nothing left to stop
        assert [m.reason for m in client.markers][-2:] == ["start", "discard"]
    finally:
        assert process.stop() == 0, process.output()
    store = EpisodeStore.open(store_path)
    assert store.n_episodes == 1
    metadata = store.episode_metadata(0)
    assert (metadata["seed"], metadata["success"], metadata["source"]) == (5, False, "kb")
    assert metadata["ended_by"] == "operator" and len(metadata["digest"]) == 32

    # A second run on the same store, unattended: seed 5 is skipped, seed 6 recorded.
    process = start_recorder(
        store_path, "recorder_d", *common, reset, "auto_start:=true", "auto_stop:=true", feed=feed
    )
    try:
        wait_for_outcome_subscriber(feed, client)
        sim.seeds.clear()
        feed.end_episode(False, "reset", next_seed=5)
        client.spin_for(0.5)
        assert sim.seeds == [6], process.output()
        feed.end_episode(False, "reset", next_seed=6)
        client.spin_for(0.6)
        feed.end_episode(True, "success", next_seed=7)
        client.spin_for(1.5)
    finally:
        client.close()
        assert process.stop() == 0, process.output()
    store = EpisodeStore.open(store_path)
    assert [store.episode_metadata(i)["seed"] for i in range(store.n_episodes)] == [5, 6]
    assert store.episode_metadata(1)["success"] is True
    check_rows_match_the_feed(store.episode(1))


def wait_for_outcome_subscriber(feed: SimLikeFeed, client: RecorderClient) -> None:
    deadline = time.monotonic() + 30
    while feed.outcome_pub.get_subscription_count() < 1 and time.monotonic() < deadline:
        client.spin_for(0.1)  # a reliable volatile outcome sent before matching is lost
    client.spin_for(0.3)


def test_bad_parameters_are_refused_at_start(tmp_path):
    process = ChildProcess.python(
        "-m", "dp_ros.nodes.recorder_node", "--ros-args", "-p", "store:=''", name="bad"
    )
    assert process.wait(timeout=60) == 2
    assert "parameter store is empty" in process.output()
    process = ChildProcess.python(
        "-m",
        "dp_ros.nodes.recorder_node",
        "--ros-args",
        "-p",
        f"store:={tmp_path / 's'}",
        "-p",
        "object_topic:=''",
        name="bad2",
    )
    assert process.wait(timeout=60) == 2
    assert "parameter object_topic is empty" in process.output()
    assert not os.path.exists(tmp_path / "s")
