"""The whole recording path over DDS: sim_node + scripted teleop_node + recorder_node.

Started by the dp-ros runner from the record graph, unattended: the scripted expert drives the
sim through the teleop command topic, the recorder starts and stops episodes at the sim's
outcomes, and the graph stops once teleop has its successful episodes. This test listens to what
the sim applied and published, and checks the store against it step by step.
"""

import numpy as np
import pytest
from geometry_msgs.msg import PoseStamped
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from dp_msgs.msg import ActionChunk
from dp_ros import conversions as conv
from dp_ros.data.store import EpisodeStore
from dp_ros.keys import ACTION, EEF_POS, WRIST_IMAGE
from dp_ros.nodes.qos import STEP_QOS
from dp_ros.testing.observer import GraphObserver
from dp_ros.testing.processes import ChildProcess

pytestmark = [pytest.mark.ros, pytest.mark.sim]
EPISODES = 2
TELEOP_SOURCE = ActionChunk.SOURCE_TELEOP


class SimWitness(GraphObserver):
    """Everything the sim applied and published, by stamp."""

    def __init__(self) -> None:
        super().__init__("sim_witness")
        self.applied: dict[int, tuple[np.ndarray, int]] = {}
        self.eef_pos: dict[int, np.ndarray] = {}
        self.wrist: dict[int, np.ndarray] = {}
        self.node.create_subscription(
            ActionChunk, "/sim/applied_action", self._on_applied, STEP_QOS
        )
        # Deep queues: the witness must not miss what it will compare against under load.
        deep = QoSProfile(depth=200, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.node.create_subscription(PoseStamped, "/eef_pose", self._on_pose, deep)
        self.node.create_subscription(Image, "/wrist/image_raw", self._on_wrist, deep)

    def _on_applied(self, msg: ActionChunk) -> None:
        self.applied[conv.stamp_to_ns(msg.header.stamp)] = (np.asarray(msg.data), msg.source)

    def _on_pose(self, msg: PoseStamped) -> None:
        self.eef_pos[conv.stamp_to_ns(msg.header.stamp)] = conv.pose_to_arrays(msg, "pose")[0]

    def _on_wrist(self, msg: Image) -> None:
        self.wrist[conv.stamp_to_ns(msg.header.stamp)] = conv.image_to_rgb(msg, "wrist").copy()

    def spin_while(self, process: ChildProcess, timeout: float) -> None:
        self.spin_until(lambda: process.process.poll() is not None, timeout)


def test_scripted_teleop_recording_matches_what_the_sim_saw(tmp_path):
    store_path = tmp_path / "lift.zarr"
    witness = SimWitness()
    # Half real time: the sim, the recorder and the witness share two loaded cores. The graph's
    # default lockstep makes every step wait for the expert's command, whatever the load.
    runner = ChildProcess.python(
        "-m", "dp_ros.launching.runner", "launch", "record", f"store:={store_path}",
        "task:=lift", f"episodes:={EPISODES}", "real_time_factor:=0.5", "operator:=ci",
        name="dp-ros",
    )  # fmt: skip
    try:
        witness.spin_while(runner, timeout=240)
        assert runner.wait(timeout=60) == 0, runner.output()
    finally:
        runner.stop()
        witness.close()

    store = EpisodeStore.open(store_path)
    assert store.n_episodes == EPISODES, runner.output()
    for index in range(store.n_episodes):
        metadata = store.episode_metadata(index)
        assert metadata["success"] is True and metadata["task"] == "lift"
        assert metadata["operator"] == "ci" and metadata["dropped_frames"] == 0
        episode = store.episode(index)
        frames = len(episode[ACTION])
        assert 20 <= frames <= 300
        stamps = metadata["start_stamp_ns"] + np.arange(frames) * metadata["period_ns"]
        assert stamps[-1] == metadata["last_stamp_ns"]
        sources = []
        for step, stamp in enumerate(stamps):
            applied, source = witness.applied[int(stamp)]
            sources.append(source)
            np.testing.assert_array_equal(episode[ACTION][step], applied)
            np.testing.assert_allclose(episode[EEF_POS][step], witness.eef_pos[int(stamp)])
        for step in range(0, frames, 10):
            np.testing.assert_array_equal(
                episode[WRIST_IMAGE][step], witness.wrist[int(stamps[step])]
            )
        # The expert drove every step: lockstep leaves no step to a hold.
        assert sources == [TELEOP_SOURCE] * frames, sources
    # One numbering, no pseudo-episode: the first recorded episode is the sim's episode 0, from
    # the first seed (the sim restarted it at teleop's reset instead of counting a new one).
    metadata = [store.episode_metadata(i) for i in range(store.n_episodes)]
    assert [m["seed"] for m in metadata] == [0, 1], runner.output()
    assert [m["sim_episode"] for m in metadata] == [0, 1]
    assert {m["source"] for m in metadata} == {"scripted"}
    assert "ended: reset after" not in runner.output()


@pytest.mark.slow  # two graph runs (about 25 s); the recorder test covers the skip over DDS
def test_a_second_record_run_continues_after_the_stored_seeds(tmp_path):
    store_path = tmp_path / "lift.zarr"
    for _ in range(2):
        runner = ChildProcess.python(
            "-m", "dp_ros.launching.runner", "launch", "record", f"store:={store_path}",
            "task:=lift", "episodes:=1", "real_time_factor:=0", "sim_config:=record_state.yaml",
            "recorder_config:=record_state.yaml", name="dp-ros",
        )  # fmt: skip
        try:
            assert runner.wait(timeout=240) == 0, runner.output()
        finally:
            runner.stop()
    store = EpisodeStore.open(store_path)
    seeds = [store.episode_metadata(i)["seed"] for i in range(store.n_episodes)]
    assert seeds == [0, 1], runner.output()  # not seed 0 again, not a duplicate
    assert "seed 0 of 'lift' is already recorded: reset the sim to seed 1" in runner.output()
    assert not np.array_equal(store.episode(0)[ACTION], store.episode(1)[ACTION])
