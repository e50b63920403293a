"""Encode loops and runner: cache hits through a real tiny run, OOM back-off (simulated on
CPU), precision and timings in every record."""

import json

import pytest
import torch

from harness.cli.main import main
from harness.core.interfaces import LoadOptions, Precision
from harness.core.measure import Stage
from harness.datasets import DatasetRequest, TaskKind, synthetic
from harness.models import resolve
from harness.run.runner import RunOptions, RunSpec, run_one
from harness.tasks.encode import EncodeCache, EncodeOptions, encode_images, encode_texts


@pytest.fixture(scope="module")
def tiny():
    return resolve("tiny-clip-synth").load(LoadOptions())


@pytest.fixture(scope="module")
def data(vlbench_cache):
    return synthetic.load(DatasetRequest("test", TaskKind.RETRIEVAL, cache_dir=str(vlbench_cache), limit=24))


class OomAbove:
    """Wraps a dual encoder; raises CUDA out-of-memory for batches larger than ``limit``."""

    def __init__(self, model, limit):
        self.model, self.limit, self.sizes = model, limit, []
        self.name, self.embed_dim = model.name, model.embed_dim

    def _check(self, n):
        self.sizes.append(n)
        if n > self.limit:
            raise torch.cuda.OutOfMemoryError(f"simulated: batch {n} > {self.limit}")

    def image_transform(self):
        return self.model.image_transform()

    def tokenize(self, texts):
        return self.model.tokenize(texts)

    def encode_images(self, pixels):
        self._check(len(pixels))
        return self.model.encode_images(pixels)

    def encode_texts(self, tokens):
        self._check(len(tokens))
        return self.model.encode_texts(tokens)


def _encode(model, data, opts):
    with Stage("image_encode") as si:
        img = encode_images(model, data.images, opts, si)
    with Stage("text_encode") as st:
        txt = encode_texts(model, data.captions[:30], opts, st)  # a few: text encoding dominates
    return img, txt, si.timing(), st.timing()


def test_oom_backoff_halves_the_batch_and_gives_the_same_embeddings(tiny, data):
    opts = EncodeOptions(batch_size=8)
    ref_img, ref_txt, _, _ = _encode(tiny, data, opts)
    flaky = OomAbove(tiny, limit=3)
    with pytest.warns(UserWarning, match="out of memory at batch 8"):
        img, txt, ti, tt = _encode(flaky, data, opts)
    assert torch.allclose(img, ref_img, atol=1e-6) and torch.allclose(txt, ref_txt, atol=1e-6)
    assert img.shape == ref_img.shape and txt.shape == ref_txt.shape
    for t in (ti, tt):
        assert t.batch_size == 8 and t.batch_size_final == 2 and t.oom_backoffs == 2  # 8 -> 4 -> 2
    assert ti.items == 24 and ti.batches == 12  # 24 items in batches of 2: failed tries not counted
    assert [s for s in flaky.sizes if s > 2] == [8, 4, 8, 4]  # halved once per stage, then kept
    assert len(flaky.sizes) == 4 + 12 + 15


def test_oom_at_batch_one_is_raised_not_hidden(tiny, data):
    with pytest.raises(torch.cuda.OutOfMemoryError), pytest.warns(UserWarning):
        _encode(OomAbove(tiny, limit=0), data, EncodeOptions(batch_size=4))


def test_encode_cache_hit_skips_the_model_and_is_not_throughput(tiny, data, tmp_path):
    cache = EncodeCache(root=str(tmp_path), identity={"model": "tiny", "weights": "w"}, chunk_items=10)
    opts = EncodeOptions(batch_size=8, cache=cache)
    img, txt, ti, tt = _encode(tiny, data, opts)
    assert not ti.cached and ti.items_per_s > 0 and ti.batches == 5  # chunks 10+10+4: 8+2, 8+2, 4
    assert not tt.cached and tt.items_per_s > 0 and tt.items == 30
    counting = OomAbove(tiny, limit=10**6)
    img2, txt2, ti2, tt2 = _encode(counting, data, opts)
    assert counting.sizes == []  # nothing encoded
    assert torch.equal(img, img2) and torch.equal(txt, txt2)
    for t, n in ((ti2, 24), (tt2, 30)):
        assert t.cached and t.items_per_s is None and t.items == n and t.cached_items == n and t.batches == 0
    # another batch size is another entry: batch composition can change the last bits
    _, _, ti3, _ = _encode(counting, data, EncodeOptions(batch_size=4, cache=cache))
    assert not ti3.cached and ti3.items_per_s > 0


def _records(results):
    return {json.loads(p.read_text())["task"]: json.loads(p.read_text())
            for p in results.rglob("*.json") if not p.name.endswith(".queries.json")}


def test_second_run_reads_the_cache_and_no_cache_encodes(tmp_path, monkeypatch):
    spec = RunSpec("tiny-clip-synth", "synthetic", "retrieval",
                   options=RunOptions(batch_size=16, limit=20, num_workers=0))
    first = run_one(spec, tmp_path / "r1").record
    second = run_one(spec, tmp_path / "r1", force=True).record
    assert first.metrics == second.metrics
    for stage in ("image_encode", "text_encode"):
        assert not first.timings[stage].cached and first.timings[stage].items_per_s > 0
        assert second.timings[stage].cached and second.timings[stage].items_per_s is None
    assert second.options["embedding_cache"] is True
    spec_nc = RunSpec("tiny-clip-synth", "synthetic", "retrieval",
                      options=RunOptions(batch_size=16, limit=20, num_workers=0, use_cache=False))
    third = run_one(spec_nc, tmp_path / "r1", force=True).record
    assert not third.timings["image_encode"].cached and third.options["embedding_cache"] is False
    assert third.metrics == first.metrics


