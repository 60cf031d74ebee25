"""Observation and action keys shared by the dataset, the model, the simulator and the nodes.

Defined once here (DESIGN.md style rule 9). The names follow robomimic/robosuite so that
datasets move between projects without renaming.
"""

# Cameras: uint8 images, (H, W, C) in stores and messages, (C, H, W) inside the model.
AGENTVIEW_IMAGE = "agentview_image"
WRIST_IMAGE = "robot0_eye_in_hand_image"
CAMERA_KEYS = (AGENTVIEW_IMAGE, WRIST_IMAGE)

# Low-dimensional state, float32.
EEF_POS = "robot0_eef_pos"  # (3,) metres, world frame
EEF_QUAT = "robot0_eef_quat"  # (4,) xyzw, as robosuite reports it
GRIPPER_QPOS = "robot0_gripper_qpos"  # (2,) finger joint positions
OBJECT_STATE = "object"  # (Do,) task object state, simulation only
ROBOT_STATE_KEYS = (EEF_POS, EEF_QUAT, GRIPPER_QPOS)

LOW_DIM_SIZES = {EEF_POS: 3, EEF_QUAT: 4, GRIPPER_QPOS: 2}

# Actions: 7-D delta pose + gripper, float32.
ACTION = "action"
ACTION_DIM = 7
ACTION_NAMES = ("dx", "dy", "dz", "drx", "dry", "drz", "gripper")


def is_image_key(key: str) -> bool:
    """True for camera keys (by the robomimic naming convention: they end in ``_image``)."""
    return key.endswith("_image")
