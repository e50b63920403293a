"""Caption metrics as the COCO caption evaluation computes them (pycocoevalcap), x100.

``evaluate_captions(candidates, references)`` tokenises every caption with the PTB tokenizer
(:mod:`.tokenize`), then runs pycocoevalcap's own scorers: BLEU-1..4 (``Bleu(4)``, corpus
statistics with the closest reference length), METEOR 1.5 (``Meteor``, Java), ROUGE-L
(``Rouge``), CIDEr-D (``Cider``: pycocoevalcap's "CIDEr" is the -D variant, sigma 6, clipped
counts, x10) and SPICE (``Spice``, Java, when its Stanford models are present). It returns
the corpus scores (CIDEr's document frequencies over the evaluated corpus, BLEU's summed
statistics, METEOR's corpus score) and each item's own score, keyed ``bleu1``..``bleu4``,
``meteor``, ``rouge_l``, ``cider``, ``spice``, x100 as papers print them.

Two paths: ``tokenizer="java"`` (the jar, as pycocoevalcap) and ``"python"`` (the Java-free
rendering of the same tokenizer); ``"auto"`` takes Java when it runs. Without Java, BLEU,
ROUGE-L and CIDEr-D still run (their scorers are pure Python); METEOR and SPICE cannot.

Input checks, for the failures peers' users meet: a reference list given as one string that
is a stringified list (``"['a dog', 'a cat']"``, VLMEvalKit #1308) is refused, not scored as
one caption; an item with no reference is refused; ``None`` captions are refused; empty
candidates score 0, as in pycocoevalcap. A one-item corpus is scored as pycocoevalcap does, and
its CIDEr-D is 0 whatever the caption (idf = log(1/1) = 0 for every n-gram, lmms-eval #653):
that case warns.

    >>> s = evaluate_captions(["a dog runs on grass", "a cat"],
    ...                       [["a dog runs on the grass", "a brown dog running"], ["a cat sleeps"]],
    ...                       metrics=("bleu1", "rouge_l", "cider"), tokenizer="python")
    >>> {k: round(v, 2) for k, v in s.corpus.items()}
    {'bleu1': 100.0, 'rouge_l': 83.33, 'cider': 349.36}
    >>> {k: round(v[1], 2) for k, v in s.per_item.items()}
    {'bleu1': 60.65, 'rouge_l': 77.22, 'cider': 348.68}

By hand, item 1 ("a cat" against "a cat sleeps"): BLEU-1 = 2/2 matched unigrams x brevity
penalty exp(1 - 3/2) = 0.6065; ROUGE-L = LCS 2, P = 1, R = 2/3, F(beta = 1.2) =
2.44 P R / (R + 1.44 P) = 0.7722. Corpus BLEU-1 sums the statistics: 7 of 7 candidate words
match and the closest reference lengths (4 for item 0: a tie between 4 and 6 goes to the
shorter; 3 for item 1) add up to 7, so no penalty: 100.
"""

from __future__ import annotations

import ast
import atexit
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

from harness.core.errors import UserError
from harness.metrics.ptb_tokenize import (
    JavaUnavailableError,
    java_missing,
    ptb_tokenize_java,
    ptb_tokenize_python,
    pycocoevalcap_dir,
)

BLEU_KEYS = ("bleu1", "bleu2", "bleu3", "bleu4")
METRICS = (*BLEU_KEYS, "meteor", "rouge_l", "cider", "spice")
JAVA_METRICS = ("meteor", "spice")
TOKENIZERS = ("auto", "java", "python")
SPICE_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")
# Metrics whose corpus score is the mean of the per-item scores (pycocoevalcap's Cider, Rouge and
# Spice return np.mean of their per-item list; CLIP-S and RefCLIP-S are defined as the mean): an
# interval over images is a bootstrap of that mean (CIDEr-D's document frequencies stay those of
# the scored corpus). BLEU (summed n-gram statistics, one brevity penalty) and METEOR (its
# corpus line aggregates alignment statistics) are not means of their per-item scores.
PER_ITEM_MEAN = ("rouge_l", "cider", "spice", "clip_s", "refclip_s")
ONE_ITEM_CIDER = ("CIDEr-D over a one-item corpus is 0 whatever the caption (every idf is log(1/1) = 0): "
                  "score several images together")


class CaptionInputError(UserError):
    """Candidates or references that cannot be scored as given (one line, names the item)."""


class MetricUnavailableError(UserError):
    """A metric that cannot run on this machine (no Java, no SPICE models); one line says why."""


