"""The HTML page built from realistic fixture records: structure, escaping, every record,
best-value marks, intervals, lead tests, plots and provenance; offline and self-contained."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from leaderboard import PageOptions, build, load
from leaderboard.stats import paired_sum_pvalue, rsum_parts, sum_of_means_ci
from tests.lb_fixtures import HOSTILE, HOSTILE_FAMILY, build_results, fixture_site  # noqa: F401 - fixture


class PageParser(HTMLParser):
    """Collects sections -> tables -> rows of cells (text, attributes) and checks nesting."""

    VOID = frozenset({"meta", "br", "img", "hr", "link", "input"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.sections: list[dict] = []
        self.images: list[dict] = []
        self.scripts = 0
        self.options: dict[str, list[str]] = {}
        self._cell: dict | None = None
        self._select: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag not in self.VOID:
            self.stack.append(tag)
        if tag == "script":
            self.scripts += 1
        elif tag == "section":
            self.sections.append({"attrs": a, "title": "", "header": [], "rows": [], "figures": []})
        elif tag == "tr" and self.sections and "tbody" in self.stack:
            self.sections[-1]["rows"].append({"attrs": a, "cells": []})
        elif tag in ("td", "th"):
            self._cell = {"tag": tag, "attrs": a, "text": ""}
        elif tag == "img":
            self.images.append(a)
            if self.sections:
                self.sections[-1]["figures"].append(a.get("alt"))
        elif tag == "select":
            self._select = a["id"]
            self.options[self._select] = []
        elif tag == "option" and self._select:
            self.options[self._select].append(a.get("value", ""))

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
            return
        self.stack.pop()
        if tag in ("td", "th") and self._cell is not None:
            cell, self._cell = self._cell, None
            if tag == "th":
                self.sections[-1]["header"].append(cell["text"].strip())
            else:
                self.sections[-1]["rows"][-1]["cells"].append(cell)
        elif tag == "select":
            self._select = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data
        elif self.stack and self.stack[-1] == "h2":
            self.sections[-1]["title"] += data


@pytest.fixture(scope="module")
def site(fixture_site) -> dict:  # noqa: F811 - the imported session fixture
    parser = PageParser()
    parser.feed(fixture_site["page"])
    parser.close()
    return {**fixture_site, "parsed": parser}


def section(site: dict, title: str) -> dict:
    return next(s for s in site["parsed"].sections if s["title"] == title)


def column(sec: dict, header: str) -> list[dict]:
    i = sec["header"].index(header)
    return [r["cells"][i] for r in sec["rows"]]


def models(sec: dict) -> list[str]:
    return [c["text"] for c in column(sec, "model")]


def test_structure_is_well_formed_and_one_table_per_group(site):
    parsed = site["parsed"]
    assert not parsed.errors and not parsed.stack, (parsed.errors, parsed.stack)
    assert [s["title"] for s in parsed.sections] == [
        "overview: main metric per table", "suite score: fixture score",
        "retrieval: flickr8k / dev", "retrieval: synthetic / test", "zeroshot: synthetic / test"]
    assert site["page"].count("<table") == 5


def test_every_latest_record_appears_once_in_its_table(site):
    df = load(site["results"])
    assert len(df) == 10 and len(load(site["results"], history=True)) == 12
    for task, dataset, label in site["paths"]:
        title = f"{task}: {dataset} / {'dev' if dataset == 'flickr8k' else 'test'}"
        assert models(section(site, title)).count(label) == 1, (title, label)
    syn = section(site, "retrieval: synthetic / test")
    assert models(syn) == ["tiny-clip-synth", "blip (ITC\u2192ITM k=128)", "big-clip",
                           "blip (ITC only)", HOSTILE]  # best RSUM first; the tie broken by name


def test_columns_of_each_task(site):
    ret = section(site, "retrieval: synthetic / test")["header"]
    for header in ["t2i R@1", "t2i R@5", "t2i R@10", "i2t R@1", "i2t R@5", "i2t R@10", "RSUM",
                   "p vs next", "eval img/s", "img/s", "txt/s", "rerank/s", "p50 ms", "p90 ms",
                   "peak RSS MB", "params", "device", "precision", "batch", "date", "git sha", "versions"]:
        assert header in ret, header
    zs = section(site, "zeroshot: synthetic / test")["header"]
    assert zs[:5] == ["model", "acc@1", "acc@5", "macro F1", "bal. acc"] and "rerank/s" not in zs


def test_hostile_strings_are_text_not_markup(site):
    page = site["page"]
    assert HOSTILE not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert site["parsed"].scripts == 1  # only the page's own script
    syn = section(site, "retrieval: synthetic / test")
    hostile_row = next(r for r in syn["rows"] if r["cells"][0]["text"] == HOSTILE)
    assert hostile_row["attrs"]["data-model"] == HOSTILE            # attribute round-trips as text
    assert hostile_row["attrs"]["data-family"] == HOSTILE_FAMILY
    assert HOSTILE_FAMILY in site["parsed"].options["filter-family"]


def test_self_contained_no_network(site):
    page = site["page"]
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", page)
    assert "http://" not in page and "https://" not in page and "@import" not in page
    assert "<link" not in page
    assert "th.num" in page and "applyFilter" in page  # CSS and JS inlined from assets/


def test_plots_are_inline_pngs(site):
    parsed = site["parsed"]
    assert parsed.images
    for img in parsed.images:
        assert img["src"].startswith("data:image/png;base64,")
        assert base64.b64decode(img["src"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    syn = section(site, "retrieval: synthetic / test")
    assert syn["figures"] == ["accuracy vs throughput", "recall@k curves", "latency and memory", "trend"]
    assert section(site, "retrieval: flickr8k / dev")["figures"] == [
        "accuracy vs throughput", "recall@k curves", "latency and memory"]  # no history: no trend
    assert "recall@k curves" not in section(site, "zeroshot: synthetic / test")["figures"]


def test_best_value_per_column_is_marked(site):
    syn = section(site, "retrieval: synthetic / test")

    def best(header: str) -> list[str]:
        return [models(syn)[i] for i, c in enumerate(column(syn, header)) if "best" in c["attrs"].get("class", "")]

    assert best("RSUM") == ["tiny-clip-synth"]
    assert best("img/s") == [HOSTILE]                     # fastest
    assert best("p50 ms") == [HOSTILE]                    # lowest latency is best
    assert best("peak RSS MB") == [HOSTILE]               # least memory is best
    assert best("t2i R@10") == ["tiny-clip-synth", "blip (ITC\u2192ITM k=128)", "big-clip",
                                "blip (ITC only)"]        # ties all marked
    assert best("params") == []                           # size is not ranked


def test_intervals_match_stats_on_the_sidecars(site):
    syn = section(site, "retrieval: synthetic / test")
    per_query = site["outcomes"][("retrieval", "synthetic")]["tiny-clip-synth"]
    lo, hi = sum_of_means_ci(rsum_parts(per_query["t2i_rank"], per_query["i2t_rank"]))
    cell = column(syn, "RSUM")[models(syn).index("tiny-clip-synth")]
    assert f"{lo:.2f}\u2013{hi:.2f}" in cell["text"]
    assert lo < float(cell["attrs"]["data-sort"]) < hi
    t2i = np.array(per_query["t2i_rank"])
    lo1, hi1 = sum_of_means_ci([100.0 * (t2i <= 1)])
    assert f"{lo1:.2f}\u2013{hi1:.2f}" in column(syn, "t2i R@1")[0]["text"]


def test_lead_over_next_marked_when_not_significant(site):
    syn = section(site, "retrieval: synthetic / test")
    order, p_cells = models(syn), column(syn, "p vs next")
    ranks = site["outcomes"][("retrieval", "synthetic")]
    parts = {m: rsum_parts(r["t2i_rank"], r["i2t_rank"]) for m, r in ranks.items()}
    for i, (model, cell) in enumerate(zip(order, p_cells)):
        if i == len(order) - 1:
            assert cell["text"] == "-"  # nothing below the last row
            continue
        p = paired_sum_pvalue(parts[model], parts[order[i + 1]])
        assert float(cell["attrs"]["data-sort"]) == pytest.approx(p)
        assert ("ns" in cell["attrs"]["class"]) == (p >= 0.05), model
    # planted: ITC->ITM improves 2 of 1000 queries over big-clip, not significant; tiny-clip's lead is
    assert "ns" in p_cells[1]["attrs"]["class"] and "ns" not in p_cells[0]["attrs"]["class"]
    assert "\u2248" in column(syn, "RSUM")[1]["text"] and "\u2248" not in column(syn, "RSUM")[0]["text"]


def test_provenance_per_row(site):
    syn = section(site, "retrieval: synthetic / test")
    row = syn["rows"][0]
    cells = {h: c for h, c in zip(syn["header"], row["cells"])}
    assert cells["device"]["text"] == "cpu" and cells["device"]["attrs"]["title"] == "Test CPU"
    assert cells["precision"]["text"] == "fp32" and cells["batch"]["text"] == "32"
    assert cells["date"]["text"] == "2025-03-11 09:00"
    assert cells["git sha"]["text"] == "0123456789" and cells["git sha"]["attrs"]["title"].startswith("0123456789abcdef")
    assert cells["versions"]["text"] == "vlbench 0.1.0 \u00b7 torch 2.5.1 \u00b7 python 3.11.9"
    assert cells["params"]["text"] == "1.0M"


def test_filters_list_tasks_datasets_families(site):
    opts = site["parsed"].options
    assert opts["filter-task"] == ["", "retrieval", "zeroshot"]
    assert opts["filter-dataset"] == ["", "flickr8k", "synthetic"]
    assert set(opts["filter-family"]) == {"", "blip", "clip", "siglip", HOSTILE_FAMILY}
    groups = [s for s in site["parsed"].sections if s["attrs"].get("class") == "group"]
    assert len(groups) == 3
    for sec in groups:
        assert sec["attrs"]["data-task"] in opts["filter-task"]


def test_overview_is_the_models_by_dataset_pivot(site):
    from leaderboard import models_by_dataset

    table = models_by_dataset(load(site["results"]))
    ov = section(site, "overview: main metric per table")
    assert len(ov["rows"]) == len(table) == 6
    for row in ov["rows"]:
        label, precision, device = (c["text"] for c in row["cells"][:3])
        for cell, key in zip(row["cells"][3:], table.columns):
            want = table.loc[(label, precision, device), key]
            assert cell["text"] == ("-" if np.isnan(want) else f"{want:.2f}"), (label, key)
            best = table[key].max()
            assert ("best" in cell["attrs"]["class"]) == (not np.isnan(want) and want == best)


def test_missing_sidecar_renders_without_intervals(tmp_path):
    info = build_results(tmp_path / "r")
    path = info["paths"][("zeroshot", "synthetic", "siglip-s")]
    path.with_name(path.stem + ".queries.json").unlink()
    no_plots = PageOptions(plots=False)
    page = build(tmp_path / "r", tmp_path / "i.html", options=no_plots).read_text(encoding="utf-8")
    assert "<img" not in page
    parser = PageParser()
    parser.feed(page)
    zs = next(s for s in parser.sections if s["title"] == "zeroshot: synthetic / test")
    acc = dict(zip([c["text"] for c in column(zs, "model")], column(zs, "acc@1")))
    assert "\u2013" not in acc["siglip-s"]["text"] and "\u2013" in acc["tiny-clip-synth"]["text"]
    p_cells = dict(zip([c["text"] for c in column(zs, "model")], column(zs, "p vs next")))
    assert p_cells["tiny-clip-synth"]["text"] == "-"  # its neighbour has no outcomes: no test


def test_empty_results_give_a_page_without_tables(tmp_path):
    (tmp_path / "empty").mkdir()
    page = build(tmp_path / "empty", tmp_path / "e.html").read_text(encoding="utf-8")
    assert "<table" not in page and "No results yet" in page


def test_cli_leaderboard_rebuilds_the_same_page(site, tmp_path, capsys):
    """Also the reproducibility check: a second build (fixed bootstrap seed) is byte-identical."""
    from harness.cli.main import main

    out = tmp_path / "cli" / "index.html"
    assert main(["leaderboard", "--results", str(site["results"]), "--out", str(out),
                 "--suite", str(site["suite"])]) == 0
    printed = capsys.readouterr().out
    assert out.read_text(encoding="utf-8") == site["page"]
    assert "blip (ITC only)" in printed and f"-> {out}" in printed


def test_real_path_sizes(site):
    assert Path(site["out"]).stat().st_size < 2_000_000  # a few plots, not megabytes
