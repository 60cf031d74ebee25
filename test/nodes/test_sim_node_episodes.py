"""sim_node's episodes over DDS: numbering from 0, seeds on outcomes, the step limit on and off,
and no pseudo-episode when a reset comes before anything acted (state only, no cameras)."""

import pytest
from rosgraph_msgs.msg import Clock

from dp_msgs.msg import EpisodeOutcome
from dp_msgs.srv import ResetEnv
from dp_ros.nodes.qos import EVENT_QOS
from dp_ros.testing.observer import GraphObserver
from dp_ros.testing.processes import ChildProcess

pytestmark = [pytest.mark.ros, pytest.mark.sim]


class OutcomeListener(GraphObserver):
    def __init__(self, name: str) -> None:
        super().__init__("outcome_listener")
        self.outcomes: list[EpisodeOutcome] = []
        self.node.create_subscription(
            EpisodeOutcome, f"/{name}/outcome", self.outcomes.append, EVENT_QOS
        )
        self.reset = self.node.create_client(ResetEnv, f"/{name}/reset")
        self.clock_s = 0.0  # the sim's time: 1000 s at its start, + 0.05 s per step
        self.node.create_subscription(Clock, "/clock", self._on_clock, 10)

    def _on_clock(self, msg: Clock) -> None:
        self.clock_s = msg.clock.sec + msg.clock.nanosec * 1e-9


def start_sim(name: str, *params: str) -> ChildProcess:
    args = ["-m", "dp_ros.nodes.sim_node", "--ros-args", "-r", f"__node:={name}"]
    for item in (
        "cameras:=false", "seed:=7", "max_episode_steps:=5", "real_time_factor:=0.5",
        f"outcome_topic:=/{name}/outcome", *params,
    ):  # fmt: skip
        args += ["-p", item]
    return ChildProcess.python(*args, name=name)


def test_step_limit_outcomes_carry_seeds_and_a_reset_before_acting_restarts_the_episode():
    name = "sim_episodes_a"
    sim = start_sim(name)
    listener = OutcomeListener(name)
    try:
        # Nothing acts on this sim (holds only): a reset restarts the episode on its own seed.
        assert listener.reset.wait_for_service(timeout_sec=60)
        answer = listener.call(listener.reset, ResetEnv.Request(seed=-1), timeout=60)
        assert answer.success, answer.message
        assert listener.spin_until(lambda: len(listener.outcomes) >= 3, 60), sim.output()
    finally:
        listener.close()
        sim.stop()
    outcomes = listener.outcomes
    first = outcomes[0]
    assert (first.episode, first.seed) == (0, 7)  # numbered from 0, from the first seed
    (restart,) = [o for o in outcomes if o.reason == "reset"]
    after = outcomes[outcomes.index(restart) + 1]
    assert restart.next_seed == restart.seed and answer.episode == restart.episode
    assert (after.reason, after.episode, after.seed, after.steps) == (
        "horizon",
        restart.episode,
        restart.seed,
        5,
    )
    for horizon in (o for o in outcomes if o.reason == "horizon"):
        assert horizon.next_seed == horizon.seed + 1
    assert "ended: reset" not in sim.output()  # the restart is not reported as an episode


def test_without_the_time_limit_an_episode_runs_past_it_until_a_reset():
    name = "sim_episodes_b"
    sim = start_sim(name, "time_limit:=false", "real_time_factor:=4.0")
    listener = OutcomeListener(name)
    try:
        # 25 steps: five times the step limit.
        assert listener.spin_until(lambda: listener.clock_s >= 1001.25, 60), sim.output()
        assert listener.outcomes == [], [(o.reason, o.steps) for o in listener.outcomes]
        assert listener.reset.wait_for_service(timeout_sec=30)
        listener.call(listener.reset, ResetEnv.Request(seed=3), timeout=60)
        assert listener.spin_until(lambda: len(listener.outcomes) >= 1, 30)
    finally:
        listener.close()
        sim.stop()
    (reset,) = listener.outcomes
    assert reset.reason == "reset" and reset.steps > 20 and reset.next_seed == 3
