"""One acting step, ROS-free: observations in, a safe, time-stamped chunk (or a reason) out.

policy_node calls `ActingCore.act()` from its inference thread; everything that decides whether to
publish lives here so it is tested without ROS: assembling the To-step observation by stamp,
running the policy (continuing the chunk being executed, with `continuation`), refusing
non-finite or out-of-range actions, and dropping rows that would execute late.

What is offered: every predicted row from the newest observation's instant onward (horizon rows
To-1 .. T-1, or the first `offered_rows` of them), not only the Ta the policy was trained to
execute. Inference latency then eats into the chunk's runway instead of leaving the robot
without a row: a driver plays rows at their stamps and a newer chunk replaces the rest.

Starting from rest: when no chunk was playing at the observation's instant (the first chunk of
an episode, or the last one ran out), the robot has held still since the observation, so the
plan has not started: its first row is stamped for the first tick after publication instead of
the observation's instant, and no row is dropped. Dropping the rows that latency made late, as
for a chunk that continues a moving robot, would start every episode mid-plan from a standing
robot. Measured without ROS (bench/bench_continuation_offline.py, Lift state, 20 seeds, the
robot holding while the first chunk is computed): with 0, 2, 4, 6 steps of inference delay,
dropping the late rows (`--drop-late-at-start`) gave 20, 17, 3, 5 successes; starting the plan
when it lands gave 20 at every delay.
"""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dp_ros.acting.chunk_timing import TimedChunk, schedule_executed_actions
from dp_ros.acting.continuation import ContinuationConfig, freeze_until, plan_held_actions
from dp_ros.acting.input_guard import InputGuard
from dp_ros.acting.obs_sync import NotReady, ObservationSynchronizer, SyncConfig
from dp_ros.policy.runtime import PolicyRunner

POLICY_OUTPUT = "policy output"  # the `input` a status names when the policy itself misbehaves


@dataclass(frozen=True)
class ActingConfig:
    """period_ns: observation and action period; exec_latency_ns: the driver's own delay, so
    rows due before now + exec_latency are not offered; action_limit: largest |value| a
    published action may have."""

    period_ns: int
    tolerance_ns: int
    max_age_ns: int
    exec_latency_ns: int
    action_limit: float
    # Added after each inference, before stamping: lets tests and benchmarks force latency.
    debug_delay_s: float = 0.0
    # Rows offered per chunk from the newest observation's instant on; 0: all (T - To + 1).
    offered_rows: int = 0
    continuation: ContinuationConfig = ContinuationConfig()


@dataclass(frozen=True)
class ActOutcome:
    """A chunk to publish, or why not (reason + the input it concerns)."""

    chunk: TimedChunk | None
    reason: str = ""
    input: str = ""
    observation_stamp_ns: int = 0
    # The instant the plan's row for the newest observation executes: the observation's own
    # instant, or later when the chunk starts from rest (see the module docstring).
    plan_start_ns: int = 0
    inference_s: float = 0.0  # wall seconds in the policy
    # The acting clock's advance from assembly to publication (simulated time: whole steps).
    inference_clock_ns: int = 0
    held_rows: int = 0  # rows of the chunk frozen to the one it continues


def check_actions(actions: np.ndarray, limit: float) -> str:
    """Empty string if every action is finite and within [-limit, limit], else what is wrong."""
    if not np.all(np.isfinite(actions)):
        return "policy produced NaN or infinite actions; holding"
    worst = float(np.max(np.abs(actions)))
    if worst > limit:
        return f"policy produced an action of magnitude {worst:.3g} > limit {limit}; holding"
    return ""


