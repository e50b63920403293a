"""A text tower reads at most so many tokens; longer texts are cut by its tokenizer (CLIP: 77
BPE tokens, end-of-text kept; SigLIP: 64; BLIP: 35). Long captions and non-English text (many
more tokens per word) hit the limit often, and the cut is silent in every tokenizer, so a
run counts the texts its model's tokenizer cuts and records the count with the text stage
(``timings.text_encode.truncated`` of ``token_limit``), warning when it is not zero.

An adapter opts in with ``text_limit() -> TextLimit``: its limit and a function giving each
text's token count before the cut (special tokens included). Without it the count is
``None`` in the record: not counted, which is not the same as none cut.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class TextLimit:
    max_tokens: int
    lengths: Callable[[Sequence[str]], list[int]]  # tokens per text before truncation, specials included


@dataclass(frozen=True)
class Truncation:
    max_tokens: int
    truncated: int   # texts longer than max_tokens (each counted once per occurrence)
    longest: int     # tokens of the longest text


def count_truncated(limit: TextLimit, texts: Sequence[str]) -> Truncation:
    """How many of ``texts`` exceed the limit (each distinct text tokenised once).

    >>> words = TextLimit(4, lambda ts: [len(t.split()) + 2 for t in ts])  # start + words + end
    >>> count_truncated(words, ["a b", "a b c", "a b c", "a"])
    Truncation(max_tokens=4, truncated=2, longest=5)
    """
    unique = list(dict.fromkeys(texts))
    length = dict(zip(unique, limit.lengths(unique)))
    return Truncation(limit.max_tokens, sum(length[t] > limit.max_tokens for t in texts),
                      max(length.values(), default=0))


def text_limit(model) -> TextLimit | None:
    get = getattr(model, "text_limit", None)
    return get() if callable(get) else None


def check_texts(model, texts: Sequence[str]) -> Truncation | None:
    """Count the texts ``model`` will cut; warn (naming the model) when any are."""
    limit = text_limit(model)
    if limit is None or not texts:
        return None
    out = count_truncated(limit, texts)
    if out.truncated:
        warnings.warn(f"{getattr(model, 'name', 'model')}: {out.truncated} of {len(texts)} texts are longer than its "
                      f"{out.max_tokens}-token limit (longest {out.longest}) and are truncated by its tokenizer "
                      "(recorded as timings.text_encode.truncated)", stacklevel=3)
    return out


def open_clip_limit(tokenizer) -> TextLimit | None:
    """open_clip's tokenizers: the BPE ``SimpleTokenizer`` (start + tokens + end, cut to
    ``context_length``), vlbench's compact vocabulary over it (``.base``), and ``HFTokenizer``
    (a transformers tokenizer, ``.tokenizer``)."""
    base = getattr(tokenizer, "base", tokenizer)
    context = getattr(base, "context_length", None)
    if context is None:
        return None
    if hasattr(base, "encode") and hasattr(base, "sot_token_id"):  # SimpleTokenizer
        return TextLimit(int(context), lambda ts: [len(base.encode(t)) + 2 for t in ts])
    inner = getattr(base, "tokenizer", None)
    if inner is not None and callable(inner):
        return hf_limit(inner, int(context))
    return None


def hf_limit(tokenizer, max_tokens: int) -> TextLimit:
    """A transformers tokenizer: its ids with special tokens, uncut."""
    def lengths(texts: Sequence[str]) -> list[int]:
        ids = tokenizer(list(texts), add_special_tokens=True, truncation=False)["input_ids"]
        return [len(x) for x in ids]
    return TextLimit(int(max_tokens), lengths)
