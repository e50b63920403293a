"""QuickGELU vs GELU (RAIVNLab/sugar-crepe#7): the activation an open_clip CLIP is built with is
what its weights were trained with unless the user says otherwise, it is what the network
computes, and it is part of the run key and of the embedding-cache key. Tiny random open_clip
configs only; nothing is downloaded."""

from __future__ import annotations

import json

import pytest
import torch

from harness.core.errors import OptionError
from harness.core.interfaces import LoadOptions
from harness.models import activation as A
from harness.models import resolve
from harness.models.clip import OpenClipSource, load_open_clip

ARCH = "vlb-test-tiny-vit"  # a tiny ViT CLIP config registered with open_clip by the fixture
TINY_CFG = {"embed_dim": 32,
            "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
            "text_cfg": {"context_length": 16, "vocab_size": 64, "width": 64, "heads": 2, "layers": 2}}
# OpenAI's ViT-B/32 checkpoint as openai/CLIP and open_clip name it (the sha256 in its download URL)
OPENAI_VIT_B_32_SHA256 = "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af"
QUICK = (("activation", "quick_gelu"),)
GELU = (("activation", "gelu"),)


@pytest.fixture(scope="module")
def tiny_arch(tmp_path_factory):
    import open_clip

    folder = tmp_path_factory.mktemp("cfg")
    (folder / f"{ARCH}.json").write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(folder / f"{ARCH}.json")
    return ARCH


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_arch, tmp_path_factory):
    """A state dict of the tiny architecture as a safetensors file (no activation is stored in it)."""
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = open_clip.create_model(tiny_arch)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def _activation_modules(model) -> set[str]:
    return {type(m).__name__ for m in model.modules() if type(m).__name__ in ("GELU", "QuickGELU")}


def _features(enc):
    torch.manual_seed(1)
    return enc.encode_images(torch.rand(2, 3, 32, 32))


def test_the_built_network_computes_the_activation_asked_for(tiny_arch, tiny_checkpoint):
    gelu = load_open_clip("t", OpenClipSource(tiny_arch), LoadOptions(weights=str(tiny_checkpoint)))
    quick = load_open_clip("t", OpenClipSource(tiny_arch), LoadOptions(weights=str(tiny_checkpoint), model_options=QUICK))
    assert _activation_modules(gelu.model) == {"GELU"} and gelu.activation == "gelu"
    assert _activation_modules(quick.model) == {"QuickGELU"} and quick.activation == "quick_gelu"
    assert quick.activation_from == "--model-option activation=quick_gelu"
    # same weights, other activation: other embeddings (what the cache key must tell apart)
    assert torch.equal(gelu.model.visual.conv1.weight, quick.model.visual.conv1.weight)
    assert not torch.allclose(_features(gelu), _features(quick), atol=1e-4)


def test_openai_weights_default_to_quick_gelu_without_loading_anything():
    """The registered OpenAI CLIPs plan QuickGELU from open_clip's own pretrained metadata (open_clip
    3.x would build GELU for ViT-B-32 + the openai tag and only warn); LAION ViT-B-32 stays GELU."""
    assert resolve("ViT-B-32/openai").plan(LoadOptions()) == {"activation": "quick_gelu"}
    assert resolve("clip-rn50").plan(LoadOptions()) == {"activation": "quick_gelu"}
    assert resolve("open_clip:ViT-B-32/laion2b_s34b_b79k").plan(LoadOptions()) == {"activation": "gelu"}
    assert resolve("open_clip:ViT-B-32-quickgelu").plan(LoadOptions()) == {"activation": "quick_gelu"}
    assert resolve("ViT-B-32/openai").plan(LoadOptions(model_options=GELU)) == {"activation": "gelu"}
    choice = A.choose("ViT-B-32", "openai", LoadOptions())
    assert choice.activation == "quick_gelu" and "pretrained tag ViT-B-32/openai" in choice.reason


def test_openai_checkpoints_are_known_by_their_sha256():
    assert A.openai_checkpoint(OPENAI_VIT_B_32_SHA256) == ("ViT-B-32", "openai")
    assert A.openai_checkpoint("0" * 64) is None and A.openai_checkpoint(None) is None


def test_a_file_with_openais_checkpoint_hash_builds_quick_gelu(tiny_arch, tiny_checkpoint, monkeypatch):
    from harness.models.weights import content_digest

    digest = content_digest(tiny_checkpoint)
    monkeypatch.setattr(A, "_openai_digests", lambda: {digest: ("ViT-B-32", "openai")})
    enc = load_open_clip("t", OpenClipSource(tiny_arch), LoadOptions(weights=str(tiny_checkpoint)))
    assert enc.activation == "quick_gelu" and "OpenAI's ViT-B-32 checkpoint (sha256)" in enc.activation_from
    # the user's word still wins
    forced = load_open_clip("t", OpenClipSource(tiny_arch), LoadOptions(weights=str(tiny_checkpoint), model_options=GELU))
    assert forced.activation == "gelu"


