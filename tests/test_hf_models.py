"""transformers adapters beyond the shared contract: each family matches transformers' own
forward, tokenises as it was trained, BLIP reuses its vision pass, ViLT's fixed canvas is
exact, and weights resolve from --weights DIR or the HF cache offline with one-line errors."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import torch
from PIL import Image

from harness.core.interfaces import LoadOptions, Precision, WeightsUnavailableError
from harness.models import availability, resolve
from harness.models.weights import sha256_file
from tests import tiny_hf
from tests.conftest import ROOT

TEXTS = ["a red circle", "two green triangles in a row", "a blue square to the left of a yellow diamond",
         "an unseen word: zebra"]
LONG = " ".join(["a big red circle"] * 40)


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    """family -> directory of its tiny ``save_pretrained`` model."""
    return tiny_hf.make_all(tmp_path_factory.mktemp("tiny-hf"))


def images(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    sizes = [(64, 64), (90, 50), (50, 100), (72, 60)]  # square, landscape, portrait: ViLT pads these
    return [Image.fromarray((torch.rand(h, w, 3, generator=g) * 255).byte().numpy()) for w, h in sizes[:n]]


@pytest.fixture(scope="module")
def models(tiny_dirs):
    names = {"clip": "openai/clip-vit-base-patch32", "siglip": "siglip", "align": "align", "blip": "blip",
             "vilt": "vilt"}
    return {fam: resolve(name).load(LoadOptions(weights=str(tiny_dirs[fam]))) for fam, name in names.items()}


def stack(model, ims):
    tf = model.image_transform()
    return torch.stack([tf(im) for im in ims])


# ---- each family agrees with transformers' own forward ---------------------------------

@pytest.mark.parametrize("family", ["clip", "siglip", "align"])
def test_dual_matches_transformers_forward(models, family):
    m = models[family]
    px, tok = stack(m, images(4)), m.tokenize(TEXTS)
    with torch.no_grad():
        ref = m.model(pixel_values=px, **tok)
    torch.testing.assert_close(m.encode_images(px), ref.image_embeds, rtol=0, atol=1e-5)
    torch.testing.assert_close(m.encode_texts(tok), ref.text_embeds, rtol=0, atol=1e-5)


def test_the_activation_the_config_builds_is_recorded(models):
    """transformers builds what the config's hidden_act says (a CLIP port: quick_gelu); vlbench states
    it for verify, and only where both towers agree on gelu or quick_gelu."""
    clip = models["clip"]
    want = clip.model.config.text_config.hidden_act
    assert want == clip.model.config.vision_config.hidden_act == "quick_gelu"  # CLIPConfig's default
    assert clip.activation == "quick_gelu" and "hidden_act" in clip.activation_from
    assert models["siglip"].activation is None  # gelu_pytorch_tanh: not a QuickGELU/GELU question


def test_text_recipes_per_family(models):
    clip, siglip, align = (models[f].tokenize([LONG, "a red circle"]) for f in ("clip", "siglip", "align"))
    eos = models["clip"].tokenizer.eos_token_id
    assert clip["input_ids"].shape == (2, 77) and clip["input_ids"][0, -1] == eos  # truncated, EOS kept
    assert set(siglip) == {"input_ids"} and siglip["input_ids"].shape == (2, 64)  # no mask, as trained
    pad = models["siglip"].tokenizer.pad_token_id
    assert (siglip["input_ids"][1, 4:] == pad).all()  # short text padded to the full 64
    assert align["input_ids"].shape == (2, 64) and "token_type_ids" in align


def test_blip_matches_transformers_forward(models):
    m = models["blip"]
    px = stack(m, images(4))
    itc, itm = m.tokenize(TEXTS), m.text_features(TEXTS)
    enc = m.tokenizer.convert_tokens_to_ids("[ENC]")
    assert (itc["input_ids"][:, 0] == m.tokenizer.cls_token_id).all() and (itm["input_ids"][:, 0] == enc).all()
    assert itc["input_ids"].shape == (4, 35)
    with torch.no_grad():
        sims = m.model(input_ids=itc["input_ids"], attention_mask=itc["attention_mask"], pixel_values=px,
                       use_itm_head=False).itm_score
        logits = m.model(input_ids=itm["input_ids"], attention_mask=itm["attention_mask"], pixel_values=px).itm_score
    torch.testing.assert_close(m.encode_images(px) @ m.encode_texts(itc).T, sims, rtol=0, atol=1e-5)
    torch.testing.assert_close(m.score_pairs(px, TEXTS), logits.softmax(-1)[:, 1], rtol=0, atol=1e-6)


def test_blip_reranking_runs_the_vision_tower_once_per_image(models):
    m = models["blip"]
    px, k = stack(m, images(3)), 4
    calls: list[int] = []
    hook = m.model.vision_model.register_forward_hook(
        lambda mod, args, kwargs, out: calls.append(len(kwargs["pixel_values"])), with_kwargs=True)
    try:
        feats = m.image_features(px)
        rows = torch.arange(3).repeat_interleave(k)          # k candidate captions per image
        captions = [TEXTS[i % len(TEXTS)] for i in range(3 * k)]
        scores = m.score_features(feats[rows], m.text_features(captions))
        assert calls == [3]                                   # one pass, over the 3 images
        reference = m.score_pairs(px[rows], captions)         # the unfactored way: 12 image passes
        assert calls == [3, 12]
    finally:
        hook.remove()
    torch.testing.assert_close(scores, reference, rtol=0, atol=1e-6)
    assert scores.shape == (12,) and ((scores > 0) & (scores < 1)).all()


def test_blip_through_the_rerank_pair_scorer_runs_one_vision_pass_per_image(models, tmp_path):
    """The reranker's pair scorer (tasks/pairs.py) with the real BLIP adapter: k captions per
    image, and the vision tower sees each image exactly once."""
    from harness.core.measure import Stage
    from harness.datasets.base import ImageSet
    from harness.tasks.encode import EncodeOptions
    from harness.tasks.pairs import score_pair_index

    m, k = models["blip"], 3
    paths = []
    for i, im in enumerate(images(4)):
        paths.append(tmp_path / f"{i}.png")
        im.save(paths[-1])
    pairs = torch.tensor([(i, (i + j) % len(TEXTS)) for i in range(4) for j in range(k)])
    seen: list[int] = []
    hook = m.model.vision_model.register_forward_hook(
        lambda mod, args, kwargs, out: seen.append(len(kwargs["pixel_values"])), with_kwargs=True)
    try:
        scores = score_pair_index(m, ImageSet(paths), TEXTS, pairs, EncodeOptions(batch_size=2), Stage("rerank"),
                                  pair_batch=4)
    finally:
        hook.remove()
    assert sum(seen) == 4 and len(seen) == 2  # 4 images in 2 loader batches, none seen twice
    px = stack(m, images(4))
    expected = m.score_pairs(px[pairs[:, 0]], [TEXTS[c] for c in pairs[:, 1].tolist()])
    torch.testing.assert_close(scores, expected, rtol=0, atol=1e-6)


def test_vilt_canvas_scores_equal_the_processors_padded_batch(models):
    """ViLT's processor pads a batch to its largest image with a pixel mask; the fixed canvas
    gives the model exactly that, so scores match transformers' own pipeline."""
    m = models["vilt"]
    ims = images(4)
    canvas = stack(m, ims)
    assert canvas.shape == (4, 4, 96, 96)  # 64 px shorter side -> int(106.6) longer max -> 96 (multiple of 16)
    proc = m._transform.processor(images=ims, return_tensors="pt")
    tok = m.tokenizer(TEXTS, padding="longest", truncation=True, max_length=40, return_tensors="pt")
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(0)
        ref = m.model(**tok, pixel_values=proc["pixel_values"], pixel_mask=proc["pixel_mask"]).logits[:, 0]
    assert proc["pixel_values"].shape[-2:] == (96, 96)
    torch.testing.assert_close(m.score_pairs(canvas, TEXTS), ref, rtol=0, atol=1e-5)
    sizes = canvas[:, 3].sum(dim=(1, 2))
    torch.testing.assert_close(sizes, proc["pixel_mask"].sum(dim=(1, 2)).float())


