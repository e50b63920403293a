"""Leaderboard: records on disk -> DataFrame -> text table and HTML page."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from harness.results.records import ResultRecord, StageTiming
from leaderboard import LeaderboardError, build, format_text, load, main_table, render_html
from leaderboard.frame import COLUMNS, METRIC_KEYS

RETRIEVAL = {"t2i_R@1": 31.25, "t2i_R@5": 60.5, "t2i_R@10": 72.0, "i2t_R@1": 41.0,
             "i2t_R@5": 70.125, "i2t_R@10": 80.0, "rsum": 354.875, "t2i_medr": 3.0,
             "i2t_medr": 2.0, "t2i_meanr": 12.5, "i2t_meanr": 9.25}
ZEROSHOT = {"acc1": 55.5, "acc5": 88.25, "macro_f1": 51.0, "balanced_acc": 54.75}


def make_record(model: str = "tiny-clip", dataset: str = "synthetic", split: str = "test",
                task: str = "retrieval", metrics: dict[str, float] | None = None,
                created_at: str = "2025-01-02T03:04:05+00:00", run_key: str | None = None,
                precision: str = "fp32", **extra) -> dict:
    """A valid ResultRecord dict, built through the dataclass so it tracks the schema."""
    if metrics is None:
        metrics = dict(RETRIEVAL if task == "retrieval" else ZEROSHOT)
    main = "rsum" if task == "retrieval" else "acc1"
    record = ResultRecord(
        model={"name": model, "family": "clip", "kind": "dual", "source": {"hf": "x/y"},
               "checkpoint": f"{model}.safetensors", "checkpoint_sha256": "ab" * 32,
               "params": 12_345_678},
        dataset={"name": dataset, "split": split, "fingerprint": "f00d" * 4, "images": 1000,
                 "captions": 5000},
        task=task,
        options={"batch_size": 64, "precision": precision, "device": "cpu", "seed": 0},
        metrics=metrics,
        main_metric=main,
        timings={
            "image_encode": StageTiming(seconds=10.0, items=1000, items_per_s=123.4, batches=16,
                                        latency_ms={"p50": 40.0, "p90": 55.0, "p99": 60.0},
                                        peak_device_mem_mb=512.0),
            "text_encode": StageTiming(seconds=2.0, items=5000, items_per_s=2500.0, batches=79,
                                       latency_ms={"p50": 5.0, "p90": 7.0, "p99": 9.0}),
        },
        memory={"peak_rss_mb": 2048.0, "peak_device_mem_mb": 600.0},
        environment={"harness_version": "0.1.0", "git_sha": "0123456789abcdef0123",
                     "torch_version": "2.5.1", "device_name": "cpu"},
        created_at=created_at,
        runtime_s=12.5,
        run_key=run_key or f"{model}|{dataset}|{split}|{task}|{precision}",
    )
    raw = record.to_dict()
    raw.update(extra)
    return raw


def write(root: Path, name: str, raw: dict | str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(raw if isinstance(raw, str) else json.dumps(raw), encoding="utf-8")
    return path


@pytest.fixture
def results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    write(root, "a.json", make_record("tiny-clip", metrics=dict(RETRIEVAL)))
    better = {**RETRIEVAL, "t2i_R@1": 45.0, "rsum": 400.0}
    write(root, "nested/deeper/b.json", make_record("big-clip", metrics=better))
    write(root, "zs/c.json", make_record("tiny-clip", task="zeroshot"))
    write(root, "zs/d.json", make_record("siglip-s", task="zeroshot",
                                         metrics={"acc1": 70.0, "acc5": 95.0}))
    write(root, ".hidden.json", "not json")          # skipped: dot file
    write(root, ".cache/x.json", "not json")         # skipped: dot folder
    write(root, "e.json.tmp", "{")                   # skipped: in-flight write
    write(root, "notes.txt", "not a record")         # skipped: not *.json
    return root


def test_load_rows_columns_and_dtypes(results: Path) -> None:
    df = load(results)
    assert len(df) == 4
    assert list(df.columns[: len(COLUMNS)]) == COLUMNS
    assert sorted(df["model"]) == ["big-clip", "siglip-s", "tiny-clip", "tiny-clip"]
    for col in METRIC_KEYS + ["main_value", "ips_image_encode", "ips_text_encode",
                              "latency_p50_ms", "latency_p90_ms", "peak_rss_mb", "runtime_s"]:
        assert df[col].dtype == "float64", col
    for col in ["params", "n_images", "batch_size"]:
        assert str(df[col].dtype) == "Int64", col
    for col in ["model", "dataset", "split", "task", "device", "precision", "git_sha", "run_key"]:
        assert pd.api.types.is_string_dtype(df[col]), col
    assert isinstance(df["created_at"].dtype, pd.DatetimeTZDtype)
    assert str(df["created_at"].dt.tz) == "UTC"

    big = df[df["model"] == "big-clip"].iloc[0]
    assert big["main_metric"] == "rsum" and big["main_value"] == 400.0
    assert big["t2i_R@1"] == 45.0 and big["ips_image_encode"] == pytest.approx(123.4)
    assert big["latency_p50_ms"] == 40.0 and big["latency_p90_ms"] == 55.0
    assert big["latency_stage"] == "image_encode"
    assert big["peak_device_mem_mb"] == 600.0 and big["params"] == 12_345_678
    assert big["n_images"] == 1000 and big["batch_size"] == 64
    assert (big["harness_version"], big["torch_version"]) == ("0.1.0", "2.5.1")
    assert big["path"].endswith("b.json")
    siglip = df[df["model"] == "siglip-s"].iloc[0]
    assert siglip["acc1"] == 70.0 and pd.isna(siglip["macro_f1"]) and pd.isna(siglip["rsum"])


def test_naive_timestamps_are_utc_and_extra_metrics_get_columns(tmp_path: Path) -> None:
    write(tmp_path, "r.json", make_record(created_at="2025-03-01T12:00:00",
                                          metrics={**RETRIEVAL, "custom_score": 0.5}))
    df = load(tmp_path)
    assert df["created_at"].iloc[0] == pd.Timestamp("2025-03-01T12:00:00Z")
    assert df["custom_score"].iloc[0] == 0.5


def test_latest_per_run_key_vs_history(tmp_path: Path) -> None:
    old = {**RETRIEVAL, "rsum": 100.0}
    new = {**RETRIEVAL, "rsum": 200.0}
    write(tmp_path, "z_old.json", make_record(metrics=old, created_at="2025-01-01T00:00:00Z"))
    write(tmp_path, "a_new.json", make_record(metrics=new, created_at="2025-02-01T00:00:00Z"))
    write(tmp_path, "fp16.json", make_record(precision="fp16"))
    latest = load(tmp_path)
    assert len(latest) == 2
    assert latest.loc[latest["precision"] == "fp32", "rsum"].tolist() == [200.0]
    every = load(tmp_path, history=True)
    assert len(every) == 3
    assert sorted(every.loc[every["precision"] == "fp32", "rsum"]) == [100.0, 200.0]


@pytest.mark.parametrize("content", [
    "{not json",
    "[1, 2, 3]",
    json.dumps({"schema_version": 1, "model": {"name": "m"}}),
    json.dumps(make_record(schema_version=99)),
    json.dumps(make_record(created_at="yesterday-ish")),
    json.dumps(make_record(metrics={"rsum": "lots"})),
])
def test_malformed_record_raises_naming_the_file(tmp_path: Path, content: str) -> None:
    write(tmp_path, "good.json", make_record())
    bad = write(tmp_path, "sub/broken.json", content)
    with pytest.raises(LeaderboardError) as info:
        load(tmp_path)
    assert str(bad) in str(info.value)


def test_empty_and_missing_results_dir(tmp_path: Path) -> None:
    df = load(tmp_path)
    assert df.empty and list(df.columns) == COLUMNS
    assert isinstance(df["created_at"].dtype, pd.DatetimeTZDtype)
    assert format_text(df) == "No results.\n"
    write(tmp_path / "one", "r.json", make_record())
    assert df.dtypes.to_dict() == load(tmp_path / "one").dtypes.to_dict()  # same schema
    assert "<table" not in render_html(df)
    missing = tmp_path / "nope"
    with pytest.raises(LeaderboardError, match="nope"):
        load(missing)


def test_main_table_per_task_sorted_by_main_metric(results: Path) -> None:
    tables = main_table(load(results))
    assert set(tables) == {("retrieval", "synthetic", "test"), ("zeroshot", "synthetic", "test")}
    ret = tables[("retrieval", "synthetic", "test")]
    assert ret["model"].tolist() == ["big-clip", "tiny-clip"]
    assert list(ret.columns[:8]) == ["model", "t2i_R@1", "t2i_R@5", "t2i_R@10", "i2t_R@1",
                                     "i2t_R@5", "i2t_R@10", "rsum"]
    for col in ["ips_image_encode", "ips_text_encode", "device", "precision"]:
        assert col in ret.columns
    zs = tables[("zeroshot", "synthetic", "test")]
    assert zs["model"].tolist() == ["siglip-s", "tiny-clip"]
    assert list(zs.columns[:5]) == ["model", "acc1", "acc5", "macro_f1", "balanced_acc"]


def test_format_text_has_models_and_values(results: Path) -> None:
    text = format_text(load(results))
    for needle in ["big-clip", "tiny-clip", "siglip-s", "400.00", "354.88", "45.00",
                   "55.50", "70.00", "123.4", "retrieval: synthetic / test", "fp32"]:
        assert needle in text, needle
    assert text.index("big-clip") < text.index("tiny-clip")


class _StrictParser(HTMLParser):
    VOID = {"meta", "br", "img", "hr", "link", "input"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tables = 0
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tables += tag == "table"
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def parse(page: str) -> _StrictParser:
    parser = _StrictParser()
    parser.feed(page)
    parser.close()
    assert not parser.errors and not parser.stack, (parser.errors, parser.stack)
    return parser


def test_html_contains_every_model_and_a_table_per_group(results: Path) -> None:
    df = load(results)
    page = render_html(df, title="My <board>")
    parsed = parse(page)
    assert parsed.tables == 3  # the overview + one per (task, dataset, split)
    text = "".join(parsed.text)
    for model in df["model"]:
        assert model in text
    assert "My <board>" in text and "My &lt;board&gt;" in page
    assert "400.00" in text and "2025-01-02" in text and "0123456789" in text
    assert "http://" not in page and "https://" not in page  # self-contained


def test_hostile_strings_are_escaped(tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    raw = make_record(model=evil, dataset='d"><img src=x onerror=alert(2)>', split="<b>t</b>")
    raw["environment"]["git_sha"] = "<i>sha</i>"
    raw["options"]["device"] = "<u>cpu</u>"
    write(tmp_path, "evil.json", raw)
    page = render_html(load(tmp_path))
    assert evil not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    for raw_tag in ["<img src=x", "<b>", "<i>", "<u>"]:
        assert raw_tag not in page, raw_tag
    imgs = re.findall(r"<img [^>]*>", page)  # only the page's own plots, as data URIs
    assert imgs and all(re.fullmatch(r'<img alt="[^"<>]*" src="data:image/png;base64,[A-Za-z0-9+/=]+">', i)
                        for i in imgs)
    assert page.count("<script>") == 1  # only the page's own sorting script
    text = "".join(parse(page).text)
    assert evil in text


def test_build_writes_complete_page_atomically(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "site" / "deep" / "index.html"
    got = build(results, out)
    assert got == out and out.is_file()
    page = out.read_text(encoding="utf-8")
    assert parse(page).tables == 3 and page.rstrip().endswith("</html>")
    assert [p.name for p in out.parent.iterdir()] == ["index.html"]  # no temp files left
    build(results, out)  # overwriting works too
    assert out.read_text(encoding="utf-8") == page


def test_build_failure_leaves_no_partial_file(tmp_path: Path) -> None:
    write(tmp_path / "res", "bad.json", "{")
    out = tmp_path / "site" / "index.html"
    with pytest.raises(LeaderboardError):
        build(tmp_path / "res", out)
    assert not out.exists()


def test_import_is_cheap() -> None:
    code = "import sys, leaderboard; leaderboard.load; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