def test_open_clip_config_beside_the_weights_decides(tiny_arch, tiny_checkpoint, tmp_path):
    import shutil

    copy = tmp_path / "open_clip_model.safetensors"
    shutil.copy(tiny_checkpoint, copy)
    (tmp_path / A.OPEN_CLIP_CONFIG).write_text(json.dumps({"model_cfg": {**TINY_CFG, "quick_gelu": True}}))
    enc = load_open_clip("t", OpenClipSource(tiny_arch), LoadOptions(weights=str(copy)))
    assert enc.activation == "quick_gelu" and "model_cfg.quick_gelu=true" in enc.activation_from
    (tmp_path / A.OPEN_CLIP_CONFIG).write_text("{not json")
    with pytest.raises(OptionError, match=r"open_clip_config.json: not readable open_clip config JSON"):
        A.choose(tiny_arch, None, LoadOptions(weights=str(copy)))


def test_a_plain_vit_b_32_file_warns_how_to_ask_for_quick_gelu(tmp_path):
    weights = tmp_path / "finetuned.pt"
    weights.write_bytes(b"not OpenAI's bytes")
    with pytest.warns(UserWarning, match=r"add --model-option activation=quick_gelu"):
        choice = A.choose("ViT-B-32", None, LoadOptions(weights=str(weights)))
    assert choice.activation == "gelu" and "ViT-B-32 architecture config" in choice.reason
    assert A.choose("ViT-B-32", None, LoadOptions(weights=str(weights), model_options=QUICK)).activation == "quick_gelu"
    # the same file under the registered OpenAI model: a copy or fine-tune of OpenAI's weights
    tagged = A.choose("ViT-B-32", "openai", LoadOptions(weights=str(weights)))
    assert tagged.activation == "quick_gelu" and "pretrained tag ViT-B-32/openai" in tagged.reason
    assert resolve("ViT-B-32/openai").plan(LoadOptions(weights=str(weights))) == {"activation": "quick_gelu"}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a LAION-tagged model's file is LAION's: nothing to warn about
        assert A.choose("ViT-B-32", "laion2b_s34b_b79k", LoadOptions(weights=str(weights))).activation == "gelu"


def test_bad_values_are_one_line_errors():
    from harness.core.model_options import check_model_options, parse_model_options

    meta = resolve("tiny-clip-random")
    cases = [(lambda: parse_model_options(["activation"]), r"^--model-option 'activation': expected KEY=VALUE$"),
             (lambda: parse_model_options(["activation=gelu", "activation=quick_gelu"]),
              r"^--model-option activation: given twice \(gelu and quick_gelu\)$"),
             (lambda: check_model_options(meta, (("activation", "relu"),)),
              r"^--model-option activation=relu: tiny-clip-random takes activation=gelu\|quick_gelu$"),
             (lambda: check_model_options(meta, (("act", "gelu"),)),
              r"^--model-option act=gelu: tiny-clip-random has no option 'act' \(its options: activation\)$"),
             (lambda: check_model_options(resolve("fusion-late-synth"), GELU),
              r"^--model-option activation=gelu: fusion-late-synth has no option 'activation' \(its options: none\)$"),
             (lambda: A.choose("ViT-B-32", "openai", LoadOptions(model_options=(("activation", "swish"),))),
              r"^--model-option activation=swish: expected gelu\|quick_gelu$")]
    for call, message in cases:
        with pytest.raises(OptionError, match=message) as info:
            call()
        assert "\n" not in str(info.value)


