"""A tokenizer's cut at its token limit is counted against the tokenizer itself and recorded with
the text stage (never silent); an adapter that cannot say leaves the count None (not counted)."""

from __future__ import annotations

import warnings

import pytest

from harness.models.text_limits import count_truncated, hf_limit, open_clip_limit
from tests.tiny_hf import bert_tokenizer, siglip_tokenizer

SHORT, LONG = "a dog runs", "one two three four five six seven eight nine ten"


def test_open_clip_counts_match_where_the_tokenizer_cuts():
    from open_clip.tokenizer import SimpleTokenizer

    tok = SimpleTokenizer(context_length=8)
    limit = open_clip_limit(tok)
    assert limit.max_tokens == 8 and limit.lengths([SHORT, LONG]) == [5, 12]  # start + words + end
    ids = tok([SHORT, LONG])
    assert ids[0].tolist()[5:] == [0, 0, 0]  # short: padded, not cut
    assert ids[1].tolist()[-1] == tok.eot_token_id and len(tok.encode(LONG)) + 2 > 8  # long: cut, end kept
    assert count_truncated(limit, [SHORT, LONG, LONG]).truncated == 2


@pytest.mark.parametrize("make, limit", [(bert_tokenizer, 6), (siglip_tokenizer, 6)])
def test_hf_counts_match_the_tokenizers_own_truncation(make, limit):
    tok = make()
    texts = ["a photo", "a photo of a dog on a red square with a cat"]
    lengths = hf_limit(tok, limit).lengths(texts)
    cut = tok(texts, truncation=True, max_length=limit)["input_ids"]
    full = tok(texts, truncation=False)["input_ids"]
    assert lengths == [len(x) for x in full]
    assert [n > limit for n in lengths] == [len(c) < len(f) for c, f in zip(cut, full)] == [False, True]


def test_a_run_records_and_warns_about_cut_captions(tmp_path):
    pytest.importorskip("webdataset", reason="webdataset is a base dependency (pyproject); run make setup")
    from harness.run.runner import RunOptions, expand, run_one
    from tests import wds_fixture as F

    long = " ".join(["a red square left of a blue circle"] * 6)  # well past the tiny model's 32 tokens
    samples = [{"jpg": F.image(0)[1], "txt": f"a red square\n{long}"}, {"png": F.image(1)[1], "txt": "a green one"}]
    root = F.write(tmp_path / "caps", "retrieval", samples=samples)
    spec, = expand("tiny-clip-synth", f"wds:{root}", ["retrieval"], "test", RunOptions())
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        rec = run_one(spec, tmp_path / "results").record
    text = rec.timings["text_encode"]
    assert (text.token_limit, text.truncated) == (32, 1)
    assert any("1 of 3 texts are longer than its 32-token limit" in str(w.message) for w in seen)
