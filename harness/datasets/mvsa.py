"""MVSA-Single and MVSA-Multiple (Niu et al. 2016): tweets with their photo, sentiment of
the text and of the image labelled separately. Local copy in the release's layout::

    <root>/data/<id>.jpg   <root>/data/<id>.txt     (the tweet; mixed encodings)
    <root>/labelResultAll.txt  (or labelResult.txt)

The label file is tab-separated with a header: ``ID`` then one ``text,image`` column per
annotator (MVSA-Single: one, MVSA-Multiple: three); each cell is ``positive``, ``neutral``
or ``negative`` for the text and the image, e.g. ``7\\tneutral,positive``.

Labels follow the cleaning rule of Xu & Mao 2017 (MultiSentiNet, CIKM), used by later papers
(e.g. MVAN, CLMLF): per modality, the label at least two of three annotators give
(MVSA-Multiple; no majority -> dropped, counted); then the text/image combination
(:func:`combine`): the same label -> it; one neutral and one positive/negative -> the
non-neutral one; positive against negative -> dropped as inconsistent (counted).

There is no official split: the kept items, in id order, are shuffled with a seed (the
manifest's ``options.split_seed``, default 0) and cut 8:1:1 into train/val/test; the rule,
seed and sizes are in ``info["split_rule"]``.

Tweets: UTF-8 first, then the named fallbacks (``options.fallback_encodings``, default
``cp1252,latin-1``; latin-1 decodes any bytes, so no item is dropped for its encoding).
How many texts each fallback decoded is counted in ``info`` and warned about once.
"""

from __future__ import annotations

import hashlib
import random
import warnings
from pathlib import Path

from .base import DatasetError, DatasetRequest, Format, TaskKind, files_probe, find_in_roots
from .pair_files import PairRow, PairSource, assemble_pairs, decode_text, found, report_skips
from .pair_labels import ImageTextLabelData

CLASSNAMES = ["negative", "neutral", "positive"]
LABEL_FILES = ("labelResultAll.txt", "labelResult.txt")
SPLIT_FRACTIONS = (("train", 8), ("val", 1), ("test", 1))
DEFAULT_FALLBACKS = "cp1252,latin-1"
INCONSISTENT = "inconsistent"


def combine(text: str, image: str) -> str:
    """The text/image combination table of Xu & Mao 2017.

    >>> combine("positive", "positive"), combine("neutral", "negative"), combine("positive", "negative")
    ('positive', 'negative', 'inconsistent')
    """
    if text == image:
        return text
    if "neutral" in (text, image):
        return image if text == "neutral" else text
    return INCONSISTENT


def majority(votes: list[str]) -> str | None:
    """The label given by more than half of the annotators, or None.

    >>> majority(["positive", "neutral", "positive"]), majority(["positive", "neutral", "negative"])
    ('positive', None)
    """
    best = max(set(votes), key=votes.count)
    return best if votes.count(best) * 2 > len(votes) else None


def _parse_cell(cell: str, where: str) -> tuple[str, str]:
    parts = [p.strip().lower() for p in cell.split(",")]
    if len(parts) != 2 or any(p not in CLASSNAMES for p in parts):
        raise DatasetError(f"{where}: expected 'text,image' labels among {', '.join(CLASSNAMES)}, got {cell!r}")
    return parts[0], parts[1]


def read_labels(path: Path) -> tuple[list[tuple[int, str, str | None, str]], int, str]:
    """(line, id, cleaned label or None, why dropped) per row, annotators per row, sha256."""
    blob = path.read_bytes()
    text, _ = decode_text(blob, ("latin-1",))
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise DatasetError(f"{path}: empty label file")
    header = [c.strip() for c in lines[0].split("\t")]
    annotators = len(header) - 1
    if header[0].upper() != "ID" or annotators < 1 or any(c.replace(" ", "") != "text,image" for c in header[1:]):
        raise DatasetError(f"{path}:1: expected a header 'ID<tab>text,image' (one text,image column per annotator), "
                           f"got {lines[0]!r}")
    out = []
    for no, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        cells = line.strip().split("\t")
        where = f"{path}:{no}"
        if len(cells) != annotators + 1:
            raise DatasetError(f"{where}: {len(cells) - 1} annotator column(s), the header has {annotators}")
        item = cells[0].strip()
        if not item.isdigit():
            raise DatasetError(f"{where}: the ID {item!r} is not a number")
        votes = [_parse_cell(c, where) for c in cells[1:]]
        text_label, image_label = majority([v[0] for v in votes]), majority([v[1] for v in votes])
        if text_label is None or image_label is None:
            out.append((no, item, None, "no_majority"))
            continue
        label = combine(text_label, image_label)
        out.append((no, item, None if label == INCONSISTENT else label, INCONSISTENT))
    if not out:
        raise DatasetError(f"{path}: empty split (no labelled items)")
    return out, annotators, hashlib.sha256(blob).hexdigest()


