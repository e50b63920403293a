"""Frozen-tower features: a function of the item alone (fixed micro-batches), memoised per
process by content, and a stage served memoised features reports no speed."""

import pytest
import torch

from harness.core import memo as M
from harness.core.interfaces import model_facts
from harness.core.measure import Stage, StageTiming
from harness.models.fusion import towers as T


@pytest.fixture(scope="module")
def towers():
    return T.load_towers(T.SYNTHETIC_TOWERS)


def _pixels(n, seed=0):
    return torch.randn(n, 3, 128, 128, generator=torch.Generator().manual_seed(seed))


def test_an_items_features_do_not_depend_on_its_batch(towers):
    x = _pixels(19)
    M.clear_all()
    whole = towers.image_features(x)
    M.clear_all()
    # other neighbours, other positions, batch sizes that are not multiples of the micro-batch
    parts = [towers.image_features(x[idx]) for idx in ([18, 3, 7], [0, 1, 2, 4, 5, 6], list(range(8, 18)))]
    got = torch.cat([p["grid"] for p in parts])
    order = [18, 3, 7, 0, 1, 2, 4, 5, 6, *range(8, 18)]
    assert torch.equal(got, whole["grid"][order])
    assert torch.equal(parts[0]["pooled"], whole["pooled"][[18, 3, 7]])
    assert whole["grid"].shape == (19, 16, 1280) and whole["pooled"].shape == (19, 1280)
    M.clear_all()
    texts = ["a red circle", "two blue squares left of a green triangle", "", "a yellow square"]
    one = towers.text_features(texts)
    M.clear_all()
    again = towers.text_features(texts[2:] + texts[:2])
    assert torch.equal(again["tokens"], one["tokens"][[2, 3, 0, 1]])
    assert torch.equal(again["mask"], one["mask"][[2, 3, 0, 1]]) and one["tokens"].shape == (4, 16, 384)


def test_memo_serves_repeats_and_the_stage_reports_no_speed(towers):
    x = _pixels(10, seed=1)
    M.clear_all()
    with Stage("image_encode") as st:
        with st.batch(10):
            first = towers.image_features(x)
    fresh = st.timing()
    assert fresh.reused_items == 0 and fresh.items_per_s is not None and fresh.measured
    with Stage("image_encode") as st:
        with st.batch(4):
            again = towers.image_features(x[[2, 9, 2, 5]])
    reused = st.timing()
    assert reused.reused_items == 4 and reused.items_per_s is None and reused.latency_ms == {}
    assert not reused.measured
    assert torch.equal(again["grid"], first["grid"][[2, 9, 2, 5]])
    # a repeat within one call is run once and counted as reused too
    M.clear_all()
    with Stage("text_encode") as st:
        towers.text_features(["a red circle", "a red circle", "a blue square"])
    assert st.timing().reused_items == 1


@pytest.fixture()
def fresh_memos():
    M.reset()
    yield
    M.reset()  # the next test's memo reads the environment it sets


def test_memo_off_and_bounded(monkeypatch, towers, fresh_memos):
    monkeypatch.setenv(M.ENV, "0")
    x = _pixels(3, seed=2)
    towers.image_features(x)
    with Stage("image_encode") as st:
        towers.image_features(x)
    assert st.timing().reused_items == 0 and len(M.process_memo(T.MEMO)) == 0
    monkeypatch.setenv(M.ENV, "lots")
    with pytest.raises(ValueError, match="VLBENCH_TOWER_MEMO_MB='lots'"):
        M.configured_bytes()
    monkeypatch.setenv(M.ENV, "0.25")  # 256 KiB: three 128 px images' features (82 KiB each)
    M.reset()
    towers.image_features(_pixels(5, seed=3))
    memo = M.process_memo(T.MEMO)
    assert len(memo) == 3 and memo.nbytes <= 2**18


def test_nested_stages_all_hear_of_reuse(towers):
    x = _pixels(2, seed=4)
    M.clear_all()
    towers.image_features(x)
    with Stage("rerank") as outer:
        with Stage("image_encode") as inner:
            towers.image_features(x)
        towers.image_features(x[:1])
    assert inner.timing().reused_items == 2 and outer.timing().reused_items == 3
    towers.image_features(x)  # outside any stage: nothing to tell, nothing breaks


def test_fusion_model_states_how_its_towers_run():
    from harness.core.interfaces import LoadOptions
    from harness.models import MODELS
    from harness.run.runner import check_plan

    meta = MODELS.get("fusion-late-synth")
    model = meta.load(LoadOptions())
    facts = model_facts(model)
    assert facts == T.compute_facts("cpu") == meta.plan(LoadOptions())
    assert "8 images (channels_last) and 16 texts" in facts["tower_compute"]
    assert model.towers.facts == facts  # in the fit features' key (training/*content_key)
    check_plan(meta, LoadOptions(), model)
    assert "64 images" in T.compute_facts("cuda:0")["tower_compute"]


def test_reused_stage_is_not_gated_on_speed():
    t = StageTiming(seconds=1.0, items=10, items_per_s=None, reused_items=10)
    assert not t.measured and StageTiming(seconds=1.0, items=10, items_per_s=5.0).measured