def test_vilt_truncates_text_to_its_40_positions(models):
    assert models["vilt"].tokenize([LONG])["input_ids"].shape == (1, 40)
    scores = models["vilt"].score_pairs(stack(models["vilt"], images(1)), [LONG])
    assert scores.shape == (1,) and torch.isfinite(scores).all()


def test_vilt_and_blip_joint_features_are_what_their_match_heads_read(models):
    """joint_features (image_text_classification's cross-encoder features) is the pooled
    vector the ITM head classifies: the head applied to it gives the adapter's own scores."""
    from harness.core.interfaces import JointEncoder

    vilt, blip = models["vilt"], models["blip"]
    assert isinstance(vilt, JointEncoder) and isinstance(blip, JointEncoder)
    canvas = stack(vilt, images(4))
    joint = vilt.joint_features(canvas, TEXTS)
    assert joint.shape == (4, 32) and joint.dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(vilt.model.rank_output(joint)[:, 0], vilt.score_pairs(canvas, TEXTS), rtol=0, atol=1e-5)
    px = stack(blip, images(4))
    joint = blip.joint_features(px, TEXTS)
    assert joint.shape == (4, 32)
    with torch.no_grad():
        probs = blip.model.itm_head(joint).softmax(-1)[:, 1]
    torch.testing.assert_close(probs, blip.score_pairs(px, TEXTS), rtol=0, atol=1e-6)
    assert not torch.allclose(joint[0], joint[1])  # the pairs differ, so do their joint vectors


