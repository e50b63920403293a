"""Caption-selection metrics: pure functions of scores and per-item outcomes (numpy, imported
when called: the dataset registry imports :class:`SelectionSpec` at start-up).

Two item shapes (``harness.datasets.selection``):

* **selection** (SugarCrepe, ARO, VALSE, synthetic swaps): one image, its true caption and one
  or more foils. The item is right when the true caption scores *strictly* above every foil, so
  a tie counts as wrong (SugarCrepe's own code and the harness's convention; ARO's ``argmax``
  gives ties to whichever option comes first, which flatters the Order sets).
* **group** (Winoground, synthetic swap pairs): 2 images x 2 captions, caption k belonging to
  image k. Thrush et al. (2022): text score = each image prefers its own caption; image score
  = each caption prefers its own image; group score = both. Strict comparisons throughout.

``acc_<subset>`` is the share of a subset's items that are right; ``acc`` the unweighted mean of
the subsets (SugarCrepe's 7 files, ARO's 4 sets, VALSE's pieces). A subset may instead be a
mean over its categories (:class:`CategoryMacro`: ARO VG-Relation over relations, as in the ARO
paper), and then reports ``acc_<subset>_macro`` and ``acc_<subset>_micro`` as well, ``acc_<subset>``
being the macro one. ``pooled`` keys put several subsets' items together (synthetic
``acc_binding``: colour and shape swaps).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

ACC = "acc"  # the record keys are harness.metrics.keys.CaptionKey (this module imports nothing of harness)
TEXT_SCORE, IMAGE_SCORE, GROUP_SCORE = "text_score", "image_score", "group_score"


@dataclass(frozen=True)
class CategoryMacro:
    """A subset averaged over categories: categories with fewer than ``min_count`` items, or
    named in ``exclude``, are left out of the mean (ARO's protocol for VG-Relation/Attribution)."""

    exclude: tuple[str, ...] = ()
    min_count: int = 1


@dataclass(frozen=True)
class SelectionSpec:
    """How a dataset's per-item outcomes become its numbers (kept in the sidecar, so the
    leaderboard's intervals recompute exactly the run's metrics)."""

    subsets: tuple[str, ...]
    pooled: dict[str, tuple[str, ...]] = field(default_factory=dict)
    category_macro: dict[str, CategoryMacro] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"subsets": list(self.subsets), "pooled": {k: list(v) for k, v in self.pooled.items()},
                "category_macro": {k: asdict(v) for k, v in self.category_macro.items()}}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> SelectionSpec:
        return cls(tuple(raw["subsets"]), {k: tuple(v) for k, v in raw.get("pooled", {}).items()},
                   {k: CategoryMacro(tuple(v.get("exclude", ())), int(v.get("min_count", 1)))
                    for k, v in raw.get("category_macro", {}).items()})


def subset_key(subset: str) -> str:
    """Record key of a subset's accuracy.

    >>> subset_key("replace_att"), subset_key("counting-hard")
    ('acc_replace_att', 'acc_counting_hard')
    """
    return f"{ACC}_{subset.replace('-', '_')}"


def true_beats_foils(scores) -> bool:
    """True when ``scores[0]`` (the true caption) is strictly above every foil ``scores[1:]``.

    >>> true_beats_foils([0.3, 0.2, 0.1]), true_beats_foils([0.3, 0.3]), true_beats_foils([0.1, 0.4])
    (True, False, False)
    """
    return bool(scores[0] > max(scores[1:]))


def winoground_checks(s):
    """The four comparisons of each 2x2 group, ``s[g, image, caption]``: (G, 4) bools
    ``[image 0 picks caption 0, image 1 picks caption 1, caption 0 picks image 0, caption 1 picks image 1]``.

    >>> winoground_checks([[[.9, .2], [.5, .5]]]).tolist()
    [[True, False, True, True]]
    """
    import numpy as np

    s = np.asarray(s, dtype=np.float64).reshape(-1, 2, 2)
    return np.stack([s[:, 0, 0] > s[:, 0, 1], s[:, 1, 1] > s[:, 1, 0],
                     s[:, 0, 0] > s[:, 1, 0], s[:, 1, 1] > s[:, 0, 1]], axis=1)


def winoground_outcomes(s) -> dict:
    """Per group: text, image and group correctness (Thrush et al. 2022), from (G, 2, 2) scores.

    >>> {k: v.tolist() for k, v in winoground_outcomes([[[.9, .2], [.1, .8]], [[.9, .2], [.95, .99]]]).items()}
    {'text_score': [True, True], 'image_score': [True, False], 'group_score': [True, False]}
    """
    c = winoground_checks(s)
    text, image = c[:, 0] & c[:, 1], c[:, 2] & c[:, 3]
    return {TEXT_SCORE: text, IMAGE_SCORE: image, GROUP_SCORE: text & image}


def group_metrics(text, image, group) -> dict[str, float]:
    """Percent of groups right on each score.

    >>> group_metrics([1, 1, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0])
    {'text_score': 50.0, 'image_score': 25.0, 'group_score': 25.0}
    """
    import numpy as np

    return {k: 100.0 * float(np.mean(v)) for k, v in ((TEXT_SCORE, text), (IMAGE_SCORE, image), (GROUP_SCORE, group))}


