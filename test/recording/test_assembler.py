"""Episode assembly with explicit numbers: alignment, dropped frames, stamp jumps, boundaries."""

import numpy as np
import pytest

from dp_msgs.msg import ActionChunk
from dp_ros.recording.assembler import AssemblyConfig, EpisodeSteps
from dp_ros.recording.observation_buffer import ObservationBuffer
from dp_ros.recording.session import RecordingSession

MS = 1_000_000
P = 50 * MS  # control period
CAM, POS = "agentview_image", "robot0_eef_pos"


def config(**overrides) -> AssemblyConfig:
    values = dict(keys=(CAM, POS), period_ns=P, tolerance_ns=20 * MS, history=64)
    values.update(overrides)
    return AssemblyConfig(**values)


def image(value: int) -> np.ndarray:
    return np.full((2, 3, 3), value, dtype=np.uint8)


def action(value: float) -> np.ndarray:
    return np.full(7, value, dtype=np.float32)


def test_each_action_gets_the_nearest_observation_of_each_key():
    session = RecordingSession(config())
    session.start(1000 * MS)
    # Camera at 30 Hz-ish with an offset, position at 100 Hz: stamps in ms.
    for t in (990, 1020, 1055, 1090, 1120, 1160):
        session.add_observation(CAM, t * MS, image(t % 256))
    for t in range(995, 1170, 10):
        session.add_observation(POS, t * MS, np.array([t, 0, 0], np.float32))
    for k, t in enumerate((1000, 1050, 1100, 1150)):
        session.add_action(t * MS, action(k), source=ActionChunk.SOURCE_POLICY)
    session.stop(1200 * MS)
    (finished,) = session.collect(force=True)
    episode = finished.assembled
    assert finished.error == "" and episode is not None
    # Nearest camera frames: 1000->990, 1050->1055, 1100->1090 (10 vs 20), 1150->1160.
    expected = np.array([990, 1055, 1090, 1160]) % 256
    np.testing.assert_array_equal(episode.arrays[CAM][:, 0, 0, 0], expected)
    # Position 5 ms either side of each instant: ties go to the older message.
    np.testing.assert_array_equal(episode.arrays[POS][:, 0], [995, 1045, 1095, 1145])
    np.testing.assert_array_equal(episode.arrays["action"][:, 0], [0, 1, 2, 3])
    assert episode.arrays[CAM].dtype == np.uint8 and episode.arrays[POS].dtype == np.float32
    np.testing.assert_array_equal(episode.stamps_ns, np.array([1000, 1050, 1100, 1150]) * MS)
    report = episode.report
    assert report.steps == 4 and report.dropped_steps == 0 and report.action_gaps == []
    assert report.max_offset_ns == {CAM: 10 * MS, POS: 5 * MS}
    assert episode.metadata["frames"] == 4 and episode.metadata["action_sources"] == {"policy": 4}


def test_a_step_without_an_observation_within_tolerance_refuses_the_episode():
    session = RecordingSession(config())
    session.start(0)
    for t in (0, 50, 100, 200):  # no camera frame for 150: the nearest ones are 50 ms away
        session.add_observation(CAM, t * MS, image(1))
    for t in (0, 50, 100, 150, 200):
        session.add_observation(POS, t * MS, np.zeros(3, np.float32))
        session.add_action(t * MS, action(0))
    session.stop(250 * MS)
    (finished,) = session.collect(force=True)
    assert finished.assembled is None
    assert "1 of 5 steps lack an observation within 20.0 ms" in finished.error
    assert "'agentview_image': 1" in finished.error


