#!/usr/bin/env bash
# Run the whole test suite: set-up on first use, then lint, then pytest.
#
#   scripts/test.sh                  everything but `slow` tests
#   scripts/test.sh -k chunk -x      extra arguments go to pytest
#
# Every process it starts keeps DDS on this machine: discovery range LOCALHOST, a fresh domain id
# and a temporary log directory for this run (children inherit them).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DP_ROS_VENV:-$ROOT/.venv}"

"$ROOT/scripts/setup.sh" >"${TMPDIR:-/tmp}/dp_ros_setup.log" 2>&1 || {
    cat "${TMPDIR:-/tmp}/dp_ros_setup.log" >&2
    exit 1
}

export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${DP_ROS_TEST_DOMAIN_ID:-$((RANDOM % 101 + 1))}"
ROS_LOG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/dp_ros_roslog.XXXXXX")"
export ROS_LOG_DIR
export HF_HUB_OFFLINE=1 MUJOCO_GL=egl PYOPENGL_PLATFORM=egl
echo "[test] ROS isolation: range=$ROS_AUTOMATIC_DISCOVERY_RANGE domain=$ROS_DOMAIN_ID logs=$ROS_LOG_DIR"

cd "$ROOT"
echo "[test] lint: ruff check + format check"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .

echo "[test] pytest"
# pytest exits 5 when no test ran; that is a failure here, and `set -e` makes it one.
exec "$VENV/bin/pytest" "$@"
