"""The in-process ratio benchmarks: a harness path against a bare loop doing the same work.

Each bare reference is what a user would write by hand around the same model: decode,
preprocess, stack, call the network, normalise; no DataLoader, no Stage, no cache, no
OOM back-off. Every bench checks that both sides computed the same thing, so a fast
wrong answer fails instead of passing the gate. The harness side goes through exactly the
code a run uses (``encode_images``, ``encode_texts``, ``retrieval_ranks``,
``score_pair_index``), so a slowdown planted there shows up here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache

from harness.core.errors import OptionError
from harness.gate.perf.interleave import Measurement, interleaved


@dataclass(frozen=True)
class BenchOptions:
    """Sizes of one bench run; a floors file entry's ``options`` override these key by key."""

    model: str = "tiny-clip-synth"
    items: int = 256          # images (encode, rerank), texts (text encode), images (scoring)
    batch_size: int = 64
    repeats: int = 7
    warmup: int = 1
    threads: int | None = None  # torch intra-op threads for both sides (None: torch's default)
    captions_per_image: int = 5  # scoring: gallery/query sizes
    dim: int = 256               # scoring: embedding width
    candidates: int = 8          # rerank: images per caption
    dataset: str = "synthetic"   # process: what `vlbench run` evaluates (retrieval)
    split: str | None = None
    weights: str | None = None
    data_root: str | None = None
    device: str = "cpu"          # image_encode: where both sides encode (benchmarks/gpu_check.py: cuda)

    @classmethod
    def from_dict(cls, d: dict, where: str) -> BenchOptions:
        known = set(asdict(cls()))
        unknown = sorted(set(d) - known)
        if unknown:
            raise OptionError(f"{where}: unknown option(s) {unknown}; allowed: {sorted(known)}")
        return cls(**d)


def _check(name: str, ok: bool, what: str) -> None:
    if not ok:
        raise AssertionError(f"perf bench {name}: harness and bare reference disagree ({what})")


@lru_cache(maxsize=4)  # benches only read models and data: one load per process, not per bench
def _model(name: str, device: str = "cpu"):
    from harness.core.interfaces import LoadOptions
    from harness.models import resolve

    return resolve(name).load(LoadOptions(device=device))


@lru_cache(maxsize=8)
def _synthetic(limit: int):
    from harness.datasets import DatasetRequest, TaskKind, synthetic

    return synthetic.load(DatasetRequest("test", TaskKind.RETRIEVAL, limit=limit))


def image_encode(o: BenchOptions) -> Measurement:
    """``encode_images`` (DataLoader, decode + preprocess, adapter, Stage) vs a plain loop."""
    import torch
    import torch.nn.functional as F

    from harness.core.measure import Stage
    from harness.tasks.encode import EncodeOptions, encode_images

    model, data = _model(o.model, o.device), _synthetic(o.items)
    net, tf, n, bs, dev = model.model, model.image_transform(), len(data.images), o.batch_size, o.device
    opts = EncodeOptions(batch_size=bs, device=dev, num_workers=0)
    out = {}

    def harness():
        with Stage("image_encode", dev) as st:  # the Stage synchronises a CUDA device at its ends
            out["h"] = encode_images(model, data.images, opts, st)

    def bare():
        with torch.inference_mode():
            parts = [F.normalize(net.encode_image(torch.stack([tf(data.images.load(i)) for i in
                                                               range(s, min(s + bs, n))]).to(dev)).float(), dim=-1)
                     for s in range(0, n, bs)]
        out["b"] = torch.cat(parts)
        if dev.startswith("cuda"):
            torch.cuda.synchronize(dev)  # the clock stops when the kernels are done, as the Stage's does

    m = interleaved("image_encode", harness, bare, o.repeats, n, o.warmup, asdict(o))
    _check(m.name, torch.allclose(out["h"], out["b"], atol=1e-5), "image embeddings")
    return m


