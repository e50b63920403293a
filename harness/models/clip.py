"""CLIP through open_clip: any open_clip architecture + pretrained tag, or a local checkpoint.

Also the embedded default: tiny open_clip-architecture CLIPs trained on the synthetic set,
whose weights ship in ``harness/weights`` (see benchmarks/train_tiny_clip.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.core.interfaces import LoadOptions, WeightsUnavailableError
from harness.models import weights as W
from harness.models.activation import ActivationChoice, build_kwargs, check_built, choose, choose_from_config
from harness.models.activation import mlp_activation as mlp_activation  # re-exported: records and tests name it here
from harness.models.common import autocast, mmap_torch_load, skip_weight_init, torch_dtype, unit_norm

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


@dataclass(frozen=True)
class OpenClipSource:
    arch: str                      # open_clip model name, e.g. "ViT-B-32"
    pretrained: str | None = None  # tag ("openai", "laion2b_s34b_b79k") or None for random init


class OpenClipDualEncoder:
    """DualEncoder over an open_clip model; ``tokenizer`` maps list[str] -> LongTensor."""

    def __init__(self, name, model, preprocess, tokenizer, options: LoadOptions, checkpoint: dict,
                 activation: ActivationChoice | None = None):
        self.name = name
        self.model = model.eval()
        self._preprocess = preprocess
        self._tokenizer = tokenizer
        self.options = options
        self.device = options.device
        self.checkpoint = checkpoint  # {"id": ..., "sha256": ...} recorded with every result
        self.embed_dim = int(model.text_projection.shape[1]) if getattr(model, "text_projection", None) is not None \
            else int(model.visual.output_dim)
        self._dtype = torch_dtype(options.precision)
        self._trim = None if can_trim_text(model) else False  # None: decided on the first text batch
        # recorded, and part of the embedding-cache key: GELU on QuickGELU weights costs points
        self.activation = mlp_activation(model)
        self.activation_from = activation.reason if activation else None

    def image_transform(self):
        return self._preprocess

    def tokenize(self, texts: Sequence[str]):
        return self._tokenizer(list(texts))

    def text_limit(self):
        from harness.models.text_limits import open_clip_limit

        return open_clip_limit(self._tokenizer)

    def encode_images(self, pixels):
        import torch

        with torch.inference_mode(), autocast(self.device, self.options.precision):
            x = pixels.to(self.device, dtype=self._dtype, non_blocking=True)
            return unit_norm(self.model.encode_image(x))

    def encode_texts(self, tokens):
        import torch

        with torch.inference_mode(), autocast(self.device, self.options.precision):
            tokens = tokens.to(self.device, non_blocking=True)
            if self._trim is None:  # first batch: check trimming reproduces the full forward on a
                self._trim = _trimming_holds(self.model, tokens[:8])  # few rows (a full 77-token pass costs)
            return unit_norm(encode_text_trimmed(self.model, tokens) if self._trim else self.model.encode_text(tokens))


def can_trim_text(model) -> bool:
    """open_clip's own text tower with a causal mask and end-of-text pooling: columns after
    a batch's longest caption are padding that no earlier position can attend to, so they
    can be dropped without changing the pooled feature (Flickr/COCO captions use ~15-25 of
    77 positions; the text tower's cost falls in proportion)."""
    return (type(model).__name__ == "CLIP" and getattr(model, "attn_mask", None) is not None
            and getattr(model, "text_pool_type", None) in ("argmax", "eos"))


def encode_text_trimmed(model, tokens):
    """``model.encode_text`` over the columns up to the batch's last non-pad (id 0) token."""
    from open_clip.transformer import text_global_pool

    used = int((tokens != 0).any(0).nonzero().max()) + 1 if tokens.numel() else tokens.shape[1]
    t = tokens[:, :used]
    cast = model.transformer.get_cast_dtype()
    x = model.token_embedding(t).to(cast) + model.positional_embedding[:used].to(cast)
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask[:used, :used]))
    x = text_global_pool(x, t, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None))
    proj = model.text_projection
    if proj is None:
        return x
    return proj(x) if hasattr(proj, "weight") else x @ proj


