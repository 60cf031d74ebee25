"""ActingCore with a real (tiny, untrained) policy: chunks, their stamps, episode boundaries."""

import dataclasses
import threading

import numpy as np
import pytest

from dp_ros.acting.acting_loop import ActingConfig, ActingCore
from dp_ros.acting.continuation import ContinuationConfig
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


def make_core(runner: PolicyRunner, delay_s: float = 0.0, **options) -> ActingCore:
    config = ActingConfig(
        period_ns=PERIOD,
        tolerance_ns=5 * MS,
        max_age_ns=10 * PERIOD,
        exec_latency_ns=0,
        action_limit=10.0,
        debug_delay_s=delay_s,
        **options,
    )
    return ActingCore(runner, config)


def feed(core: ActingCore, stamp_ns: int) -> None:
    for key, size in STATE_META.low_dim.items():
        core.add(key, stamp_ns, np.zeros(size, np.float32))


def start_moving(core: ActingCore) -> None:
    """A first chunk published at its observation's instant, from T0 + P on: the robot is then
    playing a chunk, so the chunks a test makes next continue it instead of starting from
    rest (see test_a_chunk_from_rest_starts_when_it_lands)."""
    feed(core, T0)
    feed(core, T0 + PERIOD)
    assert core.act(lambda: T0 + PERIOD).plan_start_ns == T0 + PERIOD


@pytest.mark.parametrize("offered_rows", [0, 5])
def test_a_chunk_keeps_only_the_rows_not_yet_due(runner, offered_rows):
    core = make_core(runner, offered_rows=offered_rows)
    config = runner.policy.config
    # All rows from the newest observation's instant on (T - To + 1), or the first N of them.
    expected = offered_rows or config.horizon - config.n_obs_steps + 1
    feed(core, T0)
    feed(core, T0 + PERIOD)
    # The offered rows start at the newest observation's instant: still to come at that
    # instant (a simulator's clock reads it until it steps), gone a step later.
    outcome = core.act(lambda: T0 + PERIOD)
    assert outcome.chunk is not None, outcome.reason
    assert outcome.observation_stamp_ns == T0 + PERIOD
    assert outcome.chunk.rows.shape == (expected, 7)
    assert outcome.chunk.first_stamp_ns == T0 + PERIOD
    later = core.act(lambda: T0 + 2 * PERIOD)
    assert later.chunk.first_stamp_ns == T0 + 2 * PERIOD
    assert len(later.chunk.rows) == expected - 1


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_a_new_chunk_continues_the_current_one_on_its_frozen_instants(runner, sampler):
    """Each inference takes 2 steps on the clock. The second, from the observation at T0+3P,
    expects that much (the first one's measured latency): the current chunk's rows for
    T0+2P .. T0+4P execute before the new one takes over, so the new chunk repeats them exactly;
    its first published row (T0+5P, the first one not late) is the first overlap row, guided
    towards the current chunk's but not frozen."""
    runner.sampler = sampler
    continuation = ContinuationConfig(mode="inpaint", overlap_steps=3)
    core = make_core(runner, continuation=continuation)
    start_moving(core)
    clock = iter([T0 + PERIOD, T0 + 3 * PERIOD])  # assembled, published
    first = core.act(lambda: next(clock))
    current = core.committed
    assert first.plan_start_ns == T0 + PERIOD  # continues a moving robot: the plan is not moved
    assert current.first_stamp_ns == T0  # horizon row 0: To-1 back
    feed(core, T0 + 2 * PERIOD)
    feed(core, T0 + 3 * PERIOD)
    clock = iter([T0 + 3 * PERIOD, T0 + 5 * PERIOD])
    second = core.act(lambda: next(clock))
    assert second.held_rows == 3
    new = core.committed
    assert new.first_stamp_ns == T0 + 2 * PERIOD
    np.testing.assert_array_equal(new.rows[:3], current.rows[2:5])
    assert not np.allclose(new.rows[7:14], current.rows[9:16], atol=1e-3)  # free: sampled
    assert second.chunk.first_stamp_ns == T0 + 5 * PERIOD
    assert not np.array_equal(second.chunk.rows[0], current.rows[5])
    core.reset(episode_start_ns=T0 + 20 * PERIOD)
    assert core.committed is None  # a new episode continues nothing
    runner.sampler = runner.policy.config.sampler.name


def test_the_driver_latency_extends_the_frozen_rows(runner):
    """Rows due within exec_latency of publication are not offered: the current chunk plays
    them, so they are frozen too."""
    continuation = ContinuationConfig(mode="inpaint", overlap_steps=0)
    core = make_core(runner, continuation=continuation)
    start_moving(core)
    core.config = dataclasses.replace(core.config, exec_latency_ns=PERIOD)
    clock = iter([T0 + PERIOD, T0 + 3 * PERIOD])
    core.act(lambda: next(clock))
    current = core.committed
    feed(core, T0 + 2 * PERIOD)
    feed(core, T0 + 3 * PERIOD)
    clock = iter([T0 + 3 * PERIOD, T0 + 5 * PERIOD])
    outcome = core.act(lambda: next(clock))
    assert outcome.held_rows == 4  # T0+2P .. T0+5P: latency 2 steps + 1 step of exec_latency
    np.testing.assert_array_equal(core.committed.rows[:4], current.rows[2:6])
    assert outcome.chunk.first_stamp_ns == T0 + 6 * PERIOD  # the first row not frozen


def test_without_continuation_the_new_chunk_is_sampled_afresh(runner):
    core = make_core(runner)
    feed(core, T0)
    feed(core, T0 + PERIOD)
    core.act(lambda: T0 + PERIOD)
    current = core.committed
    feed(core, T0 + 2 * PERIOD)
    feed(core, T0 + 3 * PERIOD)
    outcome = core.act(lambda: T0 + 3 * PERIOD)
    assert outcome.held_rows == 0
    assert not np.allclose(core.committed.rows[:2], current.rows[2:4], atol=1e-3)


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


