"""policy_node in its own process, fed over DDS by a stand-in robot in this process.

One node process serves the acting and bad-input cases (each case resets it first); refusals at
configure and the lifecycle's memory release get node processes of their own.
"""

import hashlib
import json
import os
import threading
import time
import uuid

import numpy as np
import pytest
from safetensors.torch import load_file, save_file
from std_srvs.srv import SetBool, Trigger

from dp_msgs.msg import ActionChunk, PolicyStatus
from dp_ros import conversions as conv
from dp_ros.keys import OBJECT_STATE
from dp_ros.launching.lifecycle import LifecycleClient
from dp_ros.nodes.qos import ACTION_QOS, STATUS_QOS
from dp_ros.policy.config import UnetConfig
from dp_ros.policy.shape_meta import image_shape_meta
from dp_ros.testing.checkpoints import make_tiny_checkpoint
from dp_ros.testing.observer import GraphObserver
from dp_ros.testing.processes import ChildProcess
from dp_ros.testing.robot_feed import DEFAULT_TOPICS, RobotFeed

pytestmark = pytest.mark.ros
PERIOD_S = 0.05
PERIOD_NS = 50_000_000
OFFERED_ROWS = 15  # the tiny policy's horizon rows from the newest observation on: 16 - 2 + 1


class Observer(GraphObserver):
    """This process's view of the node: chunks, statuses, services, lifecycle."""

    def __init__(self, context, node_name: str = "policy_node") -> None:
        super().__init__(f"observer_{node_name}", context)
        action_topic = f"/{node_name}/action_chunk"
        self.chunks: list[tuple[int, ActionChunk]] = []  # (receive time ns, msg)
        self.statuses: list[PolicyStatus] = []
        self.node.create_subscription(ActionChunk, action_topic, self._on_chunk, ACTION_QOS)
        self.node.create_subscription(
            PolicyStatus, f"/{node_name}/status", self.statuses.append, STATUS_QOS
        )
        self.lifecycle = LifecycleClient(self.node, self.executor, f"/{node_name}")
        self._reset = self.node.create_client(Trigger, f"/{node_name}/reset")
        self._enable = self.node.create_client(SetBool, f"/{node_name}/enable")
        self._lock = threading.Lock()

    def _on_chunk(self, msg: ActionChunk) -> None:
        self.chunks.append((time.time_ns(), msg))

    def reset(self) -> None:
        assert self.call(self._reset, Trigger.Request()).success

    def enable(self, on: bool) -> None:
        assert self.call(self._enable, SetBool.Request(data=on)).success

    def latest_status(self) -> PolicyStatus:
        return self.statuses[-1]

    def bring_up(self, process: ChildProcess) -> None:
        """Configure and activate the node (its output in the message if a step fails)."""
        assert self.lifecycle.wait_for_services(60), process.output()
        assert self.lifecycle.transition("configure"), process.output()
        assert self.lifecycle.transition("activate"), process.output()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


def start_policy_node(checkpoint, *extra: str, name: str = "policy_node") -> ChildProcess:
    """A policy_node process named `name`, publishing chunks on /<name>/action_chunk."""
    args = ["-m", "dp_ros.nodes.policy_node", "--ros-args", "-r", f"__node:={name}"]
    args += ["-p", f"checkpoint:={checkpoint}", "-p", f"action_topic:=/{name}/action_chunk"]
    # Steps due within 150 ms of publication are not offered: a margin far above DDS delivery
    # time even on a loaded machine, so "stamp after receipt" proves "stamp after publication".
    args += ["-p", "exec_latency:=0.15"]
    for item in extra:
        args += ["-p", item]
    return ChildProcess.python(*args, name="policy_node")


def own_feed(context, prefix: str, **feed_options) -> tuple[RobotFeed, list[str]]:
    """A stand-in robot on /<prefix>/... topics, and the node parameters that subscribe to them.

    The module's `acting` feed keeps publishing on the default topics while other tests run: a
    node fed by both sees two interleaved streams at different phases, and its consecutive
    chunks then sit on grids up to half a step apart (seen in CI: the continuation test's chunks
    compared one row off, gaps up to 1.2)."""
    topics = {stream: f"/{prefix}{topic}" for stream, topic in DEFAULT_TOPICS.items()}
    feed = RobotFeed(context, rate_hz=1 / PERIOD_S, topics=topics, **feed_options)
    return feed, [f"{stream}_topic:={topic}" for stream, topic in topics.items()]


