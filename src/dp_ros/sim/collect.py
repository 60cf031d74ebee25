"""dp-collect: scripted demonstrations in simulation, written to an episode store.

Each seed is one attempt: `SimEnv.reset(seed)` fixes the scene and the expert's noise and route
come from the same seed, so an attempt is reproducible on its own. Only successful episodes are
written (a failed demonstration teaches failure). Worker processes each build one environment and
run many episodes; only this (parent) process writes the store, in seed order, so the store does
not depend on which worker was faster.

Stored keys: both cameras (unless --no-cameras), the robot's eef position, quaternion and gripper,
`object`, `action`. Episode metadata: task, seed, success, expert_mode (the expert's label for the
route it took), steps, noise, mode, source.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dp_ros.data.store import EpisodeStore, StoreError
from dp_ros.keys import CAMERA_KEYS
from dp_ros.sim.env import TASKS
from dp_ros.sim.rollout import EpisodeOutcome, expert_episode, resolve_callable, run_in_workers

DEFAULT_EXPERT = "dp_ros.sim.experts:make_expert"
MODES = ("default", "multimodal")


class CollectConfigError(ValueError):
    """A collection setting broke a rule; the message names field, value and rule."""


def _require(ok: bool, name: str, value: Any, rule: str) -> None:
    if not ok:
        raise CollectConfigError(f"CollectConfig.{name}={value!r} is invalid: {rule}")


@dataclass(frozen=True)
class CollectConfig:
    """What to collect: seeds first_seed .. first_seed + n_episodes - 1 of one task."""

    task: str
    n_episodes: int
    first_seed: int = 0
    noise: float = 0.0
    mode: str = "default"
    cameras: bool = True
    image_size: int = 84
    max_episode_steps: int | None = None  # None: the task's default limit
    workers: int = 1
    expert: str = DEFAULT_EXPERT  # factory (task, seed, noise, mode) -> expert

    def __post_init__(self) -> None:
        _require(self.task in TASKS, "task", self.task, f"must be one of {sorted(TASKS)}")
        _require(self.n_episodes >= 1, "n_episodes", self.n_episodes, "must be >= 1")
        _require(self.first_seed >= 0, "first_seed", self.first_seed, "must be >= 0")
        _require(self.noise >= 0, "noise", self.noise, "must be >= 0")
        _require(self.mode in MODES, "mode", self.mode, f"must be one of {list(MODES)}")
        _require(16 <= self.image_size <= 1024, "image_size", self.image_size, "in [16, 1024]")
        _require(
            self.max_episode_steps is None or self.max_episode_steps >= 1,
            "max_episode_steps",
            self.max_episode_steps,
            "must be None or >= 1",
        )
        _require(self.workers >= 1, "workers", self.workers, "must be >= 1")

    @property
    def seeds(self) -> range:
        return range(self.first_seed, self.first_seed + self.n_episodes)


@dataclass
class CollectSummary:
    """What a collection run did. `frames` counts kept frames; `env_steps` every step run."""

    store: str
    task: str
    first_seed: int
    attempted: int
    kept: int
    success_rate: float
    frames: int
    env_steps: int
    wall_s: float  # start-up of the workers included
    env_steps_per_s: float  # per simulator process, over the time spent in episodes
    store_episodes: int  # episodes in the store afterwards (earlier ones included on --append)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CollectedEpisode:
    """One attempt as a worker returns it; `episode` only when it succeeded (saves the pipe)."""

    outcome: EpisodeOutcome
    expert_mode: str
    episode: dict[str, np.ndarray] | None
    episode_s: float  # wall time of the episode in the worker


class CollectWorker:
    """One environment, built once, running the expert on one seed per `run`."""

    def __init__(self, config: CollectConfig) -> None:
        from dp_ros.sim.env import SimEnv  # robosuite: seconds to import, only in workers

        self.config = config
        self.make_expert = resolve_callable(config.expert)
        self.env = SimEnv(
            config.task,
            cameras=config.cameras,
            image_size=config.image_size,
            max_episode_steps=config.max_episode_steps,
        )

    def run(self, seed: int) -> CollectedEpisode:
        config = self.config
        start = time.perf_counter()
        expert = self.make_expert(config.task, seed, noise=config.noise, mode=config.mode)
        outcome, episode = expert_episode(self.env, expert, seed)
        return CollectedEpisode(
            outcome=outcome,
            expert_mode=str(expert.mode_label),
            episode=episode if outcome.success else None,
            episode_s=time.perf_counter() - start,
        )

    def close(self) -> None:
        self.env.close()


def collect(
    config: CollectConfig,
    store_path: str | Path,
    append: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> CollectSummary:
    """Run the expert on every seed of `config` and append its successful episodes to the store
    at `store_path` (created unless `append`); returns the summary."""
    from tqdm import tqdm

    store = _open_store(store_path, config, append, overwrite)
    start = time.perf_counter()
    attempted = kept = frames = env_steps = 0
    episode_s = 0.0
    try:
        results = run_in_workers(CollectWorker, (config,), config.seeds, config.workers)
        bar = tqdm(
            results, total=config.n_episodes, desc=f"collect {config.task}", disable=not progress
        )
        for result in bar:
            attempted += 1
            env_steps += result.outcome.steps
            episode_s += result.episode_s
            if result.episode is not None:
                store.append_episode(result.episode, _metadata(config, result))
                kept += 1
                frames += result.outcome.steps
            bar.set_postfix(kept=kept, success=f"{kept / attempted:.0%}")
        store_episodes = store.n_episodes
    finally:
        store.close()
    wall = time.perf_counter() - start
    return CollectSummary(
        store=str(store_path),
        task=config.task,
        first_seed=config.first_seed,
        attempted=attempted,
        kept=kept,
        success_rate=kept / attempted if attempted else 0.0,
        frames=frames,
        env_steps=env_steps,
        wall_s=wall,
        env_steps_per_s=env_steps / episode_s if episode_s > 0 else 0.0,
        store_episodes=store_episodes,
    )


def _metadata(config: CollectConfig, result: CollectedEpisode) -> dict[str, Any]:
    return {
        "task": config.task,
        "seed": result.outcome.seed,
        "success": result.outcome.success,
        "expert_mode": result.expert_mode,
        "steps": result.outcome.steps,
        "noise": config.noise,
        "mode": config.mode,
        "source": "dp-collect",
    }


def _open_store(
    path: str | Path, config: CollectConfig, append: bool, overwrite: bool
) -> EpisodeStore:
    """A new store, or an existing one whose task and keys match what this run writes."""
    if not append:
        return EpisodeStore.create(path, overwrite=overwrite)
    if not Path(path).exists():
        return EpisodeStore.create(path)
    store = EpisodeStore.open(path, mode="a")
    try:
        _check_append_matches(store, config)
    except BaseException:
        store.close()
        raise
    return store


def _check_append_matches(store: EpisodeStore, config: CollectConfig) -> None:
    """Refuse before simulating anything when the new episodes could not join the store."""
    if store.n_episodes == 0:
        return
    tasks = {store.episode_metadata(i).get("task") for i in range(store.n_episodes)}
    if tasks != {config.task}:
        raise StoreError(
            f"{store.path} holds task(s) {sorted(map(str, tasks))}, not {config.task!r}"
        )
    stored_cameras = [key for key in CAMERA_KEYS if key in store.keys]
    if bool(stored_cameras) != config.cameras:
        raise StoreError(
            f"{store.path} {'has' if stored_cameras else 'has no'} camera images; "
            f"cameras={config.cameras} would not match"
        )
    for key in stored_cameras:
        height, width = store.array(key).shape[1:3]
        if (height, width) != (config.image_size, config.image_size):
            raise StoreError(
                f"{store.path}: {key!r} is {height}x{width}, not image_size={config.image_size}"
            )


def next_seed(store_path: str | Path) -> int:
    """The first seed after every seed the store's episodes were made from (0 for none).

    Failed attempts leave no trace in the store, so a seed that failed after the last kept one
    is tried again on --append; it fails again (attempts are deterministic) and is dropped again.
    """
    if not Path(store_path).exists():
        return 0
    store = EpisodeStore.open(store_path, mode="r")
    seeds = [store.episode_metadata(i).get("seed") for i in range(store.n_episodes)]
    seeds = [seed for seed in seeds if isinstance(seed, int)]
    return max(seeds) + 1 if seeds else 0


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

EPILOG = """\
examples:
  dp-collect --task lift --episodes 200 --output data/lift.zarr --workers 2
  dp-collect --task lift --episodes 200 --output data/lift_state.zarr --no-cameras
  dp-collect --task can --episodes 100 --mode multimodal --noise 0.1 --output data/can_mm.zarr
  dp-collect --task lift --episodes 50 --output data/lift.zarr --append   # seeds continue
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dp-collect",
        description="Record scripted demonstrations in robosuite into an episode store "
        "(successful episodes only).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--task", required=True, choices=sorted(TASKS))
    parser.add_argument("--episodes", type=int, required=True, help="attempts (seeds) to run")
    parser.add_argument("--output", required=True, help="episode store directory (zarr)")
    parser.add_argument(
        "--first-seed",
        type=int,
        default=None,
        help="first seed (default 0; with --append, one past the store's largest seed)",
    )
    parser.add_argument("--noise", type=float, default=0.0, help="expert translation noise std")
    parser.add_argument("--mode", choices=MODES, default="default", help="expert route choice")
    parser.add_argument("--no-cameras", action="store_true", help="state only (about 10x faster)")
    parser.add_argument("--image-size", type=int, default=84, help="square camera images (px)")
    parser.add_argument("--max-episode-steps", type=int, default=None)
    parser.add_argument("--workers", type=int, default=1, help="simulator processes")
    parser.add_argument(
        "--expert",
        default=DEFAULT_EXPERT,
        help="expert factory, 'module:function' or 'file.py:function'",
    )
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--append", action="store_true", help="add to an existing store")
    existing.add_argument("--overwrite", action="store_true", help="replace an existing store")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        first_seed = args.first_seed
        if first_seed is None:
            first_seed = next_seed(args.output) if args.append else 0
        config = CollectConfig(
            task=args.task,
            n_episodes=args.episodes,
            first_seed=first_seed,
            noise=args.noise,
            mode=args.mode,
            cameras=not args.no_cameras,
            image_size=args.image_size,
            max_episode_steps=args.max_episode_steps,
            workers=args.workers,
            expert=args.expert,
        )
        summary = collect(
            config,
            args.output,
            append=args.append,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    except (CollectConfigError, StoreError, FileExistsError, FileNotFoundError) as error:
        print(f"dp-collect: error: {error}", file=sys.stderr)
        return 2
    print(
        f"kept {summary.kept}/{summary.attempted} episodes ({summary.success_rate:.0%}) of "
        f"seeds {summary.first_seed}..{summary.first_seed + summary.attempted - 1}, "
        f"{summary.frames} frames, {summary.env_steps_per_s:.1f} env steps/s per worker, "
        f"{summary.wall_s:.1f} s; {summary.store} now holds {summary.store_episodes} episodes"
    )
    print(json.dumps(summary.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
