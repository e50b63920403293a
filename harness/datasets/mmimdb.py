"""MM-IMDb (Arevalo et al. 2017, "Gated Multimodal Units for Information Fusion"): a movie's
poster and plot -> its genres (multi-label, 23 genres). Local copy in the release's layout::

    <root>/split.json            {"train": [ids], "dev": [ids], "test": [ids]}
    <root>/dataset/<id>.json     {"plot": ["summary", ...], "genres": ["Drama", ...], ...}
    <root>/dataset/<id>.jpeg     the poster

(or all of it under ``<root>/mmimdb/``, as the tarball unpacks). The text is the longest plot
summary (the first on a tie), as MMBT's formatting script (Kiela et al. 2019) takes it.
Genres outside the paper's 23 (News, Adult, Talk-Show, Reality-TV) are not classes: they are
ignored and counted; a movie left with none of the 23 fails, naming its file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .base import DatasetError, DatasetRequest, Format, TaskKind, files_probe, find_in_roots
from .pair_files import PairRow, PairSource, assemble_pairs, found, typed_field
from .pair_labels import ImageTextLabelData

# the 23 genres of Arevalo et al. 2017, most frequent first
GENRES = ["Drama", "Comedy", "Romance", "Thriller", "Crime", "Action", "Adventure", "Horror", "Documentary",
          "Mystery", "Sci-Fi", "Fantasy", "Family", "Biography", "War", "History", "Animation", "Musical", "Western",
          "Music", "Short", "Sport", "Film-Noir"]
SPLIT_FILES = ("split.json", "mmimdb/split.json")


def read_split(path: Path, split: str) -> tuple[list[str], str]:
    blob = path.read_bytes()
    try:
        splits = json.loads(blob)
    except (UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read it as JSON ({exc})") from None
    if not isinstance(splits, dict) or split not in splits:
        have = ", ".join(splits) if isinstance(splits, dict) else "none"
        raise DatasetError(f"{path}: no split {split!r} (it has: {have})")
    ids = splits[split]
    if not isinstance(ids, list) or not all(isinstance(i, (str, int)) and not isinstance(i, bool) for i in ids):
        raise DatasetError(f"{path}: {split!r} must be a list of movie ids")
    if not ids:
        raise DatasetError(f"{path}: empty split {split!r} (no movie ids)")
    return [str(i) for i in ids], hashlib.sha256(blob).hexdigest()


def read_movie(path: Path) -> tuple[str, list[int], list[str]]:
    """(longest plot, sorted genre indices, ignored genres) of one movie's JSON file."""
    try:
        movie = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise DatasetError(f"{path}: movie file missing") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read it as JSON ({exc})") from None
    if not isinstance(movie, dict):
        raise DatasetError(f"{path}: must hold a JSON object")
    plots = typed_field(movie, "plot", list, str(path))
    genres = typed_field(movie, "genres", list, str(path))
    if not plots or not all(isinstance(p, str) for p in plots):
        raise DatasetError(f"{path}: field 'plot' must be a non-empty list of strings")
    if not all(isinstance(g, str) for g in genres):
        raise DatasetError(f"{path}: field 'genres' must be a list of strings, got {genres!r}")
    labels = sorted({GENRES.index(g) for g in genres if g in GENRES})
    if not labels:
        raise DatasetError(f"{path}: a multi-label item with no labels (genres {genres!r}, none among the 23 "
                           "MM-IMDb genres)")
    plot = max(plots, key=len)  # max keeps the first of equal lengths
    return plot, labels, [g for g in genres if g not in GENRES]


def load(spec, request: DatasetRequest) -> ImageTextLabelData:
    if request.task is not TaskKind.IMAGE_TEXT_CLASSIFICATION:
        raise DatasetError(f"{spec.name} has only an image_text_classification view")
    _, path = find_in_roots(spec, request.data_root, SPLIT_FILES, False, spec.name, "split.json")
    s = spec.splits.get(request.split)
    ids, sha = read_split(path, s.source_split if s is not None and s.source_split else request.split)
    movies = path.parent / "dataset"
    rows, ignored = [], {}
    for item in ids:
        plot, labels, other = read_movie(movies / f"{item}.json")
        for g in other:
            ignored[g] = ignored.get(g, 0) + 1
        rows.append(PairRow(origin=f"dataset/{item}.json", key=item, image_ref=f"dataset/{item}.jpeg",
                            image=found(movies / f"{item}.jpeg"), text=plot, label=labels))
    info = {"root": str(path.parent), "sha256": {path.name: sha}, "ignored_genres": ignored}
    return assemble_pairs(spec, request, rows, GENRES, PairSource(f"in {movies}", (sha,), info, multilabel=True))


FORMAT = Format(name="mmimdb", tasks=(TaskKind.IMAGE_TEXT_CLASSIFICATION,), load=load,
                probe=files_probe(lambda spec: SPLIT_FILES, "split.json"))
