"""chunk_executor_node in its own process, fed chunks and a policy status over DDS by this one.

Checks, on the wall clock: each commanded twist is the row due at its stamp divided by the
period (and the gripper follows the rows); a stale policy status stops the arm (zero twists,
the diagnostics say why) and the stop lasts until ~/enable, after which it follows chunks again.
"""

import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped, TwistStamped
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool

from dp_msgs.msg import ActionChunk, PolicyStatus
from dp_ros import conversions as conv
from dp_ros.acting.chunk_timing import TimedChunk
from dp_ros.nodes.qos import ACTION_QOS, SENSOR_QOS, STATUS_QOS
from dp_ros.testing.observer import GraphObserver
from dp_ros.testing.processes import ChildProcess

pytestmark = pytest.mark.ros
PERIOD_NS = 50_000_000
HALF = PERIOD_NS // 2
STATUS_TOPIC = "/test_policy/status"


class Policy(GraphObserver):
    """A stand-in policy: publishes chunks and (while `alive`) an ACTING status at 10 Hz; it
    records the executor's twists, gripper commands and diagnostics."""

    def __init__(self) -> None:
        super().__init__("executor_test_policy")
        self.alive = True
        self.twists: list[TwistStamped] = []
        self.grippers: list[float] = []
        self.diagnostics: list[DiagnosticArray] = []
        node = self.node
        self.chunks = node.create_publisher(ActionChunk, "/action_chunk", ACTION_QOS)
        self.status = node.create_publisher(PolicyStatus, STATUS_TOPIC, STATUS_QOS)
        node.create_subscription(
            TwistStamped, "/servo_node/delta_twist_cmds", self.twists.append, 50
        )
        node.create_subscription(
            Float64MultiArray,
            "/gripper_controller/commands",
            lambda msg: self.grippers.append(msg.data[0]),
            50,
        )
        node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)
        self.enable_client = node.create_client(SetBool, "/chunk_executor_node/enable")
        node.create_timer(0.1, self._publish_status)

    def _publish_status(self) -> None:
        if self.alive:
            self.status.publish(PolicyStatus(state=PolicyStatus.STATE_ACTING, acting=True))

    def send_chunk(self, rows: np.ndarray, lead_s: float) -> TimedChunk:
        """Rows starting `lead_s` from now (wall clock); returns the chunk sent."""
        now = time.time_ns()
        chunk = TimedChunk(now + round(lead_s * 1e9), PERIOD_NS, rows)
        self.chunks.publish(conv.timed_chunk_to_msg(chunk, now, 1))
        return chunk

    def enable(self, on: bool) -> None:
        assert self.call(self.enable_client, SetBool.Request(data=on)).success

    def wait_until_commanding(self, process: ChildProcess) -> None:
        """Until the executor's diagnostics say it commands (it has seen this policy's status:
        DDS discovery takes seconds on a loaded machine)."""

        def commanding() -> bool:
            return (
                bool(self.diagnostics) and self.diagnostics[-1].status[0].message == "commanding"
            )

        assert self.spin_until(commanding, timeout=60), process.output()

    def moving_twists(self) -> list[TwistStamped]:
        return [msg for msg in self.twists if abs(msg.twist.linear.x) > 1e-9]


def recognisable_rows(n: int, gripper: float) -> np.ndarray:
    """Row i: dx = 0.05 (i + 1), drz = -0.02 (i + 1): 0.05 (i+1) m/s, -0.2 (i+1) rad/s."""
    rows = np.zeros((n, 7), np.float32)
    rows[:, 0] = 0.05 * np.arange(1, n + 1)
    rows[:, 5] = -0.02 * np.arange(1, n + 1)
    rows[:, 6] = gripper
    return rows


def row_due_at(chunk: TimedChunk, stamp_ns: int) -> int | None:
    """The row whose window (its instant +- half a period) holds `stamp_ns`."""
    index = round((stamp_ns - chunk.first_stamp_ns) / PERIOD_NS)
    if 0 <= index < len(chunk.rows) and abs(chunk.stamp_of(index) - stamp_ns) <= HALF:
        return index
    return None


@pytest.fixture(scope="module")
def executor_and_policy():
    process = ChildProcess.python(
        "-m", "dp_ros.nodes.chunk_executor_node", "--ros-args",
        "-p", "translation_scale:=0.05", "-p", "rotation_scale:=0.5",
        "-p", "rotation_type:=axis_angle", "-p", "action_frame:=base",
        "-p", "max_linear_speed:=5.0", "-p", "max_angular_speed:=50.0",
        "-p", f"policy_status_topic:={STATUS_TOPIC}", "-p", "watchdog_timeout:=0.5",
        "-p", "diagnostics_rate:=10.0",
        name="chunk_executor_node",
    )  # fmt: skip
    policy = Policy()
    try:
        process.wait_for(lambda line: "twist commands at 20 Hz" in line, timeout=60)
        assert policy.spin_until(lambda: len(policy.twists) >= 5, timeout=30), process.output()
        policy.wait_until_commanding(process)
        yield policy, process
    finally:
        policy.close()
        process.stop()