def _trimming_holds(model, tokens) -> bool:
    """Guard against open_clip internals changing under us: trimmed == full on a real batch."""
    import torch

    full, trimmed = model.encode_text(tokens), encode_text_trimmed(model, tokens)
    ok = full.shape == trimmed.shape and torch.allclose(full.float(), trimmed.float(), rtol=1e-3, atol=1e-4)
    if not ok:
        logging.getLogger(__name__).warning("text trimming disagrees with open_clip's encode_text; not trimming")
    return ok


def _resolve_checkpoint(name: str, source: OpenClipSource, options: LoadOptions) -> tuple[str, str | None]:
    """(model_name for open_clip, pretrained file path or None); never waits on a dead network."""
    import open_clip

    if options.weights:
        path = W.local_weights(options.weights, name)
        if path.is_dir():
            return f"local-dir:{path}", None
        return source.arch, str(path)
    if not source.pretrained:
        return source.arch, None
    cfg = open_clip.get_pretrained_cfg(source.arch, source.pretrained)
    if not cfg:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(source.arch)) or "none"
        raise WeightsUnavailableError(
            f"{name}: open_clip has no pretrained tag {source.pretrained!r} for {source.arch} (tags: {tags})")
    hub = cfg.get("hf_hub", "")
    if hub:
        repo, filename = hub.rstrip("/").rsplit("/", 1) if not hub.endswith("/") else (hub.rstrip("/"), "")
        for candidate in ([filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]):
            cached = W.cached_hub_file(repo, candidate)
            if cached:
                return source.arch, cached
    if not W.host_reachable():
        raise W.offline_error(name, f"open_clip {source.arch}/{source.pretrained} ({hub or cfg.get('url')})")
    return source.arch, open_clip.download_pretrained(cfg)


def _strict_load(ckpt: str | None) -> bool:
    """open_clip loads a state_dict checkpoint with ``strict=True``; big_vision .npz weights
    go through a converter that sets only what it knows."""
    return bool(ckpt) and Path(ckpt).suffix not in (".npz", ".npy")


def load_open_clip(name: str, source: OpenClipSource, options: LoadOptions) -> OpenClipDualEncoder:
    import open_clip

    model_name, ckpt = _resolve_checkpoint(name, source, options)
    if ckpt and options.weights:
        W.checkpoint_format(ckpt, name)  # random bytes fail here, naming the file, not deep in torch.load
    precision = "fp32" if options.precision.value in ("fp32", "amp") else options.precision.value
    activation = choose(source.arch, source.pretrained, options)
    try:  # open_clip loads a given checkpoint strictly, so its random init can be skipped
        with skip_weight_init() if _strict_load(ckpt) else contextlib.nullcontext(), mmap_torch_load(ckpt):
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=ckpt, precision=precision, device=options.device, weights_only=True,
                **build_kwargs(activation))
    except FileNotFoundError as exc:
        raise WeightsUnavailableError(f"{name}: {exc}") from None
    except RuntimeError as exc:
        if "Error(s) in loading state_dict" in str(exc):
            raise WeightsUnavailableError(f"{name}: checkpoint {ckpt} does not fit {model_name}: "
                                          f"{str(exc).splitlines()[0]}") from None
        if ckpt:
            raise W.checkpoint_error(name, ckpt, exc) from None
        raise
    except (pickle.UnpicklingError, EOFError, IndexError, KeyError, ValueError) as exc:
        if ckpt:  # torch.load's answers to a damaged file, or to a pickle weights_only refuses
            raise W.checkpoint_error(name, ckpt, exc) from None
        raise
    check_built(name, activation, model)
    tokenizer = open_clip.get_tokenizer(model_name)
    checkpoint = {"id": ckpt or f"{source.arch}/random-init", "sha256": W.file_digest(ckpt) if ckpt else None}
    return OpenClipDualEncoder(name, model, preprocess, tokenizer, options, checkpoint, activation)


# ---- the embedded tiny CLIPs -------------------------------------------------------------