def selection_metrics(correct, subset, category, spec: SelectionSpec, categories=()) -> dict[str, float]:
    """``acc_<subset>`` (macro subsets also ``_macro`` / ``_micro``), pooled keys and ``acc``.

    ``correct`` (n,) 0/1 per item, ``subset`` (n,) index into ``spec.subsets``, ``category``
    (n,) index into ``categories`` (-1: none). Subsets with no items (a ``--limit`` subset) are
    left out, of ``acc`` too.

    >>> spec = SelectionSpec(("a", "b"), pooled={"ab": ("a", "b")},
    ...                      category_macro={"b": CategoryMacro(exclude=("z",))})
    >>> m = selection_metrics([1, 0, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1], [-1, -1, 0, 0, 1, 2], spec, ["x", "y", "z"])
    >>> {k: round(v, 2) for k, v in m.items()}
    {'acc_a': 50.0, 'acc_b_micro': 50.0, 'acc_b_macro': 50.0, 'acc_b': 50.0, 'acc_ab': 50.0, 'acc': 50.0}
    """
    import numpy as np

    correct = np.asarray(correct, dtype=np.float64)
    subset, category = np.asarray(subset, dtype=np.int64), np.asarray(category, dtype=np.int64)
    out: dict[str, float] = {}
    main: list[float] = []
    for idx, name in enumerate(spec.subsets):
        mask = subset == idx
        if not mask.any():
            continue
        key = subset_key(name)
        micro = 100.0 * float(correct[mask].mean())
        rule = spec.category_macro.get(name)
        if rule is None:
            out[key] = micro
        else:
            out[f"{key}_micro"] = micro
            out[f"{key}_macro"] = out[key] = _category_macro(correct[mask], category[mask], rule, categories)
        main.append(out[key])
    for name, members in spec.pooled.items():
        mask = np.isin(subset, [spec.subsets.index(m) for m in members if m in spec.subsets])
        if mask.any():
            out[subset_key(name)] = 100.0 * float(correct[mask].mean())
    if main:
        out[ACC] = float(np.mean(main))
    return out


def undefined_reasons(metrics: dict[str, float], subset, category, spec: SelectionSpec,
                      categories=()) -> dict[str, str]:
    """Why each non-finite value of :func:`selection_metrics` has none: a category macro whose
    categories all fall below its minimum count (ARO's VG-Attribution with few items), and
    ``acc``, the mean over subsets, when one of them is undefined.

    >>> spec = SelectionSpec(("a",), category_macro={"a": CategoryMacro(min_count=25)})
    >>> m = selection_metrics([1, 0, 1], [0, 0, 0], [0, 0, 1], spec, ["x", "y"])
    >>> undefined_reasons(m, [0, 0, 0], [0, 0, 1], spec, ["x", "y"])["acc_a_macro"]
    'no category of a reaches 25 items (the largest, x, has 2): the macro accuracy is undefined'
    """
    import numpy as np

    subset, category = np.asarray(subset, dtype=np.int64), np.asarray(category, dtype=np.int64)
    out: dict[str, str] = {}
    for idx, name in enumerate(spec.subsets):
        rule, key = spec.category_macro.get(name), subset_key(name)
        if rule is None or np.isfinite(metrics.get(f"{key}_macro", 0.0)):
            continue
        cats = category[(subset == idx) & (category >= 0)]
        counts = np.bincount(cats) if cats.size else np.zeros(0, dtype=np.int64)
        biggest = int(counts.argmax()) if counts.size else None
        largest = (f"the largest, {categories[biggest] if biggest < len(categories) else biggest}, has "
                   f"{int(counts[biggest])}" if biggest is not None else "no item has a category")
        why = (f"no category of {name} reaches {max(rule.min_count, 1)} items ({largest})"
               if not rule.exclude else f"no category of {name} outside the excluded ones has items")
        out[f"{key}_macro"] = out[key] = f"{why}: the macro accuracy is undefined"
    if not np.isfinite(metrics.get(ACC, 0.0)):
        parts = [k for k in out if not k.endswith("_macro")]
        out[ACC] = f"{ACC} is the mean over subsets and {', '.join(parts) or 'one of them'} is undefined" + (
            f" ({out[parts[0]]})" if parts else "")
    return out


def _category_macro(correct, category, rule: CategoryMacro, categories) -> float:
    import numpy as np

    n = max(len(categories), int(category.max()) + 1 if category.size else 0)
    valid = category >= 0
    counts = np.bincount(category[valid], minlength=n)
    hits = np.bincount(category[valid], weights=correct[valid], minlength=n)
    keep = counts >= max(rule.min_count, 1)
    if rule.exclude:
        keep &= ~np.isin(np.asarray(list(categories) + [""] * (n - len(categories)), dtype=object), rule.exclude)
    return 100.0 * float(np.mean(hits[keep] / counts[keep])) if keep.any() else float("nan")
