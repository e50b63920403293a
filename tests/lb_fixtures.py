"""Realistic leaderboard fixtures: several models (one with a hostile name), retrieval and
zero-shot, BLIP-style rerank variants, a history of runs, and per-query sidecars whose
outcomes agree with the records' metrics (the metrics are computed from them)."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from harness.results import store
from harness.results.records import ResultRecord, StageTiming

HOSTILE = "<script>alert(1)</script>"
HOSTILE_FAMILY = '"><img src=x onerror=alert(2)>'
N_IMAGES, CAPTIONS_PER_IMAGE, N_ZS = 200, 5, 240
T0 = dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.timezone.utc)


@dataclass
class Spec:
    model: str
    family: str
    kind: str = "dual"
    params: int = 1_000_000
    quality: float = 0.5             # chance a query's first hit is at rank 1 (geometric ranks)
    ips: float = 100.0               # image encode items/s
    rss_mb: float = 900.0
    rerank_k: int | None = None
    prefilter: str | None = None
    like: str | None = None          # copy this spec's outcomes and improve `tweak` of them
    tweak: int = 0
    extra_opts: dict = field(default_factory=dict)


RETRIEVAL_SPECS = [
    Spec("tiny-clip-synth", "clip", quality=0.80, ips=140.0, rss_mb=880.0),
    Spec("big-clip", "clip", params=150_000_000, quality=0.55, ips=40.0, rss_mb=2400.0),
    Spec("blip", "blip", kind="both", params=224_000_000, quality=0.55, ips=25.0, rss_mb=3100.0,
         rerank_k=0, like="big-clip"),                       # ITC only: same as big-clip
    Spec("blip", "blip", kind="both", params=224_000_000, quality=0.55, ips=8.0, rss_mb=3300.0,
         rerank_k=128, like="big-clip", tweak=2),           # ITC->ITM: a hair better, not significant
    Spec(HOSTILE, HOSTILE_FAMILY, quality=0.10, ips=300.0, rss_mb=500.0),
]
ZEROSHOT_SPECS = [
    Spec("tiny-clip-synth", "clip", quality=0.90, ips=90.0),
    Spec("siglip-s", "siglip", params=90_000_000, quality=0.70, ips=55.0, rss_mb=1500.0),
    Spec(HOSTILE, HOSTILE_FAMILY, quality=0.05, ips=300.0, rss_mb=500.0),
]
FLICKR_SPECS = [
    Spec("big-clip", "clip", params=150_000_000, quality=0.35, ips=35.0, rss_mb=2500.0),
    Spec("siglip-s", "siglip", params=90_000_000, quality=0.30, ips=50.0, rss_mb=1500.0),
]
# Older runs of tiny-clip-synth on synthetic retrieval (the newest is in RETRIEVAL_SPECS).
HISTORY_QUALITIES = [0.40, 0.65]


def _ranks(rng: np.random.Generator, n: int, quality: float) -> np.ndarray:
    return rng.geometric(quality, size=n).astype(np.int64)


def retrieval_outcomes(spec: Spec, seed: int, base: dict | None = None) -> dict[str, list]:
    rng = np.random.default_rng(seed)
    if base is not None:  # the same queries as `base`, `tweak` of them improved to rank 1
        t2i, i2t = np.array(base["t2i_rank"]), np.array(base["i2t_rank"])
        t2i[np.flatnonzero(t2i > 1)[: spec.tweak]] = 1
    else:
        t2i = _ranks(rng, N_IMAGES * CAPTIONS_PER_IMAGE, spec.quality)
        i2t = np.minimum(_ranks(rng, N_IMAGES, min(0.97, spec.quality * 1.1)), t2i[:N_IMAGES])
    return {"t2i_rank": t2i.tolist(), "i2t_rank": i2t.tolist()}


def retrieval_metrics(per_query: dict[str, list]) -> dict[str, float]:
    out = {}
    for d in ("t2i", "i2t"):
        ranks = np.array(per_query[f"{d}_rank"])
        for k in (1, 5, 10):
            out[f"{d}_R@{k}"] = float(100.0 * np.mean(ranks <= k))
        out[f"{d}_medr"] = float(np.floor(np.median(ranks)))
        out[f"{d}_meanr"] = float(ranks.mean())
    out["rsum"] = sum(out[f"{d}_R@{k}"] for d in ("t2i", "i2t") for k in (1, 5, 10))
    return out


def zeroshot_outcomes(spec: Spec, seed: int) -> dict[str, list]:
    rng = np.random.default_rng(seed)
    correct = rng.random(N_ZS) < spec.quality
    labels = np.arange(N_ZS) % 24
    pred = np.where(correct, labels, (labels + 1) % 24)
    return {"correct": correct.tolist(), "pred": pred.tolist()}


def zeroshot_metrics(per_query: dict[str, list]) -> dict[str, float]:
    acc1 = float(100.0 * np.mean(per_query["correct"]))
    return {"acc1": acc1, "acc5": min(100.0, acc1 + 20.0), "macro_f1": acc1 - 1.0, "balanced_acc": acc1}


def make(spec: Spec, dataset: str, split: str, task: str, metrics: dict, created: dt.datetime,
         key_suffix: str = "", fingerprint: str = "f1ng3rpr1nt0000") -> ResultRecord:
    n = N_IMAGES if task == "retrieval" else N_ZS
    image_s = n / spec.ips
    opts = {"batch_size": 32, "device": "cpu", "precision": "fp32", "seed": 0, "limit": None,
            "weights": None, "num_workers": 1, **spec.extra_opts}
    if spec.rerank_k is not None or spec.prefilter is not None:
        opts.update(rerank_k=spec.rerank_k, prefilter=spec.prefilter)
    timings = {
        "data_load": StageTiming(seconds=1.5, items=n, items_per_s=n / 1.5),
        "model_load": StageTiming(seconds=0.7, items=1, items_per_s=1 / 0.7),
        "image_encode": StageTiming(seconds=image_s, items=n, items_per_s=spec.ips, batches=7,
                                    latency_ms={"p50": 32_000 / spec.ips, "p90": 36_000 / spec.ips,
                                                "p99": 40_000 / spec.ips}, peak_rss_mb=spec.rss_mb),
        "text_encode": StageTiming(seconds=image_s / 3, items=n * 5, items_per_s=spec.ips * 15, batches=32,
                                   latency_ms={"p50": 3.0, "p90": 4.0, "p99": 5.0}),
    }
    if spec.rerank_k:
        timings["rerank"] = StageTiming(seconds=n * spec.rerank_k / 2000, items=n * spec.rerank_k,
                                        items_per_s=2000.0)
    eval_s = sum(t.seconds for k, t in timings.items() if k not in ("data_load", "model_load"))
    variant = f"{spec.rerank_k}|{spec.prefilter}"
    return ResultRecord(
        model={"name": spec.model, "family": spec.family, "kind": spec.kind, "source": {"test": True},
               "checkpoint": f"{spec.model}.safetensors", "checkpoint_sha256": "ab" * 32, "params": spec.params},
        dataset={"name": dataset, "split": split, "fingerprint": fingerprint, "images": n},
        task=task, options=opts, metrics=metrics,
        main_metric="rsum" if task == "retrieval" else "acc1",
        timings=timings, memory={"peak_rss_mb": spec.rss_mb, "peak_device_mem_mb": None},
        environment={"harness_version": "0.1.0", "git_sha": "0123456789abcdef" + key_suffix[:4].ljust(4, "0"),
                     "torch": "2.5.1", "python": "3.11.9", "device_name": "Test CPU"},
        created_at=created.isoformat(timespec="seconds"), runtime_s=eval_s + 2.2,
        run_key=hashlib.sha256(f"{spec.model}|{dataset}|{split}|{task}|{variant}{key_suffix}".encode()).hexdigest()[:24],
    )


def build_results(root: Path) -> dict:
    """Write the fixture store under ``root``; returns what the tests check against:
    per (task, dataset) the latest records' labels and per-query outcomes by label."""
    outcomes: dict[tuple[str, str], dict[str, dict]] = {}
    paths: dict[tuple[str, str, str], Path] = {}

    def save(spec, dataset, split, task, per_query, metrics, created, **kw):
        rec = make(spec, dataset, split, task, metrics, created, **kw)
        return store.save(root, rec, per_query)

    by_model: dict[str, dict] = {}
    for i, spec in enumerate(RETRIEVAL_SPECS):
        per_query = retrieval_outcomes(spec, seed=10 + i, base=by_model.get(spec.like) if spec.like else None)
        by_model.setdefault(spec.model, per_query)
        path = save(spec, "synthetic", "test", "retrieval", per_query, retrieval_metrics(per_query),
                    T0 + dt.timedelta(days=10, minutes=i))
        outcomes.setdefault(("retrieval", "synthetic"), {})[_label(spec)] = per_query
        paths[("retrieval", "synthetic", _label(spec))] = path
    for j, quality in enumerate(HISTORY_QUALITIES):  # older runs: other run keys, same entry
        old = Spec("tiny-clip-synth", "clip", quality=quality, ips=120.0 + 10 * j)
        per_query = retrieval_outcomes(old, seed=100 + j)
        save(old, "synthetic", "test", "retrieval", per_query, retrieval_metrics(per_query),
             T0 + dt.timedelta(days=3 * j), key_suffix=f"|old{j}")
    for i, spec in enumerate(ZEROSHOT_SPECS):
        per_query = zeroshot_outcomes(spec, seed=20 + i)
        path = save(spec, "synthetic", "test", "zeroshot", per_query, zeroshot_metrics(per_query),
                    T0 + dt.timedelta(days=10, hours=1, minutes=i))
        outcomes.setdefault(("zeroshot", "synthetic"), {})[_label(spec)] = per_query
        paths[("zeroshot", "synthetic", _label(spec))] = path
    for i, spec in enumerate(FLICKR_SPECS):
        per_query = retrieval_outcomes(spec, seed=30 + i)
        path = save(spec, "flickr8k", "dev", "retrieval", per_query, retrieval_metrics(per_query),
                    T0 + dt.timedelta(days=11, minutes=i), fingerprint="flickrdev0000")
        outcomes.setdefault(("retrieval", "flickr8k"), {})[_label(spec)] = per_query
        paths[("retrieval", "flickr8k", _label(spec))] = path
    return {"outcomes": outcomes, "paths": paths}


