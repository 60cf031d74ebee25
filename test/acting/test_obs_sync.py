"""Stamp-based observation assembly: nearest message per instant, refusals that name the input."""

import numpy as np
import pytest

from dp_ros.acting.obs_sync import NotReady, Observation, ObservationSynchronizer, SyncConfig

MS = 1_000_000
T0 = 1_700_000_000 * 1_000_000_000  # epoch-scale stamps: float seconds would lose precision


def make_sync(**overrides) -> ObservationSynchronizer:
    config = dict(n_obs_steps=2, period_ns=100 * MS, tolerance_ns=20 * MS, max_age_ns=300 * MS)
    config.update(overrides)
    return ObservationSynchronizer(["camera", "pose"], SyncConfig(**config))


def test_picks_nearest_message_per_instant_ending_at_the_lagging_stream():
    sync = make_sync()
    # camera at 10 Hz with an offset of 3 ms; pose at 100 Hz.
    for i in range(5):
        sync.add("camera", T0 + i * 100 * MS + 3 * MS, np.full((2, 2, 3), i, np.uint8))
    for i in range(45):
        sync.add("pose", T0 + i * 10 * MS, np.array([i], np.float32))
    observation = sync.assemble(now_ns=T0 + 450 * MS)
    assert isinstance(observation, Observation)
    # The camera lags (newest 403 ms < pose's 440 ms): instants are 303 ms and 403 ms.
    assert observation.stamps_ns.tolist() == [T0 + 303 * MS, T0 + 403 * MS]
    assert observation.values["camera"][:, 0, 0, 0].tolist() == [3, 4]
    # Pose messages at 300 and 400 ms are nearest to 303 and 403 ms.
    assert observation.values["pose"][:, 0].tolist() == [30.0, 40.0]
    assert observation.source_stamps_ns["pose"].tolist() == [T0 + 300 * MS, T0 + 400 * MS]
    assert observation.values["camera"].shape == (2, 2, 2, 3)
    assert observation.newest_stamp_ns == T0 + 403 * MS


def test_missing_stream_is_named():
    sync = make_sync()
    sync.add("camera", T0, np.zeros(1))
    result = sync.assemble(now_ns=T0)
    assert result == NotReady("no message received yet on pose", "pose")


def test_stale_observation_is_refused_naming_the_lagging_stream():
    sync = make_sync()
    sync.add("camera", T0, np.zeros(1))
    sync.add("pose", T0 + 500 * MS, np.zeros(1))
    result = sync.assemble(now_ns=T0 + 350 * MS)
    assert isinstance(result, NotReady)
    assert result.key == "camera"
    assert "stale observation" in result.reason and "350.0 ms old" in result.reason


def test_gap_beyond_tolerance_is_refused():
    sync = make_sync()
    for i in range(3):
        sync.add("camera", T0 + i * 100 * MS, np.zeros(1))
    # pose has nothing near T0 + 100 ms (nearest at 150 ms: 50 ms away > 20 ms tolerance)
    sync.add("pose", T0 + 150 * MS, np.zeros(1))
    sync.add("pose", T0 + 200 * MS, np.zeros(1))
    result = sync.assemble(now_ns=T0 + 210 * MS)
    assert isinstance(result, NotReady) and result.key == "pose"
    assert "within 20.0 ms" in result.reason and "50.0 ms away" in result.reason


def test_out_of_order_stamp_is_rejected_and_history_unchanged():
    sync = make_sync()
    sync.add("pose", T0 + 10 * MS, np.array([1.0]))
    with pytest.raises(ValueError, match="pose: out-of-order stamp"):
        sync.add("pose", T0 + 5 * MS, np.array([2.0]))
    with pytest.raises(ValueError, match="out-of-order"):
        sync.add("pose", T0 + 10 * MS, np.array([3.0]))
    assert len(sync.histories["pose"]) == 1


def test_unknown_key_and_bad_config_are_named():
    sync = make_sync()
    with pytest.raises(ValueError, match="unknown observation key 'wrist'"):
        sync.add("wrist", T0, np.zeros(1))
    with pytest.raises(ValueError, match="SyncConfig.period_ns=0"):
        SyncConfig(n_obs_steps=2, period_ns=0, tolerance_ns=1, max_age_ns=1)
    with pytest.raises(ValueError, match="history=1: must be >= n_obs_steps"):
        SyncConfig(n_obs_steps=2, period_ns=1, tolerance_ns=1, max_age_ns=1, history=1)


def test_single_step_history_repeats_nothing_and_uses_newest():
    sync = make_sync(n_obs_steps=1)
    sync.add("camera", T0, np.array([7]))
    sync.add("pose", T0 + 5 * MS, np.array([8.0]))
    observation = sync.assemble(now_ns=T0 + 5 * MS)
    assert observation.values["camera"].tolist() == [[7]]
    assert observation.values["pose"].tolist() == [[8.0]]


