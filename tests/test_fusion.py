"""Fusion heads over frozen towers: shapes, determinism, the factored cross-encoder contract,
checkpoints, evaluation helpers and a tiny ``fit`` on random open_clip towers (offline, fast).

The shared adapter contract test (tests/test_models_contract.py) checks dual encoders only
and reaches into open_clip's tokenizer, so the fusion adapters' contract checks live here.
"""

import json
import math

import pytest
import torch
from PIL import Image

from harness.core.interfaces import (
    DualEncoder,
    FactoredCrossEncoder,
    LoadOptions,
    ModelKind,
    WeightsUnavailableError,
)
from harness.models import MODELS
from harness.models.fusion import model as FU
from harness.models.fusion.heads import HeadConfig, build_head, index_features
from harness.models.fusion.towers import TowerSpec, load_towers

TINY_TOWERS = TowerSpec("tiny-clip-random.image", "tiny-clip-random.text", image_size=64, crop=False,
                        text_max_tokens=16)
SMALL = {"dim": 32, "hidden": 64, "heads": 4}
TEXTS = ["a red circle", "two green triangles in a row", "a blue square to the left of a yellow diamond",
         "", "a big purple diamond at the top", "an unseen word: zebra"]


def feats(n=6, g=5, t=8, di=48, dt=24, seed=0):
    gen = torch.Generator().manual_seed(seed)
    mask = torch.arange(t)[None, :] < torch.randint(1, t + 1, (n, 1), generator=gen)
    img = {"pooled": torch.randn(n, di, generator=gen), "grid": torch.randn(n, g, di, generator=gen)}
    txt = {"pooled": torch.randn(n, dt, generator=gen), "tokens": torch.randn(n, t, dt, generator=gen), "mask": mask}
    return img, txt


def head(kind, **kw):
    torch.manual_seed(0)
    return build_head(HeadConfig(kind, 48, 24, grid_tokens=5, text_tokens=8, **{**SMALL, **kw})).eval()


@pytest.fixture(scope="module")
def towers():
    return load_towers(TINY_TOWERS)