@dataclass(frozen=True)
class CaptionScores:
    """Corpus and per-item scores (x100), the tokenizer used, and notes worth recording."""

    corpus: dict[str, float]
    per_item: dict[str, list[float]]
    tokenizer: str
    notes: tuple[str, ...] = field(default_factory=tuple)
    # each item's BLEU statistics (:func:`bleu_statistics`) when BLEU was computed: what a
    # resample of items needs to recompute corpus BLEU
    bleu_stats: list[list[int]] = field(default_factory=list)


def spice_missing() -> str | None:
    """Why SPICE cannot run here (one line), or None. pycocoevalcap downloads Stanford CoreNLP
    3.6.0 on first use; with no network its two jars must be copied in by hand."""
    why = java_missing()
    if why:
        return f"SPICE needs Java: {why}"
    try:
        lib = pycocoevalcap_dir() / "spice" / "lib"
    except JavaUnavailableError as err:
        return str(err)
    absent = [j for j in SPICE_JARS if not (lib / j).is_file()]
    if absent:
        return (f"SPICE needs Stanford CoreNLP 3.6.0 models, not found: {', '.join(absent)} in {lib} "
                "(pycocoevalcap downloads them on first use; offline, copy them there)")
    return None


def metric_missing(metric: str, tokenizer: str = "auto") -> str | None:
    """Why ``metric`` cannot run with ``tokenizer`` here (one line), or None."""
    if metric not in METRICS:
        raise CaptionInputError(f"unknown caption metric {metric!r}; known: {', '.join(METRICS)}")
    try:
        pycocoevalcap_dir()
    except JavaUnavailableError as err:
        return str(err)
    if metric == "spice":
        return spice_missing()
    if metric == "meteor" or tokenizer == "java":
        why = java_missing()
        return f"{metric} needs Java: {why}" if why else None
    return None


def check_references(references: Sequence, n_items: int | None = None) -> list[list[str]]:
    """Each item's references as a list of strings. A lone string is one reference, unless it
    reads as a stringified list, which is refused (it would be scored as one odd caption).

    >>> check_references([["a dog"], "a cat"])
    [['a dog'], ['a cat']]
    >>> check_references(["['a dog', 'a cat']"])
    Traceback (most recent call last):
    ...
    harness.metrics.captioning.CaptionInputError: references of item 0 are one string holding a list ("['a dog', 'a cat']"): pass the list itself
    """
    if isinstance(references, (str, bytes)):
        raise CaptionInputError("references must be one list of reference captions per item, not one string")
    out = []
    for i, refs in enumerate(references):
        if isinstance(refs, str):
            if _stringified_list(refs):
                raise CaptionInputError(f"references of item {i} are one string holding a list ({refs[:60]!r}): "
                                        "pass the list itself")
            refs = [refs]
        refs = list(refs)
        if not refs:
            raise CaptionInputError(f"item {i} has no reference caption")
        bad = [r for r in refs if not isinstance(r, str)]
        if bad:
            raise CaptionInputError(f"item {i}: a reference is {type(bad[0]).__name__}, not a string")
        out.append(refs)
    if n_items is not None and len(out) != n_items:
        raise CaptionInputError(f"{n_items} candidates but {len(out)} reference lists")
    return out


def _stringified_list(text: str) -> bool:
    s = text.strip()
    if not (s.startswith("[") and s.endswith("]")):
        return False
    try:
        value = ast.literal_eval(s)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return False
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def check_candidates(candidates: Sequence) -> list[str]:
    if isinstance(candidates, (str, bytes)):
        raise CaptionInputError("candidates must be a list of captions, one per item, not one string")
    out = list(candidates)
    for i, c in enumerate(out):
        if not isinstance(c, str):
            raise CaptionInputError(f"candidate of item {i} is {type(c).__name__}, not a string")
    if not out:
        raise CaptionInputError("no captions to score")
    return out


def resolve_tokenizer(tokenizer: str) -> str:
    """"java" or "python": ``auto`` takes Java when it runs."""
    if tokenizer not in TOKENIZERS:
        raise CaptionInputError(f"tokenizer must be one of {', '.join(TOKENIZERS)}, got {tokenizer!r}")
    if tokenizer == "auto":
        return "python" if java_missing() else "java"
    return tokenizer


