"""Model registry: cheap ModelMeta records; loaders import torch/open_clip only when called.

Besides the registered names, ``open_clip:ARCH[/TAG]`` names any open_clip architecture
and pretrained tag (``open_clip:ViT-L-14/laion2b_s32b_b82k``), and ``hf:ORG/NAME`` any
transformers CLIP / SigLIP / ALIGN hub id; with ``--weights PATH`` the weights come from a
local file or directory instead.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from harness.core.interfaces import LoadOptions, ModelKind, ModelMeta
from harness.core.registry import Registry
from harness.models.activation import MODEL_OPTIONS as OPEN_CLIP_OPTIONS  # torch-free: what open_clip CLIPs take

MODELS: Registry[ModelMeta] = Registry("model")
OPEN_CLIP_PREFIX = "open_clip:"
HF_PREFIX = "hf:"
# Name schemes that higher layers add (``metric:NAME`` from harness.tasks.metric_scorers):
# prefix -> function(name, resolve) -> ModelMeta. Models never import those layers.
PREFIXES: dict[str, Callable[[str, Callable[[str], ModelMeta]], ModelMeta]] = {}


def register_prefix(prefix: str, make_meta: Callable[[str, Callable[[str], ModelMeta]], ModelMeta]) -> None:
    if prefix in PREFIXES or prefix in (OPEN_CLIP_PREFIX, HF_PREFIX):
        raise ValueError(f"model name prefix {prefix!r} is already taken")
    PREFIXES[prefix] = make_meta


def _open_clip(name: str, arch: str, tag: str | None, options: LoadOptions):
    from harness.models.clip import OpenClipSource, load_open_clip

    return load_open_clip(name, OpenClipSource(arch, tag), options)


def _tiny(name: str, stem: str, random_init: bool, options: LoadOptions):
    from harness.models.clip import load_tiny_clip

    return load_tiny_clip(name, stem, options, random_init=random_init)


def _tiny_files(stem: str, random_init: bool, weights: str | None) -> list[Path]:
    """What :func:`harness.models.clip.load_tiny_clip` reads: config, kept token ids, weights."""
    from harness.models.weights import SHIPPED_DIR

    files = [SHIPPED_DIR / f"{stem}.json", SHIPPED_DIR / f"{stem}.tokens.json"]
    if random_init:
        return files
    return files + [Path(weights).expanduser() if weights else SHIPPED_DIR / f"{stem}.safetensors"]


def _plan_open_clip(arch: str, tag: str | None, options: LoadOptions) -> dict[str, str]:
    from harness.models.activation import plan

    return plan(arch, tag, options)


def _plan_tiny(stem: str, options: LoadOptions) -> dict[str, str]:
    from harness.models.activation import plan_from_config
    from harness.models.weights import SHIPPED_DIR

    return plan_from_config(SHIPPED_DIR / f"{stem}.json", options)


def open_clip_meta(arch: str, tag: str | None, aliases: tuple[str, ...] = (), params: int | None = None,
                   license: str = "see the open_clip pretrained tag", name: str | None = None) -> ModelMeta:
    name = name or (f"{arch}/{tag}" if tag else arch)
    return ModelMeta(
        name=name, family="open_clip", kind=ModelKind.DUAL,
        source=f"open_clip:{arch}/{tag or 'random-init'}",
        loader=partial(_open_clip, name, arch, tag), params=params, license=license, aliases=aliases,
        model_options=OPEN_CLIP_OPTIONS, plan=partial(_plan_open_clip, arch, tag))


def _register_builtin() -> None:
    for arch, tag, aliases, params in (
        ("ViT-B-32", "openai", ("clip", "clip-vit-b-32"), 151_277_313),
        ("ViT-B-16", "openai", ("clip-vit-b-16",), 149_620_737),
        ("ViT-L-14", "openai", ("clip-vit-l-14",), 427_616_513),
        ("RN50", "openai", ("clip-rn50",), 102_007_137),
        ("ViT-B-32", "laion2b_s34b_b79k", ("openclip-vit-b-32-laion2b",), 151_277_313),
    ):
        lic = "MIT (OpenAI CLIP)" if tag == "openai" else "MIT (OpenCLIP); data: LAION-2B"
        MODELS.register(f"{arch}/{tag}", open_clip_meta(arch, tag, aliases, params, lic), aliases=aliases)
    from harness.models.encoders import TINY_CLIP_PARAMS  # torch-free: metas only

    for name, random_init, desc in (
        ("tiny-clip-synth", False, "tiny open_clip ViT/text transformer trained on the synthetic train split"),
        ("tiny-clip-random", True, "the same tiny CLIP, random init (seed 0): a chance-level reference"),
    ):
        MODELS.register(name, ModelMeta(
            name=name, family="open_clip", kind=ModelKind.DUAL,
            source="vlbench:harness/weights/tiny-clip-synth" + ("" if not random_init else " (random init)"),
            loader=partial(_tiny, name, "tiny-clip-synth", random_init), license="Apache-2.0 (vlbench)",
            description=desc, offline=True, local_files=partial(_tiny_files, "tiny-clip-synth", random_init),
            params=TINY_CLIP_PARAMS, model_options=OPEN_CLIP_OPTIONS, plan=partial(_plan_tiny, "tiny-clip-synth")))
    from harness.models.fusion import model as fusion  # torch-free import: specs and metas only

    fusion.register(MODELS)
    from harness.models import coca  # torch-free import: metas only

    coca.register(MODELS)
    from harness.models import tiny_captioner  # torch-free import: metas only

    tiny_captioner.register(MODELS)


def resolve(name: str) -> ModelMeta:
    """Registered name or alias, an ``open_clip:ARCH[/TAG]`` or ``hf:`` spec, or a name in a
    scheme a higher layer registered (``metric:NAME[:JUDGE]``, :data:`PREFIXES`); did-you-mean
    on a miss."""
    for prefix, make_meta in PREFIXES.items():
        if name.startswith(prefix):
            return make_meta(name, resolve)
    if name.startswith(OPEN_CLIP_PREFIX):
        arch, _, tag = name[len(OPEN_CLIP_PREFIX):].partition("/")
        return open_clip_meta(arch, tag or None, name=name)
    if name.startswith(HF_PREFIX):
        hub_id = name[len(HF_PREFIX):]
        if hub_id in MODELS:
            return MODELS.get(hub_id)
        from harness.models.hf import hf_meta

        return hf_meta(hub_id, name=name)
    return MODELS.get(name)


def availability(meta: ModelMeta) -> str:
    """Whether ``meta`` runs with no network: "yes" (weights ship with vlbench), "cached"
    (a hub model whose files are in the local Hugging Face cache), else "needs weights"."""
    if meta.offline:
        return "yes"
    if meta.source.startswith(HF_PREFIX):
        from harness.models.hub import hub_cached

        return "cached" if hub_cached(meta.source[len(HF_PREFIX):]) else "needs weights"
    return "needs weights"


def _register_transformers() -> None:
    """transformers families; their modules import torch/transformers only inside loaders."""
    from harness.models import blip, captioners, hf, vilt

    for family in (hf, blip, vilt, captioners):
        family.register(MODELS)


_register_builtin()
_register_transformers()
