#!/usr/bin/env bash
# One-command set-up of dp_ros on a machine without ROS 2 (Debian 12, Python 3.11).
#
#   scripts/setup.sh            create/refresh .venv: ROS 2 (PyPI wheels), dp_msgs, dp_ros
#
# Safe to run any number of times: each step is skipped when its inputs have not changed
# (stamps under .venv/.dp_ros/). Set DP_ROS_VENV to put the environment elsewhere.
# On a machine with a ROS 2 install, use colcon instead (README: "Building inside ROS 2").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DP_ROS_VENV:-$ROOT/.venv}"
STAMPS="$VENV/.dp_ros"
PY="$VENV/bin/python"
PIP=("$VENV/bin/pip" install --disable-pip-version-check)
CONSTRAINTS="$ROOT/requirements/constraints.txt"
# The one torch these machines may have: the local CPU wheel. Anything else pulls CUDA wheels.
TORCH_PIN="torch==2.13.0"

CURRENT_STEP="start"
step() { CURRENT_STEP="$*"; printf '\n==> [setup] %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
trap 'printf "\n!!! [setup] FAILED during: %s\n    (the output above says why; fix it and run scripts/setup.sh again)\n" "$CURRENT_STEP" >&2' ERR

# A step runs only when the hash of its inputs differs from the one stored after its last success.
inputs_hash() { cat "$@" 2>/dev/null | sha256sum | cut -d' ' -f1; }
is_current() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
mark_done() { mkdir -p "$STAMPS" && echo "$2" >"$STAMPS/$1"; }

step "check Python 3.11"
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
            PYTHON="$(command -v "$candidate")"
            break
        fi
    done
fi
[ -n "$PYTHON" ] || { echo "Python 3.11 is required (the ROS 2 wheels are cp311)." >&2; false; }
note "$PYTHON ($("$PYTHON" --version))"

step "check system libraries for headless rendering (EGL, Mesa)"
if ldconfig -p | grep -q 'libEGL.so.1' && ldconfig -p | grep -q 'libGL.so.1'; then
    note "libEGL and libGL present"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri
else
    echo "libEGL/libGL missing: install libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri" >&2
    false
fi

step "virtual environment at $VENV"
if [ ! -x "$PY" ]; then
    "$PYTHON" -m venv "$VENV"
    "${PIP[@]}" -q --upgrade pip wheel setuptools
    note "created"
else
    note "exists"
fi

step "Python packages (torch pinned to the local CPU wheel, ROS 2 wheels, core, simulation)"
REQS=("$ROOT"/requirements/*.txt)
deps_hash="$(inputs_hash "${REQS[@]}")"
if is_current deps "$deps_hash"; then
    note "up to date"
else
    # torch first and alone, so nothing later can resolve a different build.
    "${PIP[@]}" -q "$TORCH_PIN"
    "${PIP[@]}" -q -c "$CONSTRAINTS" \
        -r "$ROOT/requirements/ros.txt" -r "$ROOT/requirements/core.txt" \
        -r "$ROOT/requirements/sim.txt" -r "$ROOT/requirements/dev.txt"
    mark_done deps "$deps_hash"
fi
installed_torch="$("$PY" -c 'import torch; print(torch.__version__)')"
case "$installed_torch" in
    2.13.0*) note "torch $installed_torch" ;;
    *) echo "torch $installed_torch was installed instead of 2.13.0" >&2; false ;;
esac

step "repoint the ROS wheels' CMake exports at this machine's Python and numpy headers"
# The wheels were built in a manylinux image; their generated export files name include dirs
# under /opt/python/cp311-cp311 that do not exist here, which breaks building any interface
# package against them.
py_include="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
np_include="$("$PY" -c 'import numpy; print(numpy.get_include())')"
fixed=0
for export_file in "$VENV"/share/*/cmake/export_*__rosidl_generator_pyExport.cmake; do
    if grep -q '/opt/python/cp311-cp311' "$export_file"; then
        sed -i -E \
            -e "s#/opt/python/cp311-cp311/lib/python3\.11/site-packages/numpy/_?core/include#$np_include#g" \
            -e "s#/opt/python/cp311-cp311/include/python3\.11#$py_include#g" "$export_file"
        fixed=$((fixed + 1))
    fi
done
note "$fixed file(s) repointed"

# build_interfaces NAME SOURCE_DIR: an interface package (CMake + rosidl) into the venv prefix,
# rebuilt when its definitions change.
build_interfaces() {
    local name="$1" source="$2"
    local hash build_dir
    hash="$(inputs_hash "$source"/CMakeLists.txt "$source"/package.xml \
        $(find "$source" -name '*.msg' -o -name '*.srv' -o -name '*.action' | sort))"
    if is_current "$name" "$hash" && "$PY" -c "import $name" 2>/dev/null; then
        note "up to date"
        return
    fi
    build_dir="$ROOT/build/setup/$name"
    rm -rf "$build_dir" && mkdir -p "$build_dir"
    (
        export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH"
        cmake -S "$source" -B "$build_dir" -DCMAKE_INSTALL_PREFIX="$VENV" \
            -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=OFF >"$build_dir.log" 2>&1 &&
            cmake --build "$build_dir" -j"$(nproc)" >>"$build_dir.log" 2>&1 &&
            cmake --install "$build_dir" >>"$build_dir.log" 2>&1
    ) || { tail -n 40 "$build_dir.log" >&2; false; }
    mark_done "$name" "$hash"
    note "installed (log: $build_dir.log)"
}

step "build dp_msgs into the venv prefix"
build_interfaces dp_msgs "$ROOT/src/dp_msgs"

step "control_msgs' GripperCommand (a stand-in, only where no control_msgs is installed)"
if [ ! -f "$STAMPS/control_msgs" ] && "$PY" -c 'import control_msgs.action' 2>/dev/null; then
    note "control_msgs is installed: using it"
else
    build_interfaces control_msgs "$ROOT/test/interfaces/control_msgs"
fi

step "install dp_ros (editable) with its console scripts"
pkg_hash="$(inputs_hash "$ROOT/setup.py" "$ROOT/setup.cfg" "$ROOT/package.xml")"
if is_current dp_ros "$pkg_hash" && "$PY" -c 'import dp_ros' 2>/dev/null; then
    note "up to date"
else
    "${PIP[@]}" -q --no-deps --no-build-isolation -e "$ROOT"
    mark_done dp_ros "$pkg_hash"
fi

step "check: rclpy, dp_msgs and dp_ros import together"
(cd /tmp && "$PY" -c 'import rclpy, dp_msgs.msg, dp_msgs.srv, dp_ros; print("    ok")')

trap - ERR
printf '\n[setup] done: %s (%s)\n' "$VENV" "$(du -sh "$VENV" | cut -f1)"
