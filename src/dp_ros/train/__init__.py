"""Training: `dp-train CONFIG.yaml [section.field=value ...]` (also `ros2 run dp_ros train`).

The trainer reads an episode store through `dp_ros.data.SequenceDataset`, trains the
`dp_ros.policy` Diffusion Policy with Lightning Fabric (CPU, one or many GPUs, several nodes)
and writes policy checkpoints the robot and simulation nodes load. See `trainer.py` for the
steps of a run and `config.py` for every setting; example configs live in config/train/.
"""

from dp_ros.train.cli import main

__all__ = ["main"]