def test_a_new_episode_pads_with_its_first_observation_and_ignores_older_messages():
    sync = make_sync()
    for i in range(3):
        sync.add("camera", T0 + i * 100 * MS, np.full(1, i))
        sync.add("pose", T0 + i * 100 * MS, np.full(1, 10 + i))
    start = T0 + 300 * MS
    sync.add("camera", start, np.full(1, 100))  # the new episode's, before the news of it
    sync.clear(episode_start_ns=start)
    sync.add("pose", start - 100 * MS, np.full(1, 99))  # in flight from the old episode: ignored
    sync.add("pose", start, np.full(1, 110))
    observation = sync.assemble(now_ns=start)
    assert isinstance(observation, Observation)
    # Both instants are the episode's first (training windows pad the same way at starts).
    assert observation.stamps_ns.tolist() == [start, start]
    assert observation.values["camera"][:, 0].tolist() == [100, 100]
    assert observation.values["pose"][:, 0].tolist() == [110, 110]
    sync.add("camera", start + 100 * MS, np.full(1, 101))
    sync.add("pose", start + 100 * MS, np.full(1, 111))
    observation = sync.assemble(now_ns=start + 100 * MS)
    assert observation.values["pose"][:, 0].tolist() == [110, 111]


def test_stamp_beyond_the_future_tolerance_is_refused_and_does_not_block_later_ones():
    sync = make_sync()
    now = T0 + 1000 * MS
    with pytest.raises(ValueError, match=r"pose: stamp is 3600.000 s ahead .* \(tolerance 0.500"):
        sync.add("pose", now + 3600 * 1000 * MS, np.zeros(1), now_ns=now)
    assert len(sync.histories["pose"]) == 0
    sync.add("pose", now + 400 * MS, np.zeros(1), now_ns=now)  # within the tolerance: kept
    for i in range(3):
        sync.add("camera", now + i * 100 * MS, np.zeros(1), now_ns=now + i * 100 * MS)
    assert len(sync.histories["pose"]) == 1 and len(sync.histories["camera"]) == 3


def test_clock_jumping_back_clears_every_history_and_says_so():
    sync = make_sync()
    for i in range(3):
        now = T0 + i * 100 * MS
        assert sync.add("camera", now, np.zeros(1), now_ns=now) == ""
        assert sync.add("pose", now, np.zeros(1), now_ns=now) == ""
    sync.clear(episode_start_ns=T0 + 200 * MS)
    back = T0 - 60_000 * MS  # a simulator restart: one minute back
    notice = sync.add("pose", back, np.ones(1), now_ns=back)
    assert notice == "clock jumped back 60.200 s: observation histories cleared"
    assert len(sync.histories["camera"]) == 0 and len(sync.histories["pose"]) == 1
    assert sync.episode_start_ns == 0  # the old episode's start would hide the new timeline
    sync.add("camera", back, np.ones(1), now_ns=back)
    for key in ("camera", "pose"):
        sync.add(key, back + 100 * MS, np.ones(1), now_ns=back + 100 * MS)
    observation = sync.assemble(back + 100 * MS)
    assert observation.stamps_ns.tolist() == [back, back + 100 * MS]


def test_assembly_notices_a_clock_jump_and_refuses_future_histories():
    sync = make_sync(n_obs_steps=1)
    sync.add("camera", T0, np.zeros(1))
    sync.add("pose", T0, np.zeros(1))
    assert isinstance(sync.assemble(T0), Observation)
    result = sync.assemble(T0 - 10_000 * MS)
    assert result == NotReady("clock jumped back 10.000 s: observation histories cleared")
    # Messages recorded without a clock, all an hour ahead: assembly names the stream.
    sync.add("camera", T0 + 3600_000 * MS, np.zeros(1))
    sync.add("pose", T0 + 3600_000 * MS, np.zeros(1))
    result = sync.assemble(T0)
    assert isinstance(result, NotReady) and "ahead of this node's clock" in result.reason


def test_a_1khz_stream_is_decimated_so_the_history_still_spans_the_observation_window():
    # To=2 instants 100 ms apart; 64 messages of a 1 kHz stream span only 64 ms.
    def feed(sync):
        for i in range(1000):  # 1 s of pose at 1 kHz, camera at 10 Hz
            stamp = T0 + i * MS
            if sync.would_keep("pose", stamp):
                sync.add("pose", stamp, np.array([i]), now_ns=stamp)
            if i % 100 == 0:
                sync.add("camera", stamp, np.array([i]), now_ns=stamp)
        return sync.assemble(T0 + 999 * MS)

    undecimated = feed(make_sync())
    assert isinstance(undecimated, NotReady) and undecimated.key == "pose"
    sync = make_sync()
    sync.min_interval_ns = 5 * MS
    observation = feed(sync)
    assert isinstance(observation, Observation), observation
    assert observation.source_stamps_ns["pose"].tolist() == [T0 + 800 * MS, T0 + 900 * MS]
    kept = sync.histories["pose"]
    assert len(kept) == 64 and kept.newest_stamp_ns == T0 + 995 * MS  # one per 5 ms
    # A message dropped as too close is not an error; an out-of-order one still is.
    assert not sync.would_keep("pose", T0 + 997 * MS)
    with pytest.raises(ValueError, match="out-of-order"):
        sync.add("pose", T0 + 990 * MS, np.array([0]), now_ns=T0 + 999 * MS)
