"""The frozen image + text towers under a fusion head, and their features for a whole split.

Features are dicts of tensors with first dim = items:
  image: ``pooled`` (B, Di) and ``grid`` (B, G, Di) tokens of the last feature map;
  text:  ``pooled`` (B, Dt), ``tokens`` (B, T, Dt) and ``mask`` (B, T), T fixed by the spec
         so features of different batches stack.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from harness.core.interfaces import LoadOptions


@dataclass(frozen=True)
class TowerSpec:
    """Which frozen towers, and how images/texts are prepared for them (part of a checkpoint)."""

    image_encoder: str = "efficientnet-lite0"
    text_encoder: str = "minilm-l6-v2"
    image_size: int = 224
    crop: bool = True          # TF eval crop; False resizes the whole image (content at borders)
    text_max_tokens: int = 32  # covers 99.9% of Flickr8k captions (longest 42 MiniLM tokens)

    def to_dict(self) -> dict:
        return asdict(self)


# Each tower runs in micro-batches of a fixed size, the last one padded with copies of its
# last item. At a fixed batch size, oneDNN's CPU kernels give an item's features bit for bit
# whatever its neighbours and position (measured on EfficientNet-Lite0 and MiniLM; across
# batch sizes they differ by ~1e-5), so an item's features are a function of the item alone:
# the same whatever batch a task asks for, and shareable between tasks and fusion designs
# (``harness.core.memo``). On 2 CPU cores, 8 images a call (channels_last) are also 2-3x
# faster than 64 (cache-sized activations); MiniLM is as fast at 16 texts as at 128.
CPU_MICRO_BATCH = {"image": 8, "text": 16}
CUDA_MICRO_BATCH = {"image": 64, "text": 128}  # not yet measured on a GPU (benchmarks/gpu_check.sh)
COMPUTE_VERSION = 1  # how the towers are run (micro-batches, memory format): in the run key


def micro_batches(device: str) -> dict[str, int]:
    return dict(CUDA_MICRO_BATCH if str(device).startswith("cuda") else CPU_MICRO_BATCH)


def compute_facts(device: str) -> dict[str, str]:
    """How the towers compute on ``device``: planned into the run key (``ModelMeta.plan``) and
    stated by the loaded model (``model_facts``), so a change of it is a new run."""
    mb = micro_batches(device)
    return {"tower_compute": f"v{COMPUTE_VERSION}: micro-batches of {mb['image']} images (channels_last) "
                             f"and {mb['text']} texts"}


MEMO = "fusion-towers"  # the process memo (harness.core.memo) the towers' features live in


class FrozenTowers:
    """Runs the two frozen towers once per image / per text; no gradients, eval mode.

    Features of an item are computed once per process and memoised by content (the pixels'
    bytes, the text) under the towers' identity; a call served any from the memo says so to
    the open timing stages (``note_reused``), which then report no speed.
    """

    def __init__(self, spec: TowerSpec, image_tower, text_tower, device: str = "cpu", precision: str = "fp32"):
        self.spec, self.image_tower, self.text_tower, self.device = spec, image_tower, text_tower, device
        self.image_dim, self.text_dim = int(image_tower.dim), int(text_tower.dim)
        self.micro = micro_batches(device)
        self.facts = compute_facts(device)
        if hasattr(image_tower, "to") and not str(device).startswith("cuda"):
            import torch

            image_tower.to(memory_format=torch.channels_last)
        identity = {"towers": self.checkpoint, **self.facts, "spec": spec.to_dict(), "device": str(device),
                    "precision": str(precision)}  # what a memoised row depends on besides its item
        self._namespace = _digest(json.dumps(identity, sort_keys=True, default=str).encode())

    @property
    def checkpoint(self) -> dict:
        return {"image": self.image_tower.checkpoint, "text": self.text_tower.checkpoint}

    def image_transform(self):
        return self.image_tower.image_transform(self.spec.image_size, self.spec.crop)

    def image_features(self, pixels) -> dict:
        import torch

        cpu = pixels.detach().cpu().contiguous()
        keys = [f"{self._namespace}:i:{_digest(row.reshape(-1).view(torch.uint8).numpy(), (*row.shape, row.dtype))}"
                for row in cpu]
        run = lambda idx: self._run_images(pixels[torch.as_tensor(idx, dtype=torch.long)])  # noqa: E731
        return self._features(keys, run, self.micro["image"])

    def text_features(self, texts: Sequence[str]) -> dict:
        texts = list(texts)
        keys = [f"{self._namespace}:t:{_digest(t.encode('utf-8'))}" for t in texts]
        return self._features(keys, lambda idx: self._run_texts([texts[i] for i in idx]), self.micro["text"])

    def _run_images(self, pixels) -> dict:
        import torch

        with torch.no_grad():
            pooled, grid = self.image_tower.pooled_and_grid(pixels.to(self.device))
        return {"pooled": pooled.float(), "grid": grid.float()}

    def _run_texts(self, texts: list[str]) -> dict:
        import torch

        with torch.no_grad():
            pooled, tokens, mask = self.text_tower.pooled_and_tokens(texts, self.spec.text_max_tokens)
        return {"pooled": pooled.float(), "tokens": tokens.float(), "mask": mask.bool()}

    def _features(self, keys: list[str], run, micro: int) -> dict:
        """Rows for ``keys``: memoised ones looked up, the others run (``run(indices)``) in
        micro-batches of exactly ``micro`` items (the last padded with its last item)."""
        import torch

        from harness.core.measure import note_reused
        from harness.core.memo import process_memo

        memo = process_memo(MEMO)
        rows: list[dict | None] = [memo.get(k) if memo.max_bytes else None for k in keys]
        first: dict[str, int] = {}  # each key not memoised -> the first item that has it (run once)
        for i, row in enumerate(rows):
            if row is None:
                first.setdefault(keys[i], i)
        fresh: dict[str, dict] = {}
        todo = list(first.values())
        for s in range(0, len(todo), micro):
            part = todo[s:s + micro]
            out = run(part + [part[-1]] * (micro - len(part)))
            for j, i in enumerate(part):  # copies: a row must not hold its whole batch's storage
                fresh[keys[i]] = {k: v[j].detach().to("cpu", copy=True) for k, v in out.items()}
                if memo.max_bytes:
                    memo.put(keys[i], fresh[keys[i]])
        rows = [fresh[k] if r is None else r for k, r in zip(keys, rows)]
        note_reused(len(keys) - len(todo))  # memoised items and repeats within the call
        if not rows:
            return {k: v[:0].to(self.device) for k, v in run([]).items()}
        return {k: torch.stack([r[k] for r in rows]).to(self.device) for k in rows[0]}


class HeadOverTowers:
    """What every fusion adapter is: a head (matching or fitted classifier) over frozen towers.
    ``model`` holds the head and the towers' modules (what the runner counts as params);
    ``compute_facts`` how the towers run (``model_facts``; in the run key)."""

    def __init__(self, name: str, towers: FrozenTowers, head, checkpoint: dict):
        import torch

        self.name, self.towers, self.head, self.checkpoint = name, towers, head.to(towers.device), checkpoint
        modules = {"head": head}
        for key, tower in (("image_tower", towers.image_tower), ("text_tower", towers.text_tower)):
            module = tower if isinstance(tower, torch.nn.Module) else getattr(tower, "model", None)
            if isinstance(module, torch.nn.Module):
                modules[key] = module
        self.model = torch.nn.ModuleDict(modules)
        self.compute_facts = dict(towers.facts)

    def image_transform(self):
        return self.towers.image_transform()

    def tokenize(self, texts: Sequence[str]) -> list[str]:
        return list(texts)  # the frozen text tower tokenises inside text_features

    def text_limit(self):
        """The frozen text tower's limit (None when it does not say)."""
        get = getattr(self.towers.text_tower, "text_limit", None)
        return get() if callable(get) else None


