"""EpisodeTally: which outcomes an evaluation counts, and the seeds it reports for them."""

import pytest

from dp_ros.sim.tally import EpisodeTally


def test_counts_only_the_evaluations_episodes_with_their_seeds():
    tally = EpisodeTally(n_episodes=3, first_seed=100000)
    assert tally.add(1, True, 30, "success") is None  # before the evaluation began
    tally.begin(first_episode=4)
    assert tally.add(3, True, 30, "success") is None  # an earlier episode ending late
    assert tally.add(4, False, 5, "reset") is None  # not an episode result
    first = tally.add(4, True, 40, "success")
    assert (first.episode, first.seed, first.success) == (4, 100000, True)
    assert tally.add(4, True, 40, "success") is None  # the same outcome twice counts once
    second = tally.add(5, False, 400, "horizon")
    assert second.seed == 100001 and not tally.done
    assert tally.line(second) == (
        "episode 2/3 (seed 100001): failure (horizon) after 400 steps; 1 successes so far"
    )
    tally.add(6, True, 35, "success")
    assert tally.done and tally.add(7, True, 35, "success") is None
    summary = tally.summary()
    assert summary["episodes"] == 3 and summary["successes"] == 2
    assert summary["success_rate"] == pytest.approx(2 / 3)
    assert [r["seed"] for r in summary["results"]] == [100000, 100001, 100002]


def test_needs_at_least_one_episode():
    with pytest.raises(ValueError, match="n_episodes=0: must be >= 1"):
        EpisodeTally(n_episodes=0, first_seed=0)
