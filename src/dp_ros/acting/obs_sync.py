"""Assemble `n_obs_steps` observations from independently stamped streams (ROS-free).

Each input topic (camera, pose, gripper, ...) arrives at its own rate with its own header stamps.
The policy wants To observations spaced one observation period apart, ending at the newest
instant for which *every* stream has data. For each of those To instants and each stream we take
the message whose stamp is nearest, and refuse when none lies within the tolerance. This is the
alignment the recorder uses too, so training data and acting see observations built the same way.

Times are integer nanoseconds (ROS stamps), never floats: float seconds lose nanoseconds at
epoch-scale values.

Stamps come from other machines and drivers, so they are untrusted: given the receiver's clock
(`now_ns`), `add` refuses a stamp further ahead of it than `future_tolerance_ns` (one message from
a driver with a clock glitch must not become the "newest" stamp that every later, healthy one is
out of order against), and a clock that jumps back by more than that tolerance (a simulator
restart, a bag loop, a new /clock) clears every history, since what they hold now lies in the
future.
"""

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class NotReady:
    """Why no observation can be assembled now, and which input is to blame."""

    reason: str
    key: str = ""


@dataclass(frozen=True)
class Observation:
    """To aligned observations: values[key] is (To, ...); stamps_ns are the To target instants."""

    values: dict[str, np.ndarray]
    stamps_ns: np.ndarray  # (To,) int64, oldest first
    source_stamps_ns: dict[str, np.ndarray]  # key -> (To,) stamps of the messages used

    @property
    def newest_stamp_ns(self) -> int:
        return int(self.stamps_ns[-1])


DEFAULT_FUTURE_TOLERANCE_NS = 500_000_000
CLOCK_JUMPED = "clock jumped back"  # how a notice of a backward clock jump begins


def check_stamp(what: str, stamp_ns: int, now_ns: int, future_tolerance_ns: int) -> None:
    """Raise ValueError, naming `what` and by how much, for a stamp too far ahead of `now_ns`."""
    ahead_ns = stamp_ns - now_ns
    if ahead_ns > future_tolerance_ns:
        raise ValueError(
            f"{what}: stamp is {ahead_ns / 1e9:.3f} s ahead of this node's clock (tolerance "
            f"{future_tolerance_ns / 1e9:.3f} s); refused"
        )


class StampedHistory:
    """The last few (stamp, value) pairs of one stream, stamps strictly increasing."""

    def __init__(self, key: str, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity={capacity} for {key!r}: must be >= 1")
        self.key = key
        self._stamps: deque[int] = deque(maxlen=capacity)
        self._values: deque[np.ndarray] = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self._stamps)

    @property
    def newest_stamp_ns(self) -> int | None:
        return self._stamps[-1] if self._stamps else None

    def add(self, stamp_ns: int, value: np.ndarray) -> None:
        """Append a message; raises ValueError for a stamp not newer than the newest one."""
        newest = self.newest_stamp_ns
        if newest is not None and stamp_ns <= newest:
            raise ValueError(
                f"{self.key}: out-of-order stamp {stamp_ns} ns is not newer than {newest} ns"
            )
        self._stamps.append(int(stamp_ns))
        self._values.append(value)

    def nearest(self, stamp_ns: int) -> tuple[int, np.ndarray]:
        """The (stamp, value) whose stamp is nearest to `stamp_ns` (ties: the older one)."""
        stamps = np.fromiter(self._stamps, dtype=np.int64, count=len(self._stamps))
        index = int(np.argmin(np.abs(stamps - stamp_ns)))
        return int(stamps[index]), self._values[index]

    def clear(self) -> None:
        self._stamps.clear()
        self._values.clear()

    def drop_before(self, stamp_ns: int) -> None:
        """Forget the messages stamped before `stamp_ns` (all of them for a later stamp)."""
        while self._stamps and self._stamps[0] < stamp_ns:
            self._stamps.popleft()
            self._values.popleft()


