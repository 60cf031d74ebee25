"""rosbag2 (MCAP and sqlite3) written here -> dp-bag-to-store -> the same store as a direct feed.

The messages are real rclpy messages, serialised by rclpy into the bag, deserialised by rosbags
in the converter: the reference store is built by feeding the very same rclpy messages to the
converter's session directly (what recorder_node does with live messages).
"""

import json

import numpy as np
import pytest
from rclpy.serialization import serialize_message
from rosbags.rosbag2 import StoragePlugin, Writer

from dp_msgs.msg import EpisodeOutcome
from dp_ros import conversions as conv
from dp_ros.acting.chunk_timing import TimedChunk
from dp_ros.data.store import EpisodeStore
from dp_ros.keys import AGENTVIEW_IMAGE, EEF_POS, OBJECT_STATE
from dp_ros.recording.bag_convert import (
    SIM_KEYS,
    SIM_TOPICS,
    BagConverter,
    ConvertOptions,
    convert_bag,
    main,
    make_typestore,
)
from dp_ros.recording.session import open_store

SIM = ConvertOptions(topics=dict(SIM_TOPICS), keys=SIM_KEYS)
MS = 1_000_000
P = 50 * MS
T0 = 1000 * 1_000_000_000
TYPES = {
    "/agentview/image_raw": "sensor_msgs/msg/Image",
    "/wrist/image_raw": "sensor_msgs/msg/Image",
    "/eef_pose": "geometry_msgs/msg/PoseStamped",
    "/gripper/joint_states": "sensor_msgs/msg/JointState",
    "/sim/object_state": "sensor_msgs/msg/JointState",
    "/sim/applied_action": "dp_msgs/msg/ActionChunk",
    "/sim/episode_outcome": "dp_msgs/msg/EpisodeOutcome",
    "/recorder/episode_marker": "dp_msgs/msg/EpisodeOutcome",
}


def observation_messages(step: int, stamp_ns: int, episode: int) -> list[tuple[str, object]]:
    rng = np.random.default_rng(1000 * episode + step)
    angle = 0.1 * step
    quaternion = np.array([0.0, 0.0, np.sin(angle / 2), np.cos(angle / 2)])
    images = rng.integers(0, 256, (2, 84, 84, 3), np.uint8)
    fingers, objects = ["f1", "f2"], [f"o{i}" for i in range(10)]
    return [
        ("/agentview/image_raw", conv.rgb_to_image(images[0], stamp_ns, "a")),
        ("/wrist/image_raw", conv.rgb_to_image(images[1], stamp_ns, "w")),
        ("/eef_pose", conv.arrays_to_pose([0.01 * step, episode, 1], quaternion, stamp_ns, "w")),
        ("/gripper/joint_states", conv.array_to_joint_state([0.04, -0.04], stamp_ns, fingers)),
        ("/sim/object_state", conv.array_to_joint_state(np.arange(10) + step, stamp_ns, objects)),
    ]


def applied(stamp_ns: int, step: int, episode: int):
    row = np.array([[step / 100, episode, 0, 0, 0, 0, 1]], np.float32)
    return conv.timed_chunk_to_msg(TimedChunk(stamp_ns, P, row), stamp_ns, 2, "applied", source=3)


def outcome(stamp_ns: int, success: bool, reason: str, steps: int, episode: int, topic=None):
    msg = EpisodeOutcome(task="lift", episode=episode, success=success, steps=steps)
    msg.reason = reason
    msg.seed, msg.next_seed = 40 + episode, 41 + episode
    msg.header.stamp = conv.ns_to_stamp(stamp_ns)
    return (topic or "/sim/episode_outcome", msg)


def sim_messages(lengths=(3, 6, 5, 4), successes=(True, True, False, True)):
    """What a sim publishes: a partial episode, then outcome-delimited ones, then a partial one.

    Like sim_node, the observation at t is published, then the action applied at t; an episode
    ends with the outcome stamped at the next instant, which is also the reset observation's.
    """
    messages, t = [], T0
    for episode, (length, success) in enumerate(zip(lengths, successes, strict=True)):
        for step in range(length):
            messages += observation_messages(step, t, episode)
            messages.append(("/sim/applied_action", applied(t, step, episode)))
            t += P
        if episode < len(lengths) - 1:  # the last episode is cut by the end of the recording
            reason = "success" if success else "horizon"
            messages.append(outcome(t, success, reason, length, episode))
    return messages


