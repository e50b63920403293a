"""Captioner adapters on tiny random configs: BLIP captioning and GIT (transformers, saved
with save_pretrained and loaded through the registry), open_clip CoCa (a tiny config); each
generates, matches its library's own generate, counts its tokens; offline is one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from harness.core.interfaces import Captioner, DualEncoder, GenerateOptions, LoadOptions, WeightsUnavailableError
from harness.models import resolve
from tests import tiny_hf


def make_blip_captioner(path: Path) -> Path:
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipImageProcessor

    tok = tiny_hf.bert_tokenizer(extra=("[DEC]", "[ENC]", "picture"))
    cfg = BlipConfig(text_config=dict(vocab_size=len(tok), encoder_hidden_size=32, bos_token_id=len(tok) - 3,
                                      pad_token_id=0, sep_token_id=3, eos_token_id=3, **tiny_hf.TINY),
                     vision_config=dict(image_size=32, patch_size=8, initializer_range=0.02, **tiny_hf.TINY))
    torch.manual_seed(0)
    return tiny_hf._save(path, BlipForConditionalGeneration(cfg), tok, BlipImageProcessor(size={"height": 32, "width": 32}))


def make_git(path: Path) -> Path:
    from transformers import CLIPImageProcessor, GitConfig, GitForCausalLM

    tok = tiny_hf.bert_tokenizer()
    cfg = GitConfig(vocab_size=len(tok), bos_token_id=2, eos_token_id=3, pad_token_id=0, max_position_embeddings=64,
                    vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=37,
                                       num_hidden_layers=1, num_attention_heads=4), **tiny_hf.TINY)
    torch.manual_seed(0)
    proc = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return tiny_hf._save(path, GitForCausalLM(cfg), tok, proc)


def images(n: int = 3):
    g = torch.Generator().manual_seed(3)
    return [Image.fromarray((torch.rand(40, 48, 3, generator=g) * 255).byte().numpy()) for _ in range(n)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-captioners")
    return {"blip": make_blip_captioner(root / "blip"), "git": make_git(root / "git")}


@pytest.mark.parametrize("family, name", [("blip", "blip-caption"), ("git", "git-base-coco")])
def test_transformers_captioners_generate_as_transformers_does(tiny, family, name):
    m = resolve(name).load(LoadOptions(weights=str(tiny[family])))
    assert isinstance(m, Captioner) and resolve(name).kind.value == "captioner"
    tf = m.image_transform()
    px = torch.stack([tf(im) for im in images()])
    opts = GenerateOptions(max_new_tokens=6, num_beams=2)
    captions = m.generate(px, opts)
    assert len(captions) == 3 and all(isinstance(c, str) for c in captions)
    assert m.generate(px, opts) == captions  # deterministic without sampling
    # transformers' own generate, decoded the same way
    kwargs = dict(max_new_tokens=6, num_beams=2, do_sample=False)
    with torch.no_grad():
        if family == "blip":
            ids = m.tokenizer(["a picture of "] * 3, return_tensors="pt")
            ref = m.model.generate(pixel_values=px, input_ids=ids["input_ids"], attention_mask=ids["attention_mask"], **kwargs)
            start = ids["input_ids"].shape[1] - 1
        else:
            ref = m.model.generate(pixel_values=px, **kwargs)
            start = 1
    want = [" ".join(t.split()) for t in m.tokenizer.batch_decode(ref[:, start:], skip_special_tokens=True)]
    assert captions == want
    assert 3 <= m.last_generated_tokens <= 3 * 6  # at least one token each, at most the cap
    assert m.checkpoint["sha256"]  # the weights file is hashed for the record


def test_blip_captioner_refuses_a_git_directory(tiny):
    with pytest.raises(WeightsUnavailableError, match=r"holds a 'git' model; expected blip"):
        resolve("blip-caption").load(LoadOptions(weights=str(tiny["git"])))


@pytest.mark.parametrize("name", ["Salesforce/blip-image-captioning-base", "microsoft/git-base-coco",
                                  "coca_ViT-B-32/mscoco_finetuned_laion2b_s13b_b90k"])
def test_captioners_offline_are_one_line(name):
    with pytest.raises(WeightsUnavailableError) as info:
        resolve(name).load()
    assert "\n" not in str(info.value) and "offline" in str(info.value)


TINY_COCA = {
    "embed_dim": 32,  # = the decoder width, as in coca_ViT-B-32 (512)
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "attentional_pool": True,
                   "attn_pooler_heads": 4, "output_tokens": True, "head_width": 8},
    "text_cfg": {"context_length": 20, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 1,
                 "embed_cls": True, "output_tokens": True},
    "multimodal_cfg": {"context_length": 20, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 1,
                       "attn_pooler_heads": 4},
    "custom_text": True,
}


def tiny_coca(tmp_path: Path):
    """coca_ViT-B-32's layout at width 32, one layer per tower, random init (seed 0)."""
    import json

    import open_clip

    from harness.models.coca import CocaModel

    cfg = tmp_path / "tiny_coca_test.json"
    cfg.write_text(json.dumps(TINY_COCA))
    open_clip.add_model_config(cfg)
    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms("tiny_coca_test")
    # open_clip leaves the decoder's text_projection as torch.empty (pretrained weights fill it):
    # uninitialised memory made the logits denormal garbage and greedy decoding order-dependent
    torch.nn.init.normal_(model.text_decoder.text_projection, std=model.text_decoder.width ** -0.5)
    return CocaModel("tiny-coca", model, preprocess, open_clip.get_tokenizer("tiny_coca_test"), LoadOptions(),
                     {"id": "random-init", "sha256": None})


