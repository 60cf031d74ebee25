"""sim_node + policy_node over DDS in simulated time, started by the dp-ros runner.

The policy is a small state-based policy trained for a few steps in the fixture (so the sim's
object-state stream is exercised too); the sim runs without cameras so stepping keeps up with
real time on a loaded CPU. Checks: chunks arrive at the expected rate with stamps in the future
(in simulated time), the sim applies exactly the rows it was sent at their stamps, and rows that
are already late on arrival are dropped, not played late.
"""

import numpy as np
import pytest
import torch
from rosgraph_msgs.msg import Clock
from std_srvs.srv import SetBool

from dp_msgs.msg import ActionChunk, EpisodeOutcome
from dp_ros import conversions as conv
from dp_ros.acting.chunk_timing import TimedChunk
from dp_ros.keys import EEF_POS, EEF_QUAT, GRIPPER_QPOS, OBJECT_STATE
from dp_ros.nodes.qos import ACTION_QOS, EVENT_QOS, STEP_QOS
from dp_ros.policy.checkpoint import save_policy
from dp_ros.policy.config import tiny_config
from dp_ros.policy.policy import make_policy
from dp_ros.policy.shape_meta import image_shape_meta
from dp_ros.testing.checkpoints import unit_stats
from dp_ros.testing.observer import GraphObserver
from dp_ros.testing.processes import ChildProcess

pytestmark = [pytest.mark.ros, pytest.mark.sim]
PERIOD_NS = 50_000_000
SOURCE_HOLD, SOURCE_CHUNK = ActionChunk.SOURCE_HOLD, ActionChunk.SOURCE_POLICY


def lift_object_size() -> int:
    from dp_ros.sim.env import SimEnv

    env = SimEnv("lift", cameras=False)
    try:
        return int(env.reset(seed=0)[OBJECT_STATE].shape[0])
    finally:
        env.close()


@pytest.fixture(scope="module")
def state_checkpoint(tmp_path_factory):
    """A small state-based Lift policy, trained a few real steps on random data."""
    meta = image_shape_meta(
        cameras=(),
        low_dim={EEF_POS: 3, EEF_QUAT: 4, GRIPPER_QPOS: 2, OBJECT_STATE: lift_object_size()},
    )
    torch.manual_seed(0)
    policy = make_policy(tiny_config(meta), unit_stats(meta))
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        batch = {
            "obs": {
                key: torch.rand(8, 2, size, generator=generator)
                for key, size in meta.low_dim.items()
            },
            "action": torch.rand(8, 16, 7, generator=generator) * 2 - 1,
        }
        loss = policy.compute_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return save_policy(policy, tmp_path_factory.mktemp("closed_loop") / "lift_state")


class SimObserver(GraphObserver):
    def __init__(self) -> None:
        super().__init__("closed_loop_observer")
        self.clock_ns = 0
        self.chunks: list[tuple[int, ActionChunk]] = []  # (sim clock at receipt, msg)
        # Every row any chunk ever offered, by instant (never cleared: the sim may play a row of
        # a chunk that arrived before a test's window when a newer one comes too late).
        self.offered: dict[int, list[np.ndarray]] = {}
        self.applied: list[ActionChunk] = []
        self.outcomes: list[EpisodeOutcome] = []
        self.node.create_subscription(Clock, "/clock", self._on_clock, 10)
        self.node.create_subscription(ActionChunk, "/action_chunk", self._on_chunk, ACTION_QOS)
        self.node.create_subscription(
            ActionChunk, "/sim/applied_action", self.applied.append, STEP_QOS
        )
        self.node.create_subscription(
            EpisodeOutcome, "/sim/episode_outcome", self.outcomes.append, EVENT_QOS
        )
        self.publisher = self.node.create_publisher(ActionChunk, "/action_chunk", ACTION_QOS)
        self.enable_client = self.node.create_client(SetBool, "/policy_node/enable")

    def _on_clock(self, msg: Clock) -> None:
        self.clock_ns = conv.stamp_to_ns(msg.clock)

    def _on_chunk(self, msg: ActionChunk) -> None:
        self.chunks.append((self.clock_ns, msg))
        chunk = conv.msg_to_timed_chunk(msg, "/action_chunk")
        for index, row in enumerate(chunk.rows):
            self.offered.setdefault(chunk.stamp_of(index), []).append(row)

    def enable_policy(self, on: bool) -> None:
        assert self.call(self.enable_client, SetBool.Request(data=on)).success


