"""The page's suite-score section, on the fixture records and the fixture suite
(tests/lb_fixtures.py: synthetic retrieval + zero-shot, a group "retrieval")."""

from __future__ import annotations

import numpy as np
import pytest

from tests.lb_fixtures import FIXTURE_SUITE, HOSTILE, build_results, fixture_site, write_suite  # noqa: F401 - fixture
from tests.test_page import PageParser, column, models


@pytest.fixture(scope="module")
def board(fixture_site) -> dict:  # noqa: F811 - the imported session fixture
    parser = PageParser()
    parser.feed(fixture_site["page"])
    sec = next(s for s in parser.sections if s["title"] == "suite score: fixture score")
    return {**fixture_site, "sec": sec}


def _mean_r1(outcomes: dict, label: str) -> float:
    """Retrieval as it enters the mean: the mean of t2i and i2t R@1 (DataComp's)."""
    ranks = outcomes[("retrieval", "synthetic")][label]
    return (100 * np.mean(np.array(ranks["t2i_rank"]) <= 1) + 100 * np.mean(np.array(ranks["i2t_rank"]) <= 1)) / 2


def _by_hand(outcomes: dict, label: str) -> tuple[float, float, float]:
    """(suite mean, retrieval's number, zero-shot acc1)."""
    mean_r1, acc1 = _mean_r1(outcomes, label), 100 * np.mean(outcomes[("zeroshot", "synthetic")][label]["correct"])
    return (mean_r1 + acc1) / 2, mean_r1, acc1


def test_columns_and_rows(board):
    sec = board["sec"]
    assert sec["header"] == ["model", "precision", "device", "mean (2 tasks)", "retrieval", "retrieval (type)",
                             "zeroshot (type)", "Borda", "tasks"]
    # complete models first, best mean first; then the ones that lack a task
    assert models(sec) == ["tiny-clip-synth", HOSTILE, "big-clip", "blip (ITC only)",
                           "blip (ITC\u2192ITM k=128)", "siglip-s"]


def test_complete_models_have_the_hand_computed_mean_with_an_interval_and_a_rank(board):
    sec = board["sec"]
    for i, label in enumerate(["tiny-clip-synth", HOSTILE]):
        mean, mean_r1, acc1 = _by_hand(board["outcomes"], label)
        cell = column(sec, "mean (2 tasks)")[i]
        assert float(cell["attrs"]["data-sort"]) == pytest.approx(mean)
        assert cell["text"].startswith(f"{mean:.2f}") and "\u2013" in cell["text"]  # value, then its interval
        lo, hi = (float(x) for x in cell["text"][len(f"{mean:.2f}"):].split("\u2013"))
        assert lo < mean < hi
        assert float(column(sec, "retrieval")[i]["attrs"]["data-sort"]) == pytest.approx(mean_r1)
        assert float(column(sec, "zeroshot (type)")[i]["attrs"]["data-sort"]) == pytest.approx(acc1)
        assert column(sec, "Borda")[i]["text"] == str(i + 1)
        assert column(sec, "tasks")[i]["text"] == "2/2"
    assert "best" in column(sec, "mean (2 tasks)")[0]["attrs"]["class"]


def test_incomplete_models_are_marked_not_averaged(board):
    sec = board["sec"]
    rows = dict(zip(models(sec), sec["rows"]))
    for label, lacks in [("big-clip", "zeroshot:synthetic/test"), ("blip (ITC only)", "zeroshot:synthetic/test"),
                         ("siglip-s", "retrieval:synthetic/test")]:
        row = rows[label]
        cells = dict(zip(sec["header"], row["cells"]))
        assert row["attrs"]["class"] == "incomplete"
        assert cells["mean (2 tasks)"]["text"] == "incomplete" and cells["mean (2 tasks)"]["attrs"]["data-sort"] == ""
        assert lacks in cells["mean (2 tasks)"]["attrs"]["title"]
        assert cells["Borda"]["text"] == "-"
        assert cells["tasks"]["text"] == f"1/2: missing {lacks}"
    # what they have is still shown: big-clip's retrieval, siglip-s's zero-shot
    big = dict(zip(sec["header"], rows["big-clip"]["cells"]))
    assert float(big["retrieval"]["attrs"]["data-sort"]) == pytest.approx(_mean_r1(board["outcomes"], "big-clip"))
    assert "lack tasks of this suite" in board["page"]


def test_cli_shows_every_applying_suite_by_default(tmp_path, monkeypatch, capsys):
    from harness.cli.main import main
    from harness.run import suites

    build_results(tmp_path / "r")
    other = write_suite(tmp_path / "suites", "runs: [{models: m, datasets: nowhere, tasks: zeroshot, split: x}]\n"
                        "aggregate: {}\n", "unrelated.yaml")
    write_suite(tmp_path / "suites")
    monkeypatch.setenv("VLBENCH_SUITES", str(other.parent))
    monkeypatch.setattr(suites, "_SUITES", None)  # re-list the suite folders
    out = tmp_path / "auto.html"
    assert main(["leaderboard", "--results", str(tmp_path / "r"), "--out", str(out), "--no-plots", "--n-boot", "50"]) == 0
    page = out.read_text(encoding="utf-8")
    assert "suite score: fixture score" in page and "unrelated" not in page  # no record on its task
    assert main(["leaderboard", "--results", str(tmp_path / "r"), "--out", str(out), "--no-plots", "--n-boot", "50",
                 "--no-suite-scores"]) == 0
    assert "suite score:" not in out.read_text(encoding="utf-8")
    capsys.readouterr()
    assert main(["leaderboard", "--results", str(tmp_path / "r"), "--out", str(out), "--no-plots",
                 "--suite", "default-nope"]) == 2
    assert "default-nope" in capsys.readouterr().err
    typo = write_suite(tmp_path / "bad", FIXTURE_SUITE.replace("[{task: retrieval}]", "[synthetc]"), "typo.yaml")
    assert main(["leaderboard", "--results", str(tmp_path / "r"), "--out", str(out), "--no-plots",
                 "--suite", str(typo)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(typo) in err and "dataset=synthetc matches none" in err
    monkeypatch.setattr(suites, "_SUITES", None)