def test_cli_refuses_a_bad_activation_with_one_line(capsys, tmp_path):
    from harness.cli.main import main

    code = main(["run", "--model", "tiny-clip-random", "--dataset", "synthetic", "--task", "retrieval",
                 "--limit", "4", "--results", str(tmp_path), "--model-option", "activation=relu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == "vlbench: error: --model-option activation=relu: tiny-clip-random takes " \
                                "activation=gelu|quick_gelu"
    assert not list(tmp_path.rglob("*.json"))


def test_a_build_that_differs_from_the_choice_is_refused():
    with pytest.raises(OptionError, match="asked for quick_gelu .* but open_clip built gelu"):
        A.check_built("m", A.ActivationChoice("quick_gelu", "x"), torch.nn.Sequential(torch.nn.GELU()))


def test_run_keys_and_cache_keys_differ_by_activation(tmp_path):
    """Same weights, same data: a GELU run and a QuickGELU run never share a record or a cached
    embedding, and each record states the activation that ran."""
    from harness.results.cache import key_digest
    from harness.run.runner import Resolved, RunSpec, images_content, run_one
    from harness.tasks.encode import encode_cache
    from harness.tasks.options import RunOptions

    base = RunOptions(limit=6, num_workers=0, cache_dir=str(tmp_path / "cache"))
    runs = {mo: Resolved.of(RunSpec("tiny-clip-random", "synthetic", "retrieval", options=RunOptions(
        **{**base.__dict__, "model_options": mo}))) for mo in ((), QUICK)}
    keys, caches = {}, {}
    for mo, run in runs.items():
        data = run.load_data()
        keys[mo] = run.run_key(data, images_content(data, run.options))
        model = run.meta.load(run.load_options("cpu"))
        caches[mo] = encode_cache(run.options, run.meta, model, data, run.split).identity
    assert keys[()] != keys[QUICK]
    assert caches[()]["activation"] == "gelu" and caches[QUICK]["activation"] == "quick_gelu"
    assert key_digest(caches[()]) != key_digest(caches[QUICK])
    # explicitly asking for what the default builds is the same run
    same = Resolved.of(RunSpec("tiny-clip-random", "synthetic", "retrieval", options=RunOptions(
        **{**base.__dict__, "model_options": GELU})))
    data = same.load_data()
    assert same.run_key(data, images_content(data, same.options)) == keys[()]

    results = tmp_path / "res"
    records = [run_one(RunSpec("tiny-clip-random", "synthetic", "retrieval",
                               options=RunOptions(**{**base.__dict__, "model_options": mo})), results).record
               for mo in ((), QUICK)]
    assert records[0].run_key != records[1].run_key
    assert [r.model["activation"] for r in records] == ["gelu", "quick_gelu"]
    assert records[1].options["model_options"] == {"activation": "quick_gelu"}
    assert "model_options" not in records[0].options
    entries = [d for d in (tmp_path / "cache" / "embeddings").iterdir() if d.is_dir()]
    assert len(entries) == 4  # images + texts, once per activation: nothing shared


def test_a_model_that_is_not_what_the_key_planned_is_not_recorded():
    from harness.core.interfaces import ModelKind, ModelMeta
    from harness.run.runner import check_plan

    meta = ModelMeta("m", "open_clip", ModelKind.DUAL, "s", loader=print, plan=lambda o: {"activation": "quick_gelu"})
    built = type("Built", (), {"activation": "gelu"})()
    with pytest.raises(RuntimeError, match="planned"):
        check_plan(meta, LoadOptions(), built)
    check_plan(meta, LoadOptions(), type("Built", (), {"activation": "quick_gelu"})())


def test_the_prefilter_a_task_reads_joins_the_key_with_its_activation():
    """ViLT reranks ViT-B-32/openai's top-k: that prefilter's activation is part of the run key too."""
    from harness.models.fusion.towers import compute_facts
    from harness.run.runner import Resolved, RunSpec, model_plan
    from harness.tasks.options import RunOptions

    cross, towers = resolve("fusion-early-synth"), compute_facts("cpu")  # how a fusion model's towers run
    assert model_plan(cross, LoadOptions(), {"prefilter": "ViT-B-32/openai"}) == \
        [{"build": towers, "prefilter_build": {"activation": "quick_gelu"}}]
    assert model_plan(cross, LoadOptions(), {"prefilter": "fusion-late-synth"}) == \
        [{"build": towers, "prefilter_build": towers}]
    run = Resolved.of(RunSpec("fusion-early-synth", "synthetic", "retrieval",
                              options=RunOptions(prefilter="tiny-clip-synth", rerank_k=4)))
    assert run.task.auxiliary_models(run.options) == {"prefilter": "tiny-clip-synth"}
    assert model_plan(run.meta, run.load_options("cpu"), run.task.auxiliary_models(run.options)) == \
        [{"build": towers, "prefilter_build": {"activation": "gelu"}}]


def test_a_suite_can_ask_for_an_activation():
    from harness.run.runner import RunOptions, suite_specs
    from harness.run.suites import parse_suite

    suite = parse_suite({"name": "s", "description": "d", "options": {"model_options": {"activation": "quick_gelu"}},
                         "runs": [{"models": ["tiny-clip-synth"], "datasets": ["synthetic"], "tasks": ["retrieval"]}]},
                        "inline")
    (spec,) = suite_specs(suite, RunOptions())
    assert spec.options.model_options == QUICK
    bad = parse_suite({**{"name": "s", "description": "d"}, "options": {"model_options": ["activation"]},
                       "runs": [{"models": ["tiny-clip-synth"], "datasets": ["synthetic"], "tasks": ["retrieval"]}]},
                      "inline")
    with pytest.raises(OptionError, match="expected KEY=VALUE"):
        suite_specs(bad, RunOptions())