def test_coca_is_a_dual_encoder_and_a_captioner_on_a_tiny_config(tmp_path):
    from harness.tasks import TASKS

    meta = resolve("coca_ViT-B-32/mscoco_finetuned_laion2b_s13b_b90k")
    assert meta.kind.value == "dual" and [k.value for k in meta.also] == ["captioner"]
    assert TASKS.get("captioning").accepts(meta) and TASKS.get("retrieval").accepts(meta)
    m = tiny_coca(tmp_path)
    assert isinstance(m, Captioner) and isinstance(m, DualEncoder)
    tf = m.image_transform()
    px = torch.stack([tf(im) for im in images(2)])
    greedy = m.generate(px, GenerateOptions(max_new_tokens=5, num_beams=1))
    assert len(greedy) == 2 and all(isinstance(c, str) for c in greedy)
    assert 2 <= m.last_generated_tokens <= 2 * 5
    # greedy by hand: argmax of CoCa's own next-token logits, step by step, for image 0
    text = torch.tensor([[49406]])
    with torch.no_grad():
        latent, embs = m.model._encode_image(px[:1])
        for _ in range(5):
            logits = m.model(px[:1], text, image_latent=latent, image_embs=embs, output_labels=False)["logits"]
            text = torch.cat([text, logits[:, -1].argmax(-1, keepdim=True)], 1)
            if int(text[0, -1]) == 49407:
                break
    import open_clip

    want = " ".join(open_clip.decode(text[0]).split("<end_of_text>")[0].replace("<start_of_text>", "").split())
    assert greedy[0] == want
    beams = m.generate(px, GenerateOptions(max_new_tokens=5, num_beams=3))
    assert len(beams) == 2 and m.generate(px, GenerateOptions(max_new_tokens=5, num_beams=3)) == beams
    emb = m.encode_images(px)
    assert emb.shape == (2, m.embed_dim)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))


# ---- decoding and the embedded tiny captioner ---------------------------------------------

def table_logprobs(prefix, row=None):
    """Next-token log-probs from a fixed table (start 0, end 3): greedy takes token 1
    (0.5) then meets a flat distribution; beam search finds 2 -> 3 (0.4 x 0.9)."""
    rows = []
    for p in prefix.tolist():
        last = p[-1]
        probs = {0: [0, .5, .4, .1], 1: [0, .35, .35, .3], 2: [0, 0.05, 0.05, .9]}.get(last, [0, 0, 0, 1.0])
        rows.append(probs)
    return torch.tensor(rows).clamp(min=1e-9).log()


