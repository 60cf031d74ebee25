"""Turn stamped observation streams and stamped applied actions into episode steps (ROS-free).

A recorded step is one applied action and, for every recorded key, the observation the action
was applied to. A simulator (or robot driver) stamps the action it applies at instant t with t,
the stamp of the observation it acted on, so step t pairs the action stamped t with, per key,
the message whose stamp is nearest t (dp_ros.acting.obs_sync.StampedHistory.nearest: the same
alignment the policy uses when acting), provided it lies within `tolerance_ns` of t.

Picking is final as soon as a key's newest stamp reaches t: stamps only grow, so no later
message can be nearer. Each key is picked on its own, when it settles, so the kept history only
has to cover the lag between a key's messages and the actions, not the whole episode.

Rules (the recorder node and the bag converter apply the same ones, through this module):

* Leading steps that lack an observation within tolerance for some key are trimmed: recording
  began before every stream had delivered (typical at the start of a bag). Reported.
* Any later step that lacks one is a dropped frame. An episode with more than
  `max_dropped_steps` dropped frames (default 0) is refused as incomplete, naming the keys;
  below that limit the dropped steps are cut out and reported, which joins the steps on either
  side of a hole, so keep the limit at 0 for data a policy is trained on.
* Two messages of one key with the same stamp: the later one supersedes the earlier (a simulator
  reset re-publishes the instant it reset at with the new episode's first observation).
* Stamp jumps are reported, never refused: consecutive actions more than `gap_factor` control
  periods apart, and observation messages more than `gap_factor` of their stream's own median
  interval apart.

Shapes: images uint8 (T, H, W, 3); low-dim float32 (T, D); action float32 (T, Da); stamps
int64 (T,) nanoseconds.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dp_ros.keys import ACTION, ACTION_DIM, is_image_key
from dp_ros.recording.observation_buffer import ObservationBuffer

# Where an applied action came from (dp_msgs/ActionChunk.source, SOURCE_* constants).
ACTION_SOURCES = {0: "unknown", 1: "hold", 2: "policy", 3: "teleop"}


@dataclass(frozen=True)
class AssemblyConfig:
    """How steps are assembled.

    keys: the observation keys every step records (dp_ros.keys names).
    period_ns: the control period: actions are expected this far apart.
    tolerance_ns: how far a message's stamp may lie from a step's instant and still be used.
    history: messages kept per key; must cover the delay of actions behind observations.
    max_dropped_steps: dropped frames an episode may have before it is refused.
    gap_factor: an interval above gap_factor x the nominal one is reported as a stamp jump.
    """

    keys: tuple[str, ...]
    period_ns: int
    tolerance_ns: int
    history: int = 256
    max_dropped_steps: int = 0
    gap_factor: float = 1.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", tuple(self.keys))
        checks = [
            ("keys", len(self.keys) > 0, "non-empty"),
            ("keys", len(set(self.keys)) == len(self.keys), "free of duplicates"),
            ("keys", ACTION not in self.keys, f"without {ACTION!r} (actions come separately)"),
            ("period_ns", self.period_ns > 0, "> 0"),
            ("tolerance_ns", 0 <= self.tolerance_ns < self.period_ns, ">= 0 and < period_ns"),
            ("history", self.history >= 2, ">= 2"),
            ("max_dropped_steps", self.max_dropped_steps >= 0, ">= 0"),
            ("gap_factor", self.gap_factor > 1.0, "> 1"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"AssemblyConfig.{name}={getattr(self, name)!r}: must be {rule}")


class IncompleteEpisodeError(ValueError):
    """An episode refused because some steps lack observations; `report` says which."""

    def __init__(self, message: str, report: EpisodeReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class Step:
    """One applied action and, per key, the (stamp, value) picked for it."""

    stamp_ns: int
    action: np.ndarray  # (Da,)
    source: int
    picks: dict[str, tuple[int, np.ndarray] | None] = field(default_factory=dict)


@dataclass
class EpisodeReport:
    """What the assembler saw in one episode (all stamps in ns)."""

    steps: int = 0  # steps kept
    trimmed_leading: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # key -> steps without it
    dropped_steps: int = 0
    action_gaps: list[tuple[int, int]] = field(default_factory=list)  # (step index, gap ns)
    observation_gaps: dict[str, int] = field(default_factory=dict)  # key -> stamp jumps
    refused_actions: int = 0  # out of order or duplicate stamps
    max_offset_ns: dict[str, int] = field(default_factory=dict)  # worst |picked - t| per key
    sources: dict[str, int] = field(default_factory=dict)  # hold / policy / teleop counts

    def summary(self) -> str:
        parts = [f"{self.steps} steps"]
        if self.trimmed_leading:
            parts.append(f"{self.trimmed_leading} leading steps trimmed")
        if self.dropped_steps:
            parts.append(f"{self.dropped_steps} dropped frames {self.dropped}")
        if self.action_gaps:
            worst = max(gap for _, gap in self.action_gaps) / 1e6
            parts.append(f"{len(self.action_gaps)} action stamp jumps (worst {worst:.1f} ms)")
        jumps = {key: n for key, n in self.observation_gaps.items() if n}
        if jumps:
            parts.append(f"observation stamp jumps {jumps}")
        if self.refused_actions:
            parts.append(f"{self.refused_actions} out-of-order actions refused")
        return ", ".join(parts)

    def as_metadata(self) -> dict[str, Any]:
        return {
            "frames": self.steps,
            "trimmed_leading_steps": self.trimmed_leading,
            "dropped_frames": self.dropped_steps,
            "dropped_by_key": dict(self.dropped),
            "action_gaps": [list(gap) for gap in self.action_gaps],
            "observation_gaps": dict(self.observation_gaps),
            "max_stamp_offset_ns": dict(self.max_offset_ns),
            "action_sources": dict(self.sources),
        }


@dataclass
class AssembledEpisode:
    """An episode ready for EpisodeStore.append_episode(arrays, metadata)."""

    arrays: dict[str, np.ndarray]  # key -> (T, ...), plus "action" (T, Da)
    stamps_ns: np.ndarray  # (T,) int64, the instant of each step
    sources: np.ndarray  # (T,) int64, ACTION_SOURCES codes
    report: EpisodeReport
    metadata: dict[str, Any]


class EpisodeSteps:
    """The steps of one episode: actions with stamps in [start_ns, end_ns), as they settle."""

    def __init__(
        self, buffer: ObservationBuffer, start_ns: int, metadata: dict[str, Any] | None = None
    ) -> None:
        self.buffer = buffer
        self.config = buffer.config
        self.start_ns = int(start_ns)
        self.end_ns: int | None = None
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.steps: list[Step] = []
        self._unsettled: deque[Step] = deque()  # steps still waiting for some key, oldest first
        self.refused_actions = 0
        self.closed_at: float | None = None  # caller's clock (s) when closed, for time-outs
        self._received_at_start = {key: s.received for key, s in buffer.stats.items()}

    def accepts(self, stamp_ns: int) -> bool:
        return stamp_ns >= self.start_ns and (self.end_ns is None or stamp_ns < self.end_ns)

    @property
    def last_action_ns(self) -> int | None:
        return self.steps[-1].stamp_ns if self.steps else None

    def add_action(self, stamp_ns: int, action: np.ndarray, source: int = 0) -> None:
        """Append the action applied at `stamp_ns` (Da,); ValueError when out of order."""
        if not self.accepts(stamp_ns):
            raise ValueError(f"action stamp {stamp_ns} ns lies outside this episode")
        action = np.asarray(action, dtype=np.float32)
        if action.shape != (ACTION_DIM,) or not np.all(np.isfinite(action)):
            self.refused_actions += 1
            raise ValueError(f"action must be {ACTION_DIM} finite values, got {action.tolist()}")
        last = self.last_action_ns
        if last is not None and stamp_ns <= last:
            self.refused_actions += 1
            raise ValueError(f"action stamp {stamp_ns} ns is not newer than {last} ns")
        step = Step(int(stamp_ns), action, int(source))
        self.steps.append(step)
        for key in self.config.keys:
            if self.buffer.settled(key, step.stamp_ns):
                step.picks[key] = self.buffer.pick(key, step.stamp_ns)
        if len(step.picks) < len(self.config.keys):
            self._unsettled.append(step)

    def on_observation(self, key: str) -> None:
        """A message of `key` arrived: pick it for every waiting step it settles."""
        still = deque()
        for step in self._unsettled:
            if key not in step.picks and self.buffer.settled(key, step.stamp_ns):
                step.picks[key] = self.buffer.pick(key, step.stamp_ns)
            if len(step.picks) < len(self.config.keys):
                still.append(step)
        self._unsettled = still

    def close(self, end_ns: int, closed_at: float | None = None, **metadata: Any) -> list[Step]:
        """No action from `end_ns` on belongs to this episode; returns the steps cut off.

        The cut steps (actions that arrived before the stop did) belong to whatever comes next.
        """
        self.end_ns = int(end_ns)
        self.closed_at = closed_at
        self.metadata.update(metadata)
        late = [step for step in self.steps if step.stamp_ns >= self.end_ns]
        if late:
            self.steps = self.steps[: len(self.steps) - len(late)]
            self._unsettled = deque(s for s in self._unsettled if s.stamp_ns < self.end_ns)
        return late

    @property
    def picked_all(self) -> bool:
        """Every step so far has an observation picked for every key."""
        return not self._unsettled

    @property
    def settled(self) -> bool:
        """Closed, its last step's action in (or a later one seen), and every step picked."""
        if self.end_ns is None or self._unsettled:
            return False
        last = self.last_action_ns
        return last is not None and last >= self.end_ns - self.config.period_ns

    def assemble(self) -> AssembledEpisode:
        """The episode's arrays; IncompleteEpisodeError by the rules in the module docstring.

        Keys still unsettled are picked from what the buffer holds (the stream stopped).
        """
        for step in self._unsettled:
            for key in self.config.keys:
                if key not in step.picks:
                    step.picks[key] = self.buffer.pick(key, step.stamp_ns)
        self._unsettled.clear()
        report = EpisodeReport(refused_actions=self.refused_actions)
        complete = [self._missing_keys(step, report) for step in self.steps]
        first = next((i for i, missing in enumerate(complete) if not missing), len(self.steps))
        report.trimmed_leading = first
        kept = []
        for step, missing in zip(self.steps[first:], complete[first:], strict=True):
            if missing:
                report.dropped_steps += 1
                for key in missing:
                    report.dropped[key] = report.dropped.get(key, 0) + 1
            else:
                kept.append(step)
        report.steps = len(kept)
        self._report_gaps(kept, report)
        if not kept:
            silent = [key for key in self.config.keys if not len(self.buffer.histories[key])]
            lacking = {}
            for missing in complete:
                for key in missing:
                    lacking[key] = lacking.get(key, 0) + 1
            reason = f"no message ever received for {silent}" if silent else f"lacking {lacking}"
            raise IncompleteEpisodeError(
                f"episode refused: no step has every key within "
                f"{self.config.tolerance_ns / 1e6:.1f} ms ({len(self.steps)} actions; {reason})",
                report,
            )
        if report.dropped_steps > self.config.max_dropped_steps:
            raise IncompleteEpisodeError(
                f"episode refused as incomplete: {report.dropped_steps} of "
                f"{len(self.steps) - first} steps lack an observation within "
                f"{self.config.tolerance_ns / 1e6:.1f} ms (by key: {report.dropped}; "
                f"allowed: {self.config.max_dropped_steps})",
                report,
            )
        return self._arrays(kept, report)

    def _missing_keys(self, step: Step, report: EpisodeReport) -> list[str]:
        missing = []
        for key in self.config.keys:
            pick = step.picks.get(key)
            offset = None if pick is None else abs(pick[0] - step.stamp_ns)
            if offset is None or offset > self.config.tolerance_ns:
                missing.append(key)
            else:
                report.max_offset_ns[key] = max(report.max_offset_ns.get(key, 0), offset)
        return missing

    def _report_gaps(self, kept: list[Step], report: EpisodeReport) -> None:
        stamps = np.array([step.stamp_ns for step in kept], dtype=np.int64)
        limit = self.config.gap_factor * self.config.period_ns
        jumps = np.flatnonzero(np.diff(stamps) > limit) + 1
        report.action_gaps = [(int(i), int(stamps[i] - stamps[i - 1])) for i in jumps]
        end = None if not kept else kept[-1].stamp_ns + 1
        start = kept[0].stamp_ns if kept else self.start_ns
        report.observation_gaps = {
            key: len(stats.gaps_between(start, end)) for key, stats in self.buffer.stats.items()
        }
        for step in kept:
            name = ACTION_SOURCES.get(step.source, str(step.source))
            report.sources[name] = report.sources.get(name, 0) + 1

    def _arrays(self, kept: list[Step], report: EpisodeReport) -> AssembledEpisode:
        arrays: dict[str, np.ndarray] = {}
        for key in self.config.keys:
            values = np.stack([step.picks[key][1] for step in kept])
            arrays[key] = values if is_image_key(key) else values.astype(np.float32)
            if not is_image_key(key) and arrays[key].ndim == 1:
                arrays[key] = arrays[key][:, None]
        arrays[ACTION] = np.stack([step.action for step in kept]).astype(np.float32)
        stamps = np.array([step.stamp_ns for step in kept], dtype=np.int64)
        metadata = dict(self.metadata)
        metadata.update(report.as_metadata())
        received = {
            key: stats.received - self._received_at_start[key]
            for key, stats in self.buffer.stats.items()
        }
        metadata.update(
            messages_received=received,  # per key, from the start until assembly
            start_stamp_ns=int(stamps[0]),
            last_stamp_ns=int(stamps[-1]),
            period_ns=self.config.period_ns,
            keys=list(self.config.keys),
        )
        sources = np.array([step.source for step in kept], dtype=np.int64)
        return AssembledEpisode(arrays, stamps, sources, report, metadata)
