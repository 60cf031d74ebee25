"""Success counting for evaluations that watch episodes end (ROS-free; eval_node's core).

Episodes are numbered by the simulator; the evaluation starts at one episode (the one its reset
began) whose seed it chose, and the simulator gives each later episode the next seed. Outcomes of
earlier episodes, and the "reset" outcome that closes the episode running before, do not count.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class EpisodeResult:
    episode: int
    seed: int
    success: bool
    steps: int
    reason: str


@dataclass
class EpisodeTally:
    n_episodes: int
    first_seed: int
    first_episode: int | None = None  # set when the evaluation's first episode begins
    results: list[EpisodeResult] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.n_episodes < 1:
            raise ValueError(f"n_episodes={self.n_episodes}: must be >= 1")

    def begin(self, first_episode: int) -> None:
        self.first_episode = first_episode

    @property
    def done(self) -> bool:
        return len(self.results) >= self.n_episodes

    def add(self, episode: int, success: bool, steps: int, reason: str) -> EpisodeResult | None:
        """Count one outcome; None when it is not one of the evaluation's episodes."""
        if self.first_episode is None or episode < self.first_episode or reason == "reset":
            return None
        if self.done or any(result.episode == episode for result in self.results):
            return None
        seed = self.first_seed + episode - self.first_episode
        result = EpisodeResult(episode, seed, bool(success), int(steps), reason)
        self.results.append(result)
        return result

    @property
    def successes(self) -> int:
        return sum(result.success for result in self.results)

    @property
    def success_rate(self) -> float:
        return self.successes / len(self.results) if self.results else 0.0

    def line(self, result: EpisodeResult) -> str:
        verdict = "success" if result.success else f"failure ({result.reason})"
        return (
            f"episode {len(self.results)}/{self.n_episodes} (seed {result.seed}): {verdict} "
            f"after {result.steps} steps; {self.successes} successes so far"
        )

    def summary(self) -> dict:
        return {
            "episodes": len(self.results),
            "successes": self.successes,
            "success_rate": self.success_rate,
            "first_seed": self.first_seed,
            "results": [asdict(result) for result in self.results],
        }