def test_greedy_and_beam_search_by_hand():
    from harness.models.decoding import decode

    greedy = decode(table_logprobs, 1, 0, 3, GenerateOptions(max_new_tokens=4, num_beams=1))
    assert greedy == [[1, 1, 1, 1]]  # argmax ties go to the first id; never reaches the end token
    beam = decode(table_logprobs, 1, 0, 3, GenerateOptions(max_new_tokens=4, num_beams=2))
    # finished: [3] (log .1 / 1 = -2.30), [2, 3] ((log .4 + log .9) / 2 = -0.51), [1, 3] (-0.95): [2, 3] wins
    assert beam == [[2, 3]]


def test_tiny_captioner_random_init_generates_and_the_shipped_one_loads():
    from harness.core.interfaces import ModelKind

    meta = resolve("tiny-captioner-random")
    assert meta.kind is ModelKind.CAPTIONER and meta.offline
    m = meta.load()
    assert isinstance(m, Captioner)
    px = torch.stack([m.image_transform()(im) for im in images(3)])
    a = m.generate(px, GenerateOptions(max_new_tokens=6, num_beams=1))
    assert a == m.generate(px, GenerateOptions(max_new_tokens=6, num_beams=1)) and len(a) == 3
    assert 3 <= m.last_generated_tokens <= 18
    assert len(m.generate(px, GenerateOptions(max_new_tokens=6, num_beams=3))) == 3
    trained = resolve("tiny-captioner-synth").load()
    assert trained.checkpoint["sha256"] and all(trained.generate(px, GenerateOptions(max_new_tokens=14)))


def test_tiny_captioner_missing_weights_is_one_line(tmp_path):
    with pytest.raises(WeightsUnavailableError, match=r"^tiny-captioner-synth: --weights .*nope.safetensors: no such file$"):
        resolve("tiny-captioner-synth").load(LoadOptions(weights=str(tmp_path / "nope.safetensors")))


def _naive_beam_search(logprobs, row, start, end, k, max_new):
    """The per-row beam search vlbench ran before rows were batched (reference)."""
    beams, done = [([], 0.0)], []
    for _ in range(max_new):
        logp = logprobs(torch.tensor([[start, *b] for b, _ in beams]), torch.full((len(beams),), row))
        top = logp.float().topk(min(k, logp.shape[-1]), dim=-1)
        cands = sorted(((b + [int(t)], s + float(v)) for (b, s), vs, ts in zip(beams, top.values, top.indices)
                        for v, t in zip(vs, ts)), key=lambda c: -c[1])
        beams = []
        for seq, score in cands:
            (done if seq[-1] == end else beams).append((seq, score))
            if len(beams) == k:
                break
        if len(done) >= k or not beams:
            break
    return max(done or beams, key=lambda c: c[1] / len(c[0]))[0]


def test_batched_beam_search_equals_one_row_at_a_time():
    from harness.models.decoding import decode

    table = torch.randn(5, 7, 6, generator=torch.Generator().manual_seed(0)) * 2  # (row, last token, next)

    def logprobs(prefix, rows):
        rows = torch.arange(len(prefix)) if rows is None else rows
        return torch.log_softmax(table[rows, prefix[:, -1] % 7] + 0.1 * prefix.shape[1], dim=-1)

    for k in (2, 3, 8):  # 8 > the 6-token vocabulary: top-k takes all
        opts = GenerateOptions(max_new_tokens=6, num_beams=k)
        got = decode(logprobs, 5, 0, 5, opts)
        assert got == [_naive_beam_search(logprobs, r, 0, 5, k, 6) for r in range(5)]
        assert len({tuple(g) for g in got}) > 1  # the rows differ: each kept its own beams
