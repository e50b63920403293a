"""open_clip adapters beyond the shared contract (tests/test_models_contract.py): precision,
the compact tokenizer of the embedded tiny CLIPs, the trained weights, local checkpoints."""

import pytest
import torch
from PIL import Image

from harness.core.interfaces import LoadOptions, Precision, WeightsUnavailableError
from harness.models import resolve


def images(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [Image.fromarray((torch.rand(64, 64, 3, generator=g) * 255).byte().numpy()) for _ in range(n)]


@pytest.fixture(scope="module", params=["tiny-clip-random", "tiny-clip-synth"])
def model(request):
    return resolve(request.param).load(LoadOptions())


def pixels(model, n=6):
    tf = model.image_transform()
    return torch.stack([tf(im) for im in images(n)])


def test_amp_precision_stays_close():
    ref = resolve("tiny-clip-synth").load(LoadOptions())
    amp = resolve("tiny-clip-synth").load(LoadOptions(precision=Precision.AMP))
    px = pixels(ref)
    cos = (ref.encode_images(px) * amp.encode_images(px)).sum(-1)
    assert cos.min() > 0.98


def test_compact_tokenizer_keeps_eot_as_argmax(model):
    tok = model.tokenize(["a red circle", ""])
    eot = model._tokenizer.vocab_size - 1
    assert (tok.argmax(dim=-1) == (tok == eot).int().argmax(dim=-1)).all()
    assert tok[0, 0] == 1 and (tok == 2).sum() == 0  # start token; no unknowns in known words


def test_trained_model_prefers_matching_caption():
    m = resolve("tiny-clip-synth").load(LoadOptions())
    from harness.datasets import DatasetRequest, TaskKind, synthetic

    data = synthetic.load(DatasetRequest("test", TaskKind.RETRIEVAL, limit=20, seed=3))
    tf = m.image_transform()
    img = m.encode_images(torch.stack([tf(data.images.load(i)) for i in range(len(data.images))]))
    txt = m.encode_texts(m.tokenize(data.captions))
    own = torch.tensor(data.caption_to_image)
    hits = (img[own] * txt).sum(-1) > (img.roll(1, 0)[own] * txt).sum(-1)
    assert hits.float().mean() > 0.8  # far above the 0.5 of a coin flip


def test_offline_hub_weights_raise_clear_error():
    with pytest.raises(WeightsUnavailableError, match="weights not available offline.*--weights PATH"):
        resolve("clip").load(LoadOptions())
    with pytest.raises(WeightsUnavailableError, match="no pretrained tag 'nope'"):
        resolve("open_clip:ViT-B-32/nope").load(LoadOptions())


def test_local_checkpoint_roundtrip(tmp_path):
    """--weights PATH: a checkpoint file saved from a model loads back to the same outputs."""
    from safetensors.torch import save_file

    m = resolve("tiny-clip-synth").load(LoadOptions())
    path = tmp_path / "copy.safetensors"
    save_file({k: v.contiguous() for k, v in m.model.state_dict().items()}, str(path))
    again = resolve("tiny-clip-synth").load(LoadOptions(weights=str(path)))
    px = pixels(m)
    torch.testing.assert_close(m.encode_images(px), again.encode_images(px))
    assert again.checkpoint["id"] == str(path) and len(again.checkpoint["sha256"]) == 64


def test_text_trimming_matches_the_full_forward_and_falls_back_when_it_would_not():
    import harness.models.clip as C

    model = resolve("tiny-clip-synth").load(LoadOptions())
    tokens = model.tokenize(["a red circle", "two green triangles in a row", "a blue square"])
    assert (tokens[:, -1] == 0).all()  # padded: there is something to trim
    with torch.inference_mode():
        full = model.model.encode_text(tokens)
        trimmed = C.encode_text_trimmed(model.model, tokens)
    assert torch.allclose(full, trimmed, atol=1e-5)
    assert C.can_trim_text(model.model)
    got = model.encode_texts(tokens)
    assert model._trim is True and torch.allclose(got, torch.nn.functional.normalize(full, dim=-1), atol=1e-5)

    broken = resolve("tiny-clip-synth").load(LoadOptions())
    real = C.encode_text_trimmed
    try:  # if open_clip's internals ever diverge from the trimmed path, the full forward is used
        C.encode_text_trimmed = lambda m, t: real(m, t) + 1.0
        out = broken.encode_texts(tokens)
    finally:
        C.encode_text_trimmed = real
    assert broken._trim is False
    assert torch.allclose(out, torch.nn.functional.normalize(full, dim=-1), atol=1e-5)


def test_checkpoint_load_skips_the_random_init_and_keeps_every_weight(tmp_path, monkeypatch):
    """With a checkpoint, open_clip's random init is skipped (it loads strictly, so every
    weight is overwritten): no init call runs, the weights are the checkpoint's, and
    ``torch.nn.init`` is itself again afterwards, also when the load fails."""
    from torch.nn import init

    import harness.models.clip as C

    ref = resolve("tiny-clip-synth").load(LoadOptions())  # registers the tiny config with open_clip
    path = tmp_path / "tiny.pt"
    torch.save(ref.model.state_dict(), path)
    calls = []
    counting = {name: (lambda t, *a, _n=name, **k: calls.append(_n) or t) for name in ("normal_", "uniform_",
                                                                                      "kaiming_uniform_")}
    for name, fn in counting.items():
        monkeypatch.setattr(init, name, fn)

    got = C.load_open_clip("x", C.OpenClipSource("tiny-clip-synth"), LoadOptions(weights=str(path)))
    assert calls == []
    want = ref.model.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in got.model.state_dict().items())
    px = pixels(ref)
    torch.testing.assert_close(got.encode_images(px), ref.encode_images(px), rtol=0, atol=0)
    assert {name: getattr(init, name) for name in counting} == counting

    bad = tmp_path / "bad.pt"
    torch.save({"visual.proj": torch.zeros(1)}, bad)
    with pytest.raises(WeightsUnavailableError, match="does not fit"):
        C.load_open_clip("x", C.OpenClipSource("tiny-clip-synth"), LoadOptions(weights=str(bad)))
    assert {name: getattr(init, name) for name in counting} == counting
    C.load_open_clip("x", C.OpenClipSource("tiny-clip-synth"), LoadOptions())  # no checkpoint: a real init
    assert set(calls) == set(counting)
