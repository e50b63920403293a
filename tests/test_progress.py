"""Progress bars: when they show (terminal, forced, torchrun rank), that they stay out of
non-terminal output and out of timed regions, that forced bars count what was done, and
``--quiet``'s warning dedup."""

from __future__ import annotations

import io
import json
import re
import time
import warnings
from pathlib import Path

import pytest

from harness.core import progress
from harness.core.progress import ProgressPolicy
from tests.test_flickr8k import make_copy

BAR = re.compile(r"([\w :]+?):\s+100%\|[^|]*\|\s*(\d+)/(\d+)")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_cli(capsys, *argv):
    from harness.cli.main import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def final_counts(err: str) -> dict[str, list[tuple[int, int]]]:
    """Each finished bar's (n, total), by description, from stderr's last redraw of it."""
    found: dict[str, list[tuple[int, int]]] = {}
    for line in err.split("\n"):
        m = BAR.search(line.rsplit("\r", 1)[-1])
        if m:
            found.setdefault(m.group(1).strip(), []).append((int(m.group(2)), int(m.group(3))))
    return found


# ------------------------------------------------------------------------------ policy

def test_policy_follows_the_terminal_unless_forced(monkeypatch) -> None:
    monkeypatch.delenv("RANK", raising=False)
    tty, log = Terminal(), io.StringIO()
    assert ProgressPolicy().enabled(tty) and not ProgressPolicy().enabled(log)
    assert ProgressPolicy(show=True).enabled(log) and not ProgressPolicy(show=False).enabled(tty)
    closed = io.StringIO()
    closed.close()
    assert not ProgressPolicy().enabled(closed)  # a closed stream is no terminal, and no crash
    monkeypatch.setenv("RANK", "1")  # torchrun: only rank 0 draws, even when forced
    assert not ProgressPolicy(show=True).enabled(tty)
    monkeypatch.setenv("RANK", "0")
    assert ProgressPolicy(show=True).enabled(log)


def test_cli_options_become_the_policy() -> None:
    from harness.cli.main import build_parser

    parse = build_parser().parse_args
    assert progress.from_args(parse(["run", "--model", "m"])) == ProgressPolicy()
    assert progress.from_args(parse(["sweep", "--suite", "s", "--progress", "--quiet"])) == \
        ProgressPolicy(show=True, quiet=True)
    assert progress.from_args(parse(["data", "describe", "d", "--no-progress"])).show is False
    assert progress.from_args(parse(["fit", "m", "--progress"])).show is True
    assert progress.from_args(parse(["list", "models"])) == ProgressPolicy()  # no such options there


def test_bars_off_cost_nothing_and_session_restores(monkeypatch) -> None:
    monkeypatch.setattr("sys.stderr", io.StringIO())
    items = [1, 2, 3]
    before = warnings.showwarning
    with progress.session(ProgressPolicy()):
        assert progress.bar("x", 10) is progress.NULL and progress.track(items, "x") is items
    with progress.session(ProgressPolicy(show=True)):
        assert progress.bar("x", 10) is not progress.NULL
        assert progress.bar("x", 0) is progress.NULL  # nothing to count: no bar
    assert warnings.showwarning is before and progress.policy() == ProgressPolicy()


def test_a_line_printed_under_a_live_bar_comes_out_whole(capsys) -> None:
    with progress.session(ProgressPolicy(show=True)), progress.bar("stage", 4) as bar:
        bar.update(2)
        capsys.readouterr()
        progress.echo("run line")
        out, err = capsys.readouterr()
        assert out == "run line\n" and err.startswith("\r") and "2/4" in err  # cleared, then drawn again
        bar.update(2)
    assert final_counts(capsys.readouterr().err) == {"stage": [(4, 4)]}


# ------------------------------------------------------------------------------ timing

class _Images:
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def load(self, i: int):
        return i


class _Model:
    embed_dim = 4

    def image_transform(self):
        import torch

        return lambda i: torch.full((3,), float(i))

    def encode_images(self, px):
        return px.new_ones(len(px), 4)