# The suite whose score the fixture page shows (named explicitly, so the page does not depend on
# the project's own suites): synthetic retrieval + zero-shot. tiny-clip-synth and HOSTILE have
# both; big-clip and the blip setups lack zero-shot, siglip-s lacks retrieval.
FIXTURE_SUITE = """\
name: fixture
runs:
  - {models: [tiny-clip-synth, big-clip, siglip-s], datasets: [synthetic], tasks: [retrieval, zeroshot], split: test}
aggregate:
  name: fixture score
  groups:
    retrieval: [{task: retrieval}]
"""


def write_suite(root: Path, text: str = FIXTURE_SUITE, name: str = "fixture.yaml") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(text, encoding="utf-8")
    return root / name


@pytest.fixture(scope="session")
def fixture_site(tmp_path_factory) -> dict:
    """The fixture store and the page built from it, once per session (the page test and the
    browser test share it: a build renders ~10 plots)."""
    from leaderboard import PageOptions, build

    root = tmp_path_factory.mktemp("lb-site")
    info = build_results(root / "results")
    suite = write_suite(root / "suites")
    out = build(root / "results", root / "site" / "index.html", options=PageOptions(suites=(str(suite),)))
    return {**info, "results": root / "results", "out": out, "page": out.read_text(encoding="utf-8"),
            "suite": suite}


def _label(spec: Spec) -> str:
    if spec.rerank_k == 0:
        return f"{spec.model} (ITC only)"
    if spec.rerank_k:
        return f"{spec.model} (ITC\u2192ITM k={spec.rerank_k})"
    return spec.model
