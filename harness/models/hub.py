"""transformers models from a hub id or a local directory, loaded the same way for every family.

One place decides where weights come from (``--weights DIR``, the Hugging Face cache, or the
hub when it answers), loads config / model / tokenizer / image processor from there, and
turns every "cannot find it" into one ``WeightsUnavailableError`` line. Nothing here waits on
a dead network: the hub is probed once (``weights.host_reachable``) and, when it does not
answer, everything loads with ``local_files_only=True``. ``trust_remote_code`` is never set.
Importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.interfaces import LoadOptions, Precision, WeightsUnavailableError
from harness.models import weights as W

# weight files a transformers directory may hold, in the order we hash them for the record
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


@dataclass(frozen=True)
class PretrainedSource:
    """Where ``from_pretrained`` reads: a hub id or a local directory."""

    location: str        # hub id ("openai/clip-vit-base-patch32") or a directory path
    local_only: bool     # True: local_files_only, never touch the network
    hub_id: str | None   # the hub id, when the weights come from the hub or its cache

    def snapshot_dir(self) -> Path | None:
        """The directory the files were read from (the cache snapshot for hub ids)."""
        if self.hub_id is None:
            return Path(self.location)
        config = W.cached_hub_file(self.hub_id, "config.json")
        return Path(config).parent if config else None

    def checkpoint(self) -> dict:
        """``{"id", "sha256"}`` recorded with results: hub id@commit (or the directory) and the
        hash of the weights file loaded (the shard index for sharded checkpoints)."""
        folder = self.snapshot_dir()
        ident = self.location
        if self.hub_id is not None:
            ident = f"hf:{self.hub_id}" + (f"@{folder.name}" if folder is not None else "")
        weights = next((folder / f for f in WEIGHT_FILES if folder and (folder / f).is_file()), None)
        return {"id": ident, "sha256": W.file_digest(weights) if weights else None}


def pretrained_source(name: str, hub_id: str | None, options: LoadOptions) -> PretrainedSource:
    """``--weights DIR`` if given, else the hub id: online when the hub answers, else the cache.

    Raises the one-line ``WeightsUnavailableError`` when neither is possible.
    """
    if options.weights:
        path = W.local_weights(options.weights, name)
        if not (path.is_dir() and (path / "config.json").is_file()):
            raise WeightsUnavailableError(
                f"{name}: --weights {str(path)!r} is not a transformers model directory "
                "(expected config.json and weights, as written by save_pretrained)")
        return PretrainedSource(str(path), local_only=True, hub_id=None)
    if hub_id is None:
        raise WeightsUnavailableError(f"{name}: no hub id registered; pass --weights DIR")
    if W.host_reachable():
        return PretrainedSource(hub_id, local_only=False, hub_id=hub_id)
    if W.cached_hub_file(hub_id, "config.json"):
        return PretrainedSource(hub_id, local_only=True, hub_id=hub_id)
    raise W.offline_error(name, f"hf:{hub_id}")


def hub_cached(hub_id: str) -> bool:
    """True when the HF cache holds config + weights of ``hub_id``'s main revision.

    Reads the cache layout directly (models--ORG--NAME/refs/main -> snapshots/<commit>), so
    ``vlbench list`` can say what runs offline without importing transformers.
    """
    from huggingface_hub import constants

    repo = Path(constants.HF_HUB_CACHE) / ("models--" + hub_id.replace("/", "--"))
    try:
        snapshot = repo / "snapshots" / (repo / "refs" / "main").read_text().strip()
    except OSError:
        return False
    return (snapshot / "config.json").is_file() and any((snapshot / f).is_file() for f in WEIGHT_FILES)


@contextlib.contextmanager
def loading_errors(name: str, source: PretrainedSource):
    """Missing / partial files become one line naming the model and how to provide it."""
    try:
        yield
    except OSError as exc:  # transformers and huggingface_hub raise OSError subclasses
        raise missing(name, source, first_sentence(exc)) from None


def first_sentence(exc: BaseException) -> str:
    """A library's multi-line message cut to its first sentence, on one line."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    head, dot, _ = text.partition(". ")
    return head + ("." if dot else "")


def missing(name: str, source: PretrainedSource, what: str) -> WeightsUnavailableError:
    """A cache missing files is an offline problem (say how to fill it); a directory, a bad one."""
    if source.local_only and source.hub_id is not None:
        return W.offline_error(name, f"part of hf:{source.hub_id} ({what})")
    return WeightsUnavailableError(f"{name}: cannot load {source.location}: {what}")


