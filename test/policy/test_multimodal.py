"""Multimodality: the reason Diffusion Policy exists (Chi et al. 2023, Sec. IV-A, Fig. 3).

Demonstrations go from (0, -1) to (0, 1) around a disc at the origin, left or right with equal
probability, bulging out to a random |x| in [0.7, 1.0] at y=0. From the start the two modes
are equally likely. A small diffusion policy must reproduce both and put almost nothing
through the middle (through the obstacle); a same-size network trained with MSE on the same
data must average the modes into the middle. The sample checks also fail for a broken sampler:
pure noise is not near any demonstration, the mean is in the middle.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dp_ros import keys
from dp_ros.policy.config import (
    ConsistencyConfig,
    PolicyConfig,
    SamplerConfig,
    ShapeMeta,
    UnetConfig,
)
from dp_ros.policy.consistency import bank_starts
from dp_ros.policy.policy import make_policy

POSITION = "point_pos"  # the synthetic task's only observation: the 2-D point
N_POINTS, To, T, Ta = 12, 2, 8, 4
N_DEMOS, N_SAMPLES = 64, 200
TRAIN_STEPS, BATCH, LR = 600, 128, 5e-3
PROBE = To - 1 + 3  # chunk index of the 4th executed action: the path is then near y = -0.4
SIDE = 0.3  # |x| beyond which a sample counts as going around (demos are >= 0.63 there)


def demonstration(side: float, bulge: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions (N, 2) and actions (N, 2): each action is the next position (last repeats)."""
    phase = np.pi * np.arange(N_POINTS) / (N_POINTS - 1)
    positions = np.stack([side * bulge * np.sin(phase), -np.cos(phase)], -1).astype(np.float32)
    actions = np.concatenate([positions[1:], positions[-1:]], axis=0)
    return positions, actions


def windows(demos) -> tuple[torch.Tensor, torch.Tensor]:
    """Training samples with the dataset contract's edge padding: obs (M, To, 2), action
    (M, T, 2), windows starting at -(To - 1) so the first one sees the start repeated."""
    obs, action = [], []
    for positions, actions in demos:
        for start in range(-(To - 1), N_POINTS):
            obs_index = np.clip(np.arange(start, start + To), 0, N_POINTS - 1)
            action_index = np.clip(np.arange(start, start + T), 0, N_POINTS - 1)
            obs.append(positions[obs_index])
            action.append(actions[action_index])
    return torch.from_numpy(np.stack(obs)), torch.from_numpy(np.stack(action))


def stats_of(demos):
    result = {}
    for key, index in ((POSITION, 0), (keys.ACTION, 1)):
        values = np.concatenate([demo[index] for demo in demos])
        result[key] = {
            "min": values.min(0),
            "max": values.max(0),
            "mean": values.mean(0),
            "std": values.std(0),
        }
    return result


def small_config(objective: str = "diffusion") -> PolicyConfig:
    sampler = SamplerConfig(name="ddpm", num_inference_steps=100)
    if objective == "consistency":  # a student of the DDIM-16 teacher, one step by default
        sampler = SamplerConfig(name="consistency", num_inference_steps=1)
    return PolicyConfig(
        objective=objective,
        shape_meta=ShapeMeta(low_dim={POSITION: 2}, action_dim=2),
        n_obs_steps=To,
        horizon=T,
        n_action_steps=Ta,
        unet=UnetConfig(
            down_dims=(32, 64), kernel_size=3, n_groups=8, diffusion_step_embed_dim=32
        ),
        sampler=sampler,
        consistency=ConsistencyConfig(teacher="in memory", teacher_steps=16),
    )


