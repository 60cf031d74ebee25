"""What a person sees from dp-train: a start-up summary, validation on the console, and Ctrl-C
saving `last` with the command that resumes it (issue 14)."""

import json
import os
import re
import shlex
import signal

import pytest

from dp_ros.testing.processes import ChildProcess

CONFIG = "config/train/tiny_test.yaml"


@pytest.fixture
def repo_root():
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_ctrl_c_saves_last_and_prints_the_resume_command(low_dim_store, tmp_path, repo_root):
    out = tmp_path / "run"
    args = [CONFIG, f"dataset.path={low_dim_store}", f"output.dir={out}", "training.epochs=1000",
            "training.num_workers=2", "training.val_at_start=true"]  # fmt: skip
    trainer = ChildProcess.python("-m", "dp_ros.train", *args, name="dp-train", cwd=repo_root)
    try:
        summary = trainer.wait_for(lambda line: line.startswith("dp-train: dataset"), 120)
        assert "20 episodes (16 train, 4 validation)" in summary
        trainer.wait_for(lambda line: "M parameters" in line, 10)
        trainer.wait_for(lambda line: line.startswith("dp-train: device   cpu"), 10)
        trainer.wait_for(lambda line: line.startswith("dp-train: output") and str(out) in line, 10)
        validation = trainer.wait_for(lambda line: "val/loss" in line, 120)
        assert re.match(r"dp-train: epoch \d+ step \d+: val/loss \d", validation), validation
        # A terminal's Ctrl-C: the whole process group, data-loader workers included.
        os.killpg(trainer.process.pid, signal.SIGINT)
        assert trainer.wait(timeout=60) == 130
        output = trainer.output()
    finally:
        trainer.stop()
    assert "Traceback" not in output
    resume = re.search(r"resume with: (.*)", output).group(1)
    assert shlex.split(resume) == ["dp-train", *args, "output.resume=last"]
    saved = re.search(r"interrupted at step (\d+)", output)
    state = json.loads((out / "checkpoints" / "last" / "trainer_state.json").read_text())
    assert state["step"] == int(saved.group(1))  # the step it stopped after
    assert (out / "checkpoints" / "last" / "policy.safetensors").is_file()