@contextlib.contextmanager
def quiet_transformers():
    """No progress bars or load-report chatter while loading; the previous state comes back."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def load_config(name: str, source: PretrainedSource, model_types: Iterable[str]):
    """The config, checked to be one of ``model_types`` (a CLIP dir given to a BLIP entry fails)."""
    from transformers import AutoConfig

    with loading_errors(name, source), quiet_transformers():
        config = AutoConfig.from_pretrained(source.location, local_files_only=source.local_only,
                                            trust_remote_code=False)
    allowed = tuple(model_types)
    if config.model_type not in allowed:
        raise WeightsUnavailableError(
            f"{name}: {source.location} holds a {config.model_type!r} model; expected {' or '.join(allowed)}")
    return config


def weights_dtype(precision: Precision):
    """Dtype the weights load in: fp16/bf16 as asked; fp32 for fp32 and amp (amp autocasts)."""
    from harness.models.common import torch_dtype

    return torch_dtype(Precision.FP32 if precision is Precision.AMP else precision)


def load_model(name: str, source: PretrainedSource, model_cls, config, options: LoadOptions):
    """``model_cls.from_pretrained`` in eval mode on ``options.device`` in the asked dtype."""
    with loading_errors(name, source), quiet_transformers():
        model = model_cls.from_pretrained(source.location, config=config, local_files_only=source.local_only,
                                          dtype=weights_dtype(options.precision))
    return model.to(options.device).eval().requires_grad_(False)


def load_tokenizer(name: str, source: PretrainedSource, config):
    """The model's tokenizer; one whose vocabulary cannot fill the model's embedding table is
    refused -- transformers falls back to an empty default tokenizer when the files are missing,
    which would silently turn every word into [UNK]."""
    from transformers import AutoTokenizer

    with loading_errors(name, source), quiet_transformers():
        try:
            tokenizer = AutoTokenizer.from_pretrained(source.location, local_files_only=source.local_only,
                                                      trust_remote_code=False)
        except ImportError as exc:  # e.g. SigLIP's sentencepiece tokenizer without sentencepiece
            raise WeightsUnavailableError(f"{name}: its tokenizer needs a missing package: "
                                          f"{first_sentence(exc)}") from None
    text_config = getattr(config, "text_config", config)
    if 2 * len(tokenizer) < int(text_config.vocab_size):
        raise missing(name, source, f"its tokenizer has {len(tokenizer)} tokens for a "
                                    f"{text_config.vocab_size}-token model: tokenizer files are missing")
    return tokenizer


def load_image_processor(name: str, source: PretrainedSource):
    from transformers import AutoImageProcessor

    with loading_errors(name, source), quiet_transformers():
        return AutoImageProcessor.from_pretrained(source.location, local_files_only=source.local_only,
                                                  trust_remote_code=False)


class ProcessorTransform:
    """PIL image -> (C, H, W) float tensor through a transformers image processor.

    A plain object holding the processor (itself picklable), so DataLoader workers can run it.
    """

    def __init__(self, processor, **kwargs):
        self.processor = processor
        self.kwargs = kwargs

    def __call__(self, image):
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        return self.processor(images=rgb, return_tensors="pt", **self.kwargs)["pixel_values"][0]

    def __repr__(self) -> str:
        return f"ProcessorTransform({type(self.processor).__name__}, {self.kwargs})"


class HubAdapter:
    """The fields every transformers adapter keeps (the runner records name, model, checkpoint)."""

    def __init__(self, name: str, model, tokenizer, options: LoadOptions, checkpoint: dict):
        self.name = name
        self.model = model
        self.tokenizer = tokenizer
        self.options = options
        self.device = options.device
        self.checkpoint = checkpoint
        self._dtype = next(model.parameters()).dtype


@dataclass
class LoadedParts:
    """Everything a transformers adapter is built from, loaded the one way (local dir, HF
    cache, or the hub when it answers)."""

    config: Any
    model: Any
    tokenizer: Any
    processor: Any
    checkpoint: dict


def load_parts(name: str, hub_id: str | None, options: LoadOptions, model_types: Iterable[str],
               model_class: Callable[[Any], Any]) -> LoadedParts:
    """Config (checked to be one of ``model_types``), tokenizer, image processor and model;
    ``model_class(config)`` names the transformers class to instantiate."""
    source = pretrained_source(name, hub_id, options)
    config = load_config(name, source, model_types)
    tokenizer = load_tokenizer(name, source, config)
    processor = load_image_processor(name, source)
    model = load_model(name, source, model_class(config), config, options)
    return LoadedParts(config, model, tokenizer, processor, source.checkpoint())


def to_device(batch: dict, device: str) -> dict:
    """A tokenised batch (dict of tensors) on ``device``."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