def write_bag(path, messages, storage: StoragePlugin) -> None:
    typestore = make_typestore()
    with Writer(path, version=9, storage_plugin=storage) as writer:
        connections = {
            topic: writer.add_connection(topic, msgtype, typestore=typestore)
            for topic, msgtype in TYPES.items()
        }
        for i, (topic, msg) in enumerate(messages):
            writer.write(connections[topic], T0 + i * 1000, serialize_message(msg))


def direct_store(path, messages, boundaries: str, source: str):
    """The reference: the same rclpy messages fed to the converter's session without a bag."""
    store = open_store(path)
    converter = BagConverter(store, SIM, source)
    converter.begin(boundaries)
    for topic, msg in messages:
        converter.on_message(topic, TYPES[topic], msg)
    converter.end()
    store.close()
    return converter.report


def assert_same_store(a_path, b_path) -> None:
    a, b = EpisodeStore.open(a_path), EpisodeStore.open(b_path)
    assert a.n_episodes == b.n_episodes and a.keys == b.keys
    np.testing.assert_array_equal(a.episode_ends, b.episode_ends)
    for i in range(a.n_episodes):
        ea, eb = a.episode(i), b.episode(i)
        for key in a.keys:
            assert ea[key].dtype == eb[key].dtype
            np.testing.assert_array_equal(ea[key], eb[key], err_msg=key)
        assert a.episode_metadata(i) == b.episode_metadata(i)


@pytest.mark.parametrize("storage", [StoragePlugin.MCAP, StoragePlugin.SQLITE3])
def test_bag_converts_to_the_store_a_direct_feed_makes(tmp_path, storage):
    messages = sim_messages()
    bag = tmp_path / "demo_bag"
    write_bag(bag, messages, storage)
    report = convert_bag(bag, tmp_path / "from_bag", SIM, progress=False)
    direct = direct_store(tmp_path / "direct", messages, "outcomes", str(bag))
    assert_same_store(tmp_path / "from_bag", tmp_path / "direct")
    # Episodes 1 (6 steps, success) and 3 (partial) ... only complete, successful ones are kept:
    # episode 0 began before the bag, 2 failed, 3 has no outcome.
    assert report.boundaries == "outcomes" and report.skipped_partial == 2
    assert [e["saved"] for e in report.episodes] == [True, False]
    assert report.topic_counts["/sim/applied_action"] == 18 and not report.decode_errors
    assert direct.saved == 1
    store = EpisodeStore.open(tmp_path / "from_bag")
    episode, metadata = store.episode(0), store.episode_metadata(0)
    assert store.n_episodes == 1 and len(episode["action"]) == 6
    np.testing.assert_allclose(episode["action"][:, 0], np.arange(6) / 100)
    np.testing.assert_allclose(episode["action"][:, 1], 1.0)  # episode 1's actions
    np.testing.assert_allclose(episode[EEF_POS][:, 0], 0.01 * np.arange(6), atol=1e-7)
    np.testing.assert_array_equal(episode[OBJECT_STATE][:, 0], np.arange(6))
    expected_first = observation_messages(0, T0 + 3 * P, 1)[0][1]
    np.testing.assert_array_equal(
        episode[AGENTVIEW_IMAGE][0],
        np.frombuffer(expected_first.data, np.uint8).reshape(84, 84, 3),
    )
    assert metadata["success"] is True and metadata["sim_steps"] == 6 == metadata["frames"]
    assert metadata["start_stamp_ns"] == T0 + 3 * P and metadata["task"] == "lift"