def test_bar_updates_stay_outside_the_timed_batches(monkeypatch) -> None:
    """A bar whose update takes 50 ms must not show in the batches' latencies: the hook
    sits after ``Stage.batch``. Its counts add up to the items encoded."""
    from harness.core.measure import Stage
    from harness.tasks.encode import EncodeOptions, encode_images

    counted = []

    class SlowBar(progress.NullBar):
        def update(self, n: int = 1) -> None:
            counted.append(n)
            time.sleep(0.05)

    monkeypatch.setattr(progress, "bar", lambda *a, **k: SlowBar())
    with Stage("image_encode") as st:
        emb = encode_images(_Model(), _Images(40), EncodeOptions(batch_size=8), st)
    t = st.timing()
    assert emb.shape == (40, 4) and sum(counted) == 40 and len(counted) == 5
    assert t.latency_ms["p90"] < 25 and t.seconds >= 0.25  # the sleeps are in the stage, not the batches


def test_rerank_bar_counts_every_scored_pair(capsys) -> None:
    from tests.fakes import TableDual
    from tests.test_rerank import PlainScorer, make_data, oracle, run

    data = make_data()
    cross = PlainScorer(oracle(data))
    with progress.session(ProgressPolicy(show=True)):
        result = run(cross, data, prefilter=TableDual.random(len(data.images), len(data.captions)), k=5)
    pairs = cross.pairs_seen
    assert pairs > 0 and result.timings["rerank"].items == pairs
    assert final_counts(capsys.readouterr().err)["rerank"] == [(pairs, pairs)]


def test_fit_features_log_every_20_batches_only_without_bars(capsys) -> None:
    import torch

    from harness.training.fusion_features import _batched

    def fn(batch):
        return {"pooled": torch.zeros(len(batch), 2)}

    for show, expected in ((False, 2), (True, 1)):
        lines: list[str] = []
        with progress.session(ProgressPolicy(show=show)):
            out = _batched(fn, list(range(50)), 2, "captions", lines.append)
        assert out["pooled"].shape == (50, 2) and len(lines) == expected and lines[-1].startswith("captions: 50/50")
        err = capsys.readouterr().err
        assert final_counts(err) == ({"features: captions": [(50, 50)]} if show else {})


# ----------------------------------------------------------------------- the command line

def _lines(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if ln.strip()]


def test_no_terminal_prints_one_line_per_run_and_nothing_else(capsys, tmp_path) -> None:
    args = ("run", "--model", "tiny-clip-synth", "--dataset", "synthetic", "--limit", "24", "--workers", "0",
            "--task", "retrieval", "--task", "zeroshot", "--results", str(tmp_path))
    code, out, err = run_cli(capsys, *args)
    assert code == 0 and err == ""
    lines = _lines(out)
    assert len(lines) == 2 and "retrieval rsum=" in lines[0] and "zeroshot  acc1=" in lines[1]
    code, out2, err = run_cli(capsys, *args, "--no-progress")  # skipped runs: their lines, nothing more
    assert code == 0 and err == "" and len(_lines(out2)) == 2 and out2.count("skipped, already in the store") == 2


def test_forced_progress_counts_every_item_on_stderr(capsys, tmp_path) -> None:
    code, out, err = run_cli(capsys, "run", "--model", "tiny-clip-synth", "--dataset", "synthetic", "--limit", "24",
                             "--workers", "0", "--task", "retrieval", "--task", "zeroshot", "--results", str(tmp_path),
                             "--no-cache", "--progress")
    assert code == 0 and len(_lines(out)) == 2  # stdout unchanged: bars go to stderr
    records = {}
    for path in tmp_path.rglob("*.json"):
        rec = json.loads(path.read_text())
        if "task" in rec:
            records[rec["task"]] = rec
    expected: dict[str, list[tuple[int, int]]] = {}
    for task in ("retrieval", "zeroshot"):  # the order the runs and their stages ran in
        for stage in ("image_encode", "text_encode"):
            n = records[task]["timings"][stage]["items"]
            expected.setdefault(stage.replace("_", " "), []).append((n, n))
    assert expected["image encode"] == [(24, 24), (24, 24)] and expected["text encode"][0] == (120, 120)
    assert final_counts(err) == expected