def test_executor_follows_a_chunks_rows_at_their_stamps(executor_and_policy):
    policy, process = executor_and_policy
    policy.enable(True)
    policy.twists.clear()
    chunk = policy.send_chunk(recognisable_rows(12, gripper=1.0), lead_s=0.3)
    policy.spin_for(0.3 + 12 * 0.05 + 0.4)
    moving = policy.moving_twists()
    # A loaded machine may delay a tick past a row's window (that row is dropped, not played
    # late); at least half of them must come through.
    assert len(moving) >= 6, process.output()
    for msg in moving:
        index = row_due_at(chunk, conv.stamp_to_ns(msg.header.stamp))
        assert index is not None, "a twist stamped outside every row's window"
        linear, angular = conv.twist_to_arrays(msg, "twist")
        np.testing.assert_allclose(linear, [0.05 * (index + 1), 0, 0], atol=1e-5)
        np.testing.assert_allclose(angular, [0, 0, -0.2 * (index + 1)], atol=1e-5)
        assert msg.header.frame_id == "world"
    indices = [row_due_at(chunk, conv.stamp_to_ns(msg.header.stamp)) for msg in moving]
    assert indices == sorted(set(indices))  # each row once, in order
    # After the chunk: zero twists, and the gripper keeps the rows' command (closed: 0.0 m).
    assert policy.twists[-1].twist.linear.x == 0.0
    assert policy.grippers[-1] == pytest.approx(0.0)


def test_stale_status_stops_the_arm_until_enabled(executor_and_policy):
    policy, process = executor_and_policy
    policy.enable(True)
    long_chunk = policy.send_chunk(recognisable_rows(60, gripper=-1.0), lead_s=0.1)
    policy.spin_for(0.5)
    assert policy.moving_twists(), process.output()
    policy.alive = False  # the policy goes silent mid-chunk
    policy.spin_for(1.0)  # past the 0.5 s watchdog
    policy.twists.clear()
    policy.spin_for(0.5)
    assert policy.twists and not policy.moving_twists(), "still moving on a stale status"
    latest = policy.diagnostics[-1].status[0]
    assert latest.level == bytes([2]) and "stale" in latest.message, latest
    values = {pair.key: pair.value for pair in latest.values}
    assert values["watchdog_trips"] == "1" and values["enabled"] == "False"
    # The policy is back: a latched stop still holds, even with fresh chunks.
    policy.alive = True
    policy.spin_for(0.3)
    policy.send_chunk(recognisable_rows(10, gripper=-1.0), lead_s=0.1)
    policy.twists.clear()
    policy.spin_for(0.6)
    assert not policy.moving_twists()
    assert long_chunk.stamp_of(59) > time.time_ns()  # its rows would still be due
    # ~/enable resumes: the next chunk is followed.
    policy.enable(True)
    chunk = policy.send_chunk(recognisable_rows(10, gripper=-1.0), lead_s=0.2)
    policy.twists.clear()
    policy.spin_for(0.8)
    moving = policy.moving_twists()
    assert len(moving) >= 6, process.output()
    assert all(row_due_at(chunk, conv.stamp_to_ns(m.header.stamp)) is not None for m in moving)
    assert policy.grippers[-1] == pytest.approx(0.04)  # open


def test_pose_mode_composes_each_row_with_the_pose_stamped_at_its_tick():
    """The arm's pose is published at 100 Hz with x = 0.1 m per second of its stamp, so the
    pose a target was composed with can be told from the target itself."""
    process = ChildProcess.python(
        "-m", "dp_ros.nodes.chunk_executor_node", "--ros-args", "-r", "__ns:=/pose_mode",
        "-p", "command_interface:=pose", "-p", "checkpoint:=lift_state",
        "-p", "max_linear_speed:=5.0", "-p", "max_angular_speed:=50.0",
        "-p", f"policy_status_topic:={STATUS_TOPIC}", "-p", "eef_pose_topic:=/pose_mode/eef",
        "-p", "pose_topic:=/pose_mode/target", "-p", "gripper_topic:=/pose_mode/gripper",
        "-p", "diagnostics_topic:=/pose_mode/diagnostics", "-p", "pose_tolerance:=0.015",
        name="chunk_executor_node_pose",
    )  # fmt: skip
    policy = Policy()
    targets: list[PoseStamped] = []
    eef = policy.node.create_publisher(PoseStamped, "/pose_mode/eef", SENSOR_QOS)
    policy.node.create_subscription(
        DiagnosticArray, "/pose_mode/diagnostics", policy.diagnostics.append, 10
    )
    policy.node.create_subscription(PoseStamped, "/pose_mode/target", targets.append, 50)
    t0 = time.time_ns()

    def x_at(stamp_ns: int) -> float:
        return 0.1 * (stamp_ns - t0) / 1e9

    def publish_pose() -> None:
        now = time.time_ns()
        eef.publish(conv.arrays_to_pose([x_at(now), 0.0, 1.0], [0, 0, 0, 1.0], now, "world"))

    policy.node.create_timer(0.01, publish_pose)
    try:
        process.wait_for(lambda line: "pose commands at 20 Hz" in line, timeout=60)
        assert policy.spin_until(lambda: len(targets) >= 5, timeout=30), process.output()
        policy.diagnostics.clear()
        policy.wait_until_commanding(process)
        chunk = policy.send_chunk(recognisable_rows(12, gripper=1.0), lead_s=0.3)
        targets.clear()
        policy.spin_for(0.3 + 12 * 0.05 + 0.3)
    finally:
        policy.close()
        process.stop()
    moved, previous = 0, None
    for msg in targets:
        stamp = conv.stamp_to_ns(msg.header.stamp)
        position, quat = conv.pose_to_arrays(msg, "target")
        index = row_due_at(chunk, stamp)
        is_hold = previous is not None and np.array_equal(position, previous)
        previous = position
        if index is None or is_hold:
            continue  # a hold (its row late or its pose never came): the last target again
        moved += 1
        # The pose at the tick (within 15 ms: 1.5 mm of x) plus 0.05 (i + 1) units of 0.05 m.
        expected_x = x_at(stamp) + 0.05 * (index + 1) * 0.05
        assert position[0] == pytest.approx(expected_x, abs=2e-3), (index, position)
        # -0.02 (i + 1) units of 0.5 rad about z, from the identity.
        angle = -0.01 * (index + 1)
        np.testing.assert_allclose(quat, [0, 0, np.sin(angle / 2), np.cos(angle / 2)], atol=1e-6)
    assert moved >= 4, process.output()  # the rest: late rows or unmatched poses, under load