@pytest.fixture(scope="module")
def acting(context, checkpoint):
    """A configured, active policy_node fed by a healthy robot."""
    feed = RobotFeed(context, rate_hz=1 / PERIOD_S)
    # fp16 weights (the CPU's fast path) here; the closed-loop and demo tests act in fp32.
    # Gripper joints by name: a JointState with fewer positions than names is then a case.
    process = start_policy_node(
        checkpoint,
        "half_weights:=true",
        "gripper_joint_names:=finger_joint1,finger_joint2",
        "input_guard:=5.0",
    )
    observer = Observer(context)
    try:
        observer.bring_up(process)
        yield observer, feed, process
    finally:
        observer.close()
        feed.close()
        process.stop()


def test_acts_on_healthy_input_with_future_stamps(acting):
    observer, feed, process = acting
    assert observer.spin_until(lambda: len(observer.chunks) >= 6, timeout=30), process.output()
    observer.chunks.clear()
    observer.spin_for(3.0)
    chunks = observer.chunks
    # 8 executed steps per inference at 50 ms: one chunk about every 0.4 s, never slower than
    # one per chunk length (3 s / 0.4 s = 7.5), and not faster than one per control period.
    assert 5 <= len(chunks) <= 60, [c.horizon for _, c in chunks]
    sequences = [msg.sequence for _, msg in chunks]
    assert sequences == list(range(sequences[0], sequences[0] + len(chunks)))
    for received_ns, msg in chunks:
        stamp_ns = conv.stamp_to_ns(msg.header.stamp)
        # exec_latency 150 ms: the first offered step was >= 150 ms ahead at publication.
        assert stamp_ns > received_ns, (stamp_ns - received_ns) / 1e6
        assert conv.stamp_to_ns(msg.observation_stamp) < stamp_ns
        assert conv.duration_to_ns(msg.period) == round(PERIOD_S * 1e9)
        # Every row from the observation's instant on, less those within exec_latency (3).
        assert msg.action_dim == 7 and 1 <= msg.horizon <= OFFERED_ROWS - 3
        assert len(msg.data) == msg.horizon * 7
    # The status said ACTING while chunks flowed (a single late inference may flip it briefly).
    acting = [s for s in observer.statuses if s.state == PolicyStatus.STATE_ACTING and s.acting]
    assert acting, [s.reason for s in observer.statuses[-5:]]
    assert acting[-1].last_inference_latency > 0
    assert max(s.chunks_published for s in observer.statuses) >= len(chunks)
    assert "(fp16 weights, fp32 maths)" in process.output()


def rows_by_instant(msg: ActionChunk) -> dict[int, np.ndarray]:
    """{instant ns rounded to the control grid: row} of one chunk message."""
    first = conv.stamp_to_ns(msg.header.stamp)
    rows = np.asarray(msg.data, np.float32).reshape(msg.horizon, msg.action_dim)
    return {round((first + i * PERIOD_NS) / PERIOD_NS): row for i, row in enumerate(rows)}


@pytest.mark.parametrize("continuation", ["inpaint", "none"])
def test_forced_latency_drops_late_steps_and_continuation_keeps_chunks_consistent(
    context, checkpoint, continuation
):
    """0.2 s added after each inference: rows due before publication (the first 4 of the 15 from
    the observation's instant on) are never offered. With continuation the rows that execute
    during an inference are frozen to the current chunk's and the next ones guided towards
    them, so consecutive chunks agree where they overlap; from fresh noise they do not."""
    name = f"slow_policy_{continuation}"
    feed, topic_parameters = own_feed(context, name)
    process = start_policy_node(
        checkpoint, "debug_inference_delay:=0.2", "exec_latency:=0.0",
        f"continuation:={continuation}", *topic_parameters, name=name,
    )  # fmt: skip
    observer = Observer(context, name)
    try:
        observer.bring_up(process)
        assert observer.spin_until(lambda: len(observer.chunks) >= 7, timeout=60), process.output()
        messages = [msg for _, msg in observer.chunks]
        # The first chunk starts from rest: nothing was playing, so its plan starts when it
        # lands and none of its rows is dropped.
        assert messages[0].horizon == OFFERED_ROWS
        for msg in messages:
            lead_ns = conv.stamp_to_ns(msg.header.stamp) - conv.stamp_to_ns(msg.observation_stamp)
            assert lead_ns >= 200_000_000, lead_ns / 1e6
        for msg in messages[1:]:
            assert 1 <= msg.horizon <= OFFERED_ROWS - 4  # rows at 200 .. 700 ms at most
            assert len(msg.data) == msg.horizon * 7
        gaps = []  # per pair: mean |difference| of the first two overlapping rows
        for older, newer in zip(messages[1:], messages[2:], strict=False):  # skip the first
            old_rows, new_rows = rows_by_instant(older), rows_by_instant(newer)
            shared = sorted(set(old_rows) & set(new_rows))[:2]
            if shared:
                gaps.append(float(np.mean([np.abs(new_rows[i] - old_rows[i]) for i in shared])))
        assert len(gaps) >= 3, gaps
        # Fresh samples of this untrained policy differ by 0.5-0.9 a value (median of 5 pairs
        # 0.69 in one run); with continuation 0.1-0.3 (median 0.18): the first rows a new chunk
        # shares with the current one are frozen or guided with weights 8/9, 7/9, ...
        if continuation == "inpaint":
            assert np.median(gaps) < 0.35, gaps
        else:
            assert np.median(gaps) > 0.45, gaps
    finally:
        observer.close()
        feed.close()
        process.stop()