def split_of(ids: list[str], seed: int) -> dict[str, list[str]]:
    """A seeded 8:1:1 cut of ``ids`` (any order in: sorted by number first).

    >>> {k: len(v) for k, v in split_of([str(i) for i in range(25)], 0).items()}
    {'train': 21, 'val': 2, 'test': 2}
    """
    order = sorted(ids, key=int)
    random.Random(seed).shuffle(order)
    total = sum(w for _, w in SPLIT_FRACTIONS)
    sizes = {name: len(order) * w // total for name, w in SPLIT_FRACTIONS[1:]}
    sizes = {SPLIT_FRACTIONS[0][0]: len(order) - sum(sizes.values()), **sizes}
    out, start = {}, 0
    for name, _ in SPLIT_FRACTIONS:
        out[name] = order[start:start + sizes[name]]
        start += sizes[name]
    return out


def _texts(data_dir: Path, ids: list[str], origin: dict[str, str], fallbacks: tuple[str, ...]):
    """id -> tweet text, and per fallback encoding the files it decoded. A missing text file
    fails, naming it and the label line of its item."""
    texts, by_fallback = {}, {}
    for item in ids:
        path = data_dir / f"{item}.txt"
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            raise DatasetError(f"{path}: text file missing (item of {origin[item]})") from None
        text, encoding = decode_text(blob, fallbacks)
        if encoding != "utf-8":
            by_fallback.setdefault(encoding, []).append(path.name)
        texts[item] = " ".join(text.split())
    return texts, by_fallback


def load(spec, request: DatasetRequest) -> ImageTextLabelData:
    if request.task is not TaskKind.IMAGE_TEXT_CLASSIFICATION:
        raise DatasetError(f"{spec.name} has only an image_text_classification view")
    if request.split not in dict(SPLIT_FRACTIONS):
        raise DatasetError(f"{spec.name}: no split {request.split!r}; splits: train, val, test (a seeded 8:1:1 cut)")
    root, path = find_in_roots(spec, request.data_root, LABEL_FILES, False, spec.name, "labelResultAll.txt")
    rows, annotators, sha = read_labels(path)
    dropped = {kind: [f"{path.name}:{no}" for no, _, label, why in rows if label is None and why == kind]
               for kind in ("no_majority", INCONSISTENT)}
    report_skips(spec.name, dropped["no_majority"], "item(s) without a majority label for the text or the image "
                 "dropped (Xu & Mao 2017)", False)
    report_skips(spec.name, dropped[INCONSISTENT], "item(s) whose text and image sentiments are positive vs "
                 "negative dropped as inconsistent (Xu & Mao 2017)", False)
    first_line: dict[str, int] = {}
    for no, item, _, _ in rows:
        if first_line.setdefault(item, no) != no:
            raise DatasetError(f"{path}:{no}: ID {item} again (first on line {first_line[item]})")
    kept = {item: (no, label) for no, item, label, _ in rows if label is not None}
    seed = spec.options.get("split_seed", 0)
    ids = split_of(list(kept), seed)[request.split]
    origin = {item: f"{path.name}:{kept[item][0]}" for item in ids}
    fallbacks = tuple(e.strip() for e in spec.options.get("fallback_encodings", DEFAULT_FALLBACKS).split(","))
    data_dir = root / "data"
    texts, by_fallback = _texts(data_dir, ids, origin, fallbacks)
    if by_fallback:
        shown = "; ".join(f"{len(files)} by {enc} (e.g. {', '.join(files[:3])})" for enc, files in by_fallback.items())
        warnings.warn(f"{spec.name}/{request.split}: tweets that are not UTF-8 were decoded by a fallback: {shown}",
                      stacklevel=2)
    rows_out = [PairRow(origin=origin[item], key=item, image_ref=f"data/{item}.jpg",
                        image=found(data_dir / f"{item}.jpg"), text=texts[item],
                        label=CLASSNAMES.index(kept[item][1])) for item in ids]
    sizes = {name: len(v) for name, v in split_of(list(kept), seed).items()}
    info = {"root": str(root), "sha256": {path.name: sha}, "annotators": annotators,
            "dropped_no_majority": len(dropped["no_majority"]), "dropped_inconsistent": len(dropped[INCONSISTENT]),
            "fallback_decoded_texts": {enc: len(files) for enc, files in by_fallback.items()},
            "split_rule": {"rule": "seeded 8:1:1 of the cleaned items (Xu & Mao 2017)", "seed": seed, "sizes": sizes}}
    return assemble_pairs(spec, request, rows_out, CLASSNAMES, PairSource(f"in {data_dir}", (sha, seed, fallbacks), info))


FORMAT = Format(name="mvsa", tasks=(TaskKind.IMAGE_TEXT_CLASSIFICATION,), load=load,
                probe=files_probe(lambda spec: LABEL_FILES, "labelResultAll.txt"),
                options={"split_seed": int, "fallback_encodings": str})