def test_sweep_shows_the_overall_count(capsys, tmp_path) -> None:
    suite = tmp_path / "mini.yaml"
    suite.write_text("name: mini\nruns:\n  - models: [tiny-clip-random, tiny-clip-synth]\n    datasets: synthetic\n"
                     "    tasks: [retrieval]\n    limit: 16\n")
    argv = ("sweep", "--suite", str(suite), "--workers", "0", "--results", str(tmp_path / "res"))
    code, out, err = run_cli(capsys, *argv, "--progress")
    assert code == 0 and len(_lines(out)) == 3  # the suite's header, then one line per run
    counts = final_counts(err)
    assert counts["suite mini"] == [(2, 2)] and counts["image encode"] == [(16, 16), (16, 16)]
    code, out, err = run_cli(capsys, *argv)  # no terminal: the usual lines only
    assert code == 0 and err == "" and len(_lines(out)) == 3 and out.count("skipped") == 2


def test_data_describe_decode_counts_images(capsys, tmp_path) -> None:
    make_copy(tmp_path / "flickr8k")
    code, out, err = run_cli(capsys, "data", "describe", "flickr8k", "--split", "dev", "--data-root", str(tmp_path),
                             "--decode", "--progress")
    assert code == 0 and "undecodable_images: 0" in out
    assert final_counts(err) == {"decode": [(2, 2)]}


# --------------------------------------------------------------------------- --quiet

def test_quiet_prints_each_warning_once_and_counts_the_rest(capsys, monkeypatch) -> None:
    from harness.cli.main import _format_warning

    monkeypatch.setattr(warnings, "formatwarning", _format_warning)  # as the command line does

    def emit():
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            for _ in range(3):
                warnings.warn("cache: chunk 4 recomputed", stacklevel=1)
            warnings.warn("cache: chunk 4 recomputed", DeprecationWarning, stacklevel=1)  # another category
            warnings.warn("flickr8k: 5 stray lines skipped", stacklevel=1)

    with progress.session(ProgressPolicy()):
        emit()
    loud = capsys.readouterr().err
    assert loud.count("cache: chunk 4 recomputed") == 4 and loud.count("stray") == 1
    with progress.session(ProgressPolicy(quiet=True)):
        emit()
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines.count("vlbench: warning: cache: chunk 4 recomputed") == 2  # once per category
    assert lines[-1] == "vlbench: --quiet: 2 more of this warning not shown: cache: chunk 4 recomputed"
    assert len(lines) == 4  # three distinct warnings, one summary; the stray one never repeated


def test_quiet_sweep_warns_once_about_the_same_data(capsys, tmp_path: Path) -> None:
    """Every run of a sweep loads the data again and warns again; --quiet keeps the first.
    (Python's own once-per-location memory is wiped whenever any library touches the warning
    filters, as torch and transformers do while loading; "always" makes that deterministic.)"""
    make_copy(tmp_path / "flickr8k")  # has stray caption lines: a warning on every load
    suite = tmp_path / "f8.yaml"
    suite.write_text("name: f8\nruns:\n  - models: [tiny-clip-random, tiny-clip-synth]\n    datasets: flickr8k\n"
                     "    tasks: [retrieval]\n    split: dev\n")
    argv = ("sweep", "--suite", str(suite), "--workers", "0", "--data-root", str(tmp_path),
            "--results", str(tmp_path / "res"))

    def stray(err: str) -> int:
        return sum("stray line" in ln and "--quiet" not in ln for ln in err.splitlines())

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        code, out, err = run_cli(capsys, *argv)
        assert code == 0 and stray(err) == 2
        code, out, err = run_cli(capsys, *argv, "--force", "--quiet")
    assert code == 0 and len(_lines(out)) == 3 and stray(err) == 1
    assert "vlbench: --quiet: 1 more of this warning not shown: flickr8k:" in err


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