# ---- precision -------------------------------------------------------------------------

@pytest.mark.parametrize("precision", [Precision.BF16, Precision.AMP])
def test_reduced_precision_stays_close_and_returns_float32(tiny_dirs, models, precision):
    low = resolve("openai/clip-vit-base-patch32").load(LoadOptions(weights=str(tiny_dirs["clip"]),
                                                                   precision=precision))
    px = stack(low, images(4))
    out = low.encode_images(px)
    assert out.dtype == torch.float32
    assert (out * models["clip"].encode_images(px)).sum(-1).min() > 0.98


# ---- where weights come from -----------------------------------------------------------

def _fake_hub_cache(tmp_path, hub_id, files_from, only=None):
    """The Hugging Face cache layout: models--ORG--NAME/{refs/main, snapshots/<commit>/...}."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / ("models--" + hub_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for f in files_from.iterdir():
        if only is None or f.name in only:
            shutil.copy(f, snapshot / f.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return tmp_path / "hub", snapshot, commit


def test_hf_cache_loads_offline_and_records_the_commit(tiny_dirs, tmp_path, monkeypatch):
    import huggingface_hub.constants

    hub_id = "openai/clip-vit-base-patch32"
    cache, snapshot, commit = _fake_hub_cache(tmp_path, hub_id, tiny_dirs["clip"])
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    assert availability(resolve(hub_id)) == "cached"
    m = resolve(hub_id).load(LoadOptions())
    assert m.checkpoint == {"id": f"hf:{hub_id}@{commit}", "sha256": sha256_file(snapshot / "model.safetensors")}
    assert m.encode_texts(m.tokenize(["a red circle"])).shape == (1, 24)


def test_partial_hf_cache_is_a_one_line_offline_error(tiny_dirs, tmp_path, monkeypatch):
    import huggingface_hub.constants

    cache, _, _ = _fake_hub_cache(tmp_path, "Salesforce/blip-itm-base-coco", tiny_dirs["blip"], only={"config.json"})
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    assert availability(resolve("blip")) == "needs weights"
    with pytest.raises(WeightsUnavailableError, match=r"^Salesforce/blip-itm-base-coco: weights not available "
                                                      r"offline \(part of hf:Salesforce/blip-itm-base-coco") as info:
        resolve("blip").load(LoadOptions())
    assert "\n" not in str(info.value) and "--weights" in str(info.value)


def test_bad_weights_dirs_name_the_problem(tiny_dirs, tmp_path):
    def load(name, path):
        with pytest.raises(WeightsUnavailableError) as info:
            resolve(name).load(LoadOptions(weights=str(path)))
        assert "\n" not in str(info.value)
        return str(info.value)

    assert "does not exist" in load("siglip", tmp_path / "nope")
    assert "not a transformers model directory" in load("align", tmp_path)
    assert "holds a 'clip' model; expected blip" in load("blip", tiny_dirs["clip"])
    assert "holds a 'vilt' model; expected clip or siglip or align" in load("siglip", tiny_dirs["vilt"])
    no_tokenizer = tmp_path / "no-tokenizer"
    no_tokenizer.mkdir()
    for f in ("config.json", "model.safetensors", "preprocessor_config.json"):
        shutil.copy(tiny_dirs["vilt"] / f, no_tokenizer / f)
    assert "tokenizer files are missing" in load("vilt", no_tokenizer)


def _has_sentencepiece() -> bool:
    import importlib.util

    return importlib.util.find_spec("sentencepiece") is not None


@pytest.mark.skipif(_has_sentencepiece(), reason="sentencepiece is installed; nothing is missing")
def test_siglip_sentencepiece_tokenizer_without_the_package_says_so(tiny_dirs, tmp_path):
    import json

    target = tmp_path / "siglip-spm"
    shutil.copytree(tiny_dirs["siglip"], target)
    (target / "tokenizer.json").unlink()
    config = json.loads((target / "tokenizer_config.json").read_text())
    config.update(tokenizer_class="SiglipTokenizer")
    config.pop("backend", None)
    (target / "tokenizer_config.json").write_text(json.dumps(config))
    (target / "spiece.model").write_bytes(b"not read: the import fails first")
    with pytest.raises(WeightsUnavailableError, match=r"^google/siglip-base-patch16-224: its tokenizer needs a "
                                                      r"missing package: .*SentencePiece[^\n]*$"):
        resolve("siglip").load(LoadOptions(weights=str(target)))


def test_hf_prefix_names_any_hub_id_and_fails_clearly_offline():
    meta = resolve("hf:someone/their-clip")
    with pytest.raises(WeightsUnavailableError, match=r"^hf:someone/their-clip: weights not available offline"):
        meta.load(LoadOptions())


def test_importing_the_zoo_imports_no_heavy_library_and_list_shows_kinds():
    code = ("import sys, harness.models as m\n"
            "heavy = {'torch', 'transformers', 'open_clip'} & set(sys.modules)\n"
            "assert not heavy, heavy\n"
            "from harness.cli.main import main\n"
            "main(['list', 'models'])\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT).stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line and line[0] not in "-m "}
    assert rows["Salesforce/blip-itm-base-coco"][1:3] == ["both", "blip"]
    assert rows["dandelin/vilt-b32-finetuned-coco"][1:3] == ["cross", "vilt"]
    assert "ViT-B-32/openai" in rows["dandelin/vilt-b32-finetuned-coco"]
    for name, family in (("google/siglip-base-patch16-224", "siglip"), ("kakaobrain/align-base", "align"),
                         ("openai/clip-vit-large-patch14", "hf-clip")):
        assert rows[name][1:3] == ["dual", family] and f"hf:{name}" in rows[name]
    assert rows["tiny-clip-synth"][5] == "yes"