GRIPPER_SERVER = """
import rclpy
from rclpy.action import ActionServer
from control_msgs.action import GripperCommand

rclpy.init()
node = rclpy.create_node("stand_in_gripper")

def execute(goal_handle):
    command = goal_handle.request.command
    print(f"goal position={command.position:.3f} max_effort={command.max_effort:.1f}", flush=True)
    goal_handle.succeed()
    result = GripperCommand.Result()
    result.position, result.reached_goal = command.position, True
    return result

server = ActionServer(node, GripperCommand, "/test_gripper/gripper_cmd", execute)
print("serving", flush=True)
rclpy.spin(node)
"""


def test_gripper_command_goals_follow_the_rows_open_and_closed():
    """With gripper_action, a control_msgs/GripperCommand goal goes to the action server (a
    stand-in in its own process) each time the commanded gripper changes between open and
    closed: here open (the hold before any chunk), then closed, and nothing more."""
    server = ChildProcess.python("-c", GRIPPER_SERVER, name="gripper_server")
    process = ChildProcess.python(
        "-m", "dp_ros.nodes.chunk_executor_node", "--ros-args",
        "-r", "__node:=gripper_executor", "-p", "action_topic:=/gripper_test/action_chunk",
        "-p", "twist_topic:=/gripper_test/twist", "-p", "gripper_topic:=''",
        "-p", "gripper_action:=/test_gripper/gripper_cmd", "-p", "gripper_max_effort:=15.0",
        "-p", "gripper_open_position:=0.04", "-p", "gripper_closed_position:=0.0",
        "-p", "translation_scale:=0.05", "-p", "rotation_scale:=0.5",
        "-p", "rotation_type:=axis_angle", "-p", "action_frame:=base",
        "-p", "policy_status_topic:=''", "-p", "diagnostics_topic:=/gripper_test/diagnostics",
        name="gripper_executor",
    )  # fmt: skip
    observer = GraphObserver("gripper_test_policy")
    diagnostics: list[DiagnosticArray] = []
    observer.node.create_subscription(
        DiagnosticArray, "/gripper_test/diagnostics", diagnostics.append, 10
    )
    chunks = observer.node.create_publisher(ActionChunk, "/gripper_test/action_chunk", ACTION_QOS)
    try:
        server.wait_for("serving", timeout=60)
        process.wait_for(lambda line: "twist commands at 20 Hz" in line, timeout=60)
        server.wait_for(lambda line: "position=0.040" in line, timeout=60)  # the hold: open
        rows = np.zeros((12, 7), np.float32)
        rows[:, 6] = -1.0
        rows[6:, 6] = 1.0  # open for six rows, then closed
        observer.spin_until(lambda: chunks.get_subscription_count() > 0, timeout=30)
        now = time.time_ns()
        chunk = TimedChunk(now + 300_000_000, PERIOD_NS, rows)
        chunks.publish(conv.timed_chunk_to_msg(chunk, now, 1))
        server.wait_for(lambda line: "position=0.000" in line, timeout=30)
        observer.spin_for(0.3 + 12 * 0.05 + 0.5)  # the rest of the chunk, then holds
    finally:
        observer.close()
        process.stop()
        server.kill()
    lines = [line.split("] ", 1)[-1] for line in server.output().splitlines()]  # the prefix
    goals = [line for line in lines if line.startswith("goal ")]
    assert goals == [
        "goal position=0.040 max_effort=15.0",
        "goal position=0.000 max_effort=15.0",
    ], server.output()
    values = {v.key: v.value for v in diagnostics[-1].status[0].values}
    assert values["gripper_goals"] == "2" and values["gripper_goals_rejected"] == "0", values