@pytest.mark.parametrize("exec_latency_steps", [0, 1])
def test_a_chunk_from_rest_starts_when_it_lands(runner, exec_latency_steps):
    """Nothing was playing: the robot held still since the observation, so the plan starts at
    the first tick after publication (+ exec_latency) and no row is dropped as late."""
    core = make_core(runner)
    core.config = dataclasses.replace(core.config, exec_latency_ns=exec_latency_steps * PERIOD)
    feed(core, T0)
    feed(core, T0 + PERIOD)
    clock = iter([T0 + PERIOD, T0 + 3 * PERIOD + PERIOD // 2])  # 2.5 steps of inference
    outcome = core.act(lambda: next(clock))
    config = runner.policy.config
    first_tick = T0 + (4 + exec_latency_steps) * PERIOD
    assert outcome.observation_stamp_ns == T0 + PERIOD  # the message still names its input
    assert outcome.plan_start_ns == outcome.chunk.first_stamp_ns == first_tick
    assert len(outcome.chunk.rows) == config.horizon - config.n_obs_steps + 1  # all offered
    To = config.n_obs_steps
    np.testing.assert_array_equal(outcome.chunk.rows, core.committed.rows[To - 1 :])
    assert core.committed.first_stamp_ns == first_tick - (To - 1) * PERIOD


def test_a_chunk_after_the_last_one_ran_out_starts_from_rest(runner):
    core = make_core(runner)
    start_moving(core)
    last_row_ns = core.committed.stamp_of(len(core.committed.rows) - 1)
    # Still playing at the observation: the late rows are dropped, the plan is not moved.
    feed(core, last_row_ns - PERIOD)
    feed(core, last_row_ns)
    clock = iter([last_row_ns, last_row_ns + 2 * PERIOD])
    playing = core.act(lambda: next(clock))
    assert playing.plan_start_ns == last_row_ns
    assert playing.chunk.first_stamp_ns == last_row_ns + 2 * PERIOD
    # Nothing left to play at the observation: the robot held still, the plan starts now.
    after_ns = core.committed.stamp_of(len(core.committed.rows) - 1) + PERIOD
    feed(core, after_ns - PERIOD)
    feed(core, after_ns)
    clock = iter([after_ns, after_ns + 2 * PERIOD])
    rested = core.act(lambda: next(clock))
    assert rested.plan_start_ns == rested.chunk.first_stamp_ns == after_ns + 2 * PERIOD


@pytest.mark.parametrize("replan_lead_steps", [0, 1])
def test_the_next_inference_starts_so_its_chunk_lands_after_ta_steps(runner, replan_lead_steps):
    """Inference that took 1.5 steps on the clock counts as 2: the next one starts 2 (+ lead)
    steps before this chunk has played Ta rows from its plan's start."""
    core = make_core(runner)
    start_moving(core)
    observed = T0 + 3 * PERIOD
    feed(core, observed - PERIOD)
    feed(core, observed)
    clock = iter([observed, observed + PERIOD + PERIOD // 2])
    outcome = core.act(lambda: next(clock))
    assert outcome.plan_start_ns == observed
    Ta = runner.policy.config.n_action_steps
    expected = observed + (Ta - 2 - replan_lead_steps) * PERIOD
    assert core.next_start_ns(outcome, replan_lead_steps) == expected


def feed_one(core: ActingCore, key: str, stamp_ns: int) -> None:
    core.add(key, stamp_ns, np.zeros(STATE_META.low_dim[key], np.float32))


def test_an_inference_waits_for_every_stream_of_its_instant_for_at_most_a_period(runner):
    """The clock reaching the scheduled start is not enough: the instant's observation must
    have arrived from every stream (else the chunk would be conditioned on the one a period
    older)."""
    core = make_core(runner)
    feed(core, T0)
    feed(core, T0 + PERIOD)
    outcome = core.act(lambda: T0 + PERIOD)
    core.schedule_next(outcome, replan_lead_steps=1)
    start = core.next_start_ns(outcome, replan_lead_steps=1)
    assert start > T0 + 2 * PERIOD
    for stamp in range(T0 + 2 * PERIOD, start, PERIOD):
        feed(core, stamp)
    assert not core.due(start - 1)  # too early, whatever has arrived
    assert not core.due(start)  # only the previous instant is here
    assert core.due(start + PERIOD)  # a period later it starts with what has arrived
    feed_one(core, "robot0_eef_pos", start)
    assert not core.due(start + MS)  # one stream of two
    feed_one(core, "object", start - 4 * MS)  # within the 5 ms sync tolerance
    assert core.due(start + MS)


@pytest.mark.parametrize("reset_first", [True, False])
def test_a_new_episode_starts_acting_at_once_whatever_the_old_schedule(runner, reset_first):
    """A chunk of the old episode schedules the next inference Ta steps on; the new episode's
    first chunk must not wait for that, whether the reset comes before or after the chunk
    that planned it is scheduled (the outcome message races the inference)."""
    core = make_core(runner)
    feed(core, T0)
    feed(core, T0 + PERIOD)
    outcome = core.act(lambda: T0 + PERIOD)
    new_episode = T0 + 2 * PERIOD
    if not reset_first:
        core.schedule_next(outcome, replan_lead_steps=1)
        assert not core.due(new_episode)
    core.reset(new_episode)
    if reset_first:
        core.schedule_next(outcome, replan_lead_steps=1)
    feed(core, new_episode)
    assert core.due(new_episode)