@contextlib.contextmanager
def quiet_logging(level: int = logging.WARNING):
    """Silence library log records up to ``level`` for the block (open_clip logs on root)."""
    previous = logging.root.manager.disable
    logging.disable(level)
    try:
        yield
    finally:
        logging.disable(previous)


class CompactTokenizer:
    """open_clip's BPE tokenizer with its vocabulary cut to the tokens a model was trained on.

    Id layout (so open_clip's argmax pooling still lands on end-of-text): 0 pad, 1 start,
    2 unknown, 3..V-2 kept BPE tokens, V-1 end-of-text. Cutting 49k rows to ~100 keeps the
    shipped checkpoint at a few hundred kB instead of 25 MB.
    """

    def __init__(self, kept_ids: Sequence[int], context_length: int):
        import torch
        from open_clip.tokenizer import SimpleTokenizer

        self.base = SimpleTokenizer(context_length=context_length)
        self.kept_ids = [int(i) for i in kept_ids]
        lut = torch.full((len(self.base.encoder),), 2, dtype=torch.long)
        lut[0] = 0
        lut[self.base.sot_token_id] = 1
        for new_id, old_id in enumerate(self.kept_ids, start=3):
            lut[old_id] = new_id
        lut[self.base.eot_token_id] = len(self.kept_ids) + 3
        self.lut = lut
        self.vocab_size = len(self.kept_ids) + 4

    def __call__(self, texts: Sequence[str]):
        return self.lut[self.base(list(texts))]

    @staticmethod
    def kept_from_corpus(texts: Sequence[str]) -> list[int]:
        from open_clip.tokenizer import SimpleTokenizer

        tok = SimpleTokenizer()
        special = {0, tok.sot_token_id, tok.eot_token_id}
        return sorted({i for t in texts for i in tok.encode(t)} - special)


def tiny_config_path(stem: str) -> Path:
    return WEIGHTS_DIR / f"{stem}.json"


def load_tiny_clip(name: str, stem: str, options: LoadOptions, random_init: bool = False) -> OpenClipDualEncoder:
    """A tiny CLIP from ``harness/weights/<stem>.*``: open_clip config, kept token ids, weights."""
    import open_clip
    import torch

    cfg_path, tokens_path = tiny_config_path(stem), WEIGHTS_DIR / f"{stem}.tokens.json"
    # a --weights path the user gave is checked as theirs; only shipped files are re-created by the script
    ckpt = W.local_weights(options.weights, name) if options.weights else WEIGHTS_DIR / f"{stem}.safetensors"
    for p in (cfg_path, tokens_path) + (() if random_init or options.weights else (ckpt,)):
        if not p.exists():
            raise WeightsUnavailableError(f"{name}: missing {p}; re-create it with benchmarks/train_tiny_clip.py")
    open_clip.add_model_config(cfg_path)
    tokens = json.loads(tokens_path.read_text())
    activation = choose_from_config(json.loads(cfg_path.read_text()), f"the shipped {cfg_path.name}", options)
    torch.manual_seed(0)  # the random-init reference is the same model every time
    with quiet_logging():  # open_clip warns "initialized randomly" before we load our weights
        model, _, preprocess = open_clip.create_model_and_transforms(stem, device="cpu", **build_kwargs(activation))
    check_built(name, activation, model)
    if not random_init:
        state = {k: v.float() for k, v in W.load_safetensors(ckpt, name).items()}
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise WeightsUnavailableError(f"{name}: checkpoint {ckpt} does not fit {stem}: "
                                          f"{str(exc).splitlines()[0]}; {W.CHECKPOINT_HINT}") from None
    model = model.to(options.device, dtype=torch_dtype(options.precision))
    context = json.loads(cfg_path.read_text())["text_cfg"]["context_length"]
    tokenizer = CompactTokenizer(tokens["kept_ids"], context)
    checkpoint = {"id": "random-init(seed=0)" if random_init else str(ckpt),
                  "sha256": None if random_init else W.file_digest(ckpt)}
    return OpenClipDualEncoder(name, model, preprocess, tokenizer, options, checkpoint, activation)