def text_encode(o: BenchOptions) -> Measurement:
    """``encode_texts`` (tokenise + encode + Stage, longest-first batching, trimmed padding)
    vs a plain tokenise + ``encode_text`` loop in dataset order."""
    import torch
    import torch.nn.functional as F

    from harness.core.measure import Stage
    from harness.tasks.encode import EncodeOptions, encode_texts

    model = _model(o.model)
    texts = list(_synthetic(max(1, o.items // o.captions_per_image + 1)).captions)[:o.items]
    net, bs = model.model, o.batch_size
    opts = EncodeOptions(batch_size=bs, device="cpu", num_workers=0)
    out = {}

    def harness():
        with Stage("text_encode", "cpu") as st:
            out["h"] = encode_texts(model, texts, opts, st)

    def bare():
        with torch.inference_mode():
            parts = [F.normalize(net.encode_text(model.tokenize(texts[s:s + bs])).float(), dim=-1)
                     for s in range(0, len(texts), bs)]
        out["b"] = torch.cat(parts)

    m = interleaved("text_encode", harness, bare, o.repeats, len(texts), o.warmup, asdict(o))
    _check(m.name, torch.allclose(out["h"], out["b"], atol=1e-4), "text embeddings")
    return m


def single_block_ranks(img, txt, c2i):
    """Reference first-hit ranks from the whole captions x images matrix at once (ties
    against the model), for sizes whose matrix fits in memory."""
    import torch

    scores = txt @ img.T                                          # (M, N)
    pos = c2i[:, None] == torch.arange(img.shape[0])[None, :]
    thr = scores.gather(1, c2i[:, None])
    t2i = ((scores >= thr) & ~pos).sum(1) + 1
    queried = torch.bincount(c2i, minlength=img.shape[0]).nonzero().squeeze(1)
    s_i = scores.T[queried]                                       # (N', M)
    pos_i = pos.T[queried]
    thr_i = s_i.masked_fill(~pos_i, float("-inf")).amax(1, keepdim=True)
    i2t = ((s_i >= thr_i) & ~pos_i).sum(1) + 1
    return t2i, i2t


def scoring(o: BenchOptions) -> Measurement:
    """``metrics.retrieval_ranks`` (chunked, both directions) vs :func:`single_block_ranks`
    on seeded unit-norm embeddings: ``items`` images, ``captions_per_image`` captions each."""
    import torch

    from harness.metrics import functional as M

    g = torch.Generator().manual_seed(0)
    n, m = o.items, o.items * o.captions_per_image
    img = torch.nn.functional.normalize(torch.randn(n, o.dim, generator=g), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(m, o.dim, generator=g), dim=-1)
    c2i = torch.arange(m) // o.captions_per_image
    out = {}

    def harness():
        out["h"] = M.retrieval_ranks(img, txt, c2i)

    def bare():
        out["b"] = single_block_ranks(img, txt, c2i)

    res = interleaved("scoring", harness, bare, o.repeats, n + m, o.warmup, asdict(o))
    _check(res.name, all(torch.equal(a, b) for a, b in zip(out["h"], out["b"])), "ranks")
    return res


def rerank(o: BenchOptions) -> Measurement:
    """``tasks.pairs.score_pair_index`` (grouping by image, DataLoader, Stage) vs scoring the
    same pairs directly: each image's and caption's features once, then the head per pair."""
    import torch

    from harness.core.measure import Stage
    from harness.tasks.encode import EncodeOptions
    from harness.tasks.pairs import DEFAULT_PAIR_BATCH, concat, score_pair_index, take

    model, data = _model(o.model), _synthetic(o.items)
    n, caps, bs = len(data.images), list(data.captions), o.batch_size
    g = torch.Generator().manual_seed(0)
    cand = torch.stack([torch.randperm(n, generator=g)[:o.candidates] for _ in caps])  # (M, k)
    cand[:, 0] = torch.as_tensor(data.caption_to_image)  # the true image is a candidate
    pairs = torch.stack([cand.reshape(-1), torch.arange(len(caps)).repeat_interleave(cand.shape[1])], 1)
    opts, tf = EncodeOptions(batch_size=bs, device="cpu", num_workers=0), model.image_transform()
    out = {}

    def harness():
        with Stage("rerank", "cpu") as st:
            out["h"] = score_pair_index(model, data.images, caps, pairs, opts, st)

    def bare():
        img = concat([model.image_features(torch.stack([tf(data.images.load(i)) for i in range(s, min(s + bs, n))]))
                      for s in range(0, n, bs)])
        txt = concat([model.text_features(caps[s:s + bs]) for s in range(0, len(caps), bs)])
        out["b"] = torch.cat([model.score_features(take(img, pairs[s:s + DEFAULT_PAIR_BATCH, 0]),
                                                   take(txt, pairs[s:s + DEFAULT_PAIR_BATCH, 1])).float()
                              for s in range(0, len(pairs), DEFAULT_PAIR_BATCH)])

    m = interleaved("rerank", harness, bare, o.repeats, len(pairs), o.warmup, asdict(o))
    _check(m.name, torch.allclose(out["h"], out["b"], atol=1e-4), "pair scores")
    return m


def _process(o: BenchOptions) -> Measurement:
    from harness.gate.perf.process import whole_process

    return whole_process(o)


BENCHES: dict[str, Callable[[BenchOptions], Measurement]] = {
    "image_encode": image_encode, "text_encode": text_encode, "scoring": scoring, "rerank": rerank,
    "process": _process,
}


def run_bench(kind: str, options: BenchOptions) -> Measurement:
    """Run one bench (``kind`` from :data:`BENCHES`) with ``options.threads`` torch threads."""
    import torch

    fn = BENCHES[kind]
    before = torch.get_num_threads()
    if options.threads:
        torch.set_num_threads(options.threads)
    try:
        return fn(options)
    finally:
        torch.set_num_threads(before)