def pixels(towers, n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    ims = [Image.fromarray((torch.rand(64, 64, 3, generator=g) * 255).byte().numpy()) for _ in range(n)]
    return torch.stack([towers.image_transform()(im) for im in ims])


# ------------------------------------------------------------------------------ heads

def test_late_head_shapes_unit_norm_and_temperature():
    h = head("late")
    img, txt = feats()
    a, b = h.encode_image(img), h.encode_text(txt)
    assert a.shape == (6, 32) and b.shape == (6, 32)
    torch.testing.assert_close(a.norm(dim=-1), torch.ones(6))
    assert math.isclose(h.logit_scale.exp().item(), 1 / 0.07, rel_tol=1e-5)


@pytest.mark.parametrize("kind", ["early", "xattn"])
def test_cross_heads_shapes_determinism_and_row_independence(kind):
    h = head(kind)
    img, txt = feats()
    s = h.score(h.prepare_image(img), h.prepare_text(txt))
    assert s.shape == (6,) and s.dtype == torch.float32 and torch.isfinite(s).all()
    assert torch.equal(s, h.score(h.prepare_image(img), h.prepare_text(txt)))
    # each pair scores alone: permuting rows permutes scores, batch size changes nothing
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    sp = h.score(h.prepare_image(index_features(img, perm)), h.prepare_text(index_features(txt, perm)))
    torch.testing.assert_close(sp, s[perm], rtol=0, atol=1e-5)
    parts = torch.cat([h.score(h.prepare_image(index_features(img, sl)), h.prepare_text(index_features(txt, sl)))
                       for sl in (slice(0, 2), slice(2, 6))])
    torch.testing.assert_close(parts, s, rtol=0, atol=1e-5)


def test_xattn_ignores_padded_text_tokens():
    h = head("xattn")
    img, txt = feats()
    s = h.score(h.prepare_image(img), h.prepare_text(txt))
    noisy = dict(txt, tokens=torch.where(txt["mask"].unsqueeze(-1), txt["tokens"], torch.randn_like(txt["tokens"])))
    torch.testing.assert_close(h.score(h.prepare_image(img), h.prepare_text(noisy)), s, rtol=0, atol=1e-5)


def test_xattn_looks_at_the_grid_and_its_positions():
    h = head("xattn")
    img, txt = feats()
    s = h.score(h.prepare_image(img), h.prepare_text(txt))
    flipped = dict(img, grid=img["grid"].flip(1))  # same tokens, other places
    assert (h.score(h.prepare_image(flipped), h.prepare_text(txt)) - s).abs().max() > 1e-4


def test_head_config_rejects_bad_values():
    with pytest.raises(ValueError, match="head kind 'mid'"):
        HeadConfig("mid", 4, 4)
    with pytest.raises(ValueError, match="dim % heads"):
        build_head(HeadConfig("xattn", 4, 4, grid_tokens=2, text_tokens=2, dim=30, heads=4))


# ------------------------------------------------------------------------- adapters

def test_cross_adapter_is_factored_and_consistent(towers):
    torch.manual_seed(0)
    xattn = build_head(HeadConfig("xattn", towers.image_dim, towers.text_dim, grid_tokens=64, text_tokens=16,
                                  **SMALL)).eval()
    m = FU.wrap("t-xattn", xattn, towers, {"id": "test", "sha256": None})
    assert isinstance(m, FactoredCrossEncoder)
    px = pixels(towers)
    direct = m.score_pairs(px, TEXTS)
    fi, ft = m.image_features(px), m.text_features(TEXTS)
    assert direct.shape == (6,) and fi["kv"].shape[0] == 6 and ft["h"].shape[:2] == (6, 16)
    torch.testing.assert_close(m.score_features(fi, ft), direct, rtol=0, atol=0)
    # reranking reuses features: any (image, text) pairing from indexed features
    ii, tt = torch.tensor([0, 0, 5, 2]), torch.tensor([1, 4, 4, 2])
    torch.testing.assert_close(m.score_features(index_features(fi, ii), index_features(ft, tt)),
                               m.score_pairs(px[ii], [TEXTS[i] for i in tt]), rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind,width", [("early", 4 * 32), ("xattn", 2 * 32)])
def test_cross_adapters_joint_features_feed_their_match_head(towers, kind, width):
    """joint_features is what the match MLP reads: match(joint) is the score; the factored
    path (towers once, broadcast blank features) gives the same vectors."""
    from harness.core.interfaces import JointEncoder
    from harness.tasks.joint_encode import _broadcast

    torch.manual_seed(0)
    h = build_head(HeadConfig(kind, towers.image_dim, towers.text_dim, grid_tokens=64, text_tokens=16, **SMALL)).eval()
    m = FU.wrap(f"t-{kind}", h, towers, {"id": "test", "sha256": None})
    assert isinstance(m, JointEncoder)
    px = pixels(towers)
    joint = m.joint_features(px, TEXTS)
    assert joint.shape == (6, width) and joint.dtype == torch.float32
    with torch.inference_mode():
        torch.testing.assert_close(h.match(joint).squeeze(-1), m.score_pairs(px, TEXTS), rtol=0, atol=1e-6)
    one = m.image_features(px[:1])
    torch.testing.assert_close(m.joint_from_features(_broadcast(one, 6), m.text_features(TEXTS)),
                               m.joint_features(px[:1].expand(6, -1, -1, -1), TEXTS), rtol=0, atol=1e-5)


def test_dual_adapter_contract(towers):
    torch.manual_seed(0)
    late = build_head(HeadConfig("late", towers.image_dim, towers.text_dim, **SMALL)).eval()
    m = FU.wrap("t-late", late, towers, {"id": "test", "sha256": None})
    assert isinstance(m, DualEncoder) and m.embed_dim == 32
    px = pixels(towers)
    a, b = m.encode_images(px), m.encode_texts(m.tokenize(TEXTS))
    torch.testing.assert_close(a.norm(dim=-1), torch.ones(6))
    torch.testing.assert_close(b.norm(dim=-1), torch.ones(6))
    torch.testing.assert_close(torch.cat([m.encode_images(px[:2]), m.encode_images(px[2:])]), a, rtol=0, atol=1e-5)
    torch.testing.assert_close(torch.cat([m.encode_texts(TEXTS[:1]), m.encode_texts(TEXTS[1:])]), b,
                               rtol=0, atol=1e-5)
    assert torch.equal(a, m.encode_images(px))


# ------------------------------------------------------------------------ checkpoints

@pytest.mark.parametrize("kind", ["late", "xattn"])
def test_param_count_without_building_matches_the_built_model(tmp_path, towers, kind):
    """``FU.param_count`` (header + declared tower counts) = what a run records: the built
    model's parameters (head + the towers' modules, each parameter once)."""
    torch.manual_seed(0)
    h = build_head(HeadConfig(kind, towers.image_dim, towers.text_dim, grid_tokens=64, text_tokens=16, **SMALL))
    path = tmp_path / "tiny.safetensors"
    FU.save_checkpoint(path, h, TINY_TOWERS)
    m = FU.wrap("tiny", h, towers, {"id": str(path), "sha256": None})
    built = sum(p.numel() for p in m.model.parameters())
    assert FU.param_count(path) == built > sum(p.numel() for p in h.parameters())
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")  # unreadable: unknown, not an error
    assert FU.param_count(path) is None and FU.param_count(tmp_path / "missing.safetensors") is None


@pytest.mark.parametrize("name", list(FU.SPECS))
def test_listed_params_of_shipped_models(name):
    from harness.models.encoders import ENCODERS

    card = json.loads(FU.card_path(FU.checkpoint_path(name)).read_text())
    towers = FU.SPECS[name].towers
    want = card["head_params"] + ENCODERS.get(towers.image_encoder).params + ENCODERS.get(towers.text_encoder).params
    assert MODELS.get(name).params == FU.param_count(FU.checkpoint_path(name)) == want

@pytest.mark.parametrize("kind", ["late", "early", "xattn"])
def test_checkpoint_round_trip(tmp_path, kind):
    h = head(kind)
    path = tmp_path / "h.safetensors"
    FU.save_checkpoint(path, h, TINY_TOWERS)
    again, spec = FU.load_head(path, "x")
    assert spec == TINY_TOWERS and again.cfg == h.cfg and not again.training
    for k, v in h.state_dict().items():
        torch.testing.assert_close(again.state_dict()[k], v.half().float(), rtol=0, atol=0)  # fp16 on disk
    img, txt = feats()
    if kind == "late":
        torch.testing.assert_close(again.encode_image(img), h.encode_image(img), rtol=0, atol=5e-3)
    else:
        torch.testing.assert_close(again.score(again.prepare_image(img), again.prepare_text(txt)),
                                   h.score(h.prepare_image(img), h.prepare_text(txt)), rtol=0, atol=2e-2)


def test_load_rejects_foreign_and_mismatched_files(tmp_path):
    from safetensors.torch import save_file

    foreign = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(WeightsUnavailableError, match="not a vlbench fusion checkpoint"):
        FU.load_head(foreign, "x")
    late = tmp_path / "late.safetensors"
    FU.save_checkpoint(late, head("late"), TINY_TOWERS)
    with pytest.raises(WeightsUnavailableError, match="holds a late head, expected xattn"):
        MODELS.get("fusion-xattn-synth").load(LoadOptions(weights=str(late)))
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        MODELS.get("fusion-early-synth").load(LoadOptions(weights=str(tmp_path / "nope.safetensors")))


# ------------------------------------------------------------------ registry and shipped

def test_registered_fusion_models():
    names = [n for n, m in MODELS.items() if m.family == "fusion"]
    assert names == sorted(f"fusion-{h}-{d}" for d in ("synth", "flickr8k") for h in ("late", "early", "xattn"))
    for n in names:
        meta = MODELS.get(n)
        late = n.replace("early", "late").replace("xattn", "late")
        assert meta.kind is (ModelKind.DUAL if "late" in n else ModelKind.CROSS)
        assert meta.prefilter == (None if "late" in n else late)
        assert meta.offline == FU.checkpoint_path(n).is_file()


@pytest.mark.parametrize("name", list(FU.SPECS))
def test_shipped_checkpoint_loads_strictly_with_its_card(name):
    from safetensors.torch import load_file

    path = FU.checkpoint_path(name)
    assert path.is_file(), f"{path} is not shipped"
    h, spec = FU.load_head(path, name)
    assert spec == FU.SPECS[name].towers and h.cfg.kind == FU.SPECS[name].head
    assert set(load_file(str(path))) == set(h.state_dict())  # no missing/unexpected keys
    card = json.loads(FU.card_path(path).read_text())
    assert card["model"] == name and card["command"].startswith(f"vlbench fit {name} ")
    assert card["select_metrics"]["rsum"] > 0 and path.stat().st_size < 8_000_000


# ------------------------------------------------------------------- evaluation helpers

def test_mine_negatives_never_returns_the_positive():
    from harness.training.fusion_fit import mine_negatives

    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(10, 8, generator=g), dim=-1)
    c2i = torch.arange(10).repeat_interleave(3)
    txt = torch.nn.functional.normalize(img[c2i] + 0.3 * torch.randn(30, 8, generator=g), dim=-1)
    neg = mine_negatives(img, txt, c2i, k=4, chunk=3)
    assert neg["caption_of_image"].shape == (10, 4) and neg["image_of_caption"].shape == (30, 4)
    assert not (c2i[neg["caption_of_image"]] == torch.arange(10)[:, None]).any()
    assert not (neg["image_of_caption"] == c2i[:, None]).any()
    sim = img @ txt.T  # the first mined caption is the best-scoring wrong one
    sim[c2i[None, :] == torch.arange(10)[:, None]] = -9
    assert torch.equal(neg["caption_of_image"][:, 0], sim.argmax(1))


def test_rerank_with_oracle_reaches_the_prefilter_ceiling():
    from harness.metrics import functional as M
    from harness.training.fusion_eval import rerank_ranks

    g = torch.Generator().manual_seed(1)
    img = torch.nn.functional.normalize(torch.randn(20, 6, generator=g), dim=-1)
    c2i = torch.arange(20).repeat_interleave(2)
    txt = torch.nn.functional.normalize(img[c2i] + 0.8 * torch.randn(40, 6, generator=g), dim=-1)
    base_t2i, base_i2t = M.retrieval_ranks(img, txt, c2i)

    def oracle(i, c):
        return (c2i[c] == i).float()

    def const(i, c):
        return torch.zeros(len(i))

    t2i, i2t = rerank_ranks(img, txt, c2i, oracle, k=5)
    assert torch.equal(t2i == 1, base_t2i <= 5) and torch.equal(i2t == 1, base_i2t <= 5)
    assert torch.equal(t2i[base_t2i > 5], base_t2i[base_t2i > 5])
    t2i_c, i2t_c = rerank_ranks(img, txt, c2i, const, k=5)  # ties fall back to the prefilter's order
    assert torch.equal(t2i_c, base_t2i) and torch.equal(i2t_c, base_i2t)
    assert (base_t2i <= 5).any() and (base_t2i > 1).any()  # the data exercises both cases


def test_cross_hard_negatives_match_the_dual_definition():
    from harness.tasks.hard_negatives import hard_negative_accuracy
    from harness.training.fusion_eval import cross_hard_negatives

    g = torch.Generator().manual_seed(2)
    img, txt = torch.randn(6, 4, generator=g), torch.randn(12, 4, generator=g)
    c2i = [i // 2 for i in range(12)]
    pairs = [[0, 1, "colour_swap"], [2, 3, "relation_swap"], [4, 5, "shape_swap"]]
    scorer = lambda i, c: (img[torch.as_tensor(i)] * txt[torch.as_tensor(c)]).sum(-1)
    ref = {k: round(v, 2) for k, v in hard_negative_accuracy(img, txt, c2i, pairs).items()}
    assert cross_hard_negatives(scorer, 6, c2i, pairs) == ref and set(ref) == {
        "hn_colour", "hn_relation", "hn_shape", "hn_binding"}


def test_feature_cache_computes_once_and_rejects_bad_keys(tmp_path):
    from harness.models.fusion.cache import cached_tensors

    calls = []
    make = lambda: calls.append(1) or {"a": torch.arange(3)}
    assert cached_tensors("s-1", make, tmp_path)["a"].tolist() == [0, 1, 2]
    assert cached_tensors("s-1", make, tmp_path)["a"].tolist() == [0, 1, 2] and len(calls) == 1
    assert [p.name for p in (tmp_path / "fusion-features").iterdir()] == ["s-1.safetensors"]  # no temp left
    with pytest.raises(ValueError, match="feature cache key '../x'"):
        cached_tensors("../x", make, tmp_path)


def test_family_subset_keeps_swap_partners_together():
    from harness.training.fusion_data import load_split

    data = load_split("synthetic", "val", max_images=300, seed=0)
    assert 290 <= len(data.images) <= 300 and len(data.captions) == 5 * len(data.images)
    fams = [s["family"] for s in data.info["scenes"]]
    full = load_split("synthetic", "val")
    sizes = {}
    for s in full.info["scenes"]:
        sizes[s["family"]] = sizes.get(s["family"], 0) + 1
    assert all(fams.count(f) == sizes[f] for f in set(fams))  # whole families only
    assert data.info["hard_negative_pairs"] and data.info["subset"]["seed"] == 0


# -------------------------------------------------------------------------------- fit

def _fit(kind, tmp_path, epochs, towers, prefilter=None, **recipe):
    from harness.training.fusion_fit import FitOptions, fit

    spec = FU.FusionSpec(f"t-{kind}", kind, TINY_TOWERS, "synthetic", "test", "t-late" if kind != "late" else None,
                         head_options=SMALL)
    opts = FitOptions(epochs=epochs, batch_size=64, lr=3e-3, warmup_steps=5, max_train_images=200,
                      max_select_images=100, **recipe)
    return fit(spec, "synthetic", "val", "test", tmp_path, opts, prefilter_weights=prefilter, towers=towers,
               command=f"test fit {kind}", log=lambda m: None)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, towers):
    out = tmp_path_factory.mktemp("fits")
    late = _fit("late", out, 3, towers)
    xattn = _fit("xattn", out, 3, towers, prefilter=str(out / "t-late.safetensors"))
    return out, late, xattn


def test_fit_improves_over_init_and_writes_card(fitted):
    out, late, xattn = fitted
    for card in (late, xattn):
        assert [h["epoch"] for h in card["history"]] == [0, 1, 2, 3]  # epoch 0: the untrained head
        assert card["select_metrics"]["rsum"] == max(h["select"]["rsum"] for h in card["history"][1:])
        assert card["data"]["images"] <= 200 and card["data"]["subset"]["max_images"] == 200
        assert card["select"]["split"] == "test" and card["select"]["images"] <= 100
        assert card["recipe"]["epochs"] == 3 and card["command"] == f"test fit {card['head']['kind']}"
        assert (out / card["checkpoint"]).is_file() and card["head_params"] > 0
        assert card["towers"] == TINY_TOWERS.to_dict() and card["selected_epoch"] in (1, 2, 3)
    # even over random towers, three epochs on 200 scenes beat the untrained head clearly
    assert late["select_metrics"]["rsum"] > late["history"][0]["select"]["rsum"] + 5
    assert xattn["history"][-1]["loss"] < xattn["history"][1]["loss"]
    assert xattn["prefilter"]["checkpoint"].endswith("t-late.safetensors")
    assert "rerank" in xattn["select"]["metric"] and set(xattn["select_hard_negatives"]) >= {"hn_binding"}
    # cross heads rerank the prefilter's top 10: R@10 stays the prefilter's
    assert xattn["select_metrics"]["t2i_R@10"] == late["select_metrics"]["t2i_R@10"]


def test_fit_card_metrics_reproduce_from_the_saved_checkpoint(fitted, towers):
    from harness.training import fusion_eval as E
    from harness.training.fusion_data import load_split
    from harness.training.fusion_features import split_features, split_slices

    out, late, _ = fitted
    h, _ = FU.load_head(out / "t-late.safetensors", "t-late")
    data = load_split("synthetic", "test", max_images=100, seed=0)
    img, txt = split_slices(split_features(towers, data))
    assert E.dual_metrics(*E.late_embeddings(h, img, txt), data.caption_to_image) == late["select_metrics"]


def test_fit_is_deterministic(fitted, tmp_path, towers):
    _, late, _ = fitted
    again = _fit("late", tmp_path, 3, towers)
    assert again["select_metrics"] == late["select_metrics"]
    assert [h.get("loss") for h in again["history"]] == [h.get("loss") for h in late["history"]]


def test_cross_fit_without_prefilter_fails_before_work(tmp_path, towers):
    with pytest.raises(FileNotFoundError, match="prefilter checkpoint .*missing; fit t-late first"):
        _fit("early", tmp_path, 1, towers, prefilter=str(tmp_path / "none.safetensors"))


def test_cli_fit_user_errors(capsys):
    from harness.cli.main import main

    assert main(["fit", "tiny-clip-synth"]) == 2
    assert "is not one (fusion models: fusion-late-synth" in capsys.readouterr().err
    assert main(["fit", "fusion-late-synth", "--select-split", "train"]) == 2
    assert "is the training split" in capsys.readouterr().err
    assert main(["fit", "fusion-lat-synth"]) == 2
    assert "fusion-late-synth" in capsys.readouterr().err  # did-you-mean
