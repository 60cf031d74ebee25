"""Turn any ROS message into plain JSON-able data, field by field (no rosidl_runtime_py here)."""

import array

import numpy as np


def to_plain(value):
    """Recursively convert a message (or field value) into dicts, lists and scalars."""
    if hasattr(value, "get_fields_and_field_types"):
        return {
            name: to_plain(getattr(value, name)) for name in value.get_fields_and_field_types()
        }
    if isinstance(value, (list, tuple, array.array, np.ndarray)):
        return [to_plain(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
