"""What a checkpoint needs from the robot it drives, recorded in `policy.json` (ROS-free).

The trainer writes `metadata.deployment` (dp_ros.train): the task, each observation key with its
shape and the input stream (topic parameter) that provides it, the control period, and the
action convention. policy_node checks the live topics against it at configure: a mismatch (a Can
checkpoint on the Lift sim: its object state has 14 values, the policy expects 10) is refused
once, naming both shapes, instead of warning about every message.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from dp_ros.acting.inputs import streams_for

# Every recorder and collector here steps at 20 Hz (robosuite control_freq 20, recorder_node's
# control_period): the period a policy's To steps and Ta actions are spaced by.
DEFAULT_CONTROL_PERIOD_S = 0.05
ACTION_CONVENTION = {
    "type": "delta_pose",
    "names": ["dx", "dy", "dz", "drx", "dry", "drz", "gripper"],
    "controller": "OSC_POSE delta, normalised to [-1, 1]: position / 0.05 m, axis-angle / "
    "0.5 rad, in the robot base frame; gripper +1 closes, -1 opens",
}


def deployment_metadata(
    obs_shapes: Mapping[str, Sequence[int]],
    tasks: Sequence[str],
    control_period: float = DEFAULT_CONTROL_PERIOD_S,
) -> dict[str, Any]:
    """The `deployment` block for policy.json.

    obs_shapes: {key: per-step shape} as the dataset stores it (images (H, W, 3), low-dim (D,)).
    tasks: the task of each training episode; one task name when they agree, else all of them.
    """
    streams = streams_for(list(obs_shapes))
    stream_of = {key: name for name, stream in streams.items() for key in stream.keys}
    distinct = sorted({task for task in tasks if task})
    return {
        "task": distinct[0] if len(distinct) == 1 else distinct,
        "observations": {
            key: {"shape": [int(n) for n in shape], "input": f"{stream_of[key]}_topic"}
            for key, shape in obs_shapes.items()
        },
        "control_period": float(control_period),
        "action": dict(ACTION_CONVENTION),
    }


def task_of(metadata: Mapping[str, Any]) -> str:
    """The checkpoint's task for messages ('' when the checkpoint predates this metadata)."""
    task = (metadata.get("deployment") or {}).get("task", "")
    return task if isinstance(task, str) else "/".join(task)


def check_input_shape(key: str, topic: str, got: int, expected: int, task: str = "") -> None:
    """Refuse a low-dim input whose size differs from the checkpoint's, naming both shapes."""
    if got == expected:
        return
    trained = f" (trained on task {task!r})" if task else ""
    raise ValueError(
        f"input shape mismatch: {topic} gives {key} with shape ({got},), but the checkpoint"
        f"{trained} expects ({expected},); is this checkpoint meant for this robot and task?"
    )