def first_tick_after(instant_ns: int, grid_ns: int, period_ns: int) -> int:
    """The first instant on the control grid through `grid_ns` at or after `instant_ns`."""
    steps = max(0, -(-(instant_ns - grid_ns) // period_ns))  # ceil, never before grid_ns
    return grid_ns + steps * period_ns


class ActingCore:
    """The synchroniser and the policy runner, and the rule that turns them into chunks."""

    # Holds, naming the input, when an observation lies far outside the training data.
    input_guard: InputGuard | None = None

    def __init__(self, runner: PolicyRunner, config: ActingConfig, history: int = 64) -> None:
        self.runner = runner
        self.config = config
        sync_config = SyncConfig(
            n_obs_steps=runner.n_obs_steps,
            period_ns=config.period_ns,
            tolerance_ns=config.tolerance_ns,
            max_age_ns=config.max_age_ns,
            history=max(history, runner.n_obs_steps),
        )
        self.sync = ObservationSynchronizer(list(runner.obs_keys), sync_config)
        # Message callbacks add while the inference thread assembles.
        self._lock = threading.Lock()
        # The whole horizon (T, Da) of the last published chunk, stamped from its row 0: what
        # the robot is executing, which the next chunk continues.
        self.committed: TimedChunk | None = None
        self._latency_clock_ns = 0  # the last inference's duration on the acting clock
        self._next_start_ns = 0  # when the next inference starts (schedule_next); 0: at once

    @property
    def offered_rows(self) -> int:
        """Rows offered per chunk: T - To + 1, or fewer when `offered_rows` says so."""
        available = self.runner.horizon - self.runner.n_obs_steps + 1
        return min(self.config.offered_rows or available, available)

    @property
    def executed_steps(self) -> int:
        """Rows of a chunk meant to execute before the next one replaces it (Ta at most)."""
        return min(self.runner.n_action_steps, self.offered_rows)

    def add(self, key: str, stamp_ns: int, value: np.ndarray, now_ns: int | None = None) -> str:
        """Record one observation value; see ObservationSynchronizer.add (ValueError: refused)."""
        with self._lock:
            return self.sync.add(key, stamp_ns, value, now_ns)

    def reset(self, episode_start_ns: int | None = None) -> None:
        """Forget the observations and re-seed the sampler; with `episode_start_ns`, a new
        episode begins at that instant (older observations no longer count)."""
        with self._lock:
            self.sync.clear(episode_start_ns)
            self._next_start_ns = 0  # a new episode's first chunk is computed at once
        self.committed = None  # never continue a chunk of another episode
        self.runner.reset()

    def act(self, now_ns: Callable[[], int]) -> ActOutcome:
        """Assemble, predict, check, stamp. `now_ns` is read before and after inference."""
        assembled_ns = now_ns()
        with self._lock:
            observation = self.sync.assemble(assembled_ns)
        if isinstance(observation, NotReady):
            return ActOutcome(None, observation.reason, observation.key)
        if self.input_guard and (far := self.input_guard.check(observation.values)):
            return ActOutcome(None, far.reason, far.key)
        period = self.config.period_ns
        newest_ns = observation.newest_stamp_ns
        horizon_first_ns = newest_ns - (self.runner.n_obs_steps - 1) * period
        held = self._held_actions(horizon_first_ns, assembled_ns)
        start = time.perf_counter()
        prediction = self.runner.predict(observation.values, held)
        inference_s = time.perf_counter() - start
        if self.config.debug_delay_s > 0:
            time.sleep(self.config.debug_delay_s)
        publish_ns = now_ns()
        self._latency_clock_ns = publish_ns - assembled_ns
        timing = {"inference_s": inference_s, "inference_clock_ns": self._latency_clock_ns}
        if newest_ns < self.sync.episode_start_ns:
            return ActOutcome(None, "a new episode began during inference", **timing)
        first = self.runner.n_obs_steps - 1
        offered = prediction.chunk[first : first + self.offered_rows]
        problem = check_actions(offered, self.config.action_limit)
        if problem:
            return ActOutcome(None, problem, POLICY_OUTPUT, **timing)
        plan_start_ns = newest_ns
        if self._at_rest_since(newest_ns):
            plan_start_ns = first_tick_after(
                publish_ns + self.config.exec_latency_ns, newest_ns, period
            )
        chunk = schedule_executed_actions(
            offered, plan_start_ns, period, publish_ns, self.config.exec_latency_ns
        )
        if chunk is None:
            late_ms = (publish_ns - newest_ns) / 1e6
            reason = f"every action step was late at publication ({late_ms:.0f} ms after the obs)"
            return ActOutcome(None, reason, POLICY_OUTPUT, **timing)
        shift_ns = plan_start_ns - newest_ns
        self.committed = TimedChunk(horizon_first_ns + shift_ns, period, prediction.chunk)
        held_rows = 0 if held is None else int(np.sum(held.weights >= 1.0))
        return ActOutcome(
            chunk,
            observation_stamp_ns=newest_ns,
            plan_start_ns=plan_start_ns,
            held_rows=held_rows,
            **timing,
        )

    def due(self, now_ns: int) -> bool:
        """Whether the next inference starts now: once the clock has reached its scheduled
        start (schedule_next) and every stream has delivered its observation of that instant
        (within the sync tolerance), or one period after it whatever has arrived.

        Starting as soon as the clock reaches the start conditions the chunk on the observation
        before, a period older, whenever the instant's own messages are a moment behind the
        clock: sim_node publishes /clock before the step's observations, and a robot's sensors
        deliver theirs after the instant they stamp. That chunk then acts a step later.
        """
        start_ns = self._next_start_ns  # one read: the loop polls this every few ms
        if now_ns < start_ns:
            return False
        if now_ns >= start_ns + self.config.period_ns:
            return True
        with self._lock:  # only inside the window: the callbacks add under this lock
            observed_ns = self.sync.observed_through_ns()
        return observed_ns is not None and observed_ns >= start_ns - self.config.tolerance_ns

    def schedule_next(self, outcome: ActOutcome, replan_lead_steps: int) -> None:
        """After publishing `outcome`'s chunk: the next inference starts at `next_start_ns`, or
        at once when that chunk was conditioned on an episode that has ended since (a reset
        raced the inference). Its schedule says nothing about the new episode: following it
        held the robot still for up to Ta steps at an episode's start."""
        with self._lock:
            stale = outcome.observation_stamp_ns < self.sync.episode_start_ns
            self._next_start_ns = 0 if stale else self.next_start_ns(outcome, replan_lead_steps)

    def restart_schedule(self) -> None:
        """The next inference starts at once (the clock jumped: the schedule is meaningless)."""
        with self._lock:
            self._next_start_ns = 0

    def next_start_ns(self, outcome: ActOutcome, replan_lead_steps: int) -> int:
        """When to start the next inference after publishing `outcome`'s chunk: its chunk should
        land as this one has executed its Ta steps (counted from its plan's start: the
        observation it was conditioned on, or later for a chunk that started from rest).

        The lead is this inference's duration on the acting clock (simulated time advances only
        per step, so it reads whole steps) in whole steps, plus `replan_lead_steps`. When
        inference is slower than that, the rows offered beyond Ta keep the robot going.
        """
        period = outcome.chunk.period_ns
        inference_steps = -(-outcome.inference_clock_ns // period)  # ceil
        lead_ns = (inference_steps + replan_lead_steps) * period
        return outcome.plan_start_ns + self.executed_steps * period - lead_ns

    def _at_rest_since(self, instant_ns: int) -> bool:
        """No chunk of ours had a row left to play at `instant_ns`: the robot held still."""
        committed = self.committed
        return committed is None or committed.stamp_of(len(committed.rows) - 1) < instant_ns

    def _held_actions(self, horizon_first_ns: int, start_ns: int):
        """What the new chunk must continue (None: continuation off or nothing to continue)."""
        settings = self.config.continuation
        until_ns = freeze_until(
            start_ns, self._latency_clock_ns, self.config.period_ns, self.config.exec_latency_ns
        )
        return plan_held_actions(
            self.committed, horizon_first_ns, self.runner.horizon, until_ns, settings
        )
