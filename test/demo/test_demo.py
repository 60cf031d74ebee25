"""The README's main command: scripts/demo.sh runs the shipped Lift policy on the simulator over
ROS 2 (sim_node, policy_node and eval_node as separate processes) and reports its success."""

import json
import subprocess
from pathlib import Path

import cv2
import pytest
import yaml

from dp_ros.policy.checkpoint import (
    META_FILE,
    WEIGHTS_FILE,
    bundled_checkpoints,
    read_checkpoint_json,
)
from dp_ros.policy.runtime import PolicyRunner

pytestmark = [pytest.mark.ros, pytest.mark.sim]
ROOT = Path(__file__).resolve().parents[2]
STATE_KEYS = {"robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos"}
CAMERA_KEYS = {"agentview_image", "robot0_eye_in_hand_image"}
# name -> (what the policy observes, most bytes on disk)
SHIPPED = {
    "lift_state": (STATE_KEYS | {"object"}, 6 * 2**20),
    "lift_state_consistency": (STATE_KEYS | {"object"}, 6 * 2**20),
    "lift_image": (STATE_KEYS | CAMERA_KEYS, 14 * 2**20),
}
DEMO_POLICY = "lift_image"  # the evaluate graph's default checkpoint


@pytest.mark.parametrize("name", SHIPPED)
def test_the_shipped_lift_checkpoints_are_small_and_load_by_name(name):
    obs_keys, most_bytes = SHIPPED[name]
    checkpoint = bundled_checkpoints()[name]
    size = (checkpoint / WEIGHTS_FILE).stat().st_size + (checkpoint / META_FILE).stat().st_size
    assert size < most_bytes, size
    document = read_checkpoint_json(name)
    assert document["metadata"]["task"] == "lift"
    runner = PolicyRunner.from_checkpoint(name)
    assert set(runner.obs_keys) == obs_keys


def test_the_state_student_is_one_step_and_distilled_from_the_shipped_teacher():
    config = read_checkpoint_json("lift_state_consistency")["config"]
    assert config["objective"] == "consistency"
    assert config["sampler"] == {"name": "consistency", "num_inference_steps": 1}
    assert config["consistency"]["teacher"] == "lift_state"


def test_the_demo_runs_the_camera_policy_stored_in_half_precision():
    graph = yaml.safe_load((ROOT / "src" / "dp_ros" / "graphs" / "evaluate.yaml").read_text())
    assert graph["arguments"]["checkpoint"]["default"] == DEMO_POLICY
    assert graph["arguments"]["cameras"]["default"] == "true"
    document = read_checkpoint_json(DEMO_POLICY)
    assert document["metadata"]["weights_stored_as"] == "float16"
    assert document["config"]["sampler"]["name"] == "ddim"


def test_demo_runs_two_episodes_and_succeeds_at_least_once(tmp_path):
    video, summary = tmp_path / "demo.mp4", tmp_path / "summary.json"
    result = subprocess.run(
        [str(ROOT / "scripts" / "demo.sh"), "episodes:=2", f"video:={video}",
         f"summary:={summary}", "timeout:=240"],
        capture_output=True, text=True, timeout=400, cwd=tmp_path,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "success rate: " in output
    report = json.loads(summary.read_text())
    assert report["complete"] and report["episodes"] == 2
    assert [r["seed"] for r in report["results"]] == [100000, 100001]
    assert report["successes"] >= 1, report
    capture = cv2.VideoCapture(str(video))
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    # Both episodes are in the video: at least their steps' worth of frames, side by side.
    assert frames >= sum(r["steps"] for r in report["results"]) - 2, frames
