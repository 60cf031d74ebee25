"""One acting step, ROS-free: observations in, a safe, time-stamped chunk (or a reason) out.

policy_node calls `ActingCore.act()` from its inference thread; everything that decides whether to
publish lives here so it is tested without ROS: assembling the To-step observation by stamp,
running the policy, refusing non-finite or out-of-range actions, and dropping rows that would
execute late.
"""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dp_ros.acting.chunk_timing import TimedChunk, schedule_executed_actions
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


@dataclass(frozen=True)
class ActOutcome:
    """A chunk to publish, or why not (reason + the input it concerns)."""

    chunk: TimedChunk | None
    reason: str = ""
    input: str = ""
    observation_stamp_ns: int = 0
    inference_s: float = 0.0  # wall seconds in the policy
    # The acting clock's advance from assembly to publication (simulated time: whole steps).
    inference_clock_ns: int = 0


def check_actions(actions: np.ndarray, limit: float) -> str:
    """Empty string if every action is finite and within [-limit, limit], else what is wrong."""
    if not np.all(np.isfinite(actions)):
        return "policy produced NaN or infinite actions; holding"
    worst = float(np.max(np.abs(actions)))
    if worst > limit:
        return f"policy produced an action of magnitude {worst:.3g} > limit {limit}; holding"
    return ""


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

    def add(self, key: str, stamp_ns: int, value: np.ndarray, now_ns: int | None = None) -> str:
        """Record one observation value; see ObservationSynchronizer.add (ValueError: refused)."""
        with self._lock:
            return self.sync.add(key, stamp_ns, value, now_ns)

    def reset(self, episode_start_ns: int | None = None) -> None:
        """Forget the observations and re-seed the sampler; with `episode_start_ns`, a new
        episode begins at that instant (older observations no longer count)."""
        with self._lock:
            self.sync.clear(episode_start_ns)
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
        start = time.perf_counter()
        prediction = self.runner.predict(observation.values)
        inference_s = time.perf_counter() - start
        if self.config.debug_delay_s > 0:
            time.sleep(self.config.debug_delay_s)
        publish_ns = now_ns()
        timing = {"inference_s": inference_s, "inference_clock_ns": publish_ns - assembled_ns}
        if observation.newest_stamp_ns < self.sync.episode_start_ns:
            return ActOutcome(None, "a new episode began during inference", **timing)
        problem = check_actions(prediction.executed, self.config.action_limit)
        if problem:
            return ActOutcome(None, problem, POLICY_OUTPUT, **timing)
        chunk = schedule_executed_actions(
            prediction.executed,
            observation.newest_stamp_ns,
            self.config.period_ns,
            publish_ns,
            self.config.exec_latency_ns,
        )
        if chunk is None:
            late_ms = (publish_ns - observation.newest_stamp_ns) / 1e6
            reason = f"every action step was late at publication ({late_ms:.0f} ms after the obs)"
            return ActOutcome(None, reason, POLICY_OUTPUT, **timing)
        return ActOutcome(chunk, observation_stamp_ns=observation.newest_stamp_ns, **timing)
