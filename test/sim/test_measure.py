"""The measuring tool behind the quoted expert success rates prints what it measured."""

import json

import pytest

from dp_ros.sim.measure import main


@pytest.mark.sim
def test_experts_measurement_reports_success_and_routes(capsys):
    argv = ["experts", "--task", "lift", "--episodes", "2", "--first-seed", "4"]
    assert main([*argv, "--mode", "multimodal"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["episodes"] == 2 and result["first_seed"] == 4
    assert result["successes"] == 2 and result["success_rate"] == 1.0
    assert result["failed_seeds"] == []
    assert sum(result["routes"].values()) == 2
    assert set(result["routes"]) <= {"left", "right"}
    assert 10 < result["mean_steps"] <= result["max_steps"] < 300


def test_measurement_refuses_empty_runs(capsys):
    assert main(["experts", "--task", "lift", "--episodes", "0"]) == 2
    assert "--episodes=0" in capsys.readouterr().err
    assert main(["speed", "--task", "lift", "--steps", "0"]) == 2
