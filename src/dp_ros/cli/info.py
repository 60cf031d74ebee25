"""Environment report (`python -m dp_ros.cli.info`): what is installed, and how to go on."""

import importlib
import importlib.metadata
import sys

# (import name, distribution name) of what the stack runs on.
COMPONENTS = [
    ("torch", "torch"),
    ("numpy", "numpy"),
    ("diffusers", "diffusers"),
    ("zarr", "zarr"),
    ("lightning", "lightning"),
    ("robosuite", "robosuite"),
    ("mujoco", "mujoco"),
    ("cv2", "opencv-python"),
    ("rosbags", "rosbags"),
    ("rclpy", "ros-rclpy"),
    ("dp_msgs", None),
    ("dp_ros", "dp_ros"),
]

NEXT_STEPS = """\
Next:
  scripts/test.sh                 run the test suite (lint + pytest, ROS isolated to localhost)
  colcon build --base-paths <repo> <repo>/src/dp_msgs   build inside a ROS 2 workspace
See README.md for the commands of each part (policy, data, training, simulation, nodes)."""


def component_version(import_name: str, dist_name: str | None) -> str:
    """The installed version of one component, or why it is not usable."""
    try:
        module = importlib.import_module(import_name)
    except Exception as error:  # noqa: BLE001 - report any import failure, it is the point
        return f"NOT USABLE ({type(error).__name__}: {error})"
    if dist_name:
        try:
            return importlib.metadata.version(dist_name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return getattr(module, "__version__", "installed")


def main() -> int:
    print(f"dp_ros environment (Python {sys.version.split()[0]}, {sys.prefix})")
    broken = 0
    for import_name, dist_name in COMPONENTS:
        version = component_version(import_name, dist_name)
        broken += version.startswith("NOT USABLE")
        print(f"  {import_name:<10} {version}")
    import torch

    device = "cuda (" + torch.cuda.get_device_name(0) + ")" if torch.cuda.is_available() else "cpu"
    print(f"  torch device: {device}")
    print(NEXT_STEPS)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
