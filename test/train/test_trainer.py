"""The trainer end to end on CPU: input errors, learning, resume, DDP across two processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from dp_ros.data.store import EpisodeStore
from dp_ros.keys import AGENTVIEW_IMAGE, EEF_POS
from dp_ros.policy.runtime import PolicyRunner
from dp_ros.train.cli import main
from dp_ros.train.config import TrainConfigError
from dp_ros.train.run_files import read_metrics
from dp_ros.train.trainer import Trainer, TrainingInterrupted


def rows_with(path, name):
    return {row["step"]: row[name] for row in read_metrics(path) if name in row}


# ---- item 5: inputs that cannot work fail before training, naming the problem ----------------


def test_missing_dataset(tmp_path, make_config):
    config = make_config(tmp_path / "none.zarr", tmp_path / "out")
    with pytest.raises(TrainConfigError, match=r"dataset\.path=.*none\.zarr' does not exist"):
        Trainer(config).run()


def test_empty_dataset(tmp_path, make_config):
    EpisodeStore.create(tmp_path / "empty.zarr").close()
    with pytest.raises(TrainConfigError, match="is empty: no finished episodes"):
        Trainer(make_config(tmp_path / "empty.zarr", tmp_path / "out")).run()


def test_keys_the_dataset_lacks(tmp_path, low_dim_store, make_config):
    config = make_config(
        low_dim_store, tmp_path / "out", dataset__obs_keys=[EEF_POS, "robot0_joint_pos"]
    )
    with pytest.raises(TrainConfigError, match=r"\['robot0_joint_pos'\] that dataset .* lacks"):
        Trainer(config).run()


def test_shape_mismatches(tmp_path, low_dim_store, image_store, make_config):
    expected = {"obs": {EEF_POS: {"shape": [4], "type": "low_dim"}}, "action": {"shape": [7]}}
    config = make_config(
        low_dim_store, tmp_path / "a", dataset__obs_keys=None, dataset__shape_meta=expected
    )
    with pytest.raises(
        TrainConfigError,
        match=r"shape_meta\.obs\.robot0_eef_pos\.shape=\[4\] does not match the dataset, "
        r"which has \[3\]",
    ):
        Trainer(config).run()
    config = make_config(image_store, tmp_path / "b", dataset__obs_keys=[AGENTVIEW_IMAGE],
                         policy__encoder={"crop_shape": [30, 30]})  # fmt: skip
    with pytest.raises(TrainConfigError, match=r"crop_shape.*must fit inside agentview_image"):
        Trainer(config).run()


def test_unwritable_output_directory(tmp_path, low_dim_store, make_config):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(TrainConfigError, match=r"output\.dir=.*a_file/run' is not writable"):
        Trainer(make_config(low_dim_store, blocker / "run")).run()


def test_cli_reports_input_errors(tmp_path, capsys):
    code = main(["config/train/tiny_test.yaml", f"dataset.path={tmp_path}/x.zarr"])
    assert code == 2
    assert "dp-train: error: dataset.path=" in capsys.readouterr().err


# ---- training ----------------------------------------------------------------------------------


def test_training_lowers_validation_loss_and_writes_everything(tmp_path, low_dim_store,
                                                               make_config):  # fmt: skip
    out = tmp_path / "run"
    config = make_config(
        low_dim_store,
        out,
        optim__lr=3.0e-3,
        training__epochs=12,
        training__batch_size=64,
        training__val_at_start=True,
        training__val_every_epochs=4,
        training__checkpoint_every_epochs=6,
        training__log_every_steps=5,
        ema__power=0.6,
        eval__hook="dp_ros.train.hooks.make_offline_eval_hook",
        eval__kwargs={"dataset_path": str(low_dim_store), "n_windows": 4},
        eval__every_epochs=12,
    )
    summary = Trainer(config).run()

    val = rows_with(out / "metrics.jsonl", "val/loss")
    assert val[0] > 0.8  # untrained: noise prediction is about as good as zero
    assert val[summary["steps"]] < 0.5 * val[0], val
    mse = rows_with(out / "metrics.jsonl", "val/action_mse")
    assert mse[summary["steps"]] < mse[0]
    offline = rows_with(out / "metrics.jsonl", "eval/offline_executed_mse")
    assert list(offline) == [summary["steps"]] and np.isfinite(offline[summary["steps"]])

    checkpoints = out / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == [
        "best", "epoch_0006", "epoch_0012", "last"]  # fmt: skip
    assert (checkpoints / "last" / "trainer_state.safetensors").is_file()
    assert not (checkpoints / "best" / "trainer_state.json").exists()  # policy only
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(out / "tensorboard"))
    document = json.loads((checkpoints / "best" / "policy.json").read_text())
    assert document["metadata"]["trainer"]["metrics"]["val/loss"] == summary["best"]["value"]
    assert document["metadata"]["trainer"]["ema"] is True
    deployment = document["metadata"]["deployment"]  # what a robot must provide
    assert deployment["observations"]["object"]["input"] == "object_topic"
    assert deployment["observations"][EEF_POS]["shape"] == [3]
    assert deployment["control_period"] == 0.05 and len(deployment["action"]["names"]) == 7

    runner = PolicyRunner.from_checkpoint(checkpoints / "last")  # the robot-side loader
    assert runner.horizon == 8 and runner.obs_keys == (EEF_POS, "object")
    prediction = runner.predict({EEF_POS: np.zeros((2, 3), np.float32),
                                 "object": np.zeros((2, 3), np.float32)})  # fmt: skip
    assert prediction.executed.shape == (4, 7)


def test_resumed_run_continues_the_same_loss_curve(tmp_path, image_store, make_config):
    """Stop part-way into an epoch, resume from `last`: same losses as an unbroken run."""
    common = dict(dataset__obs_keys=[AGENTVIEW_IMAGE, EEF_POS], training__epochs=2)
    whole = make_config(image_store, tmp_path / "whole", **common)
    Trainer(whole).run()
    first = make_config(image_store, tmp_path / "split", training__max_steps=3, **common)
    assert Trainer(first).run()["steps"] == 3
    resumed = make_config(image_store, tmp_path / "split", output__resume="last", **common)
    summary = Trainer(resumed).run()

    expected = rows_with(tmp_path / "whole" / "metrics.jsonl", "train/loss")
    got = rows_with(tmp_path / "split" / "metrics.jsonl", "train/loss")
    assert summary["steps"] == len(expected) >= 6
    assert sorted(got) == sorted(expected)
    np.testing.assert_allclose([got[s] for s in sorted(got)],
                               [expected[s] for s in sorted(expected)], rtol=1e-5)  # fmt: skip
    assert rows_with(tmp_path / "split" / "metrics.jsonl", "val/loss") == pytest.approx(
        rows_with(tmp_path / "whole" / "metrics.jsonl", "val/loss"), rel=1e-5
    )
    a = load_file(str(tmp_path / "whole" / "checkpoints" / "last" / "policy.safetensors"))
    b = load_file(str(tmp_path / "split" / "checkpoints" / "last" / "policy.safetensors"))
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6)


def test_two_process_ddp_on_cpu_keeps_ranks_in_step(tmp_path, low_dim_store):
    out = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "dp_ros.train", "config/train/tiny_test.yaml",
        f"dataset.path={low_dim_store}", f"output.dir={out}", "fabric.devices=2",
        "training.epochs=1", "training.max_steps=4", "training.val_max_batches=1",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 4
    checksums = np.array(summary["rank_weight_checksums"])
    assert checksums.shape == (2, 2)
    np.testing.assert_array_equal(checksums[0], checksums[1])
    assert len(rows_with(out / "metrics.jsonl", "train/loss")) == 4


def test_resume_points_that_cannot_work(tmp_path, low_dim_store, make_config):
    out = tmp_path / "run"
    Trainer(make_config(low_dim_store, out, training__epochs=1)).run()
    with pytest.raises(TrainConfigError, match="already holds checkpoints: set output.resume"):
        Trainer(make_config(low_dim_store, out)).run()
    best = str(out / "checkpoints" / "best")
    with pytest.raises(TrainConfigError, match="has no trainer_state.json .*cannot be resumed"):
        Trainer(make_config(low_dim_store, out, output__resume=best)).run()
    with pytest.raises(TrainConfigError, match=r"policy differs from this config in \['horizon'"):
        Trainer(make_config(low_dim_store, out, output__resume="last", policy__horizon=16)).run()
    with pytest.raises(TrainConfigError, match="no checkpoint at"):
        Trainer(make_config(low_dim_store, out, output__resume=str(tmp_path / "nothing"))).run()
    with pytest.raises(TrainConfigError, match=r"eval\.hook='dp_ros\.nothing\.make' cannot be"):
        Trainer(make_config(low_dim_store, tmp_path / "b", eval__hook="dp_ros.nothing.make")).run()


# ---- output.overwrite: the old run survives until the new one has finished -------------------


class FailingTrainer(Trainer):
    """A real run that raises after `fail_at` steps, as a bad batch found late would."""

    fail_at = 3

    def train_step(self, batch):
        if self.step == self.fail_at:
            raise RuntimeError("bad batch found late")
        return super().train_step(batch)


class StoppedTrainer(Trainer):
    """A real run whose user presses Ctrl-C during its third step."""

    def train_step(self, batch):
        loss = super().train_step(batch)
        if self.step == 2:
            self._stop_requested.set()
        return loss


def run_files(out):
    return {path.relative_to(out): path.read_bytes()
            for path in sorted(out.rglob("*")) if path.is_file()}  # fmt: skip


def test_overwrite_puts_the_old_run_back_when_the_new_one_fails(tmp_path, low_dim_store,
                                                                make_config):  # fmt: skip
    out = tmp_path / "run"
    Trainer(make_config(low_dim_store, out, training__epochs=1)).run()
    before = run_files(out)
    assert (Path("checkpoints") / "last" / "policy.safetensors") in before

    config = make_config(low_dim_store, out, output__overwrite=True, training__seed=5)
    with pytest.raises(RuntimeError, match="bad batch found late"):
        FailingTrainer(config).run()
    assert run_files(out) == before  # byte for byte, and nothing of the failed run left
    assert not (out / ".replaced_run").exists()


def test_overwrite_deletes_the_old_run_only_when_the_new_one_finishes(tmp_path, low_dim_store,
                                                                      make_config):  # fmt: skip
    out = tmp_path / "run"
    Trainer(make_config(low_dim_store, out, training__epochs=1)).run()
    old_weights = (out / "checkpoints" / "last" / "policy.safetensors").read_bytes()

    common = dict(output__overwrite=True, training__seed=5, training__epochs=1)
    with pytest.raises(TrainingInterrupted):
        StoppedTrainer(make_config(low_dim_store, out, **common)).run()
    aside = out / ".replaced_run" / "checkpoints" / "last" / "policy.safetensors"
    assert aside.read_bytes() == old_weights  # the finished run is kept while the new one waits
    assert rows_with(out / "metrics.jsonl", "train/loss").keys() == {1, 2, 3}

    Trainer(make_config(low_dim_store, out, output__resume="last", **common)).run()
    assert not (out / ".replaced_run").exists()
    new_weights = (out / "checkpoints" / "last" / "policy.safetensors").read_bytes()
    assert new_weights != old_weights
    assert json.loads((out / "summary.json").read_text())["steps"] > 3


class OptimizerInspectingTrainer(Trainer):
    """Stops after set-up and keeps the optimizer the trainer built."""

    def train(self) -> None:
        self.inspected = self.optimizer


def test_transformer_denoiser_gets_the_reference_weight_decay_groups(
    tmp_path, low_dim_store, make_config
):
    config = make_config(
        low_dim_store,
        tmp_path / "run",
        policy__denoiser="transformer",
        optim__weight_decay=1e-6,
        optim__transformer_weight_decay=1e-3,
        output__final_checkpoint=False,
    )
    trainer = OptimizerInspectingTrainer(config)
    trainer.run()
    groups = trainer.inspected.param_groups
    names = {id(p): name for name, p in trainer.policy.named_parameters()}
    by_decay = {group["weight_decay"]: {names[id(p)] for p in group["params"]} for group in groups}
    assert sum(len(group["params"]) for group in groups) == len(names)  # each exactly once
    decayed, kept = by_decay[1e-3], by_decay[0.0]
    assert "denoiser.action_embedding.weight" in decayed
    assert any(name.endswith("self_attn.in_proj_weight") for name in decayed)
    assert any(name.endswith("linear1.weight") for name in decayed)
    assert {"denoiser.action_position", "denoiser.cond_position"} <= kept
    assert any(name.endswith("norm1.weight") for name in kept)
    assert all(not name.endswith("bias") for name in decayed)
    assert all(name.startswith("denoiser.") for name in decayed | kept)

    unet = OptimizerInspectingTrainer(make_config(low_dim_store, tmp_path / "unet"))
    unet.run()
    assert [group["weight_decay"] for group in unet.inspected.param_groups] == [1e-6]


@pytest.mark.parametrize(("clip", "share"), [(1e-6, 1.0), (1e6, 0.0)])
def test_logs_gradient_norm_and_how_often_clipping_acts(
    tmp_path, low_dim_store, make_config, clip, share
):
    out = tmp_path / "run"
    config = make_config(low_dim_store, out, training__epochs=1, optim__grad_clip_norm=clip)
    Trainer(config).run()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    logged = [row for row in rows if "train/loss" in row]
    assert logged and all(row["train/clipped_share"] == share for row in logged)
    assert all(0 < row["train/grad_norm"] < 1e3 for row in logged)
