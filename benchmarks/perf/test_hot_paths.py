"""Hot paths under pytest-benchmark: scoring, data loading, the encode loops, the cache.

    make perf            # compare with the saved baseline; fails when a median is 25% slower
    make perf-baseline   # measure and save a new baseline (benchmarks/.benchmarks)

Sizes are small (each bench well under a second a round) so the suite runs in about a
minute on 2 cores. Every bench checks its result too, so a fast wrong answer fails.
"""

import pytest
import torch

from harness.core.interfaces import LoadOptions
from harness.core.measure import Stage
from harness.datasets import DatasetRequest, TaskKind, synthetic
from harness.metrics import functional as M
from harness.models import resolve
from harness.results.cache import load_or_compute
from harness.tasks.encode import EncodeOptions, _Pixels, encode_images, encode_texts

ROUNDS = {"rounds": 5, "iterations": 1, "warmup_rounds": 1}


@pytest.fixture(scope="module")
def tiny():
    return resolve("tiny-clip-synth").load(LoadOptions())


@pytest.fixture(scope="module")
def data():
    return synthetic.load(DatasetRequest("test", TaskKind.RETRIEVAL, limit=256))


def _unit(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=-1)


def test_scoring_ranks_2k_images_10k_captions(benchmark):
    img, txt = _unit(2000, 256, 0), _unit(10000, 256, 1)
    gt = torch.arange(10000) // 5
    t2i, i2t = benchmark.pedantic(M.retrieval_ranks, args=(img, txt, gt), **ROUNDS)
    assert t2i.shape == (10000,) and i2t.shape == (2000,) and int(t2i.min()) >= 1


def test_data_loading_decode_and_preprocess(benchmark, tiny, data):
    from torch.utils.data import DataLoader

    def load_all():
        loader = DataLoader(_Pixels(data.images, tiny.image_transform()), batch_size=64, num_workers=0)
        return sum(len(b) for b in loader)

    assert benchmark.pedantic(load_all, **ROUNDS) == 256


def test_encode_images_loop(benchmark, tiny, data):
    opts = EncodeOptions(batch_size=64)

    def run():
        with Stage("image_encode") as st:
            return encode_images(tiny, data.images, opts, st)

    assert benchmark.pedantic(run, **ROUNDS).shape == (256, tiny.embed_dim)


def test_encode_texts_loop(benchmark, tiny, data):
    opts, texts = EncodeOptions(batch_size=64), data.captions[:512]

    def run():
        with Stage("text_encode") as st:
            return encode_texts(tiny, texts, opts, st)

    assert benchmark.pedantic(run, **ROUNDS).shape == (512, tiny.embed_dim)


def test_cache_hit_read_and_verify(benchmark, tmp_path):
    emb = _unit(20000, 512, 2)
    key = {"bench": "cache-hit"}
    load_or_compute(tmp_path, key, len(emb), lambda s, e: {"embedding": emb[s:e]})

    def hit():
        return load_or_compute(tmp_path, key, len(emb), lambda s, e: pytest.fail("cache miss"))

    out, info = benchmark.pedantic(hit, **ROUNDS)
    assert info.hit and torch.equal(out["embedding"], emb)
