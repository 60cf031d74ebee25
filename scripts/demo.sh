#!/usr/bin/env bash
# The main job, from a fresh clone: set-up on first use, then run.
#
#   scripts/demo.sh
#
# Until the simulated closed-loop demo lands, it sets up and prints what is installed and how to
# go on.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DP_ROS_VENV:-$ROOT/.venv}"

"$ROOT/scripts/setup.sh"
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export HF_HUB_OFFLINE=1 MUJOCO_GL=egl PYOPENGL_PLATFORM=egl
exec "$VENV/bin/dp-ros-info"