def test_dropped_steps_below_the_limit_are_cut_out_and_reported():
    session = RecordingSession(config(max_dropped_steps=1))
    session.start(0)
    for t in (0, 50, 100, 200):
        session.add_observation(CAM, t * MS, image(t // 50))
    for t in (0, 50, 100, 150, 200):
        session.add_observation(POS, t * MS, np.zeros(3, np.float32))
        session.add_action(t * MS, action(t))
    session.stop(250 * MS)
    (finished,) = session.collect(force=True)
    episode = finished.assembled
    np.testing.assert_array_equal(episode.arrays["action"][:, 0], [0, 50, 100, 200])
    assert episode.report.dropped == {CAM: 1} and episode.report.dropped_steps == 1
    # Cutting step 150 out joins 100 and 200: a 100 ms stamp jump at kept index 3.
    assert episode.report.action_gaps == [(3, 100 * MS)]


def test_leading_steps_before_every_stream_delivered_are_trimmed():
    session = RecordingSession(config())
    session.start(0)
    for t in (0, 50, 100, 150):
        session.add_action(t * MS, action(t))  # arrive before any observation
        session.add_observation(POS, t * MS, np.zeros(3, np.float32))
        if t >= 100:  # the camera starts late
            session.add_observation(CAM, t * MS, image(0))
    session.stop(200 * MS)
    (finished,) = session.collect(force=True)
    assert finished.assembled.report.trimmed_leading == 2
    np.testing.assert_array_equal(finished.assembled.arrays["action"][:, 0], [100, 150])


def test_stamp_jumps_are_reported_not_refused():
    session = RecordingSession(config())
    session.start(0)
    stamps = [0, 50, 100, 150, 200, 250, 400, 450]  # the sim paused 100 ms after 250
    for t in stamps:
        session.add_observation(CAM, t * MS, image(0))
        session.add_observation(POS, t * MS, np.zeros(3, np.float32))
        session.add_action(t * MS, action(0))
    session.stop(500 * MS)
    (finished,) = session.collect(force=True)
    report = finished.assembled.report
    assert report.steps == 8 and report.action_gaps == [(6, 150 * MS)]
    # Observation streams: 150 ms after five 50 ms intervals is a jump (> 1.5 x median).
    assert report.observation_gaps == {CAM: 1, POS: 1}


def test_later_message_with_the_same_stamp_supersedes():
    buffer = ObservationBuffer(config())
    assert not buffer.add(CAM, 100, image(1))
    assert buffer.add(CAM, 100, image(2))  # a reset re-publishes the instant it reset at
    assert buffer.pick(CAM, 100)[1][0, 0, 0] == 2
    with pytest.raises(ValueError, match="out-of-order"):
        buffer.add(CAM, 50, image(3))
    with pytest.raises(ValueError, match="shape"):
        buffer.add(CAM, 150, np.zeros((4, 4, 3), np.uint8))
    assert buffer.stats[CAM].refused == 2 and buffer.stats[CAM].superseded == 1


def test_episode_boundaries_are_stamps_not_arrival_order():
    session = RecordingSession(config())
    for t in range(0, 400, 50):
        session.add_observation(CAM, t * MS, image(t // 50))
        session.add_observation(POS, t * MS, np.full(3, t, np.float32))
    session.add_action(0, action(0))  # before any episode: kept in the backlog
    session.add_action(50 * MS, action(50))
    first = session.start(50 * MS, {"task": "lift"})  # picks 50 up from the backlog
    session.add_action(100 * MS, action(100))
    session.add_action(150 * MS, action(150))  # arrives before the stop at 150 ...
    session.stop(150 * MS, success=True)  # ... so it is handed to the next episode
    second = session.start(150 * MS)
    session.add_action(200 * MS, action(200))
    assert first.settled  # closed, last step (100) in, all picked
    (done,) = session.collect()
    np.testing.assert_array_equal(done.assembled.arrays["action"][:, 0], [50, 100])
    assert done.metadata["task"] == "lift" and done.metadata["success"] is True
    assert done.assembled.metadata["start_stamp_ns"] == 50 * MS
    session.stop(250 * MS)
    (done2,) = session.collect(force=True)
    assert done2.steps is second
    np.testing.assert_array_equal(done2.assembled.arrays["action"][:, 0], [150, 200])
    np.testing.assert_array_equal(done2.assembled.arrays[CAM][:, 0, 0, 0], [3, 4])


def test_actions_waiting_for_a_slow_stream_are_picked_when_it_catches_up():
    session = RecordingSession(config())
    session.start(0)
    for t in (0, 50, 100):
        session.add_observation(POS, t * MS, np.full(3, t, np.float32))
        session.add_action(t * MS, action(t))
    session.stop(150 * MS, closed_at=10.0)
    assert session.collect(now=10.5, timeout=2.0) == []  # camera still behind
    for t in (0, 50, 100):
        session.add_observation(CAM, (t + 3) * MS, image(t // 50))
    (done,) = session.collect(now=10.6, timeout=2.0)
    np.testing.assert_array_equal(done.assembled.arrays[CAM][:, 0, 0, 0], [0, 1, 2])


def test_a_silent_stream_refuses_the_episode_and_names_the_key():
    session = RecordingSession(config())
    session.start(0)
    for t in (0, 50):
        session.add_observation(POS, t * MS, np.zeros(3, np.float32))
        session.add_action(t * MS, action(0))
    session.stop(100 * MS, closed_at=0.0)
    (done,) = session.collect(now=5.0, timeout=2.0)  # timed out
    assert done.assembled is None and "no message ever received for ['agentview_image']" in (
        done.error
    )


def test_discard_and_out_of_order_actions():
    session = RecordingSession(config())
    session.start(0)
    session.add_action(100, action(0))
    with pytest.raises(ValueError, match="not newer"):
        session.add_action(100, action(1))
    with pytest.raises(ValueError, match="7 finite values"):
        session.add_action(200, np.full(7, np.nan))
    assert session.discard() is not None and not session.recording
    assert session.collect(force=True) == []


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(tolerance_ns=P), "tolerance_ns=50000000: must be >= 0 and < period_ns"),
        (dict(keys=()), "keys=(): must be non-empty"),
        (dict(keys=(CAM, "action")), "without 'action'"),
        (dict(history=1), "history=1: must be >= 2"),
    ],
)
def test_config_errors_name_field_value_and_rule(overrides, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config(**overrides)


def test_episode_steps_refuse_actions_outside_their_window():
    steps = EpisodeSteps(ObservationBuffer(config()), start_ns=100)
    with pytest.raises(ValueError, match="outside"):
        steps.add_action(50, action(0))


def test_a_stop_long_after_the_last_action_finishes_after_the_grace():
    session = RecordingSession(config())
    session.start(0)
    for t in (0, 50):
        session.add_observation(CAM, t * MS, image(0))
        session.add_observation(POS, t * MS, np.zeros(3, np.float32))
        session.add_action(t * MS, action(0))
    session.stop(1000 * MS, closed_at=5.0)  # actions stopped 950 ms before the stop
    assert session.collect(now=5.1, timeout=2.0, grace=0.3) == []
    (done,) = session.collect(now=5.4, timeout=2.0, grace=0.3)
    assert done.assembled.report.steps == 2
