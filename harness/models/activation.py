"""Which MLP activation an open_clip CLIP is built with: QuickGELU for weights trained with it
(OpenAI's CLIPs, a few early OpenCLIP runs), else the architecture config's own (GELU for
``ViT-B-32``, QuickGELU for ``ViT-B-32-quickgelu``).

The wrong one runs without an error and costs points (RAIVNLab/sugar-crepe#7,
mlfoundations/open_clip#771). open_clip (3.x) builds the architecture config's activation and
only warns when a pretrained *tag* wants the other; a checkpoint given as a file gets no check
at all. vlbench decides here, once, before loading, from what is known about the weights:

1. ``--model-option activation=gelu|quick_gelu``: the user's word;
2. ``--weights DIR`` or a file beside an ``open_clip_config.json`` (open_clip's own metadata,
   as the hub repos ship it): its ``model_cfg.quick_gelu``;
3. ``--weights FILE`` whose sha256 is one of OpenAI's published checkpoints (open_clip's
   pretrained table names each by the sha256 in its download URL): QuickGELU;
4. a pretrained tag whose open_clip ``pretrained_cfg`` says ``quick_gelu`` (``ViT-B-32/openai``,
   also with ``--weights``: a copy or fine-tune of those weights, sugar-crepe #7's case): QuickGELU;
5. else the architecture config's ``quick_gelu`` (a plain ``open_clip:ViT-B-32`` file that may
   be a fine-tune of OpenAI's weights gets a one-line warning saying how to ask for QuickGELU).

The choice is part of the run key (``ModelMeta.plan``), the loader builds exactly it (open_clip's
``force_quick_gelu``, or ``quick_gelu=False``), and the built network is checked against it.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from harness.core.errors import OptionError
from harness.core.interfaces import LoadOptions

OPTION = "activation"
ACTIVATIONS = ("gelu", "quick_gelu")
MODEL_OPTIONS = {OPTION: ACTIVATIONS}  # what an open_clip ModelMeta declares
OPEN_CLIP_CONFIG = "open_clip_config.json"  # open_clip's metadata file beside hub weights
_OPENAI_URL = re.compile(r"/clip/models/([0-9a-f]{64})/")  # OpenAI's URLs carry the file's sha256


@dataclass(frozen=True)
class ActivationChoice:
    activation: str  # "gelu" | "quick_gelu"
    reason: str      # why, for the record ("activation_from") and messages

    @property
    def quick(self) -> bool:
        return self.activation == "quick_gelu"


def requested(options: LoadOptions) -> str | None:
    """The ``activation`` model option, checked (None: not given)."""
    value = options.model_option(OPTION)
    if value is not None and value not in ACTIVATIONS:
        raise OptionError(f"--model-option {OPTION}={value}: expected {'|'.join(ACTIVATIONS)}")
    return value


def choose(arch: str, tag: str | None, options: LoadOptions) -> ActivationChoice:
    """The activation an open_clip ``arch`` (+ pretrained ``tag``, + ``options.weights``) is built with."""
    asked = requested(options)
    if asked:
        return ActivationChoice(asked, f"--model-option {OPTION}={asked}")
    if options.weights:
        found = _from_weights(Path(options.weights).expanduser())
        if found:
            return found
        if tag and _pretrained_cfg(arch, tag).get("quick_gelu"):  # a copy or fine-tune of the tag's weights
            return ActivationChoice("quick_gelu", f"the model's pretrained tag {arch}/{tag} (quick_gelu); "
                                                  f"--weights {Path(options.weights).name} states no activation")
        default = _config_choice(arch)
        if not default.quick and not tag and openai_tag_wants_quick(arch):  # a tag says whose weights
            warnings.warn(f"{arch} --weights {options.weights}: built with GELU ({default.reason}); if these are "
                          f"OpenAI's CLIP weights or a fine-tune of them, add --model-option {OPTION}=quick_gelu "
                          "(they were trained with QuickGELU)", stacklevel=2)
        return default
    if tag:
        cfg = _pretrained_cfg(arch, tag)
        if cfg.get("quick_gelu"):
            return ActivationChoice("quick_gelu", f"open_clip pretrained tag {arch}/{tag} (quick_gelu)")
    return _config_choice(arch)


def choose_from_config(config: dict, where: str, options: LoadOptions) -> ActivationChoice:
    """For a model built from a config vlbench holds itself (the tiny CLIPs): the option, else the config."""
    asked = requested(options)
    if asked:
        return ActivationChoice(asked, f"--model-option {OPTION}={asked}")
    quick = bool(config.get("quick_gelu"))
    return ActivationChoice("quick_gelu" if quick else "gelu", f"{where} (quick_gelu={str(quick).lower()})")


def build_kwargs(choice: ActivationChoice) -> dict:
    """``open_clip.create_model*`` keyword arguments that build exactly ``choice``: open_clip's
    ``force_quick_gelu`` turns QuickGELU on; ``quick_gelu=False`` (a model-config override)
    turns it off where the architecture config would have it."""
    return {"force_quick_gelu": True} if choice.quick else {"quick_gelu": False}


def mlp_activation(model) -> str | None:
    """``quick_gelu`` or ``gelu``: what the transformer MLPs of a built open_clip model compute."""
    names = {type(m).__name__ for m in model.modules()}
    return "quick_gelu" if "QuickGELU" in names else "gelu" if "GELU" in names else None


def check_built(name: str, choice: ActivationChoice, model) -> None:
    """The built network computes the chosen activation (a timm tower picks its own: say so)."""
    built = mlp_activation(model)
    if built is not None and built != choice.activation:
        raise OptionError(f"{name}: asked for {choice.activation} ({choice.reason}) but open_clip built {built}; "
                          f"this architecture sets its own activation, --model-option {OPTION} cannot change it")


def openai_checkpoint(digest: str | None) -> tuple[str, str] | None:
    """(arch, tag) of the OpenAI checkpoint whose file has this sha256, else None.

    >>> openai_checkpoint("40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af")
    ('ViT-B-32', 'openai')
    """
    return _openai_digests().get(digest or "")


def openai_tag_wants_quick(arch: str) -> bool:
    """True when OpenAI released weights for ``arch`` (its ``openai`` tag is QuickGELU)."""
    return bool(_pretrained_cfg(arch, "openai").get("quick_gelu"))


def _from_weights(path: Path) -> ActivationChoice | None:
    config = path / OPEN_CLIP_CONFIG if path.is_dir() else path.with_name(OPEN_CLIP_CONFIG)
    quick = _config_quick_gelu(config)
    if quick is not None:
        return ActivationChoice("quick_gelu" if quick else "gelu",
                                f"{config} (model_cfg.quick_gelu={str(quick).lower()})")
    if path.is_file():
        from harness.models.weights import content_digest

        known = openai_checkpoint(content_digest(path))
        if known:
            return ActivationChoice("quick_gelu", f"{path.name} is OpenAI's {known[0]} "
                                                  "checkpoint (sha256), trained with QuickGELU")
    return None


def _config_quick_gelu(config: Path) -> bool | None:
    """``model_cfg.quick_gelu`` of an ``open_clip_config.json`` (absent: False); None without one."""
    if not config.is_file():
        return None
    try:
        cfg = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OptionError(f"{config}: not readable open_clip config JSON ({exc})") from None
    model_cfg = cfg.get("model_cfg") if isinstance(cfg, dict) else None
    if not isinstance(model_cfg, dict):
        raise OptionError(f"{config}: no 'model_cfg' mapping (open_clip's hub config layout)")
    return bool(model_cfg.get("quick_gelu", False))


def _config_choice(arch: str) -> ActivationChoice:
    import open_clip

    cfg = open_clip.get_model_config(arch) or {}
    quick = bool(cfg.get("quick_gelu"))
    return ActivationChoice("quick_gelu" if quick else "gelu",
                            f"the {arch} architecture config (quick_gelu={str(quick).lower()})")


def _pretrained_cfg(arch: str, tag: str) -> dict:
    import open_clip

    return open_clip.get_pretrained_cfg(arch, tag) or {}


@cache
def _openai_digests() -> dict[str, tuple[str, str]]:
    """sha256 -> (arch, tag) for every OpenAI checkpoint open_clip's pretrained table lists."""
    import open_clip

    out = {}
    for arch, tag in open_clip.list_pretrained():
        cfg = open_clip.get_pretrained_cfg(arch, tag) or {}
        m = _OPENAI_URL.search(str(cfg.get("url") or ""))
        if m and cfg.get("quick_gelu"):
            out.setdefault(m.group(1), (arch.removesuffix("-quickgelu"), tag))  # listed under both names
    return out


def plan(arch: str, tag: str | None, options: LoadOptions) -> dict[str, str]:
    """``ModelMeta.plan`` of an open_clip model: the activation it will be built with."""
    with warnings.catch_warnings():  # the loader warns when it builds; the run key need not
        warnings.simplefilter("ignore")
        return {OPTION: choose(arch, tag, options).activation}


def plan_from_config(config_path: Path, options: LoadOptions) -> dict[str, str]:
    """``ModelMeta.plan`` of a model built from a vlbench-held open_clip config (the tiny CLIPs)."""
    try:
        config = json.loads(Path(config_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}  # the loader reports the missing file; the plan stays the config-less default
    return {OPTION: choose_from_config(config, str(config_path), options).activation}
