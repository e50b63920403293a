"""Small pieces every adapter shares: dtype/autocast per precision, unit-norm output."""

from __future__ import annotations

import contextlib

from harness.core.errors import OptionError
from harness.core.interfaces import Precision


def torch_dtype(precision: Precision):
    """Dtype the weights are cast to; ``amp`` keeps fp32 weights and autocasts the math."""
    import torch

    return {Precision.FP16: torch.float16, Precision.BF16: torch.bfloat16}.get(precision, torch.float32)


def autocast(device: str, precision: Precision):
    """Autocast context for ``amp`` (fp16 on CUDA, bf16 on CPU); a no-op otherwise."""
    import torch

    if precision is not Precision.AMP:
        return contextlib.nullcontext()
    kind = "cuda" if str(device).startswith("cuda") else "cpu"
    dtype = torch.float16 if kind == "cuda" else torch.bfloat16
    return torch.autocast(device_type=kind, dtype=dtype)


def unit_norm(x):
    """Float32, L2-normalised rows: scoring is a dot product, whatever precision encoded."""
    import torch.nn.functional as F

    return F.normalize(x.float(), dim=-1)


def precision_info(device: str, precision: Precision) -> dict:
    """What ``--precision`` means on ``device``, for the record: the weights' dtype and the
    autocast dtype (None: no autocast). fp16 on a CPU is refused: many CPU kernels have no
    half-precision path or run it far slower, so its timings and scores would mislead."""
    cuda = str(device).startswith("cuda")
    if precision is Precision.FP16 and not cuda:
        raise OptionError(f"--precision fp16 needs a CUDA device (got --device {device}); "
                         "on CPU use bf16, or amp (fp32 weights, bfloat16 autocast)")
    weights = {Precision.FP16: "float16", Precision.BF16: "bfloat16"}.get(precision, "float32")
    autocast_dtype = ("float16" if cuda else "bfloat16") if precision is Precision.AMP else None
    return {"weights_dtype": weights, "autocast": autocast_dtype}


_INIT_FUNCTIONS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
                   "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_")


@contextlib.contextmanager
def skip_weight_init():
    """Make ``torch.nn.init`` a no-op while a model is built whose every parameter a strict
    checkpoint load overwrites next: random init of ViT-B-32 costs ~1.5 s of CPU for numbers
    that are thrown away (transformers' ``no_init_weights`` does the same). Only for a load
    that is strict; tensors are left uninitialised until the checkpoint fills them."""
    from torch.nn import init

    saved = {name: getattr(init, name) for name in _INIT_FUNCTIONS if hasattr(init, name)}
    for name in saved:
        setattr(init, name, _keep)
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(init, name, fn)


def _keep(tensor, *args, **kwargs):
    return tensor


@contextlib.contextmanager
def mmap_torch_load(path):
    """``torch.load`` memory-maps ``path`` inside the block when it is a zip-format checkpoint
    (torch.save's default): the state_dict's tensors are views of the page cache, copied once
    into the model by load_state_dict, instead of read into fresh buffers first. Other files
    (legacy tar format, safetensors, npz) load as before."""
    import zipfile

    from torch.utils.serialization import config

    use = bool(path) and str(path).endswith((".pt", ".pth", ".bin")) and zipfile.is_zipfile(path)
    saved = config.load.mmap
    config.load.mmap = saved or use
    try:
        yield
    finally:
        config.load.mmap = saved
