"""One contract for every model adapter, checked offline on tiny random-initialised models.

``ADAPTERS`` lists factories: each builds a loaded adapter through the adapter's REAL loading
path (transformers ones from a ``save_pretrained`` directory via ``--weights DIR``). Add a
case to put a new adapter under the same checks: shapes, unit norm (dual), determinism,
batch-size invariance, picklable transforms, the one-line offline error.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from PIL import Image

from harness.core.interfaces import (
    CrossEncoder,
    DualEncoder,
    FactoredCrossEncoder,
    LoadOptions,
    ModelKind,
    WeightsUnavailableError,
)
from harness.models import resolve
from tests import tiny_hf

TEXTS = ["a red circle", "two green triangles in a row", "a blue square to the left of a yellow diamond",
         "an unseen word: zebra", "", "a big purple diamond at the top"]


def images(n, seed=0):
    """Random RGB images of varied sizes and orientations (ViLT's resize depends on both)."""
    g = torch.Generator().manual_seed(seed)
    sizes = [(64, 64), (80, 48), (48, 90), (70, 70), (100, 60), (60, 100)]
    return [Image.fromarray((torch.rand(sizes[i % 6][1], sizes[i % 6][0], 3, generator=g) * 255).byte().numpy())
            for i in range(n)]


@dataclass(frozen=True)
class AdapterCase:
    id: str
    kind: str                                   # "dual" or "cross" (a BOTH model appears once per side)
    build: Callable[[dict], object]             # tiny dirs -> loaded adapter
    hub_name: str | None = None                 # a registered hub model of this adapter, for the offline check


def _hf(family: str, name: str):
    return lambda dirs: resolve(name).load(LoadOptions(weights=str(dirs[family])))


def _fusion(kind: str):
    """A registered fusion model loaded through ``--weights``: a random head (seed 0) over the
    tiny random open_clip towers, saved as a fusion checkpoint in a temporary folder."""
    def build(dirs):
        import tempfile
        from pathlib import Path

        from harness.models.fusion.heads import HeadConfig, build_head
        from harness.models.fusion.model import save_checkpoint
        from harness.models.fusion.towers import TowerSpec

        towers = TowerSpec("tiny-clip-random.image", "tiny-clip-random.text", image_size=64, crop=False,
                           text_max_tokens=16)
        torch.manual_seed(0)
        head = build_head(HeadConfig(kind, 128, 128, grid_tokens=64, text_tokens=16, dim=32, hidden=64))
        path = Path(tempfile.mkdtemp()) / f"fusion-{kind}.safetensors"
        save_checkpoint(path, head, towers)
        return resolve(f"fusion-{kind}-synth").load(LoadOptions(weights=str(path)))
    return build


ADAPTERS = [
    AdapterCase("open_clip-tiny", "dual", lambda dirs: resolve("tiny-clip-random").load(LoadOptions()), "clip"),
    AdapterCase("hf-clip", "dual", _hf("clip", "openai/clip-vit-base-patch32"), "openai/clip-vit-base-patch32"),
    AdapterCase("siglip", "dual", _hf("siglip", "siglip"), "google/siglip-base-patch16-224"),
    AdapterCase("align", "dual", _hf("align", "align"), "kakaobrain/align-base"),
    AdapterCase("blip-itc", "dual", _hf("blip", "blip"), "Salesforce/blip-itm-base-coco"),
    AdapterCase("blip-itm", "cross", _hf("blip", "blip"), "Salesforce/blip-itm-large-flickr"),
    AdapterCase("vilt", "cross", _hf("vilt", "vilt"), "dandelin/vilt-b32-finetuned-coco"),
    AdapterCase("fusion-late", "dual", _fusion("late")),
    AdapterCase("fusion-early", "cross", _fusion("early")),
    AdapterCase("fusion-xattn", "cross", _fusion("xattn")),
]
DUALS = [c for c in ADAPTERS if c.kind == "dual"]
CROSSES = [c for c in ADAPTERS if c.kind == "cross"]


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    """family -> directory of its tiny ``save_pretrained`` model."""
    return tiny_hf.make_all(tmp_path_factory.mktemp("tiny-hf"))


@pytest.fixture(scope="module")
def loaded(tiny_dirs):
    cache: dict[str, object] = {}

    def get(case: AdapterCase):
        if case.id not in cache:
            cache[case.id] = case.build(tiny_dirs)
        return cache[case.id]
    return get


@pytest.fixture(params=DUALS, ids=lambda c: c.id)
def dual(request, loaded):
    return loaded(request.param)


@pytest.fixture(params=CROSSES, ids=lambda c: c.id)
def cross(request, loaded):
    return loaded(request.param)


def pixels(model, n=6):
    tf = model.image_transform()
    return torch.stack([tf(im) for im in images(n)])


# ---- dual encoders ---------------------------------------------------------------------

def test_dual_shapes_unit_norm_float32(dual):
    assert isinstance(dual, DualEncoder) and dual.checkpoint["id"]
    img = dual.encode_images(pixels(dual))
    txt = dual.encode_texts(dual.tokenize(TEXTS))
    assert img.shape == (6, dual.embed_dim) and txt.shape == (len(TEXTS), dual.embed_dim)
    assert img.dtype == torch.float32 and txt.dtype == torch.float32
    torch.testing.assert_close(img.norm(dim=-1), torch.ones(6))
    torch.testing.assert_close(txt.norm(dim=-1), torch.ones(len(TEXTS)))
    assert (img[0] - img[1]).abs().max() > 1e-4 and (txt[0] - txt[1]).abs().max() > 1e-4  # inputs matter


def test_dual_deterministic(dual):
    px, tok = pixels(dual), dual.tokenize(TEXTS)
    torch.testing.assert_close(dual.encode_images(px), dual.encode_images(px), rtol=0, atol=0)
    torch.testing.assert_close(dual.encode_texts(tok), dual.encode_texts(tok), rtol=0, atol=0)


def test_dual_batch_size_does_not_change_embeddings(dual):
    px = pixels(dual)
    whole = dual.encode_images(px)
    torch.testing.assert_close(whole, torch.cat([dual.encode_images(px[:2]), dual.encode_images(px[2:])]),
                               rtol=0, atol=1e-5)
    whole_t = dual.encode_texts(dual.tokenize(TEXTS))
    parts_t = torch.cat([dual.encode_texts(dual.tokenize(TEXTS[:1])), dual.encode_texts(dual.tokenize(TEXTS[1:]))])
    torch.testing.assert_close(whole_t, parts_t, rtol=0, atol=1e-5)


# ---- cross-encoders --------------------------------------------------------------------

def test_cross_scores_shape_and_dtype(cross):
    assert isinstance(cross, CrossEncoder)
    scores = cross.score_pairs(pixels(cross), TEXTS)
    assert scores.shape == (len(TEXTS),) and scores.dtype == torch.float32
    assert torch.isfinite(scores).all() and scores.unique().numel() > 1  # pairs are told apart


def test_cross_deterministic(cross):
    px = pixels(cross)
    torch.testing.assert_close(cross.score_pairs(px, TEXTS), cross.score_pairs(px, TEXTS), rtol=0, atol=0)


def test_cross_batch_size_does_not_change_scores(cross):
    px = pixels(cross)
    whole = cross.score_pairs(px, TEXTS)
    parts = torch.cat([cross.score_pairs(px[:2], TEXTS[:2]), cross.score_pairs(px[2:], TEXTS[2:])])
    torch.testing.assert_close(whole, parts, rtol=0, atol=1e-5)


def test_factored_features_give_the_pair_scores(cross):
    if not isinstance(cross, FactoredCrossEncoder):
        pytest.skip(f"{cross.name} is not factored")
    px = pixels(cross)
    img, txt = cross.image_features(px), cross.text_features(TEXTS)
    torch.testing.assert_close(cross.score_features(img, txt), cross.score_pairs(px, TEXTS), rtol=0, atol=1e-6)
    flip = torch.arange(len(TEXTS) - 1, -1, -1)  # features index on dim 0, rows re-pair freely
    txt_flipped = {k: v[flip] for k, v in txt.items()} if isinstance(txt, dict) else txt[flip]
    torch.testing.assert_close(cross.score_features(img, txt_flipped), cross.score_pairs(px, TEXTS[::-1]),
                               rtol=0, atol=1e-6)


# ---- every adapter ---------------------------------------------------------------------

@pytest.mark.parametrize("case", ADAPTERS, ids=lambda c: c.id)
def test_image_transform_is_picklable(case, loaded):
    model = loaded(case)
    tf = model.image_transform()
    again = pickle.loads(pickle.dumps(tf))
    im = images(1)[0]
    torch.testing.assert_close(again(im), tf(im), rtol=0, atol=0)


@pytest.mark.parametrize("case", [c for c in ADAPTERS if c.hub_name], ids=lambda c: c.id)
def test_hub_weights_absent_offline_is_one_clear_line(case, monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))  # an empty cache
    meta = resolve(case.hub_name)
    with pytest.raises(WeightsUnavailableError) as info:
        meta.load(LoadOptions())
    msg = str(info.value)
    assert "\n" not in msg and meta.name in msg and "not available offline" in msg and "--weights" in msg


def test_registered_kinds_and_prefilters():
    assert resolve("blip").kind is ModelKind.BOTH and resolve("blip").prefilter is None
    vilt = resolve("vilt")
    assert vilt.kind is ModelKind.CROSS and resolve(vilt.prefilter).kind is ModelKind.DUAL
    for name in ("openai/clip-vit-large-patch14", "siglip", "align", "Salesforce/blip-itm-large-coco",
                 "dandelin/vilt-b32-finetuned-flickr30k"):
        meta = resolve(name)
        assert meta.source == f"hf:{meta.name}" and not meta.offline
    assert resolve("hf:openai/clip-vit-base-patch32") is resolve("openai/clip-vit-base-patch32")
    anyid = resolve("hf:someone/some-clip")
    assert anyid.kind is ModelKind.DUAL and anyid.source == "hf:someone/some-clip"
