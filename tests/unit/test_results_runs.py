"""dlx.results.runs: the order of a table of runs (best first) and how a duration is printed."""

import math

import pytest

from dlx.results.runs import Run, best_first, format_duration


def run(name: str, best: float | None, mode: str = "max", metric: str = "val/acc",
        status: str = "completed") -> Run:
    return Run(name=name, status=status, metric=metric, mode=mode, best=best)


def names(runs: list[Run]) -> list[str]:
    return [r.name for r in runs]


# --- best_first ----------------------------------------------------------------------------------------------


def test_best_first_sorts_a_max_metric_highest_first() -> None:
    runs = [run("0", 0.8), run("1", 0.95), run("2", 0.5), run("3", 0.9)]
    assert names(best_first(runs)) == ["1", "3", "0", "2"]


def test_best_first_sorts_a_min_metric_lowest_first() -> None:
    runs = [run("0", 0.3, "min", "val/loss"), run("1", 0.1, "min", "val/loss"), run("2", 2.0, "min", "val/loss")]
    assert names(best_first(runs)) == ["1", "0", "2"]


def test_runs_without_a_score_come_last_in_their_order() -> None:
    runs = [
        run("failed", 0.99, status="failed"),  # a failed run's best is not a score
        run("a", 0.7),
        run("pending", None, status="pending"),
        run("nan", math.nan),
        run("b", 0.9),
        run("none", None),
        run("interrupted", 0.95, status="interrupted"),
    ]
    assert names(best_first(runs)) == ["b", "a", "failed", "pending", "nan", "none", "interrupted"]


def test_equal_scores_keep_their_order() -> None:
    runs = [run("0", 0.5), run("1", 0.9), run("2", 0.5)]
    assert names(best_first(runs)) == ["1", "0", "2"]


def test_runs_of_different_metrics_are_grouped_by_metric() -> None:
    runs = [run("loss-a", 0.4, "min", "val/loss"), run("acc-a", 0.6), run("loss-b", 0.2, "min", "val/loss"),
            run("acc-b", 0.9)]
    assert names(best_first(runs)) == ["acc-b", "acc-a", "loss-b", "loss-a"]


def test_best_first_does_not_change_its_argument() -> None:
    runs = [run("0", 0.1), run("1", 0.9)]
    best_first(runs)
    assert names(runs) == ["0", "1"]


def test_best_first_of_no_runs() -> None:
    assert best_first([]) == []


def test_a_run_from_a_summary_has_its_score() -> None:
    summary = {"status": "completed", "monitor": {"metric": "val/loss", "mode": "min"},
               "best": {"value": 0.25, "step": 40}, "steps": 50}
    loaded = Run.from_summary("3", summary)
    assert (loaded.metric, loaded.mode, loaded.best, loaded.best_step, loaded.steps) == ("val/loss", "min", 0.25, 40, 50)
    assert loaded.has_score
    assert not Run.from_summary("4", {"status": "failed", "best": None}).has_score


# --- format_duration -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "printed"), [
    (0, "0:00"),
    (5, "0:05"),
    (59.4, "0:59"),
    (59.6, "1:00"),  # rounded to the second
    (61, "1:01"),
    (600, "10:00"),
    (3599, "59:59"),
    (3600, "1:00:00"),
    (3661, "1:01:01"),
    (36000 + 59, "10:00:59"),
    (90000, "25:00:00"),  # hours do not roll over into days
])
def test_format_duration(seconds: float, printed: str) -> None:
    assert format_duration(seconds) == printed
