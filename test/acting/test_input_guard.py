"""The input guard: distance outside the training range, in ranges, per feature."""

import numpy as np
import pytest

from dp_ros.acting.input_guard import MIN_SPAN, InputGuard

STATS = {
    "pos": {"min": np.array([0.0, -1.0]), "max": np.array([1.0, 1.0])},
    "flat": {"min": np.array([0.5]), "max": np.array([0.5])},  # constant in training
    "camera": {},  # images have no range
}


def guard(margin=2.0):
    return InputGuard.from_stats(STATS, ["pos", "flat", "camera"], margin)


def test_inside_or_near_the_range_passes_and_far_outside_is_named_with_its_distance():
    g = guard()
    inside = {"pos": np.array([[0.5, 0.0], [1.0, -1.0]]), "flat": np.full((2, 1), 0.5)}
    assert g.worst(inside) is None and g.check(inside) is None
    near = {"pos": np.array([[0.5, 0.0], [2.5, 0.0]]), "flat": np.full((2, 1), 0.5)}
    assert g.worst(near).excess == pytest.approx(1.5) and g.check(near) is None
    far = {"pos": np.array([[0.5, 0.0], [0.5, -7.0]]), "flat": np.full((2, 1), 0.5)}
    found = g.check(far)
    assert (found.key, found.index, found.value, found.low, found.high) == ("pos", 1, -7, -1, 1)
    assert found.excess == pytest.approx(3.0)
    assert found.reason == "input pos[1]=-7 is 3 training ranges outside [-1, 1]; holding"


def test_a_feature_constant_in_training_is_measured_in_min_span_units():
    g = guard()
    noisy = {"pos": np.zeros((2, 2)) + 0.5, "flat": np.full((2, 1), 0.5 + MIN_SPAN)}
    assert g.worst(noisy).excess == pytest.approx(1.0) and g.check(noisy) is None
    far = {"pos": np.zeros((2, 2)) + 0.5, "flat": np.full((2, 1), 1e6)}
    assert g.check(far).key == "flat"


def test_the_worst_of_several_inputs_is_reported():
    g = guard()
    both = {"pos": np.array([[5.0, 0.0]]), "flat": np.array([[0.5 + 10 * MIN_SPAN]])}
    assert g.check(both).key == "flat"  # 10 spans beats 4


def test_margin_zero_or_no_statistics_means_no_guard():
    assert InputGuard.from_stats(STATS, ["pos"], 0.0) is None
    assert InputGuard.from_stats({}, ["pos"], 5.0) is None
    with pytest.raises(ValueError, match="margin=0"):
        InputGuard({"pos": (np.zeros(1), np.ones(1))}, 0)


def test_acting_core_holds_naming_the_input_before_running_the_policy(tmp_path):
    from dp_ros.acting.acting_loop import ActingConfig, ActingCore
    from dp_ros.policy.config import ShapeMeta
    from dp_ros.policy.runtime import PolicyRunner
    from dp_ros.testing.checkpoints import make_tiny_checkpoint

    meta = ShapeMeta(low_dim={"robot0_eef_pos": 3})
    runner = PolicyRunner.from_checkpoint(make_tiny_checkpoint(tmp_path / "ckpt", meta))
    config = ActingConfig(50_000_000, 5_000_000, 500_000_000, 0, 10.0)
    core = ActingCore(runner, config)
    core.input_guard = InputGuard.from_stats(runner.policy.normalizer.stats, runner.obs_keys, 5.0)
    predicted = []
    runner_predict = runner.predict
    runner.predict = lambda obs, held=None: predicted.append(obs) or runner_predict(obs, held)
    core.reset(10**9)  # an episode starting here: one observation is enough
    core.add("robot0_eef_pos", 10**9, np.array([1e6, 0, 0], np.float32))
    outcome = core.act(lambda: 10**9)
    assert outcome.chunk is None and outcome.input == "robot0_eef_pos"
    assert outcome.reason.startswith("input robot0_eef_pos[0]=1e+06 is 5e+05 training ranges")
    assert predicted == []
    core.reset(2 * 10**9)
    core.add("robot0_eef_pos", 2 * 10**9, np.array([0.5, 0, 0], np.float32))
    assert core.act(lambda: 2 * 10**9).chunk is not None
