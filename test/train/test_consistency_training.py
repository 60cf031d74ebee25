"""A consistency student trained by the trainer from its teacher's bank of DDIM solutions
(the teacher: conftest's `teacher_dir`, a tiny diffusion policy with a DDIM-4 sampler)."""

import json
import math

import pytest
import torch

from dp_ros.data.sequence import SequenceDataset
from dp_ros.keys import EEF_POS, OBJECT_STATE
from dp_ros.policy import load_policy
from dp_ros.policy.consistency import bank_starts
from dp_ros.train.teacher_bank import TeacherSolutions
from dp_ros.train.trainer import Trainer

NOISES = 4


def student_overrides(teacher_dir, **consistency):
    return {
        "policy__objective": "consistency",
        "policy__consistency": {"teacher": str(teacher_dir), "bank_noises": NOISES, **consistency},
    }


def windows(store):
    return SequenceDataset(
        store, horizon=8, n_obs_steps=2, n_action_steps=4, obs_keys=[EEF_POS, OBJECT_STATE],
        val_ratio=0.2, seed=0,
    )  # fmt: skip


def test_bank_holds_the_teachers_solutions_from_the_laid_out_starts(
    teacher_dir, low_dim_store, make_config, tmp_path
):
    teacher = load_policy(teacher_dir)
    student_config = Trainer(
        make_config(low_dim_store, tmp_path, **student_overrides(teacher_dir))
    )
    student_config.check_inputs()
    config = student_config.policy_config
    data = windows(low_dim_store)
    bank = TeacherSolutions(data, teacher, config, seed=5, batch_size=16, progress=False)

    assert len(bank) == NOISES * len(data)
    expected = bank_starts(NOISES, 4, 0.5)
    assert sorted(bank.start.tolist()) == sorted(expected * len(data))
    assert expected == [0, 0, 1, 2]  # half from pure noise, the rest where 2- and 4-step chains go
    # Every window appears once per noise, with its own obs and action.
    assert torch.bincount(bank.window).tolist() == [NOISES] * len(data)
    for entry in (0, len(data) + 3, len(bank) - 1):
        item = bank[entry]
        window = data[int(bank.window[entry])]
        assert torch.equal(item["action"], window["action"])
        obs = {key: value[None] for key, value in item["obs"].items()}
        solved = teacher.ddim_solution(
            teacher.encode_obs(obs),
            item["teacher"]["noisy"][None],
            int(item["teacher"]["start"]),
            4,
        )
        torch.testing.assert_close(solved[0], item["teacher"]["solution"], atol=1e-5, rtol=1e-5)
    # From a later start the noisy chunk is the data noised part-way, so it keeps the data's
    # trace; from pure noise it does not.
    clean = torch.stack(
        [teacher.normalizer.normalize_action(data[int(w)]["action"]) for w in bank.window]
    )
    late, first = bank.start == 2, bank.start == 0  # t = 49: half signal
    late_corr = torch.corrcoef(torch.stack([bank.noisy[late].flatten(), clean[late].flatten()]))[
        0, 1
    ]
    first_corr = torch.corrcoef(
        torch.stack([bank.noisy[first].flatten(), clean[first].flatten()])
    )[0, 1]
    assert late_corr > 0.3 and abs(first_corr) < 0.05, (late_corr, first_corr)

    again = TeacherSolutions(data, teacher, config, seed=5, batch_size=16, progress=False)
    other = TeacherSolutions(data, teacher, config, seed=6, batch_size=16, progress=False)
    assert torch.equal(again.solution, bank.solution)  # a resumed run rebuilds the same bank
    assert not torch.allclose(other.noisy, bank.noisy)


def test_trainer_distils_a_student_that_samples_in_one_step(
    teacher_dir, low_dim_store, make_config, tmp_path
):
    out = tmp_path / "student"
    config = make_config(low_dim_store, out, training__epochs=3, **student_overrides(teacher_dir))
    summary = Trainer(config).run()

    n_train = len(windows(low_dim_store))
    assert summary["steps"] == 3 * math.ceil(NOISES * n_train / 32)  # an epoch: every entry
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [row["train/loss"] for row in rows if "train/loss" in row]
    assert losses[-1] < 0.5 * losses[0], losses  # from eps-prediction weights to clean chunks
    assert any("val/loss" in row for row in rows)

    student = load_policy(out / "checkpoints" / "last")
    assert student.config.objective == "consistency"
    assert student.config.sampler.name == "consistency"
    assert student.config.consistency.bank_noises == NOISES
    teacher = load_policy(teacher_dir)
    assert student.normalizer.stats.keys() == teacher.normalizer.stats.keys()
    batch = windows(low_dim_store)[0]["obs"]
    obs = {key: value[None] for key, value in batch.items()}
    chunk = student.predict_action(obs, generator=torch.Generator().manual_seed(0))
    assert chunk["action_pred"].shape == (1, 8, 7) and torch.isfinite(chunk["action_pred"]).all()


def test_zero_bank_noises_is_refused(teacher_dir, low_dim_store, make_config, tmp_path):
    from dp_ros.train.inputs import TrainConfigError

    config = make_config(low_dim_store, tmp_path, **student_overrides(teacher_dir, bank_noises=0))
    with pytest.raises(TrainConfigError, match=r"bank_noises=0 is invalid"):
        Trainer(config).run()
