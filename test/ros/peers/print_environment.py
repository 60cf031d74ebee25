"""Print the ROS isolation variables this process sees, then check them with the package's rule."""

import json
import os

from dp_ros.testing.ros_isolation import ISOLATION_KEYS, assert_isolated

print("ENV " + json.dumps({key: os.environ.get(key) for key in ISOLATION_KEYS}), flush=True)
assert_isolated()
print("ISOLATED", flush=True)
