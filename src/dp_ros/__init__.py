"""dp_ros: Diffusion Policy on ROS 2.

The ROS-free core (policy, data, training, simulation) lives in subpackages that import
numpy/torch only; the ROS adapters live in ``dp_ros.nodes`` and ``dp_ros.conversions``.
"""

__version__ = "0.1.0"