BAD_INPUTS = {
    "wrong_image_encoding": (
        dict(encodings={"wrist": "16UC1"}),
        "/wrist/image_raw",
        "image encoding '16UC1' is not supported",
    ),
    # Another image size is no longer bad input: it is resized (test_native_cameras.py).
    "nan_pose": (dict(nan_pose=True), "/eef_pose", "pose contains NaN"),
    "missing_wrist_camera": (
        dict(silent=("wrist",)),
        "/wrist/image_raw",
        "no message received yet on robot0_eye_in_hand_image",
    ),
    "out_of_order_stamps": (
        dict(backwards=("gripper",)),
        "/gripper/joint_states",
        "out-of-order stamp",
    ),
    "stale_observations": (dict(stamp_offset_s=-2.0), "", "stale observation"),
    "fewer_positions_than_names": (
        dict(short_positions=True),
        "/gripper/joint_states",
        "joint state has 2 names but 1 positions",
    ),
    "out_of_training_range": (
        dict(far_pose=True),
        "/eef_pose",
        "input robot0_eef_pos[0]=1e+06 is 5e+05 training ranges outside [-1, 1]; holding",
    ),
    # Robot clock skew: every stream an hour ahead of the node's clock.
    "every_stream_in_the_future": (
        dict(stamp_offset_s=3600.0),
        "",
        "s ahead of this node's clock (tolerance 0.500 s); refused",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_publishes_nothing_and_status_names_the_input(acting, case):
    observer, feed, process = acting
    faults, expected_input, expected_reason = BAD_INPUTS[case]
    feed.set_faults(**faults)
    try:
        observer.reset()
        observer.spin_for(1.0)  # let chunks already in flight arrive
        observer.chunks.clear()
        observer.spin_for(2.0)
        assert observer.chunks == [], f"{case}: published {len(observer.chunks)} chunks"
        status = observer.latest_status()
        assert status.state == PolicyStatus.STATE_HOLDING and not status.acting
        assert expected_reason in status.reason, status.reason
        if expected_input:
            assert status.input == expected_input, status.input
        assert process.process.poll() is None, "policy_node died"
    finally:
        feed.set_faults()
        observer.reset()
    # Healthy input again: acting resumes.
    assert observer.spin_until(
        lambda: observer.latest_status().state == PolicyStatus.STATE_ACTING, timeout=20
    ), observer.latest_status().reason


SELF_RECOVERING = {  # case: (faults, what the node's log says)
    "one_message_per_stream_an_hour_ahead": (
        dict(future_once=("agentview", "wrist", "eef_pose", "gripper")),
        "refused message #1 on ",
    ),
    "fewer_positions_than_names": (dict(short_positions=True), "refused message #1 on "),
    "out_of_training_range": (dict(far_pose=True), "training ranges outside"),
    "every_stream_in_the_future": (dict(stamp_offset_s=3600.0), "refused message #1 on "),
}


@pytest.mark.parametrize("case", list(SELF_RECOVERING))
def test_acts_again_on_healthy_input_without_a_reset(acting, case):
    observer, feed, process = acting
    assert observer.spin_until(lambda: len(observer.chunks) >= 1, timeout=30), process.output()
    faults, logged = SELF_RECOVERING[case]
    feed.set_faults(**faults)
    observer.spin_for(1.5)
    feed.set_faults()  # healthy again; nobody calls ~/reset
    observer.spin_for(0.5)
    observer.chunks.clear()
    assert observer.spin_until(lambda: len(observer.chunks) >= 2, timeout=20), (
        case,
        [s.reason for s in observer.statuses[-3:]],
    )
    assert process.process.poll() is None, "policy_node died"
    assert logged in process.output(), process.output()[-2000:]


def test_clock_jumping_back_clears_histories_and_acting_resumes(context, checkpoint):
    # The robot is the clock (use_sim_time): a simulator restart or a bag loop sends it back.
    feed, topic_parameters = own_feed(context, "jumping", publish_clock=True)
    process = start_policy_node(
        checkpoint, "use_sim_time:=true", *topic_parameters, name="jumping_policy"
    )
    observer = Observer(context, "jumping_policy")
    try:
        observer.bring_up(process)
        assert observer.spin_until(lambda: len(observer.chunks) >= 2, timeout=30), process.output()
        jump_ns = 100 * 1_000_000_000
        before_jump_ns = time.time_ns()
        feed.clock_offset_ns = -jump_ns
        # Chunks stamped on the new timeline: acting resumed after the jump, without a reset.
        assert observer.spin_until(
            lambda: any(
                conv.stamp_to_ns(msg.header.stamp) < before_jump_ns - jump_ns / 2
                for _, msg in observer.chunks
            ),
            timeout=20,
        ), ([s.reason for s in observer.statuses[-3:]], process.output()[-2000:])
        assert process.printed("clock jumped back", timeout=10), process.output()[-2000:]
    finally:
        observer.close()
        feed.close()
        process.stop()


@pytest.mark.slow  # a node of its own; conversions' unit tests cover the decoder in the suite
def test_decompression_bomb_is_refused_from_its_header_and_acting_resumes(context, checkpoint):
    feed, topic_parameters = own_feed(context, "compressed", compressed=True)
    process = start_policy_node(
        checkpoint, "compressed_images:=true", *topic_parameters, name="compressed_policy"
    )
    observer = Observer(context, "compressed_policy")
    try:
        observer.bring_up(process)
        assert observer.spin_until(lambda: len(observer.chunks) >= 2, timeout=30), process.output()
        before_mb = resident_mb(process.process.pid, "VmHWM")  # the peak so far
        feed.set_faults(bomb=("agentview",))
        assert observer.spin_until(
            lambda: "image is 10000x10000" in observer.latest_status().reason, timeout=15
        ), observer.latest_status().reason
        observer.chunks.clear()
        observer.spin_for(1.5)
        assert observer.chunks == [] and observer.latest_status().input == feed.topics["agentview"]
        # Decoding one 10000x10000 frame would take 300 MB (the peak would show it).
        assert resident_mb(process.process.pid, "VmHWM") - before_mb < 100
        feed.set_faults()
        assert observer.spin_until(lambda: len(observer.chunks) >= 2, timeout=20)
    finally:
        observer.close()
        feed.close()
        process.stop()


def test_disable_holds_and_enable_resumes(acting):
    observer, feed, process = acting
    observer.enable(False)
    observer.spin_for(0.8)
    observer.chunks.clear()
    observer.spin_for(1.5)
    assert observer.chunks == []
    assert observer.latest_status().reason == "disabled via ~/enable"
    observer.enable(True)
    assert observer.spin_until(lambda: len(observer.chunks) >= 1, timeout=20)


def configure_refusal(context, checkpoint_dir, *extra: str) -> tuple[bool, str, PolicyStatus]:
    # A name of its own per call: the previous refusing node's services may still be known to
    # DDS discovery for a while after its process ended, and a request sent there is never
    # answered (seen under load: change_state unanswered for 120 s).
    name = f"refusing_policy_{uuid.uuid4().hex[:8]}"
    process = start_policy_node(checkpoint_dir, *extra, name=name)
    observer = Observer(context, name)
    try:
        assert observer.lifecycle.wait_for_services(60), process.output()
        accepted = observer.lifecycle.transition("configure")
        state = observer.lifecycle.state()

        # The refusal's status, not an earlier periodic "not configured" one: the status topic
        # and the service reply are separate DDS streams, so either may arrive first.
        def refused() -> bool:
            return bool(observer.statuses) and observer.latest_status().reason != "not configured"

        assert observer.spin_until(refused, timeout=10), [s.reason for s in observer.statuses]
        assert process.process.poll() is None, "policy_node died on a bad checkpoint"
        assert process.printed("configure failed: ", timeout=10), process.output()[-2000:]
        return accepted, state, observer.latest_status()
    finally:
        observer.close()
        process.stop()


def test_checkpoint_whose_inputs_are_not_configured_is_refused(context, tmp_path):
    # A state-based checkpoint needs the object stream; object_topic is empty by default.
    meta = image_shape_meta(cameras=(), low_dim={"robot0_eef_pos": 3, OBJECT_STATE: 10})
    checkpoint = make_tiny_checkpoint(tmp_path / "state_ckpt", meta)
    accepted, state, status = configure_refusal(context, checkpoint)
    assert not accepted and state == "unconfigured"
    assert "object_topic is empty" in status.reason and OBJECT_STATE in status.reason
    assert status.input == str(checkpoint)


def test_corrupt_checkpoint_is_refused_naming_the_file(context, checkpoint, tmp_path):
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "policy.json").write_text((checkpoint / "policy.json").read_text())
    weights = (checkpoint / "policy.safetensors").read_bytes()
    (corrupt / "policy.safetensors").write_bytes(weights[: len(weights) // 2])
    accepted, state, status = configure_refusal(context, corrupt)
    assert not accepted and state == "unconfigured"
    assert "policy.safetensors" in status.reason, status.reason
    assert status.input == str(corrupt)


def _nan_weights(checkpoint, tmp_path):
    """A copy of `checkpoint` whose first denoiser tensor holds a NaN (its hash re-recorded, as
    a tamperer would): with half_weights, fp16 packing would hide the NaN from the output."""
    tensors = load_file(str(checkpoint / "policy.safetensors"))
    name = next(n for n in tensors if n.startswith("denoiser.") and tensors[n].numel() > 1)
    tensors[name][0] = float("nan")
    broken = tmp_path / "nan_weights"
    broken.mkdir()
    save_file(tensors, str(broken / "policy.safetensors"))
    document = json.loads((checkpoint / "policy.json").read_text())
    document["weights_sha256"] = hashlib.sha256(
        (broken / "policy.safetensors").read_bytes()
    ).hexdigest()
    (broken / "policy.json").write_text(json.dumps(document))
    return broken, f"tensor {name!r} holds 1 NaN"


def _list_shape_meta(checkpoint, tmp_path):
    broken = tmp_path / "list_shape_meta"
    broken.mkdir()
    (broken / "policy.safetensors").write_bytes((checkpoint / "policy.safetensors").read_bytes())
    document = json.loads((checkpoint / "policy.json").read_text())
    document["config"]["shape_meta"]["obs"] = [1, 2]
    (broken / "policy.json").write_text(json.dumps(document))
    return broken, "ShapeMeta.obs=[1, 2] is invalid"


# A node of its own per case (~17 s each here): slow-marked; in the suite the checkpoint
# loader's unit tests cover both causes and test_corrupt_checkpoint_* the node's refusal path.
@pytest.mark.slow
@pytest.mark.parametrize("breaker", [_nan_weights, _list_shape_meta])
def test_broken_checkpoint_fails_configure_with_the_cause_logged_and_in_the_status(
    context, checkpoint, tmp_path, breaker
):
    broken, cause = breaker(checkpoint, tmp_path)
    accepted, state, status = configure_refusal(context, broken, "half_weights:=true")
    assert not accepted and state == "unconfigured"
    assert cause in status.reason, status.reason
    assert status.input == str(broken)


def resident_mb(pid: int, field: str = "VmRSS") -> float:
    """The process's resident memory now (VmRSS) or at its peak (VmHWM), MB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def test_lifecycle_in_order_releases_memory_on_cleanup(context, tmp_path):
    # A policy large enough (~64 MB of weights) that its release shows in the process's RSS.
    checkpoint = make_tiny_checkpoint(
        tmp_path / "big", image_shape_meta(cameras=()), unet=UnetConfig(down_dims=(256, 512, 1024))
    )
    weights_mb = os.path.getsize(checkpoint / "policy.safetensors") / 2**20
    assert weights_mb > 100
    # No robot here: configure need not wait for the gripper's first message.
    process = start_policy_node(checkpoint, "input_check_timeout:=0.0", name="big_policy")
    observer = Observer(context, "big_policy")
    pid = process.process.pid
    try:
        lifecycle = observer.lifecycle
        assert lifecycle.wait_for_services(60)
        before = resident_mb(pid)
        assert lifecycle.state() == "unconfigured"
        assert lifecycle.transition("configure") and lifecycle.state() == "inactive"
        loaded = resident_mb(pid)
        assert lifecycle.transition("activate") and lifecycle.state() == "active"
        assert lifecycle.transition("deactivate") and lifecycle.state() == "inactive"
        assert lifecycle.transition("cleanup") and lifecycle.state() == "unconfigured"
        released = resident_mb(pid)
        # Loading grows the process by at least the weights; cleanup gives most of it back.
        assert loaded - before > 0.8 * weights_mb, (before, loaded, weights_mb)
        assert loaded - released > 0.7 * weights_mb, (before, loaded, released, weights_mb)
        # Out-of-order transitions are refused.
        assert not lifecycle.transition("activate")
    finally:
        observer.close()
        process.stop()