def _digest(data, shape: tuple = ()) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(tuple(shape)).encode())
    h.update(data)
    return h.hexdigest()


def load_towers(spec: TowerSpec, options: LoadOptions | None = None) -> FrozenTowers:
    from harness.models.encoders import ENCODERS

    options = options or LoadOptions()
    tower_options = LoadOptions(device=options.device, precision=options.precision)  # --weights is the head's
    img, txt = ENCODERS.get(spec.image_encoder), ENCODERS.get(spec.text_encoder)
    if img.modality != "image" or txt.modality != "text":
        raise ValueError(f"towers {spec.image_encoder!r}/{spec.text_encoder!r}: need an image and a text encoder")
    return FrozenTowers(spec, img.load(tower_options), txt.load(tower_options), options.device,
                        str(getattr(options.precision, "value", options.precision)))


# The two tower setups of the shipped fusion models. Synthetic scenes are 64x64 with objects
# up to the border: resized whole (no crop) to 128 px, EfficientNet's stride 32 gives a 4x4
# grid whose cells cover 16 source pixels (about one object), at a third of the cost of 224.
# Their captions are at most 15 MiniLM tokens.
SYNTHETIC_TOWERS = TowerSpec(image_size=128, crop=False, text_max_tokens=16)
FLICKR_TOWERS = TowerSpec(image_size=224, crop=True, text_max_tokens=32)