def train(loss_fn, params, seed: int, steps: int = TRAIN_STEPS) -> None:
    """AdamW with a one-cycle learning rate (the decay lets a few hundred steps converge)."""
    optimizer = torch.optim.AdamW(params, lr=LR, weight_decay=1e-6)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=LR, total_steps=steps, pct_start=0.1
    )
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        loss = loss_fn(generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()


def classify(chunks: np.ndarray) -> tuple[float, float, float]:
    x = chunks[:, PROBE, 0]
    left, right = float(np.mean(x < -SIDE)), float(np.mean(x > SIDE))
    return left, right, 1.0 - left - right


def distance_to_nearest_demo(chunks: np.ndarray, demos) -> np.ndarray:
    """RMS distance (per sample) from the chunk to the closest demonstrated first chunk."""
    first = windows(demos)[1].numpy()[:: N_POINTS + To - 1]  # window starting at -(To-1)
    diff = chunks[:, None] - first[None]
    return np.sqrt((diff**2).sum(-1).mean(-1)).min(axis=1)


@pytest.fixture(scope="module")
def trained(request):
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # see conftest.single_thread: predictable time on a shared host
    request.addfinalizer(lambda: torch.set_num_threads(before))
    rng = np.random.default_rng(0)
    sides = np.repeat([-1.0, 1.0], N_DEMOS // 2)
    demos = [
        demonstration(s, b) for s, b in zip(sides, rng.uniform(0.7, 1.0, N_DEMOS), strict=True)
    ]
    obs, action = windows(demos)

    torch.manual_seed(0)
    policy = make_policy(small_config(), stats_of(demos))

    def diffusion_loss(generator):
        index = torch.randint(0, len(obs), (BATCH,), generator=generator)
        return policy.compute_loss({"obs": {POSITION: obs[index]}, "action": action[index]})

    train(diffusion_loss, policy.parameters(), seed=1)

    torch.manual_seed(0)
    # The regression baseline: the same network and data, the plain MSE objective.
    regressor = make_policy(small_config("regression"), stats_of(demos))

    def mse_loss(generator):
        index = torch.randint(0, len(obs), (BATCH,), generator=generator)
        return regressor.compute_loss({"obs": {POSITION: obs[index]}, "action": action[index]})

    train(mse_loss, regressor.parameters(), seed=1)
    return policy.eval(), regressor.eval(), demos


def start_obs(n: int) -> torch.Tensor:
    return torch.tensor([0.0, -1.0]).expand(n, To, 2).clone()


@pytest.mark.parametrize(
    ("sampler", "steps", "most_middle", "least_near"),
    [("ddpm", 100, 0.05, 0.85), ("ddim", 16, 0.08, 0.6)],
)
def test_diffusion_policy_keeps_both_modes(trained, sampler, steps, most_middle, least_near):
    policy, _, demos = trained
    with torch.inference_mode():
        out = policy.predict_action(
            {POSITION: start_obs(N_SAMPLES)},
            generator=torch.Generator().manual_seed(1),
            num_inference_steps=steps,
            sampler=sampler,
        )
    chunks = out["action_pred"].numpy()
    left, right, middle = classify(chunks)
    assert left >= 0.25 and right >= 0.25, (left, right, middle)
    assert middle <= most_middle, (left, right, middle)
    # Samples are demonstration-like paths, not noise that happens to land on a side.
    close = distance_to_nearest_demo(chunks, demos) < 0.1
    assert close.mean() >= least_near, close.mean()


def test_mse_regressor_collapses_to_the_middle(trained):
    _, regressor, demos = trained
    with torch.inference_mode():
        chunk = regressor.predict_action({POSITION: start_obs(1)})["action_pred"].numpy()
        # One pass, no noise: the generator changes nothing.
        again = regressor.predict_action(
            {POSITION: start_obs(1)}, generator=torch.Generator().manual_seed(5)
        )["action_pred"].numpy()
    np.testing.assert_array_equal(chunk, again)
    left, right, middle = classify(chunk)
    assert middle == 1.0, chunk[0, PROBE]
    assert distance_to_nearest_demo(chunk, demos)[0] > 0.4  # far from every demonstration


def test_broken_samplers_fail_the_checks(trained):
    """The checks above are not vacuous: noise and the mean do not pass them."""
    policy, _, demos = trained
    generator = torch.Generator().manual_seed(1)
    noise = torch.randn(N_SAMPLES, T, 2, generator=generator).clamp(-1, 1)
    noise_chunks = policy.normalizer.unnormalize_action(noise).numpy()
    assert (distance_to_nearest_demo(noise_chunks, demos) < 0.1).mean() < 0.05
    mean_chunk = windows(demos)[1][:: N_POINTS + To - 1].mean(0, keepdim=True).numpy()
    assert classify(mean_chunk)[2] == 1.0


STUDENT_STEPS = 400


@pytest.fixture(scope="module")
def student(trained):
    """A consistency student distilled from the diffusion policy's DDIM-16 solutions."""
    teacher, _, demos = trained
    obs, action = windows(demos)
    torch.manual_seed(0)
    student = make_policy(small_config("consistency"), stats_of(demos))
    student.load_state_dict(teacher.state_dict())  # students start from their teacher

    settings = student.config.consistency
    starts = bank_starts(settings.bank_noises, settings.teacher_steps, settings.first_step_share)
    solutions = teacher.consistency_targets(
        {POSITION: obs}, action, starts, settings.teacher_steps, torch.Generator().manual_seed(3)
    )  # entry s * len(obs) + b is window b

    def consistency_loss(generator):
        entry = torch.randint(0, len(solutions["start"]), (BATCH,), generator=generator)
        index = entry % len(obs)
        teacher_part = {name: value[entry] for name, value in solutions.items()}
        batch = {"obs": {POSITION: obs[index]}, "action": action[index], "teacher": teacher_part}
        return student.compute_loss(batch)

    train(consistency_loss, student.parameters(), seed=2, steps=STUDENT_STEPS)
    return student.eval()


@pytest.mark.parametrize("steps", [1, 2])
def test_consistency_student_keeps_both_modes_in_two_evaluations(student, trained, steps):
    """Distilled from the teacher's deterministic sampler, one or two evaluations still land
    on either side of the obstacle, on demonstration-like paths."""
    _, _, demos = trained
    with torch.inference_mode():
        chunks = student.predict_action(
            {POSITION: start_obs(N_SAMPLES)},
            generator=torch.Generator().manual_seed(1),
            num_inference_steps=steps,
        )["action_pred"].numpy()
    left, right, middle = classify(chunks)
    assert left >= 0.2 and right >= 0.2, (left, right, middle)
    assert middle <= 0.15, (left, right, middle)
    close = distance_to_nearest_demo(chunks, demos) < 0.1
    assert close.mean() >= 0.5, close.mean()
