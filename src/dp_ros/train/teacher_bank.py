"""The teacher's solutions a consistency student trains on, computed once per run.

For every window of a dataset the teacher draws `bank_noises` noisy chunks, at the grid points
`bank_starts` lays out, and solves each with its DDIM sampler (see dp_ros.policy.consistency).
Training then costs one student evaluation per sample instead of up to K teacher evaluations.
The bank is drawn from a seeded generator, so a resumed run rebuilds the same bank.

Entry j of `TeacherSolutions` is window `window[j]` of the dataset (obs and action as the
dataset gives them) plus ``teacher``: {'start': grid index, 'noisy': (T, Da), 'solution':
(T, Da)}, in the teacher's normalised action units. An epoch visits every entry once.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from tqdm import tqdm

from dp_ros.policy import DiffusionPolicy
from dp_ros.policy.config import PolicyConfig
from dp_ros.policy.consistency import bank_starts


class TeacherSolutions(torch.utils.data.Dataset):
    """A non-empty dataset of windows (e.g. SequenceDataset) with the teacher's solutions for
    each; `student_config.consistency` says how many, from where, and the teacher's steps."""

    def __init__(
        self,
        windows: torch.utils.data.Dataset,
        teacher: DiffusionPolicy,
        student_config: PolicyConfig,
        seed: int,
        batch_size: int = 256,
        progress: bool = True,
    ) -> None:
        settings = student_config.consistency
        self.windows = windows
        self.noises = settings.bank_noises
        self.teacher_steps = settings.teacher_steps
        self.starts = bank_starts(self.noises, self.teacher_steps, settings.first_step_share)
        self._solve(teacher, seed, batch_size, progress)

    def _solve(self, teacher: DiffusionPolicy, seed: int, batch_size: int, progress: bool) -> None:
        device = teacher.device
        generator = torch.Generator(device).manual_seed(seed)
        loader = torch.utils.data.DataLoader(self.windows, batch_size=batch_size, shuffle=False)
        parts: dict[str, list[torch.Tensor]] = {
            "window": [], "start": [], "noisy": [], "solution": []
        }  # fmt: skip
        first = 0
        bar = tqdm(
            loader,
            desc=f"teacher solutions ({self.noises} per window, DDIM-{self.teacher_steps})",
            unit="batch",
            dynamic_ncols=True,
            disable=not progress,
        )
        for batch in bar:
            obs = {key: value.to(device) for key, value in batch["obs"].items()}
            action = batch["action"].to(device)
            targets = teacher.consistency_targets(
                obs, action, self.starts, self.teacher_steps, generator
            )
            count = len(action)
            windows = torch.arange(first, first + count).repeat(len(self.starts))
            parts["window"].append(windows)
            for name, value in targets.items():
                parts[name].append(value.cpu())
            first += count
        bar.close()
        self.window, self.start, self.noisy, self.solution = (
            torch.cat(parts[name]) for name in ("window", "start", "noisy", "solution")
        )

    def __len__(self) -> int:
        return len(self.window)

    def __getitem__(self, index: int) -> Mapping[str, object]:
        item = dict(self.windows[int(self.window[index])])
        item["teacher"] = {
            "start": self.start[index],
            "noisy": self.noisy[index],
            "solution": self.solution[index],
        }
        return item
