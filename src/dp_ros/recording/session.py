"""A recording session: one observation buffer, the episode being recorded, episodes closing.

The recorder node and the bag converter both drive a RecordingSession: they feed it every
observation and applied action they see, in arrival order, and tell it where episodes start
and stop (as stamps). Episode boundaries are stamps, not arrival times, so messages that arrive
out of order across topics still land in the right episode:

* `start(t0)`: actions stamped >= t0 belong to the new episode, including ones that arrived
  shortly before the start did (a short backlog of unassigned actions is kept for that).
* `stop(t1)`: actions stamped >= t1 do not. The episode then waits, closing, until the action
  of its last step is in and every step has its observations (`EpisodeSteps.settled`), or until
  the caller's time-out, or until `collect(force=True)` (end of a bag, node shutdown).

Observation histories persist across episodes, so an episode that starts at t0 finds the
observation stamped t0 even when it arrived before the start did.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dp_ros.data.store import EpisodeStore, StoreError
from dp_ros.recording.assembler import (
    AssembledEpisode,
    AssemblyConfig,
    EpisodeSteps,
    IncompleteEpisodeError,
)
from dp_ros.recording.observation_buffer import ObservationBuffer
from dp_ros.recording.stored import StoredEpisodes, episode_digest

# EpisodeOutcome.reason of recorder_node's boundary markers (read back by dp-bag-to-store).
MARKER_START, MARKER_STOP, MARKER_DISCARD = "start", "stop", "discard"
# Actions kept while no open episode takes them (covers a start arriving a few steps late).
BACKLOG_ACTIONS = 64


@dataclass
class FinishedEpisode:
    """A closed episode: assembled, or refused with the reason."""

    steps: EpisodeSteps
    assembled: AssembledEpisode | None
    error: str = ""

    @property
    def metadata(self) -> dict[str, Any]:
        return self.steps.metadata


class RecordingSession:
    """Observation buffer + current episode + closing episodes (see the module docstring)."""

    def __init__(self, config: AssemblyConfig) -> None:
        self.config = config
        self.buffer = ObservationBuffer(config)
        self.current: EpisodeSteps | None = None
        self.closing: list[EpisodeSteps] = []
        self._backlog: deque[tuple[int, np.ndarray, int]] = deque(maxlen=BACKLOG_ACTIONS)
        self.actions_received = 0
        self.actions_refused = 0

    @property
    def recording(self) -> bool:
        return self.current is not None

    def _open_episodes(self) -> list[EpisodeSteps]:
        return [*self.closing, *([self.current] if self.current is not None else [])]

    # ---- messages ------------------------------------------------------------------------

    def add_observation(self, key: str, stamp_ns: int, value: np.ndarray) -> None:
        """One observation message; ValueError (refused, counted) by ObservationBuffer.add."""
        self.buffer.add(key, stamp_ns, value)
        for episode in self._open_episodes():
            episode.on_observation(key)

    def add_action(self, stamp_ns: int, action: np.ndarray, source: int = 0) -> bool:
        """One applied action (Da,); True when an episode took it.

        Raises ValueError for an action an episode refused (out of order, wrong size).
        """
        self.actions_received += 1
        for episode in self._open_episodes():
            if episode.accepts(stamp_ns):
                try:
                    episode.add_action(stamp_ns, action, source)
                except ValueError:
                    self.actions_refused += 1
                    raise
                return True
        self._backlog.append((int(stamp_ns), np.asarray(action, dtype=np.float32), int(source)))
        return False

    # ---- boundaries ----------------------------------------------------------------------

    def start(self, start_ns: int, metadata: dict[str, Any] | None = None) -> EpisodeSteps:
        """Open an episode at `start_ns`; ValueError while one is open."""
        if self.current is not None:
            raise ValueError(
                f"an episode is already being recorded (started at {self.current.start_ns} ns)"
            )
        episode = EpisodeSteps(self.buffer, start_ns, metadata)
        earlier = [item for item in self._backlog if item[0] < start_ns]
        for stamp_ns, action, source in sorted(
            (i for i in self._backlog if i[0] >= start_ns), key=lambda item: item[0]
        ):
            try:
                episode.add_action(stamp_ns, action, source)
            except ValueError:
                self.actions_refused += 1
        self._backlog = deque(earlier, maxlen=BACKLOG_ACTIONS)
        self.current = episode
        return episode

    def stop(self, end_ns: int, closed_at: float | None = None, **metadata: Any) -> EpisodeSteps:
        """Close the current episode at `end_ns` (exclusive); ValueError when none is open."""
        episode = self.current
        if episode is None:
            raise ValueError("no episode is being recorded")
        if end_ns <= episode.start_ns:
            end_ns = episode.start_ns + 1  # a stop before the first step keeps nothing
        late = episode.close(end_ns, closed_at, **metadata)
        self._backlog.extend((s.stamp_ns, s.action, s.source) for s in late)
        self.current = None
        self.closing.append(episode)
        return episode

    def discard(self) -> EpisodeSteps | None:
        """Drop the current episode without a trace; returns it (None when none was open)."""
        episode, self.current = self.current, None
        return episode

    # ---- finishing -----------------------------------------------------------------------

    def collect(
        self,
        now: float | None = None,
        timeout: float | None = None,
        force: bool = False,
        grace: float | None = None,
    ) -> list[FinishedEpisode]:
        """Closing episodes that are done, oldest first (order kept for the store).

        Done means settled; or closed at least `grace` ago (caller's clock, like `now`) with
        every step picked (actions had stopped before the stop: nothing is missing but messages
        still in flight, which `grace` covers); or closed at least `timeout` ago; or `force`.
        """
        finished = []
        while self.closing:
            episode = self.closing[0]
            closed_for = (
                now - episode.closed_at
                if now is not None and episode.closed_at is not None
                else None
            )
            timed_out = timeout is not None and closed_for is not None and closed_for >= timeout
            quiet = (
                grace is not None
                and closed_for is not None
                and closed_for >= grace
                and episode.picked_all
            )
            if not (force or timed_out or quiet or episode.settled):
                break
            self.closing.pop(0)
            finished.append(finish(episode))
        return finished


def finish(episode: EpisodeSteps) -> FinishedEpisode:
    """Assemble a closed episode, or say why it is refused."""
    try:
        return FinishedEpisode(episode, episode.assemble())
    except IncompleteEpisodeError as error:
        return FinishedEpisode(episode, None, str(error))


@dataclass(frozen=True)
class SaveResult:
    """What became of a finished episode (the StopEpisode response carries the same)."""

    saved: bool
    message: str
    index: int = -1  # its index in the store when saved
    frames: int = 0


def save_finished(
    store: EpisodeStore,
    finished: FinishedEpisode,
    keep_failed: bool,
    known: StoredEpisodes | None = None,
    unique_seeds: bool = True,
    **extra: Any,
) -> SaveResult:
    """Append a finished episode to `store`, unless it was refused, failed (and not kept), or
    is already stored (`known`: a re-recording or an identical copy; see recording.stored).

    An episode an operator ended (metadata `ended_by` "operator") is saved even when marked
    unsuccessful: the operator asked for it; `keep_failed` concerns automatic outcomes.
    `extra` is added to the episode's metadata. A store that refuses the episode (keys or shapes
    unlike the stored ones) is reported, not raised: the recorder keeps running.
    """
    if finished.assembled is None:
        return SaveResult(False, finished.error)
    episode = finished.assembled
    frames = episode.report.steps
    by_operator = finished.metadata.get("ended_by") == "operator"
    if finished.metadata.get("success") is False and not (keep_failed or by_operator):
        return SaveResult(False, f"not saved: unsuccessful episode ({frames} steps)", -1, frames)
    metadata = {**episode.metadata, **extra, "digest": episode_digest(episode.arrays)}
    if known is not None:
        refusal = known.refusal(metadata, metadata["digest"], seeds=unique_seeds)
        if refusal is not None:
            return SaveResult(False, f"not saved: {refusal}", -1, frames)
    try:
        index = store.append_episode(episode.arrays, metadata)
    except StoreError as error:
        return SaveResult(False, f"the store refused the episode: {error}", -1, frames)
    if known is not None:
        known.add(index, metadata)
    outcome = "success" if metadata.get("success") else "failure"
    seed = metadata.get("seed")
    label = f"saved episode {index} ({outcome}{'' if seed is None else f', seed {seed}'})"
    return SaveResult(True, f"{label}: {episode.report.summary()}", index, frames)


def open_store(path: str | os.PathLike, create: bool = True) -> EpisodeStore:
    """The store at `path` opened for appending; created first when missing and `create`."""
    if not Path(path).exists() and create:
        return EpisodeStore.create(path)
    return EpisodeStore.open(path, mode="a")