def test_every_stage_of_a_real_run_is_timed(capsys, tmp_path):
    code = main(["run", "--model", "tiny-clip-synth", "--limit", "20", "--batch-size", "8", "--task", "retrieval",
                 "--task", "zeroshot", "--workers", "0", "--no-cache", "--results", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    records = _records(tmp_path)
    assert set(records) == {"retrieval", "zeroshot"}
    for rec in records.values():
        assert set(rec["timings"]) == {"data_load", "model_load", "image_encode", "text_encode", "scoring"}
        for name, t in rec["timings"].items():
            assert t["seconds"] > 0 and t["peak_rss_mb"] > 0, name
            if name != "model_load":
                assert t["items"] > 0 and t["items_per_s"] > 0, name
        for name in ("image_encode", "text_encode"):
            t = rec["timings"][name]
            assert t["batches"] >= 3 and t["latency_ms"]["p50"] > 0 and not t["cached"]
            assert t["batch_size"] == t["batch_size_final"] == 8 and t["oom_backoffs"] == 0
        opts = rec["options"]
        assert opts["precision"] == "fp32" and opts["weights_dtype"] == "float32" and opts["autocast"] is None
        assert opts["num_workers"] == 0 and opts["pin_memory"] is False and opts["oom_backoffs"] == 0
        assert rec["memory"]["peak_rss_mb"] > 0


def test_amp_on_cpu_records_bf16_autocast(tmp_path):
    spec = RunSpec("tiny-clip-synth", "synthetic", "retrieval",
                   options=RunOptions(batch_size=16, limit=8, precision=Precision.AMP, use_cache=False))
    rec = run_one(spec, tmp_path).record
    assert rec.options["precision"] == "amp" and rec.options["autocast"] == "bfloat16"
    assert rec.options["weights_dtype"] == "float32"


def test_fp16_on_cpu_is_refused_in_one_line(capsys, tmp_path):
    code = main(["run", "--model", "tiny-clip-synth", "--precision", "fp16", "--results", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "vlbench: error: --precision fp16 needs a CUDA device" in err and "bf16" in err
    assert not any(tmp_path.rglob("*.json"))


def test_cuda_stage_uses_events_and_syncs_only_at_the_edges(monkeypatch):
    """No GPU here: torch.cuda is faked to check the CUDA bookkeeping (events per batch,
    synchronisation at enter, after the warm-up and at exit, peak memory reset per stage)."""
    calls = []

    class FakeEvent:
        clock = 0.0

        def __init__(self, enable_timing=False):
            assert enable_timing
            self.t = None

        def record(self):
            FakeEvent.clock += 2.5  # each record: 2.5 ms later on the "device"
            self.t = FakeEvent.clock

        def elapsed_time(self, end):
            return end.t - self.t

    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda d=None: calls.append("sync"))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda d=None: calls.append("reset"))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda d=None: 3 * 2**20)
    with Stage("image_encode", "cuda:0", warmup=1) as st:
        for _ in range(4):
            with st.batch(8):
                pass
    t = st.timing()
    assert calls == ["reset", "sync", "sync", "sync"]  # enter, after warm-up, exit: not per batch
    assert t.batches == 4 and t.items == 32 and t.peak_device_mem_mb == 3.0
    assert t.latency_ms == {"p50": 2.5, "p90": 2.5, "p99": 2.5}


class Recording:
    """Wraps a dual encoder; records the texts of every batch it encodes."""

    def __init__(self, model):
        self.model, self.batches = model, []
        self.name, self.embed_dim = model.name, model.embed_dim

    def tokenize(self, texts):
        self.batches.append(list(texts))
        return self.model.tokenize(texts)

    def encode_texts(self, tokens):
        return self.model.encode_texts(tokens)


def test_texts_are_batched_longest_first_and_returned_in_their_order(tiny, tmp_path):
    """Within each cache chunk, batches hold texts of similar length (longest first), and the
    embeddings come back in the caller's order, equal to encoding each text alone."""
    texts = ["a red circle", "two green triangles left of a big blue square", "a square",
             "three small yellow circles above two red squares", "a blue triangle", "red", "a green circle"]
    rec = Recording(tiny)
    opts = EncodeOptions(batch_size=2, cache=EncodeCache(str(tmp_path), {"model": "t"}, chunk_items=4))
    with Stage("text_encode") as st:
        got = encode_texts(rec, texts, opts, st)
    encoded = [b for b in rec.batches if set(b) <= set(texts)]  # not the tokenizer's identity probe
    assert encoded == [[texts[3], texts[1]], [texts[0], texts[2]],  # chunk 0-3, longest first
                       [texts[4], texts[6]], [texts[5]]]            # chunk 4-6
    alone = torch.cat([tiny.encode_texts(tiny.tokenize([t])) for t in texts])
    torch.testing.assert_close(got, alone, rtol=0, atol=1e-5)
    rec.batches.clear()
    with Stage("text_encode") as st:  # the stored entry is read back in the same order
        again = encode_texts(rec, texts, opts, st)
    assert not [b for b in rec.batches if set(b) <= set(texts)] and torch.equal(again, got)
