"""ros2 launch dp_ros robot.launch.py [name:=value ...]

The nodes, parameters and lifecycle steps come from the graph description
src/dp_ros/graphs/robot.yaml, which the dp-ros runner reads too: where ROS 2 launch is not
installed, `dp-ros launch robot ...` starts the same nodes. `--show-args` lists the arguments.
"""

from dp_ros.launching.ros_launch import launch_description_for


def generate_launch_description():
    return launch_description_for("robot")
