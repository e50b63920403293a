"""BLEU's per-image sufficient statistics: summed, they give pycocoevalcap's corpus BLEU-1..4
(and, one image alone, its per-image BLEU), so a bootstrap over images recomputes the very
corpus number a record holds. Seeded sets with empty candidates, unicode, one-item corpora."""

from __future__ import annotations

import numpy as np
import pytest

from harness.metrics.captioning import bleu_from_statistics, bleu_statistics, tokenize_corpus

VOCAB = ["a", "dog", "cat", "red", "ball", "on", "the", "grass", "runs", "café", "naïve", "two", "big"]


def corpus(seed: int, n: int):
    rng = np.random.default_rng(seed)
    words = lambda k: " ".join(rng.choice(VOCAB, size=k))  # noqa: E731
    cands = [words(int(rng.integers(0, 12))) for _ in range(n)]
    refs = [[words(int(rng.integers(1, 14))) for _ in range(int(rng.integers(1, 6)))] for _ in range(n)]
    return cands, refs


@pytest.mark.parametrize(("seed", "n"), [(0, 40), (1, 7), (2, 1), (3, 25)])
def test_summed_statistics_give_pycocoevalcap_bleu(seed, n):
    from pycocoevalcap.bleu.bleu import Bleu

    cands, refs = corpus(seed, n)
    cands[0] = ""  # an empty candidate scores 0, as in pycocoevalcap
    gts, res = tokenize_corpus(cands, refs, "python")
    total, each = Bleu(4).compute_score(gts, res, verbose=0)
    stats = np.asarray(bleu_statistics(gts, res))
    assert stats.shape == (n, 10) and stats[0, 0] == 0
    assert bleu_from_statistics(stats.sum(axis=0)) == pytest.approx(100 * np.asarray(total), abs=1e-6)
    assert bleu_from_statistics(stats) == pytest.approx(100 * np.asarray(each).T, abs=1e-6)


def test_a_bootstrap_batch_recomputes_each_resample_at_once():
    cands, refs = corpus(4, 12)
    stats = np.asarray(bleu_statistics(*tokenize_corpus(cands, refs, "python")))
    idx = np.random.default_rng(0).integers(0, 12, size=(5, 12))
    batch = bleu_from_statistics(stats[idx].sum(axis=1))
    assert batch.shape == (5, 4)
    assert batch[2] == pytest.approx(bleu_from_statistics(stats[idx[2]].sum(axis=0)))
