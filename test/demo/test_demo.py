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
SHIPPED = ("lift_state", "lift_state_consistency")
DEMO_POLICY = "lift_state_consistency"  # the evaluate graph's default checkpoint


@pytest.mark.parametrize("name", SHIPPED)
def test_the_shipped_lift_checkpoints_are_small_and_load_by_name(name):
    checkpoint = bundled_checkpoints()[name]
    size = (checkpoint / WEIGHTS_FILE).stat().st_size + (checkpoint / META_FILE).stat().st_size
    assert size < 6 * 2**20, size
    document = read_checkpoint_json(name)
    assert document["metadata"]["task"] == "lift"
    runner = PolicyRunner.from_checkpoint(name)
    assert set(runner.obs_keys) == {
        "robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "object"
    }  # fmt: skip


def test_the_demo_runs_the_one_step_student_of_the_shipped_teacher():
    graph = yaml.safe_load((ROOT / "src" / "dp_ros" / "graphs" / "evaluate.yaml").read_text())
    assert graph["arguments"]["checkpoint"]["default"] == DEMO_POLICY
    config = read_checkpoint_json(DEMO_POLICY)["config"]
    assert config["objective"] == "consistency"
    assert config["sampler"] == {"name": "consistency", "num_inference_steps": 1}
    assert config["consistency"]["teacher"] == "lift_state"


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