def tokenize_corpus(candidates: list[str], references: list[list[str]], tokenizer: str):
    """pycocoevalcap's ``{item: [tokenised, ...]}`` dicts for references and candidates; every
    distinct string is tokenised once, in one run of the jar."""
    texts = list(dict.fromkeys([*candidates, *(r for refs in references for r in refs)]))
    tokens = dict(zip(texts, (ptb_tokenize_java if tokenizer == "java" else ptb_tokenize_python)(texts)))
    gts = {i: [tokens[r] for r in refs] for i, refs in enumerate(references)}
    res = {i: [tokens[c]] for i, c in enumerate(candidates)}
    return gts, res


def evaluate_captions(candidates: Sequence[str], references: Sequence, metrics: Sequence[str] = METRICS[:-1],
                      tokenizer: str = "auto") -> CaptionScores:
    """Corpus and per-item scores x100 of ``candidates[i]`` against ``references[i]``."""
    cands = check_candidates(candidates)
    refs = check_references(references, len(cands))
    tok = resolve_tokenizer(tokenizer)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise CaptionInputError(f"unknown caption metric(s) {', '.join(unknown)}; known: {', '.join(METRICS)}")
    for m in metrics:
        why = metric_missing(m, tok)
        if why:
            raise MetricUnavailableError(why)
    gts, res = tokenize_corpus(cands, refs, tok)
    corpus: dict[str, float] = {}
    per_item: dict[str, list[float]] = {}
    notes = []
    for name, (total, each) in _run_scorers(gts, res, tuple(metrics)).items():
        corpus[name], per_item[name] = 100.0 * float(total), [100.0 * float(v) for v in each]
    if "cider" in metrics and len(cands) == 1:
        warnings.warn(ONE_ITEM_CIDER, stacklevel=2)
        notes.append(ONE_ITEM_CIDER)
    order = [m for m in METRICS if m in corpus]
    stats = bleu_statistics(gts, res) if any(m in BLEU_KEYS for m in metrics) else []
    return CaptionScores({m: corpus[m] for m in order}, {m: per_item[m] for m in order}, f"ptb-{tok}", tuple(notes),
                         stats)


BLEU_STATS_KEY = "bleu_stats"  # the sidecar's per-image BLEU statistics (group_key(BLEU_STATS_KEY, g) per group)
BLEU_STAT_COLUMNS = ("testlen", "reflen", "guess1", "guess2", "guess3", "guess4",
                     "correct1", "correct2", "correct3", "correct4")


def bleu_statistics(gts: dict, res: dict) -> list[list[int]]:
    """Each item's BLEU sufficient statistics (:data:`BLEU_STAT_COLUMNS`), as pycocoevalcap's
    ``BleuScorer`` cooks them from tokenised captions: candidate length, the closest reference
    length (a tie goes to the shorter), candidate n-grams and clipped matches for n = 1..4.
    Corpus BLEU is a function of their sums (:func:`bleu_from_statistics`), so a resample of
    items recomputes it exactly (sacrebleu's paired bootstrap works the same way)."""
    from pycocoevalcap.bleu.bleu_scorer import cook_refs, cook_test

    out = []
    for i in res:
        comps = cook_test(res[i][0], cook_refs(gts[i], n=4), eff="closest", n=4)
        out.append([int(comps["testlen"]), int(comps["reflen"]), *map(int, comps["guess"]), *map(int, comps["correct"])])
    return out


def bleu_from_statistics(totals):
    """Corpus BLEU-1..4 x100 from summed statistics, ``(..., 10) -> (..., 4)``, with
    pycocoevalcap's constants (each precision is (matches + 1e-15) / (n-grams + 1e-9)) and its
    brevity penalty on the closest reference lengths.

    By hand, 7 candidate words (7 in the closest references: no penalty), 7/5/3/1 n-grams of
    which 7/3/1/0 match: BLEU-1 = 7/7; BLEU-2 = (1 x 3/5)^(1/2) = 0.7746; BLEU-3 = (1 x 3/5 x
    1/3)^(1/3) = 0.5848; BLEU-4 = (0.2 x 1e-15)^(1/4) = 0.0001 (pycocoevalcap's "0"):

    >>> bleu_from_statistics([7, 7, 7, 5, 3, 1, 7, 3, 1, 0]).round(2).tolist()
    [100.0, 77.46, 58.48, 0.01]
    """
    import numpy as np

    t = np.asarray(totals, dtype=np.float64)
    testlen, reflen, guess, correct = t[..., 0], t[..., 1], t[..., 2:6], t[..., 6:10]
    cumulative = np.cumprod((correct + 1e-15) / (guess + 1e-9), axis=-1)
    bleus = cumulative ** (1.0 / np.arange(1, 5))
    ratio = (testlen + 1e-15) / (reflen + 1e-9)
    penalty = np.where(ratio < 1, np.exp(1 - 1 / np.maximum(ratio, 1e-300)), 1.0)
    return 100.0 * bleus * penalty[..., None]


