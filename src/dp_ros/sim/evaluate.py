"""dp-eval: success rate of a policy checkpoint in simulation, with videos of chosen episodes.

Each seed is one episode (`SimEnv.reset(seed)` fixes the scene; the sampler is re-seeded per
episode), so a result does not depend on the number of workers. Seeds start at 100000 by default,
as in Diffusion Policy, far from the seeds (0, 1, ...) demonstrations are collected on.

Cameras are rendered only when they are needed: for policies that look at them, and for the
episodes that get a video. A state policy therefore runs at the simulator's state-only speed
(about 10x faster on CPU) except in its video episodes, which run in a second, camera-rendering
environment of the same worker.

`make_eval_hook` packs this for the trainer's `eval.hook`; `evaluate_policy` is the API.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dp_ros.sim.env import TASKS
from dp_ros.sim.rollout import policy_episode, run_in_workers, threads_per_worker
from dp_ros.sim.video import DEFAULT_SCALE, EpisodeVideo

DEFAULT_FIRST_SEED = 100_000
DEFAULT_VIDEO_SIZE = 84  # camera size for videos of policies that do not use cameras


class EvalConfigError(ValueError):
    """An evaluation setting broke a rule; the message names field, value and rule."""


def _require(ok: bool, name: str, value: Any, rule: str) -> None:
    if not ok:
        raise EvalConfigError(f"SimEvalConfig.{name}={value!r} is invalid: {rule}")


@dataclass(frozen=True)
class SimEvalConfig:
    """One evaluation: seeds first_seed .. first_seed + n_episodes - 1; the first n_videos
    of them are filmed into video_dir."""

    checkpoint: str
    task: str
    n_episodes: int
    first_seed: int = DEFAULT_FIRST_SEED
    workers: int = 1
    max_episode_steps: int | None = None  # None: the task's default limit
    device: str = "cpu"
    num_inference_steps: int | None = None  # None: the checkpoint's sampler setting
    policy_seed: int = 0
    video_dir: str | None = None
    n_videos: int = 0
    video_size: int = DEFAULT_VIDEO_SIZE
    video_scale: int = DEFAULT_SCALE
    threads: int | None = None  # torch threads per worker; 0: chosen (eval_threads); None: as is

    def __post_init__(self) -> None:
        _require(
            Path(self.checkpoint).is_dir(), "checkpoint", self.checkpoint, "no such directory"
        )
        _require(self.task in TASKS, "task", self.task, f"must be one of {sorted(TASKS)}")
        _require(self.n_episodes >= 1, "n_episodes", self.n_episodes, "must be >= 1")
        _require(self.first_seed >= 0, "first_seed", self.first_seed, "must be >= 0")
        _require(self.workers >= 1, "workers", self.workers, "must be >= 1")
        _require(
            self.max_episode_steps is None or self.max_episode_steps >= 1,
            "max_episode_steps",
            self.max_episode_steps,
            "must be None or >= 1",
        )
        _require(
            0 <= self.n_videos <= self.n_episodes,
            "n_videos",
            self.n_videos,
            f"must be in [0, n_episodes={self.n_episodes}]",
        )
        _require(
            self.n_videos == 0 or self.video_dir is not None,
            "video_dir",
            self.video_dir,
            f"is needed for n_videos={self.n_videos}",
        )
        _require(16 <= self.video_size <= 1024, "video_size", self.video_size, "in [16, 1024]")
        _require(self.video_scale >= 1, "video_scale", self.video_scale, "must be >= 1")

    @property
    def seeds(self) -> range:
        return range(self.first_seed, self.first_seed + self.n_episodes)

    def video_path(self, seed: int) -> str | None:
        if self.video_dir is None or seed >= self.first_seed + self.n_videos:
            return None
        return str(Path(self.video_dir) / f"{self.task}_seed{seed}.mp4")


@dataclass
class EpisodeResult:
    seed: int
    success: bool
    steps: int
    video: str | None = None
    episode_s: float = 0.0


@dataclass
class EvalResult:
    """The outcome of `evaluate_policy`; `to_dict()` is what --output holds."""

    checkpoint: str
    task: str
    first_seed: int
    n_episodes: int
    success_rate: float
    mean_steps: float
    wall_s: float
    episodes: list[EpisodeResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path


class EvalWorker:
    """One policy, loaded once, and up to two environments (without and with cameras), each
    built the first time an episode needs it."""

    def __init__(self, config: SimEvalConfig, progress: Any = None) -> None:
        """`progress`: a shared counter (`.value`, `.get_lock()`) the steps are added to."""
        import torch

        from dp_ros.policy.runtime import PolicyRunner

        self.config = config
        self.progress = progress
        self.runner = PolicyRunner.from_checkpoint(
            config.checkpoint,
            device=config.device,
            num_inference_steps=config.num_inference_steps,
            seed=config.policy_seed,
        )
        self.image_size = policy_image_size(self.runner.shape_meta)
        threads = config.threads
        if threads is None and multiprocessing.parent_process() is not None:
            threads = 0  # a pool process always shares the cores with its siblings
        if threads is not None:  # in-process without a setting (the trainer's hook): as is
            chosen = threads or eval_threads(config.workers, self.image_size is not None)
            torch.set_num_threads(chosen)
        self._envs: dict[bool, Any] = {}

    def env(self, cameras: bool):
        if cameras not in self._envs:
            from dp_ros.sim.env import SimEnv  # robosuite: seconds to import, only when needed

            self._envs[cameras] = SimEnv(
                self.config.task,
                cameras=cameras,
                image_size=self.image_size or self.config.video_size,
                max_episode_steps=self.config.max_episode_steps,
            )
        return self._envs[cameras]

    def run(self, seed: int) -> EpisodeResult:
        video_path = self.config.video_path(seed)
        env = self.env(cameras=self.image_size is not None or video_path is not None)
        start = time.perf_counter()
        video = (
            None if video_path is None else EpisodeVideo(video_path, scale=self.config.video_scale)
        )

        def on_step(obs) -> None:
            self._count(1)
            if video is not None:
                video.write(obs)

        try:
            outcome = policy_episode(env, self.runner, seed, on_step=on_step)
        finally:
            if video is not None:
                video.close()
        # The bar counts every episode as its step limit: an early end adds what it skipped.
        self._count(env.max_episode_steps - outcome.steps)
        return EpisodeResult(
            seed=outcome.seed,
            success=outcome.success,
            steps=outcome.steps,
            video=video_path,
            episode_s=time.perf_counter() - start,
        )

    def _count(self, steps: int) -> None:
        if self.progress is not None and steps > 0:
            with self.progress.get_lock():
                self.progress.value += steps

    def close(self) -> None:
        for env in self._envs.values():
            env.close()


def eval_threads(workers: int, cameras: bool) -> int:
    """Torch threads per evaluation worker.

    A state policy's batch-1 inference is too small to split: measured on this 2-core host, a
    Lift state episode ran 4x faster on 1 thread than on torch's default 2 (threads spin and
    contend with robosuite). Image policies (ResNet encoders) gain from the cores left to them.
    """
    if not cameras:
        return 1
    return threads_per_worker(workers)


def policy_image_size(shape_meta: dict[str, Any]) -> int | None:
    """The square camera size the policy was trained on, or None for a policy without cameras.

    The simulator renders every camera at one square size; a policy wanting anything else
    cannot be fed.
    """
    shapes = {tuple(spec["shape"]) for spec in shape_meta["obs"].values() if spec["type"] == "rgb"}
    if not shapes:
        return None
    sizes = {(height, width) for _, height, width in shapes}
    height, width = sizes.pop()
    if sizes or height != width:
        raise ValueError(
            f"the policy's cameras are {sorted(sizes | {(height, width)})} (H, W); the simulator "
            "renders all cameras at one square size"
        )
    return height


def evaluate_policy(
    checkpoint: str | os.PathLike,
    task: str,
    n_episodes: int,
    first_seed: int = DEFAULT_FIRST_SEED,
    workers: int = 1,
    video_dir: str | os.PathLike | None = None,
    n_videos: int = 0,
    progress: bool = False,
    **settings: Any,
) -> EvalResult:
    """Run the checkpoint's policy on `n_episodes` seeds from `first_seed`; film the first
    `n_videos` into `video_dir`. `settings`: the other fields of `SimEvalConfig`
    (max_episode_steps, device, num_inference_steps, policy_seed, video_size, video_scale)."""
    config = SimEvalConfig(
        checkpoint=str(checkpoint),
        task=task,
        n_episodes=n_episodes,
        first_seed=first_seed,
        workers=workers,
        video_dir=None if video_dir is None else str(video_dir),
        n_videos=n_videos,
        **settings,
    )
    start = time.perf_counter()
    episodes = _run_with_progress(config, progress)
    return EvalResult(
        checkpoint=config.checkpoint,
        task=task,
        first_seed=first_seed,
        n_episodes=n_episodes,
        success_rate=sum(episode.success for episode in episodes) / len(episodes),
        mean_steps=sum(episode.steps for episode in episodes) / len(episodes),
        wall_s=time.perf_counter() - start,
        episodes=episodes,
    )


def _run_with_progress(config: SimEvalConfig, progress: bool) -> list[EpisodeResult]:
    """Every episode's result, with a bar in steps (each episode counts as its step limit, so
    the bar moves during long episodes) and the success count so far."""
    import threading

    from tqdm import tqdm

    from dp_ros.sim.env import TASKS

    limit = config.max_episode_steps or TASKS[config.task][2]
    steps = multiprocessing.get_context("spawn").Value("q", 0)
    bar = tqdm(
        total=config.n_episodes * limit,
        desc=f"eval {config.task}",
        unit="step",
        disable=not progress,
        dynamic_ncols=True,
    )
    finished = threading.Event()

    def follow() -> None:  # the workers count steps; the bar shows them twice a second
        while not finished.wait(0.5):
            bar.update(steps.value - bar.n)

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    episodes: list[EpisodeResult] = []
    try:
        for result in run_in_workers(EvalWorker, (config, steps), config.seeds, config.workers):
            episodes.append(result)
            successes = sum(episode.success for episode in episodes)
            bar.set_postfix(episodes=f"{len(episodes)}/{config.n_episodes}",
                            success=f"{successes}/{len(episodes)}")  # fmt: skip
    finally:
        finished.set()
        follower.join()
        bar.update(steps.value - bar.n)
        bar.close()
    return episodes


def make_eval_hook(
    task: str,
    n_episodes: int,
    first_seed: int = DEFAULT_FIRST_SEED,
    workers: int = 1,
    output_dir: str | os.PathLike | None = None,
    n_videos: int = 0,
    **settings: Any,
) -> Callable[[Path], dict[str, float]]:
    """A trainer evaluation hook: `(checkpoint_dir) -> {"success_rate", "mean_steps"}`.

    With `output_dir`, each call also writes `<output_dir>/<checkpoint name>/eval.json` and its
    videos there (the checkpoint directory itself is left untouched: it is hash-checked).
    `settings` as for `evaluate_policy`.
    """
    # Bad settings fail when the trainer starts, not at its first evaluation epochs later.
    SimEvalConfig(
        checkpoint=".",
        task=task,
        n_episodes=n_episodes,
        first_seed=first_seed,
        workers=workers,
        video_dir=None if output_dir is None else str(output_dir),
        n_videos=n_videos,
        **settings,
    )

    def evaluate(checkpoint_dir: Path) -> dict[str, float]:
        target = None if output_dir is None else Path(output_dir) / Path(checkpoint_dir).name
        result = evaluate_policy(
            checkpoint_dir,
            task,
            n_episodes,
            first_seed=first_seed,
            workers=workers,
            video_dir=target,
            n_videos=n_videos if target is not None else 0,
            **settings,
        )
        if target is not None:
            result.save(target / "eval.json")
        return {"success_rate": result.success_rate, "mean_steps": result.mean_steps}

    return evaluate


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

EPILOG = """\
examples:
  dp-eval outputs/run1/checkpoints/best --task lift --episodes 50 --workers 2 \\
      --output outputs/run1/eval.json --videos 3
  dp-eval ckpt --task can --episodes 20 --num-inference-steps 16 --output eval/can.json
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dp-eval",
        description="Success rate of a policy checkpoint in robosuite, with episode videos.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", help="policy checkpoint directory")
    parser.add_argument("--task", required=True, choices=sorted(TASKS))
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--first-seed", type=int, default=DEFAULT_FIRST_SEED)
    parser.add_argument("--workers", type=int, default=1, help="processes, one policy each")
    parser.add_argument("--output", required=True, help="JSON results file")
    parser.add_argument("--videos", type=int, default=0, help="film the first N episodes")
    parser.add_argument("--video-dir", default=None, help="default: <output without .json>_videos")
    parser.add_argument("--video-size", type=int, default=DEFAULT_VIDEO_SIZE,
                        help="camera size for videos of state policies")  # fmt: skip
    parser.add_argument("--max-episode-steps", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--num-inference-steps", type=int, default=None)
    parser.add_argument("--policy-seed", type=int, default=0, help="sampler noise seed")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads per worker; 0 (default): 1 for state policies (4x faster here than "
        "torch's default), the cores shared out among workers for image policies",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    output = Path(args.output)
    video_dir = args.video_dir or str(output.with_suffix("")) + "_videos"
    try:
        result = evaluate_policy(
            args.checkpoint,
            args.task,
            args.episodes,
            first_seed=args.first_seed,
            workers=args.workers,
            video_dir=video_dir if args.videos else None,
            n_videos=args.videos,
            progress=not args.no_progress,
            max_episode_steps=args.max_episode_steps,
            device=args.device,
            num_inference_steps=args.num_inference_steps,
            policy_seed=args.policy_seed,
            video_size=args.video_size,
            threads=args.threads,
        )
    except (ValueError, FileNotFoundError) as error:  # config, checkpoint and obs errors
        print(f"dp-eval: error: {error}", file=sys.stderr)
        return 2
    result.save(output)
    print(
        f"success {result.success_rate:.1%} over {result.n_episodes} episodes (seeds "
        f"{result.first_seed}..{result.first_seed + result.n_episodes - 1}), mean "
        f"{result.mean_steps:.1f} steps, {result.wall_s:.1f} s; results in {output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
