"""Episode loops shared by collection and evaluation, and the worker pool that runs them.

Two loops over a `SimEnv`:

* `expert_episode` runs a demonstrator and records what it saw and did: observations o_0..o_{T-1}
  and actions a_0..a_{T-1}, where a_t was chosen from o_t (the training-sample convention).
* `policy_episode` runs a policy closed loop the way Diffusion Policy is deployed: keep the last
  To observations (at the episode start the first one repeated), predict a chunk, execute its Ta
  executed actions one by one, stop as soon as the environment says done, repeat.

`run_in_workers` maps a job over items in worker processes that each build their state (an env,
a policy) once and reuse it for many items; the spawn start method is used because robosuite's
EGL contexts, numba and torch threads do not survive a fork.
"""

from __future__ import annotations

import importlib
import importlib.util
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dp_ros.keys import ACTION

# ---------------------------------------------------------------------------------------------
# Episode loops
# ---------------------------------------------------------------------------------------------


class Demonstrator(Protocol):
    """What `dp_ros.sim.experts.make_expert` returns."""

    mode_label: str

    def reset(self, obs: Mapping[str, np.ndarray]) -> None: ...

    def act(self, obs: Mapping[str, np.ndarray]) -> np.ndarray: ...


@dataclass
class EpisodeOutcome:
    """How one episode ended: `steps` actions were executed."""

    seed: int
    success: bool
    steps: int


def expert_episode(
    env, expert: Demonstrator, seed: int
) -> tuple[EpisodeOutcome, dict[str, np.ndarray]]:
    """Run `expert` from `env.reset(seed)` until done; returns the outcome and the episode
    {obs key: (T, ...), "action": (T, 7) float32}, ready for `EpisodeStore.append_episode`."""
    obs = env.reset(seed)
    expert.reset(obs)
    frames: list[Mapping[str, np.ndarray]] = []
    actions: list[np.ndarray] = []
    done, success = False, False
    while not done:
        action = np.asarray(expert.act(obs), dtype=np.float32)
        frames.append(obs)
        actions.append(action)
        obs, _, done, info = env.step(action)
        success = info["success"]
    episode = {key: np.stack([frame[key] for frame in frames]) for key in frames[0]}
    # The env clips what it executes; store what was executed, so that the data set's actions
    # are ones the robot can follow.
    episode[ACTION] = np.clip(np.stack(actions), -1.0, 1.0).astype(np.float32)
    return EpisodeOutcome(seed=seed, success=bool(success), steps=len(actions)), episode


class ObsHistory:
    """The last To observations as the policy takes them: {key: (To, ...)}.

    The first observation of an episode fills every slot, as Diffusion Policy pads the start.
    """

    def __init__(self, n_obs_steps: int, keys: Iterable[str]) -> None:
        self.keys = tuple(keys)
        self._frames: deque[Mapping[str, np.ndarray]] = deque(maxlen=n_obs_steps)

    def reset(self, obs: Mapping[str, np.ndarray]) -> None:
        missing = [key for key in self.keys if key not in obs]
        if missing:
            raise ValueError(
                f"the policy needs obs key(s) {missing} that the simulator does not give "
                f"(it gives {sorted(obs)})"
            )
        self._frames.clear()
        for _ in range(self._frames.maxlen or 1):
            self._frames.append(obs)

    def append(self, obs: Mapping[str, np.ndarray]) -> None:
        self._frames.append(obs)

    def stacked(self) -> dict[str, np.ndarray]:
        return {key: np.stack([frame[key] for frame in self._frames]) for key in self.keys}


def policy_episode(
    env,
    runner,
    seed: int,
    on_step: Callable[[Mapping[str, np.ndarray]], None] | None = None,
) -> EpisodeOutcome:
    """Run a `PolicyRunner` closed loop from `env.reset(seed)` until done.

    `on_step(obs)` sees the observation after every executed step (e.g. to write a video).
    """
    obs = env.reset(seed)
    runner.reset()  # same sampler noise for the same seed, whichever worker runs it
    history = ObsHistory(runner.n_obs_steps, runner.obs_keys)
    history.reset(obs)
    done, success, steps = False, False, 0
    while not done:
        executed = runner.predict(history.stacked()).executed  # (Ta, Da)
        for action in executed:
            obs, _, done, info = env.step(action)
            steps += 1
            success = info["success"]
            history.append(obs)
            if on_step is not None:
                on_step(obs)
            if done:
                break
    return EpisodeOutcome(seed=seed, success=bool(success), steps=steps)


# ---------------------------------------------------------------------------------------------
# Factories named by a string (experts from the command line)
# ---------------------------------------------------------------------------------------------


def resolve_callable(spec: str) -> Callable[..., Any]:
    """'package.module:function', 'package.module.function' or 'path/to/file.py:function'."""
    if ":" in spec:
        where, name = spec.rsplit(":", 1)
    else:
        where, _, name = spec.rpartition(".")
    if not where or not name:
        raise ValueError(f"{spec!r} must be 'package.module:function' or 'file.py:function'")
    if where.endswith(".py"):
        path = Path(where).resolve()
        if not path.is_file():
            raise ValueError(f"{spec!r}: no such file {path}")
        module_spec = importlib.util.spec_from_file_location(f"_dp_ros_loaded_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    function = getattr(module, name, None)
    if not callable(function):
        raise ValueError(f"{spec!r}: {where} has no callable {name!r}")
    return function


# ---------------------------------------------------------------------------------------------
# Worker processes
# ---------------------------------------------------------------------------------------------


class Worker(Protocol):
    """Built once per process (`Worker(*args)`), then `run(item)` many times, then `close()`."""

    def run(self, item: Any) -> Any: ...

    def close(self) -> None: ...


_worker: Worker | None = None  # this process's worker, in pool processes


def _start_worker(worker_type: type, args: tuple) -> None:
    global _worker
    _worker = worker_type(*args)


def _run_item(item: Any) -> Any:
    assert _worker is not None, "pool worker used before its initializer ran"
    return _worker.run(item)


def run_in_workers(
    worker_type: type, args: tuple, items: Iterable[Any], workers: int
) -> Iterator[Any]:
    """Yield `worker.run(item)` for every item, in the items' order.

    `workers` <= 1 runs in this process (no start-up cost: the trainer's evaluation hook and
    tests); more start that many spawned processes, each building one `worker_type(*args)`.
    An exception in a worker is raised here, and the pool is torn down.
    """
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        worker = worker_type(*args)
        try:
            for item in items:
                yield worker.run(item)
        finally:
            worker.close()
        return
    context = multiprocessing.get_context("spawn")
    pool = context.Pool(
        min(workers, len(items)), initializer=_start_worker, initargs=(worker_type, args)
    )
    try:
        yield from pool.imap(_run_item, items, chunksize=1)
    except BaseException:  # a worker's error, Ctrl-C, or the caller stopped early
        pool.terminate()
        raise
    else:
        pool.close()  # let the workers exit on their own, so robosuite/EGL clean up
    finally:
        pool.join()


def threads_per_worker(workers: int) -> int:
    """Torch threads for each of `workers` processes, so that they do not oversubscribe cores."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))
