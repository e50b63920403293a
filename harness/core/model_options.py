"""``--model-option KEY=VALUE``: options a model declares itself (``ModelMeta.model_options``),
parsed and checked before anything loads, each error one line naming the option and the model.

    >>> parse_model_options(["activation=quick_gelu"])
    (('activation', 'quick_gelu'),)
    >>> from harness.core.interfaces import ModelKind, ModelMeta
    >>> meta = ModelMeta("m", "open_clip", ModelKind.DUAL, "x", loader=print,
    ...                  model_options={"activation": ("gelu", "quick_gelu")})
    >>> check_model_options(meta, (("activation", "relu"),))
    Traceback (most recent call last):
    ...
    harness.core.errors.OptionError: --model-option activation=relu: m takes activation=gelu|quick_gelu
"""

from __future__ import annotations

from harness.core.errors import OptionError

FLAG = "--model-option"


def parse_model_options(pairs: list[str] | dict | None) -> tuple[tuple[str, str], ...]:
    """``["activation=gelu"]`` (the command line) or ``{"activation": "gelu"}`` (a suite) ->
    sorted pairs; a key given twice with different values is refused, not silently resolved."""
    if not pairs:
        return ()
    if isinstance(pairs, dict):
        items = [(str(k).strip(), str(v).strip()) for k, v in pairs.items()]
    elif isinstance(pairs, (list, tuple)):
        items = []
        for p in pairs:
            key, eq, value = str(p).partition("=")
            if not eq or not key.strip() or not value.strip():
                raise OptionError(f"{FLAG} {p!r}: expected KEY=VALUE")
            items.append((key.strip(), value.strip()))
    else:
        raise OptionError(f"{FLAG}: expected KEY=VALUE pairs or a mapping, got {type(pairs).__name__}")
    out: dict[str, str] = {}
    for key, value in items:
        if key in out and out[key] != value:
            raise OptionError(f"{FLAG} {key}: given twice ({out[key]} and {value})")
        out[key] = value
    return tuple(sorted(out.items()))


def check_model_options(meta, pairs: tuple[tuple[str, str], ...]) -> None:
    """Every pair is an option ``meta`` declares, with one of its allowed values."""
    declared = getattr(meta, "model_options", None) or {}
    for key, value in pairs:
        if key not in declared:
            takes = ", ".join(sorted(declared)) if declared else "none"
            raise OptionError(f"{FLAG} {key}={value}: {meta.name} has no option {key!r} (its options: {takes})")
        if value not in declared[key]:
            raise OptionError(f"{FLAG} {key}={value}: {meta.name} takes {key}={'|'.join(declared[key])}")
