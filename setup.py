"""The dp_ros ament_python package (Python code under src/dp_ros)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "dp_ros"

# One console script per node and per command, so `ros2 run dp_ros <name>` and the plain
# command both work. Modules that are not written yet are added with the issue that writes them.
CONSOLE_SCRIPTS = [
    "dp-ros = dp_ros.launching.runner:main",
    "dp-dataset = dp_ros.cli.dataset:main",
    "dp-train = dp_ros.train:main",
    "train = dp_ros.train:main",
    "dp-import-robomimic = dp_ros.data.robomimic_import:main",
    "policy_node = dp_ros.nodes.policy_node:main",
    "sim_node = dp_ros.nodes.sim_node:main",
    "recorder_node = dp_ros.nodes.recorder_node:main",
    "teleop_node = dp_ros.nodes.teleop_node:main",
    "dp-bag-to-store = dp_ros.recording.bag_convert:main",
    "dp-collect = dp_ros.sim.collect:main",
    "dp-eval = dp_ros.sim.evaluate:main",
    "eval_node = dp_ros.nodes.eval_node:main",
    "chunk_executor_node = dp_ros.nodes.chunk_executor_node:main",
]

setup(
    name=PACKAGE,
    version="0.1.0",
    package_dir={"": "src"},
    packages=find_packages("src", include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={PACKAGE: ["graphs/*.yaml", "assets/**/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
    ],
    # Python dependencies are installed from requirements/*.txt by scripts/setup.sh (pip) or by
    # the user's ROS install (rosdep); declaring them here would let a resolver replace torch.
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="dp_ros maintainers",
    maintainer_email="dp_ros@example.org",
    description="Diffusion Policy on ROS 2",
    license="Apache-2.0",
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
)