@dataclass(frozen=True)
class SyncConfig:
    """How observations are assembled.

    n_obs_steps: To, the number of observation instants per policy input.
    period_ns: time between consecutive observation instants (the policy's observation period).
    tolerance_ns: how far a message's stamp may lie from an instant and still be used for it.
    max_age_ns: the newest instant may be at most this old when assembling, else it is stale.
    history: messages kept per stream (enough to cover To periods at the fastest stream's rate).
    """

    n_obs_steps: int
    period_ns: int
    tolerance_ns: int
    max_age_ns: int
    history: int = 64

    def __post_init__(self) -> None:
        checks = [
            ("n_obs_steps", self.n_obs_steps >= 1, ">= 1"),
            ("period_ns", self.period_ns > 0, "> 0"),
            ("tolerance_ns", 0 <= self.tolerance_ns, ">= 0"),
            ("max_age_ns", self.max_age_ns > 0, "> 0"),
            ("history", self.history >= self.n_obs_steps, ">= n_obs_steps"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"SyncConfig.{name}={getattr(self, name)!r}: must be {rule}")


class ObservationSynchronizer:
    """Per-stream histories plus the rule that turns them into one To-step observation."""

    def __init__(self, keys: list[str] | tuple[str, ...], config: SyncConfig) -> None:
        if not keys:
            raise ValueError("ObservationSynchronizer needs at least one key")
        self.config = config
        self.histories = {key: StampedHistory(key, config.history) for key in keys}
        self.episode_start_ns = 0
        # How far ahead of the receiver's clock a stamp may be (see the module docstring).
        self.future_tolerance_ns = DEFAULT_FUTURE_TOLERANCE_NS
        # Keep at most one message per this interval per stream (0: all). A 1 kHz pose
        # stream would otherwise fill the history with 64 ms of messages, too short for To
        # instants a period apart, and cost a conversion per message. The message used for an
        # instant is then at most this much further from it than the nearest one received.
        self.min_interval_ns = 0
        self._latest_now_ns: int | None = None

    @property
    def keys(self) -> list[str]:
        return list(self.histories)

    def add(self, key: str, stamp_ns: int, value: np.ndarray, now_ns: int | None = None) -> str:
        """Record one message; ValueError for an unknown key or an out-of-order stamp, and, given
        the receiver's clock `now_ns`, for a stamp beyond the future tolerance.

        Returns what happened to the histories besides ("" normally; a sentence when the clock
        jumped back and they were cleared). A message from before the current episode's start
        (still in flight at a reset) is ignored: it belongs to the episode that ended."""
        history = self.histories.get(key)
        if history is None:
            raise ValueError(f"unknown observation key {key!r}; expected one of {self.keys}")
        notice = ""
        if now_ns is not None:
            notice = self.follow_clock(now_ns)
            check_stamp(key, stamp_ns, now_ns, self.future_tolerance_ns)
        if stamp_ns < self.episode_start_ns or not self.would_keep(key, stamp_ns):
            return notice
        history.add(stamp_ns, value)
        return notice

    def would_keep(self, key: str, stamp_ns: int) -> bool:
        """False for a message `add` would drop as too close after the last one kept (so a
        caller can skip converting it); True otherwise, refusals included (add names them)."""
        history = self.histories.get(key)
        newest = history.newest_stamp_ns if history is not None else None
        if newest is None or self.min_interval_ns <= 0 or stamp_ns <= newest:
            return True
        return stamp_ns - newest >= self.min_interval_ns

    def follow_clock(self, now_ns: int) -> str:
        """Note the receiver's clock; if it went back by more than the future tolerance, clear
        every history (and the episode start) and say so, else return ""."""
        latest = self._latest_now_ns
        if latest is not None and now_ns < latest - self.future_tolerance_ns:
            self.clear()
            self._latest_now_ns = now_ns
            jump_s = (latest - now_ns) / 1e9
            return f"{CLOCK_JUMPED} {jump_s:.3f} s: observation histories cleared"
        self._latest_now_ns = now_ns if latest is None else max(latest, now_ns)
        return ""

    def clear(self, episode_start_ns: int | None = None) -> None:
        """Forget every message; with `episode_start_ns`, a new episode begins at that instant
        and only the messages from before it are forgotten (the new episode's first ones may
        arrive before the news that it began)."""
        for history in self.histories.values():
            if episode_start_ns is None:
                history.clear()
            else:
                history.drop_before(episode_start_ns)
        self.episode_start_ns = episode_start_ns or 0

    def observed_through_ns(self) -> int | None:
        """The newest instant every stream has reached (None: a stream has no message yet)."""
        lagging_key = self._lagging_key()
        return None if lagging_key is None else self.histories[lagging_key].newest_stamp_ns

    def _lagging_key(self) -> str | None:
        """The stream whose newest message is the oldest (None: a stream has none yet)."""
        if any(not len(history) for history in self.histories.values()):
            return None
        return min(self.histories, key=lambda k: self.histories[k].newest_stamp_ns)

    def assemble(self, now_ns: int) -> Observation | NotReady:
        """The To-step observation ending at the newest instant every stream covers."""
        jumped = self.follow_clock(now_ns)
        if jumped:
            return NotReady(jumped)
        for key, history in self.histories.items():
            if not len(history):
                return NotReady(f"no message received yet on {key}", key)
        # The newest instant all streams have reached is set by the stream that lags most.
        lagging_key = self._lagging_key()
        anchor = self.histories[lagging_key].newest_stamp_ns
        age = now_ns - anchor
        if -age > self.future_tolerance_ns:
            return NotReady(
                f"every stream is ahead of this node's clock: newest {lagging_key} message is "
                f"{-age / 1e9:.3f} s in the future",
                lagging_key,
            )
        if age > self.config.max_age_ns:
            return NotReady(
                f"stale observation: newest {lagging_key} message is {age / 1e6:.1f} ms old "
                f"(limit {self.config.max_age_ns / 1e6:.1f} ms)",
                lagging_key,
            )
        offsets = np.arange(self.config.n_obs_steps - 1, -1, -1, dtype=np.int64)
        # Instants before the episode began repeat its first one, as training windows are
        # padded at episode starts: the policy acts from the first observation on.
        instants = np.maximum(anchor - offsets * self.config.period_ns, self.episode_start_ns)
        values: dict[str, np.ndarray] = {}
        sources: dict[str, np.ndarray] = {}
        for key, history in self.histories.items():
            picked = [history.nearest(int(instant)) for instant in instants]
            used = np.array([stamp for stamp, _ in picked], dtype=np.int64)
            worst = int(np.max(np.abs(used - instants)))
            if worst > self.config.tolerance_ns:
                return NotReady(
                    f"no {key} message within {self.config.tolerance_ns / 1e6:.1f} ms of an "
                    f"observation instant (nearest is {worst / 1e6:.1f} ms away)",
                    key,
                )
            values[key] = np.stack([value for _, value in picked])
            sources[key] = used
        return Observation(values=values, stamps_ns=instants, source_stamps_ns=sources)