def test_markers_take_precedence_and_discard_leaves_nothing(tmp_path):
    messages = sim_messages(lengths=(4, 4, 4), successes=(True, True, True))
    t = T0
    marked = []
    for topic, msg in messages:
        stamp = conv.stamp_to_ns(msg.header.stamp)
        if topic == "/sim/applied_action" and stamp == T0 + P:
            marked.append(outcome(stamp, False, "start", 0, 0, "/recorder/episode_marker"))
        if topic == "/sim/applied_action" and stamp == T0 + 6 * P:
            marked.append(outcome(stamp, True, "stop", 0, 0, "/recorder/episode_marker"))
            marked.append(outcome(stamp, False, "start", 0, 0, "/recorder/episode_marker"))
        marked.append((topic, msg))
    marked.append(outcome(t + 11 * P, False, "discard", 0, 0, "/recorder/episode_marker"))
    write_bag(tmp_path / "marked", marked, StoragePlugin.MCAP)
    report = convert_bag(tmp_path / "marked", tmp_path / "store", SIM, False)
    assert report.boundaries == "markers"
    store = EpisodeStore.open(tmp_path / "store")
    # One episode: steps at T0+P .. T0+5P (5 steps across the sim's own outcome at 4P).
    assert store.n_episodes == 1 and store.n_frames == 5
    assert store.episode_metadata(0)["start_stamp_ns"] == T0 + P


def test_command_line_reports_counts_and_refuses_a_bag_without_actions(tmp_path, capsys):
    messages = sim_messages()
    write_bag(tmp_path / "bag", messages, StoragePlugin.SQLITE3)
    args = [str(tmp_path / "bag"), str(tmp_path / "store"), "--sim", "--no-progress"]
    code = main([*args, "--keep-failed"])
    out = capsys.readouterr().out
    assert code == 0
    assert "/agentview/image_raw" in out and "episodes found: 2, saved: 2" in out
    store = EpisodeStore.open(tmp_path / "store")
    assert [store.episode_metadata(i)["success"] for i in range(2)] == [True, False]
    assert json.dumps(store.episode_metadata(1))  # metadata is plain JSON
    only_images = [(topic, msg) for topic, msg in messages if topic.endswith("image_raw")]
    write_bag(tmp_path / "no_actions", only_images, StoragePlugin.MCAP)
    code = main([str(tmp_path / "no_actions"), str(tmp_path / "store2"), "--sim", "--no-progress"])
    assert code == 2 and "no messages on the action topic" in capsys.readouterr().err
    # The same bag again: refused, store untouched; with --append, identical episodes skipped.
    code = main([*args, "--keep-failed"])
    assert code == 2 and "already holds episodes converted from" in capsys.readouterr().err
    code = main([*args, "--keep-failed", "--append"])
    out = capsys.readouterr().out
    assert code == 1 and "identical to stored episode 0" in out
    assert EpisodeStore.open(tmp_path / "store").n_episodes == 2


def test_seeds_and_task_are_stored_and_an_empty_result_writes_nothing(tmp_path, capsys):
    write_bag(tmp_path / "bag", sim_messages(), StoragePlugin.MCAP)
    store_path = tmp_path / "store"
    # Robot defaults: the sim's action topic is not the robot's -> refused, nothing written.
    assert main([str(tmp_path / "bag"), str(store_path), "--no-progress"]) == 2
    assert "no messages on the action topic '/applied_action'" in capsys.readouterr().err
    assert not store_path.exists()
    # Only failures, not kept: zero episodes -> exit 1, no store left behind.
    failing = sim_messages(lengths=(3, 4, 2), successes=(True, False, True))
    write_bag(tmp_path / "failing", failing, StoragePlugin.MCAP)
    assert main([str(tmp_path / "failing"), str(store_path), "--sim", "--no-progress"]) == 1
    assert "no episode saved" in capsys.readouterr().err and not store_path.exists()
    args = [str(tmp_path / "bag"), str(store_path), "--sim", "--no-progress", "--task", "cube"]
    assert main(args) == 0
    metadata = EpisodeStore.open(store_path).episode_metadata(0)
    # Episode 1 began at episode 0's outcome, whose next_seed is 41; the outcome names a task.
    assert metadata["seed"] == 41 and metadata["task"] == "lift"
    assert metadata["bag"] == str((tmp_path / "bag").resolve())