@pytest.fixture(scope="module")
def closed_loop(state_checkpoint, tmp_path_factory):
    sim_config = tmp_path_factory.mktemp("sim_cfg") / "sim_node.yaml"
    sim_config.write_text(
        "/**:\n  ros__parameters:\n    cameras: false\n    real_time_factor: 1.0\n"
        "    max_episode_steps: 400\n"
    )
    runner = ChildProcess.python(
        "-m", "dp_ros.launching.runner", "launch", "policy",
        f"checkpoint:={state_checkpoint}", "task:=lift", f"sim_config:={sim_config}",
        name="dp-ros",
    )  # fmt: skip
    observer = SimObserver()
    try:
        runner.wait_for(lambda line: "policy_node: activate done" in line, timeout=180)
        yield observer, runner
    finally:
        observer.close()
        runner.stop()


def test_chunks_arrive_at_the_expected_rate_with_stamps_not_yet_due(closed_loop):
    observer, runner = closed_loop
    assert observer.spin_until(lambda: len(observer.chunks) >= 3, timeout=60), runner.output()
    start_clock = observer.clock_ns
    observer.chunks.clear()
    observer.spin_until(lambda: observer.clock_ns - start_clock >= 4_000_000_000, timeout=60)
    elapsed_s = (observer.clock_ns - start_clock) / 1e9
    rate = len(observer.chunks) / elapsed_s
    # 8 executed steps of 50 ms: one chunk per 0.4 s of sim time when inference keeps up; the next
    # starts early, so a bit more often; far fewer means the loop stalls.
    assert 1.5 <= rate <= 10, (rate, len(observer.chunks), elapsed_s)
    period = 50_000_000
    for clock_at_receipt, msg in observer.chunks:
        first = conv.stamp_to_ns(msg.header.stamp)
        # The first row is the tick the policy's clock showed at publication (simulated time
        # moves on only after the sim executes that tick) or later, never an observed past one.
        assert first >= conv.stamp_to_ns(msg.observation_stamp)
        # The sim may step between publication and receipt; more than two ticks would mean the
        # policy stamped rows it knew were late.
        assert first >= clock_at_receipt - 2 * period, (first, clock_at_receipt)


def test_sim_applies_exactly_the_rows_it_was_sent_at_their_stamps(closed_loop):
    observer, _ = closed_loop
    observer.applied.clear()
    observer.chunks.clear()
    observer.spin_for(3.0)
    # Usually the newest chunk's row for an instant is the one played, but a newer chunk that
    # reaches the sim after that instant leaves an older chunk's row played.
    rows_by_instant = observer.offered
    from_chunks = [msg for msg in observer.applied if msg.source == SOURCE_CHUNK]
    assert len(from_chunks) >= 20, [msg.source for msg in observer.applied]
    matched = 0
    for msg in from_chunks:
        stamp = conv.stamp_to_ns(msg.header.stamp)
        if stamp in rows_by_instant:
            applied = np.asarray(msg.data)
            assert any(np.allclose(applied, row, rtol=1e-6) for row in rows_by_instant[stamp])
            matched += 1
    # Applied rows from chunks received before this window started cannot be matched.
    assert matched >= len(from_chunks) - 8, (matched, len(from_chunks))


def test_rows_late_on_arrival_are_dropped_not_played_late(closed_loop):
    observer, _ = closed_loop
    observer.enable_policy(False)
    try:
        observer.spin_for(1.0)  # the policy's last chunk runs out; the sim holds
        now = observer.clock_ns
        rows = np.zeros((8, 7), np.float32)
        rows[:, 0] = np.linspace(0.1, 0.8, 8)  # row i is recognisable by dx = 0.1 * (i + 1)
        # Rows 0-3 are due 4..1 periods before now: late on arrival.
        chunk = TimedChunk(now - 4 * PERIOD_NS, PERIOD_NS, rows)
        observer.applied.clear()
        observer.publisher.publish(conv.timed_chunk_to_msg(chunk, now - 5 * PERIOD_NS, 999))
        observer.spin_for(1.5)
        played = [
            round(float(msg.data[0]), 3) for msg in observer.applied if msg.source == SOURCE_CHUNK
        ]
        assert played[:1] and played[0] >= 0.5, played  # nothing before row 4 (dx 0.5)
        assert all(value > 0.45 for value in played), played
        assert played == sorted(played)
    finally:
        observer.enable_policy(True)
