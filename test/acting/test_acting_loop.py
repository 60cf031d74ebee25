"""ActingCore with a real (tiny, untrained) policy: chunks, their stamps, episode boundaries."""

import threading

import numpy as np
import pytest

from dp_ros.acting.acting_loop import ActingConfig, ActingCore
from dp_ros.policy.config import ShapeMeta
from dp_ros.policy.runtime import PolicyRunner
from dp_ros.testing.checkpoints import make_tiny_checkpoint

MS = 1_000_000
PERIOD = 50 * MS
T0 = 1_000 * 1_000_000_000
STATE_META = ShapeMeta(low_dim={"robot0_eef_pos": 3, "object": 10})


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    checkpoint = make_tiny_checkpoint(tmp_path_factory.mktemp("acting") / "ckpt", STATE_META)
    return PolicyRunner.from_checkpoint(checkpoint)


def make_core(runner: PolicyRunner, delay_s: float = 0.0) -> ActingCore:
    config = ActingConfig(
        period_ns=PERIOD,
        tolerance_ns=5 * MS,
        max_age_ns=10 * PERIOD,
        exec_latency_ns=0,
        action_limit=10.0,
        debug_delay_s=delay_s,
    )
    return ActingCore(runner, config)


def feed(core: ActingCore, stamp_ns: int) -> None:
    for key, size in STATE_META.low_dim.items():
        core.add(key, stamp_ns, np.zeros(size, np.float32))


def test_a_chunk_keeps_only_the_rows_not_yet_due(runner):
    core = make_core(runner)
    feed(core, T0)
    feed(core, T0 + PERIOD)
    # The executed slice starts at the newest observation's instant: still to come at that
    # instant (a simulator's clock reads it until it steps), gone a step later.
    outcome = core.act(lambda: T0 + PERIOD)
    assert outcome.chunk is not None, outcome.reason
    assert outcome.observation_stamp_ns == T0 + PERIOD
    assert outcome.chunk.rows.shape == (runner.policy.config.n_action_steps, 7)
    assert outcome.chunk.first_stamp_ns == T0 + PERIOD
    later = core.act(lambda: T0 + 2 * PERIOD)
    assert later.chunk.first_stamp_ns == T0 + 2 * PERIOD
    assert len(later.chunk.rows) == runner.policy.config.n_action_steps - 1


def test_the_first_observation_of_an_episode_is_enough_to_act(runner):
    core = make_core(runner)
    feed(core, T0)
    core.reset(episode_start_ns=T0 + 5 * PERIOD)
    assert core.act(lambda: T0 + 5 * PERIOD).reason.startswith("no message received yet")
    feed(core, T0 + 5 * PERIOD)
    outcome = core.act(lambda: T0 + 5 * PERIOD)
    assert outcome.chunk is not None, outcome.reason


def test_a_chunk_from_an_episode_that_ended_during_inference_is_dropped(runner):
    core = make_core(runner, delay_s=0.3)
    feed(core, T0)
    feed(core, T0 + PERIOD)
    resetter = threading.Timer(0.1, lambda: core.reset(episode_start_ns=T0 + 2 * PERIOD))
    resetter.start()
    outcome = core.act(lambda: T0 + PERIOD)  # the reset lands during the 0.3 s "inference"
    resetter.join()
    assert outcome.chunk is None
    assert outcome.reason == "a new episode began during inference"
