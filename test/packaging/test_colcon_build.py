"""The ROS-native path: `colcon build` in a workspace holding this repository builds both packages.

Runs colcon (from PyPI) against the venv's ROS 2 wheels as the underlay, the way a user's
/opt/ros/<distro> would be used, and imports dp_msgs from the resulting install space.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix)
# What a workspace needs of the repository: the two packages, nothing built.
PACKAGE_PATHS = ["package.xml", "setup.py", "setup.cfg", "resource", "src", "launch", "config"]
IGNORED = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")


@pytest.fixture(scope="module")
def colcon_workspace(tmp_path_factory) -> Path:
    workspace = tmp_path_factory.mktemp("colcon_ws")
    checkout = workspace / "src" / "dp_ros"
    checkout.mkdir(parents=True)
    for name in PACKAGE_PATHS:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, checkout / name, ignore=IGNORED)
        else:
            shutil.copy2(source, checkout / name)
    env = dict(os.environ)
    env.update(
        AMENT_PREFIX_PATH=str(VENV),
        CMAKE_PREFIX_PATH=str(VENV),
        PATH=f"{VENV / 'bin'}:{env['PATH']}",
    )
    # The documented command (README): colcon stops descending at the repository's root package,
    # so the interface package is named as a second base path.
    command = [
        str(VENV / "bin" / "colcon"),
        "build",
        "--base-paths",
        "src/dp_ros",
        "src/dp_ros/src/dp_msgs",
        "--cmake-args",
        f"-DPython3_EXECUTABLE={sys.executable}",
        "-DBUILD_TESTING=OFF",
    ]
    result = subprocess.run(
        command, cwd=workspace, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    (workspace / "colcon_stdout.txt").write_text(result.stdout)
    return workspace


def test_colcon_builds_both_packages_in_dependency_order(colcon_workspace):
    install = colcon_workspace / "install"
    assert (install / "dp_msgs" / "share" / "dp_msgs" / "msg" / "ActionChunk.msg").is_file()
    assert (install / "dp_ros" / "share" / "dp_ros" / "package.xml").is_file()
    index = install / "dp_ros" / "share" / "ament_index" / "resource_index" / "packages"
    assert (index / "dp_ros").is_file()
    # `ros2 run dp_ros <name>` looks for executables in lib/dp_ros.
    assert (install / "dp_ros" / "lib" / "dp_ros" / "dp-dataset").is_file()
    output = (colcon_workspace / "colcon_stdout.txt").read_text()
    assert output.index("Starting >>> dp_msgs") < output.index("Starting >>> dp_ros")


def test_dp_msgs_imports_from_the_colcon_install(colcon_workspace):
    prefix = colcon_workspace / "install" / "dp_msgs"
    site = prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(site / "site-packages")
    env["LD_LIBRARY_PATH"] = f"{prefix / 'lib'}:{env.get('LD_LIBRARY_PATH', '')}"
    probe = (
        "import dp_msgs.msg as m; "
        "c = m.ActionChunk(horizon=2, action_dim=7, data=[0.5] * 14); "
        "print(m.__file__); print(c.horizon, len(c.data))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    module_file, values = result.stdout.strip().splitlines()[-2:]
    assert module_file.startswith(str(prefix)), module_file
    assert values == "2 14"
