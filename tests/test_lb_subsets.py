"""A --limit subset is other data: its own label and table, never starred against the full
split, and it never breaks the leaderboard (issue 13 item 3)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.results import store
from leaderboard import build, format_text, load, main_table, models_by_dataset
from leaderboard.pivots import dataset_metrics
from tests.lb_fixtures import (
    RETRIEVAL_SPECS,
    T0,
    ZEROSHOT_SPECS,
    make,
    retrieval_metrics,
    retrieval_outcomes,
    zeroshot_metrics,
    zeroshot_outcomes,
)
from tests.test_page import PageParser, column, section

TINY = RETRIEVAL_SPECS[0]  # tiny-clip-synth
SUB = "subset 50, seed 0"


def save_run(root: Path, *, limit: int | None = None, seed: int = 0, n_images: int = 200, quality: float = 0.8,
             minutes: int = 0, fingerprint: str = "f1ng3rpr1nt0000", model_seed: int = 10) -> Path:
    spec = dataclasses.replace(TINY, quality=quality)
    per_query = retrieval_outcomes(spec, seed=model_seed)
    rec = make(spec, "synthetic", "test", "retrieval", retrieval_metrics(per_query), T0 + dt.timedelta(minutes=minutes),
               key_suffix=f"|{limit}|{seed}|{minutes}", fingerprint=fingerprint)
    rec.options.update(limit=limit, seed=seed)
    rec.dataset["images"] = n_images
    return store.save(root, rec, per_query)


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """The issue's case: the full split and a --limit 50 run of one model, the subset scoring higher."""
    root = tmp_path / "results"
    save_run(root, quality=0.6)
    save_run(root, limit=50, n_images=50, quality=0.95, minutes=5, fingerprint="subsetprint", model_seed=11)
    return root


def test_leaderboard_command_builds_with_a_full_and_a_subset_run(results, tmp_path, capsys):
    zs = ZEROSHOT_SPECS[0]  # a second table, so the page draws its models x tables overview
    per_query = zeroshot_outcomes(zs, seed=20)
    store.save(results, make(zs, "synthetic", "test", "zeroshot", zeroshot_metrics(per_query), T0), per_query)
    code = main(["leaderboard", "--results", str(results), "--out", str(tmp_path / "site" / "index.html"),
                 "--no-plots"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"== retrieval: synthetic / test [{SUB}]  (1 run," in out
    assert "== retrieval: synthetic / test  (1 run," in out


def test_subset_has_its_own_label_table_and_overview_column(results):
    df = load(results)
    assert sorted(df["label"]) == ["tiny-clip-synth", f"tiny-clip-synth [{SUB}]"]
    assert sorted(df["subset"].fillna("-")) == ["-", SUB]
    tables = main_table(df)
    assert set(tables) == {("retrieval", "synthetic", "test"), ("retrieval", "synthetic", f"test [{SUB}]")}
    assert list(tables[("retrieval", "synthetic", "test")]["model"]) == ["tiny-clip-synth"]
    table = models_by_dataset(df)
    assert list(table.columns) == [("retrieval", "synthetic", "test"), ("retrieval", "synthetic", f"test [{SUB}]")]
    full, sub = (table.loc[(label, "fp32", "cpu")] for label in ("tiny-clip-synth", f"tiny-clip-synth [{SUB}]"))
    assert full.isna().tolist() == [False, True] and sub.isna().tolist() == [True, False]
    assert len(dataset_metrics(df, "synthetic")) == 2
    assert f"tiny-clip-synth [{SUB}]" in format_text(df)


def test_subset_is_never_starred_against_the_full_split(results, tmp_path):
    weaker = dataclasses.replace(TINY, model="big-clip", quality=0.3)  # a second row in the full split
    per_query = retrieval_outcomes(weaker, seed=12)
    store.save(results, make(weaker, "synthetic", "test", "retrieval", retrieval_metrics(per_query), T0), per_query)
    parser = PageParser()
    parser.feed(build(results, tmp_path / "index.html").read_text(encoding="utf-8"))
    site = {"parsed": parser}
    full, subset = section(site, "retrieval: synthetic / test"), section(site, f"retrieval: synthetic / test [{SUB}]")
    assert [c["text"] for c in column(full, "model")] == ["tiny-clip-synth", "big-clip"]
    assert "best" in column(full, "RSUM")[0]["attrs"]["class"]  # the full split's best is its own row
    assert [c["text"] for c in column(subset, "model")] == [f"tiny-clip-synth [{SUB}]"]
    assert not any("best" in c["attrs"].get("class", "") for r in subset["rows"] for c in r["cells"])
    overview = section(site, "overview: main metric per table")
    sub_row = next(r for r in overview["rows"] if r["attrs"]["data-model"] == f"tiny-clip-synth [{SUB}]")
    assert not any("best" in c["attrs"].get("class", "") for c in sub_row["cells"])
    full_row = next(r for r in overview["rows"] if r["attrs"]["data-model"] == "tiny-clip-synth")
    assert any("best" in c["attrs"].get("class", "") for c in full_row["cells"])


def test_subsets_with_other_seeds_are_other_rows_and_whole_split_limits_are_the_full_split(tmp_path):
    root = tmp_path / "results"
    save_run(root, quality=0.6)
    save_run(root, limit=50, seed=0, n_images=50, fingerprint="s0", minutes=1)
    save_run(root, limit=50, seed=1, n_images=50, fingerprint="s1", minutes=2)
    save_run(root, limit=500, n_images=200, minutes=3)  # limit above the split's size: every image
    save_run(root, limit=200, n_images=200, minutes=4)  # limit = size: same fingerprint as the full run
    df = load(root)
    assert sorted(df["split_view"]) == ["test", "test [subset 50, seed 0]", "test [subset 50, seed 1]"]
    full = df[df["split_view"] == "test"]
    assert len(full) == 1 and full["limit"].iloc[0] == 200  # the latest full-split record of the entry
    assert len(load(root, history=True)) == 5
    models_by_dataset(df)  # no "several records" error
