"""Kendall tau (vs scipy, by hand), the Flickr8k-Expert/CF loader (fixtures in the official
format, the real files' row counts), and the human_agreement task with fake models."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import FLICKR8K, needs_flickr8k
from imagefiles import jpeg_bytes
from judgment_fixture import write_fixture

from harness.datasets import DATASETS, DatasetError, DatasetRequest, TaskKind, flickr8k
from harness.datasets import flickr8k_judgments as J
from harness.metrics import agreement as A
from tests.fakes import TableDual, id_pixels

scipy_stats = pytest.importorskip("scipy.stats")


# ------------------------------------------------------------------------------- Kendall tau


def test_hand_case() -> None:
    # x = 1 2 3 4, y = 1 1 2 3: pairs (6): tied in y only (1,2): 1; the other 5 concordant.
    # tau_b = 5 / sqrt(6 * (6 - 1)) ; tau_c = 2*5 / (16 * (3-1)/3) with m = min(4, 3) = 3
    x, y = [1, 2, 3, 4], [1, 1, 2, 3]
    assert A.kendall_tau(x, y, "b") == pytest.approx(5 / np.sqrt(30))
    assert A.kendall_tau(x, y, "c") == pytest.approx(10 / (16 * 2 / 3))


@pytest.mark.parametrize("variant", ["b", "c"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_scipy_with_ties(variant: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 400))
    x = rng.normal(size=n).round(1)           # ties in the model scores
    y = rng.integers(1, 5, n).astype(float)   # 4 human levels: many ties
    want = scipy_stats.kendalltau(x, y, variant=variant).statistic
    assert A.kendall_tau(x, y, variant) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("variant", ["b", "c"])
def test_weights_equal_repeated_rows(variant: str) -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=60).round(1), rng.integers(0, 6, 60) / 5
    w = rng.integers(0, 4, size=(5, 60))
    got = A.kendall_tau_weighted(x, y, w, variant)
    for b in range(5):
        want = scipy_stats.kendalltau(np.repeat(x, w[b]), np.repeat(y, w[b]), variant=variant).statistic
        assert got[b] == pytest.approx(want, abs=1e-12)


def test_undefined_and_bad_input() -> None:
    assert np.isnan(A.kendall_tau([1, 2, 3], [2, 2, 2], "b"))
    with pytest.raises(ValueError, match="variant"):
        A.kendall_tau([1, 2], [1, 2], "a")
    with pytest.raises(ValueError, match="NaN"):
        A.kendall_tau([1, np.nan], [1, 2])


def test_grouped_interval_resamples_groups() -> None:
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(50), 6)
    human = rng.integers(1, 5, groups.size).astype(float)
    model = human + rng.normal(scale=1.5, size=groups.size)
    tau = 100 * A.kendall_tau(model, human, "c")
    lo, hi = A.grouped_tau_ci(model, human, groups, "c", n_boot=300, seed=0)
    assert lo < tau < hi and hi - lo < 30
    assert (lo, hi) == A.grouped_tau_ci(model, human, groups, "c", n_boot=300, seed=0)  # seeded


# ------------------------------------------------------------------------------------ loader

def fixture_captions(n: int = 8) -> dict[str, list[str]]:
    colours = ["red", "blue", "green", "black", "white", "brown", "yellow", "pink"]
    things = ["dog runs on grass", "girl climbs a wall", "man rides a bike", "cat sleeps on a bed"]
    return {f"{1000 + i}_abc.jpg": [f"a {colours[i % 8]} {things[(i + k) % 4]} number {k}" for k in range(5)]
            for i in range(n)}


@pytest.fixture
def judged(tmp_path: Path) -> Path:
    caps = fixture_captions()
    queries = sorted(caps)[:6]
    return write_fixture(tmp_path, caps, queries, lambda q: jpeg_bytes((10 * len(q), 40, 90)))


def load(name: str, root: Path, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = DATASETS.get(name).load(DatasetRequest(split="test", task=TaskKind.HUMAN_AGREEMENT,
                                                      data_root=str(root), **kw))
    return data, [str(w.message) for w in caught]


def test_expert_protocol_on_fixture(judged: Path) -> None:
    data, _ = load("flickr8k-expert", judged)
    # 6 queries x 7 candidates, the own caption of each dropped; 3 rows per pair
    assert len(data.images) == 6 and len(data.pair_image) == 36 and len(data.human) == 108
    assert data.variant == "c" and data.info["dropped_own_caption_pairs"] == 6
    assert data.row_pair[:6] == [0, 0, 0, 1, 1, 1] and set(data.human) <= {1.0, 2.0, 3.0, 4.0}
    assert data.info["query_split"] == "dev"
    text = (judged / "flickr8k" / "text" / "ExpertAnnotations.txt").read_text().splitlines()
    q, cid, *scores = text[1].split("\t")   # line 2: the first non-own pair of the first query
    img, n = cid.split("#")
    assert data.captions[data.pair_caption[0]] == fixture_captions()[img][int(n)]
    assert data.human[:3] == [float(s) for s in scores]


def test_crowdflower_keeps_own_pairs_and_rates_by_yes_fraction(judged: Path) -> None:
    data, _ = load("flickr8k-cf", judged)
    assert len(data.pair_image) == 42 == len(data.human) and data.variant == "b"
    lines = (judged / "flickr8k" / "text" / "CrowdFlowerAnnotations.txt").read_text().splitlines()
    assert data.human == [int(ln.split("\t")[3]) / 3 for ln in lines]


def test_bad_lines_one_warning_with_ranges_and_counted(judged: Path) -> None:
    path = judged / "flickr8k" / "text" / "CrowdFlowerAnnotations.txt"
    lines = path.read_bytes().split(b"\n")
    junk = [b"\xff\xfe\x00junk\x9c" * 7, b"3387542\xff\xff\xff", b"not\ta\tline", b""]
    path.write_bytes(b"\n".join(lines[:3] + junk + lines[3:]))
    data, caught = load("flickr8k-cf", judged)
    assert len(data.human) == 42 and data.info["dropped_unreadable_lines"] == 4
    msgs = [m for m in caught if "unreadable" in m]
    assert len(msgs) == 1 and str(path) in msgs[0] and "line(s) 4-7" in msgs[0]
    with pytest.raises(DatasetError, match="--strict"):
        load("flickr8k-cf", judged, strict=True)


def test_scores_out_of_range_unknown_caption_and_duplicates(judged: Path) -> None:
    path = judged / "flickr8k" / "text" / "ExpertAnnotations.txt"
    lines = path.read_text().splitlines()
    q = lines[1].split("\t")[0]
    extra = [f"{q}\t1000_abc.jpg#3\t1\t5\t2", f"{q}\t9999_xyz.jpg#0\t1\t1\t1", lines[1]]
    path.write_text("\n".join(lines + extra) + "\n")
    data, caught = load("flickr8k-expert", judged)
    assert len(data.pair_image) == 36
    assert data.info["dropped_unreadable_lines"] == 1 and data.info["dropped_duplicate_pairs"] == 1
    assert data.info["dropped_unknown_captions"] == 1
    assert any("9999_xyz.jpg#0" in m for m in caught) and any(f"line(s) {len(lines) + 3}" in m for m in caught)


def test_missing_query_image_fails_naming_it(judged: Path) -> None:
    victim = sorted(fixture_captions())[2]
    (judged / "flickr8k" / "Flicker8k_Dataset" / victim).unlink()
    with pytest.raises(DatasetError, match=victim):
        load("flickr8k-expert", judged)


def test_limit_subsets_query_images(judged: Path) -> None:
    data, _ = load("flickr8k-expert", judged, limit=3, seed=0)
    assert len(data.images) == 3 and len(data.pair_image) == 18 and len(data.human) == 54
    assert data.info["subset"] == {"limit": 3, "seed": 0}
    again, _ = load("flickr8k-expert", judged, limit=3, seed=0)
    assert again.fingerprint == data.fingerprint and again.human == data.human


def test_missing_annotation_file_and_probe(judged: Path, tmp_path: Path) -> None:
    (judged / "flickr8k" / "text" / "ExpertAnnotations.txt").unlink()
    meta = DATASETS.get("flickr8k-expert")
    assert "ExpertAnnotations.txt not found" in meta.availability(str(judged))
    with pytest.raises(DatasetError, match="ExpertAnnotations.txt not found"):
        load("flickr8k-expert", judged)
    assert DATASETS.get("flickr8k-cf").availability(str(judged)) is None


@needs_flickr8k()
def test_official_files_row_counts() -> None:
    root, token = flickr8k.find_root(str(FLICKR8K.parent))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        expert = J.judgment_table(root, token, "expert")
        cf = J.judgment_table(root, token, "crowdflower")
    assert len(expert["pairs"]) == 5664 and sum(len(p[3]) for p in expert["pairs"]) == 16992
    assert expert["counts"]["dropped_own_caption_pairs"] == 158
    assert len(cf["pairs"]) == 47288 and cf["counts"]["dropped_unreadable_lines"] == 65
    junk = [str(w.message) for w in caught if "unreadable" in str(w.message)]
    assert len(junk) == 1 and "CrowdFlowerAnnotations.txt" in junk[0] and "32419-32483" in junk[0]


@needs_flickr8k()
def test_clean_copy_gives_its_full_count(tmp_path: Path) -> None:
    """The damaged block replaced by well-formed lines: every line counts, no warning."""
    src = FLICKR8K / "text" / "CrowdFlowerAnnotations.txt"
    lines = src.read_bytes().split(b"\n")
    good = lines[32300:32300 + 65]
    fresh = [b"%d_clean.jpg" % i + ln[ln.index(b"\t"):] for i, ln in enumerate(good)]  # new, unique pairs
    fixed = lines[:32418] + fresh + lines[32483:]
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "CrowdFlowerAnnotations.txt").write_bytes(b"\n".join(fixed))
    (tmp_path / "text" / "Flickr8k.token.txt").write_bytes((FLICKR8K / "text" / "Flickr8k.token.txt").read_bytes())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cf = J.judgment_table(tmp_path, tmp_path / "text" / "Flickr8k.token.txt", "crowdflower")
    assert len(cf["pairs"]) == len([ln for ln in fixed if ln.strip()]) == 47353
    assert cf["counts"]["dropped_unreadable_lines"] == 0 and not [w for w in caught if "unreadable" in str(w.message)]


@needs_flickr8k()
def test_real_copy_lacks_the_test_images() -> None:
    with pytest.raises(DatasetError, match="1000 of 1000 images are missing"):
        load("flickr8k-expert", FLICKR8K.parent)


# -------------------------------------------------------------------------------------- task

class _Images:
    """Images are their indices (fake models look scores up)."""

    def __init__(self, n):
        self.paths = [f"img{i}" for i in range(n)]

    def __len__(self):
        return len(self.paths)

    def load(self, i):
        return i

    def subset(self, keep):
        return _Images(len(keep))


class PairTable:
    """A cross-encoder whose match score is a fixed table [image, caption]."""

    name = "pair-table"

    def __init__(self, table):
        self.table = table

    def image_transform(self):
        return id_pixels

    def score_pairs(self, pixels, texts):
        import torch

        return self.table[pixels[:, 0].long(), torch.tensor([int(t[1:]) for t in texts])]


def toy_judgments(variant="c"):
    from harness.datasets.views import JudgmentData

    pairs = [(i, c) for i in range(4) for c in range(5) if (i + c) % 2 == 0 or c == 4]
    rows = [p for p in range(len(pairs)) for _ in range(3 if variant == "c" else 1)]
    rng = np.random.default_rng(0)
    human = [float(rng.integers(1, 5)) for _ in rows]
    return JudgmentData("toy", "test", _Images(4), [f"c{j}" for j in range(5)], [p[0] for p in pairs],
                        [p[1] for p in pairs], rows, human, variant, "fp")


def test_dual_encoder_uses_clip_s_and_reports_tau() -> None:
    import torch

    from harness.tasks import human_agreement as H
    from harness.tasks.encode import EncodeOptions

    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=1)
    txt = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=1)
    data = toy_judgments("c")
    res = H.evaluate(TableDual(img, txt), data, EncodeOptions(batch_size=2))
    cos = (img[data.pair_image] * txt[data.pair_caption]).sum(1)
    want_rows = (2.5 * cos.clamp(min=0))[data.row_pair].double().numpy()
    want = 100 * scipy_stats.kendalltau(want_rows, data.human, variant="c").statistic
    assert res.main_metric == "kendall_tau_c" and res.metrics["kendall_tau_c"] == pytest.approx(want)
    assert res.per_query["score"] == pytest.approx(want_rows.tolist())
    assert res.per_query["group"] == [data.pair_image[p] for p in data.row_pair]
    assert res.details["pair_score"].startswith("CLIP-S")


def test_cross_encoder_scores_every_pair_with_its_match_score() -> None:
    import torch

    from harness.tasks import human_agreement as H
    from harness.tasks.encode import EncodeOptions

    data = toy_judgments("b")
    table = torch.arange(20, dtype=torch.float32).reshape(4, 5) * 0.1
    res = H.evaluate(PairTable(table), data, EncodeOptions(batch_size=3))
    rows = table[torch.tensor(data.pair_image), torch.tensor(data.pair_caption)].double().numpy()
    want = 100 * scipy_stats.kendalltau(rows, data.human, variant="b").statistic
    assert res.main_metric == "kendall_tau_b" and res.metrics["kendall_tau_b"] == pytest.approx(want)


# ------------------------------------------------------------------------------- leaderboard

def test_page_interval_and_scatter_from_the_sidecar() -> None:
    import pandas as pd

    from leaderboard import plots, uncertainty

    rng = np.random.default_rng(0)
    group = np.repeat(np.arange(40), 9)
    human = rng.integers(1, 5, group.size).astype(float)
    score = human + rng.normal(scale=2.0, size=group.size)
    queries = {"score": score, "human": human, "group": group}
    row = pd.Series({"kendall_tau_c": 100 * A.kendall_tau(score, human, "c")})
    cis = uncertainty._intervals(queries, row, uncertainty.UncertaintyOptions(n_boot=200))
    assert cis["kendall_tau_c"] == A.grouped_tau_ci(score, human, group, "c", n_boot=200, seed=0)
    assert cis["kendall_tau_c"][0] < row["kendall_tau_c"] < cis["kendall_tau_c"][1]
    assert uncertainty.has_interval("kendall_tau_b")

    class Cache:
        def get(self, path):
            return queries if path == "a.json" else None

    rows = pd.DataFrame({"label": ["m1", "m2"], "precision": ["fp32"] * 2, "device": ["cpu"] * 2,
                         "path": ["a.json", "missing.json"], "main_value": [row["kendall_tau_c"], np.nan]})
    png = plots.agreement_scatter_plot(rows, Cache())
    assert png is not None and png.startswith(b"\x89PNG")
    assert plots.agreement_scatter_plot(rows.iloc[1:], Cache()) is None
