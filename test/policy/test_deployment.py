"""Deployment metadata: what a checkpoint needs from the robot, and the mismatch message."""

import pytest

from dp_ros.keys import AGENTVIEW_IMAGE, EEF_POS, EEF_QUAT, OBJECT_STATE
from dp_ros.policy.deployment import check_input_shape, deployment_metadata


def test_metadata_names_task_shapes_inputs_period_and_action():
    meta = deployment_metadata(
        {AGENTVIEW_IMAGE: (84, 84, 3), EEF_POS: (3,), EEF_QUAT: (4,), OBJECT_STATE: (10,)},
        tasks=["can", "can", ""],
        control_period=0.05,
    )
    assert meta["task"] == "can"
    assert meta["observations"][OBJECT_STATE] == {"shape": [10], "input": "object_topic"}
    assert meta["observations"][AGENTVIEW_IMAGE] == {
        "shape": [84, 84, 3],
        "input": "agentview_topic",
    }
    assert meta["observations"][EEF_QUAT]["input"] == "eef_pose_topic"
    assert meta["control_period"] == 0.05
    assert meta["action"]["names"][-1] == "gripper" and len(meta["action"]["names"]) == 7
    assert deployment_metadata({EEF_POS: (3,)}, ["lift", "can"])["task"] == ["can", "lift"]


def test_mismatch_names_topic_and_both_shapes():
    check_input_shape(OBJECT_STATE, "/sim/object_state", 10, 10, "can")  # no error
    with pytest.raises(ValueError) as error:
        check_input_shape(OBJECT_STATE, "/sim/object_state", 14, 10, "can")
    message = str(error.value)
    assert "/sim/object_state gives object with shape (14,)" in message
    assert "(trained on task 'can') expects (10,)" in message
