"""ros2 launch dp_ros record.launch.py store:=/data/demos [name:=value ...]

The nodes and parameters come from the graph description src/dp_ros/graphs/record.yaml, which
the dp-ros runner reads too: where ROS 2 launch is not installed, `dp-ros launch record ...`
starts the same nodes. `--show-args` lists the arguments. Keyboard teleop reads the terminal:
under ros2 launch, start it in a terminal of its own (with_teleop:=false, then
`ros2 run dp_ros teleop_node`).
"""

from dp_ros.launching.ros_launch import launch_description_for


def generate_launch_description():
    return launch_description_for("record")