def _run_scorers(gts: dict, res: dict, metrics: tuple[str, ...]) -> dict[str, tuple]:
    """``{key: (corpus score, per-item scores)}`` from pycocoevalcap's scorers, unscaled."""
    out: dict[str, tuple] = {}
    if any(m in BLEU_KEYS for m in metrics):
        from pycocoevalcap.bleu.bleu import Bleu

        total, each = Bleu(4).compute_score(gts, res, verbose=0)
        out.update({k: (total[n], each[n]) for n, k in enumerate(BLEU_KEYS) if k in metrics})
    if "meteor" in metrics:
        out["meteor"] = meteor_scores(gts, res)
    if "rouge_l" in metrics:
        from pycocoevalcap.rouge.rouge import Rouge

        out["rouge_l"] = Rouge().compute_score(gts, res)
    if "cider" in metrics:
        from pycocoevalcap.cider.cider import Cider

        out["cider"] = Cider().compute_score(gts, res)
    if "spice" in metrics:
        out["spice"] = spice_scores(gts, res)
    return out


_METEOR: list = []  # the process's METEOR scorer (one JVM), made on first use


def meteor_scorer():
    """pycocoevalcap's ``Meteor``, one JVM per process: loading METEOR's paraphrase table takes
    10-30 s, scoring a few thousand captions a second or two. Closed at exit."""
    if _METEOR and _METEOR[0].meteor_p.poll() is None:
        return _METEOR[0]
    from pycocoevalcap.meteor.meteor import Meteor

    _METEOR[:] = [Meteor()]
    atexit.register(_METEOR[0].__del__)
    return _METEOR[0]


def meteor_scores(gts: dict, res: dict) -> tuple[float, list[float]]:
    """pycocoevalcap's METEOR 1.5 on tokenised captions. Its protocol separates fields with
    ``|||``, which it strips from the candidate only; a reference holding it is stripped too
    here, instead of shifting the fields. A failed call drops the JVM (pycocoevalcap would
    keep its lock held and hang the next call)."""
    gts = {k: [r.replace("|||", "").replace("  ", " ") for r in v] for k, v in gts.items()}
    scorer = meteor_scorer()
    try:
        return scorer.compute_score(gts, res)
    except Exception as err:  # noqa: BLE001 - any failure leaves the JVM's protocol out of step
        _METEOR.clear()
        scorer.meteor_p.kill()
        raise RuntimeError(f"METEOR failed: {err}") from err


def spice_scores(gts: dict, res: dict) -> tuple[float, list[float]]:
    """pycocoevalcap's SPICE F-score (``All/f``); only called when :func:`spice_missing` is None
    (so pycocoevalcap's first-use download is never triggered)."""
    from pycocoevalcap.spice.spice import Spice

    total, each = Spice().compute_score(gts, res)
    return float(total), [float(item["All"]["f"]) for item in each]


def group_key(metric: str, group: str) -> str:
    """The record key of ``metric`` over one image group's own corpus (NoCaps' domains).

    >>> group_key("cider", "out-domain"), group_key("bleu4", "Near Domain")
    ('cider_out_domain', 'bleu4_near_domain')
    """
    slug = "".join(c if c.isalnum() else "_" for c in group.strip().lower()).strip("_")
    if not slug:
        raise CaptionInputError(f"image group {group!r} has no letter or digit to name its metrics by")
    return f"{metric}_{slug}"


def per_item_mean_metric(key: str) -> str | None:
    """The metric of ``key`` (a metric or a :func:`group_key`) when its corpus score is the mean
    of the per-item scores the sidecar keeps under the same key, else None.

    >>> per_item_mean_metric("cider_in_domain"), per_item_mean_metric("refclip_s"), per_item_mean_metric("bleu4")
    ('cider', 'refclip_s', None)
    """
    key = str(key)
    for metric in sorted(PER_ITEM_MEAN, key=len, reverse=True):  # refclip_s before clip_s
        if key == metric or (key.startswith(metric + "_") and not key.endswith(("_lo", "_hi"))):
            return metric
    return None
