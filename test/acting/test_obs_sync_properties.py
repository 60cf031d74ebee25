"""Property-based tests of the observation synchroniser (hypothesis): random stamp sequences with
clock jumps, duplicates, future glitches and gaps never make it raise anything but a refusal,
never give an observation built from a message further than the tolerance from its instant, and
never keep it from assembling once healthy data flows again."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dp_ros.acting.obs_sync import Observation, ObservationSynchronizer, SyncConfig

MS = 1_000_000
T0 = 1_700_000_000 * 1_000_000_000
PERIOD, TOLERANCE = 50 * MS, 20 * MS
KEYS = ("camera", "pose")

# One event: (key index, clock step in ms (negative: the clock jumps back), stamp offset from
# the clock in ms (positive: from the future, negative: late), whether to try assembling).
events = st.lists(
    st.tuples(
        st.integers(0, len(KEYS) - 1),
        st.one_of(st.integers(0, 60), st.integers(-120_000, 0), st.just(0)),
        st.one_of(st.integers(-200, 5), st.integers(500, 3_600_000), st.just(0)),
        st.booleans(),
    ),
    max_size=80,
)


def make_sync() -> ObservationSynchronizer:
    config = SyncConfig(
        n_obs_steps=2, period_ns=PERIOD, tolerance_ns=TOLERANCE, max_age_ns=300 * MS
    )
    return ObservationSynchronizer(list(KEYS), config)


def check_observation(observation: Observation) -> None:
    for key in KEYS:
        gaps = np.abs(observation.source_stamps_ns[key] - observation.stamps_ns)
        assert int(gaps.max()) <= TOLERANCE, (key, gaps)


@settings(max_examples=150, deadline=None)
@given(events)
def test_random_stamps_never_raise_never_assemble_across_gaps_and_recover(sequence):
    sync = make_sync()
    now = T0
    for key_index, step_ms, offset_ms, assemble in sequence:
        now += step_ms * MS
        stamp = now + offset_ms * MS
        try:
            sync.add(KEYS[key_index], stamp, np.array([stamp]), now_ns=now)
        except ValueError:
            pass  # a refusal (out of order, duplicate, from the future) is the contract
        if assemble:
            result = sync.assemble(now)
            if isinstance(result, Observation):
                check_observation(result)
                # The values are the messages whose stamps are reported.
                for key in KEYS:
                    assert (result.values[key][:, 0] == result.source_stamps_ns[key]).all()
    # Healthy data again, on a clock that keeps going: acting must resume within a few periods
    # once the glitches stop (at most the future tolerance plus the observation window).
    recovered = False
    for _ in range(40):
        now += PERIOD
        for key in KEYS:
            try:
                sync.add(key, now, np.array([now]), now_ns=now)
            except ValueError:
                pass
        result = sync.assemble(now)
        if isinstance(result, Observation):
            check_observation(result)
            recovered = True
            break
    assert recovered, result
