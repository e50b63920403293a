import pytest

from harness.core.registry import DuplicateNameError, Registry, UnknownNameError


def make():
    r = Registry[int]("model")
    r.register("ViT-B-32/openai", 1, aliases=("clip", "clip-vit-b-32"))
    r.register("tiny-clip-synth", 2)
    return r


def test_get_by_name_alias_and_case():
    r = make()
    assert r.get("ViT-B-32/openai") == 1
    assert r.get("clip") == 1
    assert r.get("CLIP") == 1
    assert r.resolve("clip-vit-b-32") == "ViT-B-32/openai"
    assert r.names() == ["ViT-B-32/openai", "tiny-clip-synth"]
    assert "clip" in r and "nope" not in r
    assert r.aliases("clip") == ["clip", "clip-vit-b-32"]


def test_miss_suggests_close_names():
    with pytest.raises(UnknownNameError) as err:
        make().get("tiny-clip-synt")
    assert str(err.value) == "unknown model 'tiny-clip-synt'; did you mean: tiny-clip-synth?"


def test_miss_without_close_match_lists_known():
    with pytest.raises(UnknownNameError, match="known: ViT-B-32/openai, tiny-clip-synth"):
        make().get("zzzzzzzz")


@pytest.mark.parametrize("name,aliases", [("clip", ()), ("new", ("CLIP",)), ("x", ("x",))])
def test_duplicates_rejected_and_registry_unchanged(name, aliases):
    r = make()
    with pytest.raises(DuplicateNameError):
        r.register(name, 3, aliases=aliases)
    assert len(r) == 2 and "new" not in r


def test_builtin_registries_resolve_and_suggest():
    from harness.datasets import DATASETS
    from harness.models import MODELS, resolve
    from harness.tasks import TASKS

    assert resolve("clip").name == "ViT-B-32/openai"
    assert resolve("clip").kind.value == "dual"
    meta = resolve("open_clip:ViT-L-14/laion2b_s32b_b82k")
    assert meta.source == "open_clip:ViT-L-14/laion2b_s32b_b82k" and meta.family == "open_clip"
    assert "tiny-clip-synth" in MODELS and "synthetic" in DATASETS and "flickr8k" in DATASETS
    assert TASKS.resolve("zero-shot") == "zeroshot"
    with pytest.raises(UnknownNameError, match="did you mean: flickr8k"):
        DATASETS.get("flikr8k")


def test_docstring_example_runs():
    import doctest

    import harness.core.registry

    assert doctest.testmod(harness.core.registry).failed == 0