def test_help_states_the_bag_contract(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for expected in ("dp_msgs/ActionChunk, ONE row", "--sim", "/applied_action", "--append"):
        assert expected in text, expected


def _write_raw_bag(path, messages, storage, types=None, truncate_index=None) -> None:
    """write_bag with other topic types, or with message #truncate_index cut short."""
    typestore = make_typestore()
    with Writer(path, version=9, storage_plugin=storage) as writer:
        connections = {
            topic: writer.add_connection(topic, msgtype, typestore=typestore)
            for topic, msgtype in {**TYPES, **(types or {})}.items()
        }
        for i, (topic, msg) in enumerate(messages):
            raw = serialize_message(msg)
            if i == truncate_index:
                raw = raw[: len(raw) // 3]
            writer.write(connections[topic], T0 + i * 1000, raw)


def _bad_bag_cli(capsys, bag, store) -> tuple[int, str]:
    code = main([str(bag), str(store), "--sim", "--no-progress"])
    return code, capsys.readouterr().err.strip()


def test_corrupt_bags_end_in_one_line_naming_bag_topic_and_problem(tmp_path, capsys):
    messages = sim_messages(lengths=(2, 3), successes=(True, True))
    # A message cut short (index 2: the first eef pose).
    truncated = tmp_path / "truncated"
    _write_raw_bag(truncated, messages, StoragePlugin.MCAP, truncate_index=2)
    code, err = _bad_bag_cli(capsys, truncated, tmp_path / "a.zarr")
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"{truncated}: message #" in err and "on /eef_pose" in err, err
    assert "does not deserialize" in err, err
    # A topic carrying another type than expected.
    retyped = tmp_path / "retyped"
    mixed = [
        (topic, conv.array_to_joint_state([1.0], 0, ["x"]) if topic == "/eef_pose" else msg)
        for topic, msg in messages
    ]
    _write_raw_bag(
        retyped, mixed, StoragePlugin.MCAP, types={"/eef_pose": TYPES["/sim/object_state"]}
    )
    code, err = _bad_bag_cli(capsys, retyped, tmp_path / "b.zarr")
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "topic /eef_pose carries sensor_msgs/msg/JointState; expected geometry_msgs" in err
    # A sqlite3 bag with pages in the middle of its database overwritten: it opens, and
    # reading its messages fails (apsw.CorruptError).
    corrupt = tmp_path / "corrupt"
    write_bag(corrupt, messages, StoragePlugin.SQLITE3)
    database = next(corrupt.glob("*.db3"))
    data = bytearray(database.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8192] = b"\xff" * 8192
    database.write_bytes(bytes(data[: len(data)]))
    code, err = _bad_bag_cli(capsys, corrupt, tmp_path / "c.zarr")
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"{corrupt}: corrupt sqlite3 storage (database disk image is malformed)" in err, err


def test_a_bag_refused_part_way_adds_nothing_to_the_store(tmp_path, capsys):
    """Episodes saved before the corrupt message are rolled back: the store reads as before."""
    store_path = tmp_path / "store"
    good = sim_messages(lengths=(2, 3, 2), successes=(True, True, True))
    write_bag(tmp_path / "good", good, StoragePlugin.MCAP)
    assert main([str(tmp_path / "good"), str(store_path), "--sim", "--no-progress"]) == 0
    with EpisodeStore.open(store_path) as store:
        before = [store.episode(i) for i in range(store.n_episodes)]
        before_metadata = store.all_metadata()
    messages = sim_messages()
    late = tmp_path / "late"  # corrupt only at its very end, after two episodes were saved
    _write_raw_bag(late, messages, StoragePlugin.MCAP, truncate_index=len(messages) - 1)
    for target in (store_path, tmp_path / "new.zarr"):
        code, err = _bad_bag_cli(capsys, late, target)
        assert code == 2 and "does not deserialize" in err, err
    assert not (tmp_path / "new.zarr").exists()
    with EpisodeStore.open(store_path, mode="a") as store:  # a writer's open drops nothing more
        assert store.all_metadata() == before_metadata
        for index, episode in enumerate(before):
            got = store.episode(index)
            assert got.keys() == episode.keys()
            for key in episode:
                np.testing.assert_array_equal(got[key], episode[key])
        assert all(store.array(key).shape[0] == store.n_frames for key in store.keys)
