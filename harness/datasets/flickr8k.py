"""Flickr8k (Hodosh et al. 2013) from a local copy in the official layout.

Layout (``Flickr8k_Dataset.zip`` + ``Flickr8k_text.zip`` unzipped into one folder)::

    <root>/Flicker8k_Dataset/*.jpg            (sic; "Flickr8k_Dataset" is accepted too)
    <root>/text/Flickr8k.token.txt            <image>.jpg#<n> TAB <caption>
    <root>/text/Flickr_8k.{train,dev,test}Images.txt

The text files may also sit in ``<root>/Flickr8k_text/`` or directly in ``<root>``.
The root is ``<data_root>/flickr8k`` or ``<data_root>`` itself (``--data-root``, else the
``VLBENCH_DATA`` environment variable), and finally the development copy at
``<project root>/../shared/data/flickr8k`` when it exists.

Captions keep the order (image order in the split file, caption ``#n``). Token-file
problems never crash a load: stray lines (an entry in no split file whose name is not an
image file name, like the known ``2258277193_586949ec62.jpg.1``), blank/malformed lines,
empty captions and repeated ``(image, #n)`` entries (first kept) are skipped; undecodable
bytes are replaced. Each kind is counted in ``info`` (over the whole token file) and
reported in one warning naming the file and line numbers. Real images that no official
split uses (91 of the 8091) are normal: counted in ``info["images_in_no_split"]``, no warning;
a caption of an image in no split file and not in the image folder is an *unknown image*
(warned, counted), unless the token file is the release the manifest pins by sha256 (its
names are all real Flickr8k images, even where a partial copy lacks them). The manifest's
``known_defects`` lists the release's own bad lines (the stray ``.jpg.1`` entry): reported
as always, but ``--strict`` fails only on defects it does not list. A UTF-8 byte-order mark
at the start of any text file is ignored.

Missing and bad images (the shared policy of :mod:`harness.datasets.assemble`): images are
looked up in one listing of the image folder and checked cheaply (first bytes, end marker;
no decoding). For the training split (``PARTIAL_OK_SPLITS``) missing or unreadable files are
dropped with a warning and counted in ``info``; the evaluation splits (dev, test) must be
complete, since scores on a partial standard split are not comparable with anyone's, so a
missing or unreadable image there raises :class:`DatasetError`. ``--strict`` fails on every
skip above.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .assemble import assemble_retrieval, skip
from .base import NO_ROOT, DatasetError, DatasetNotFound, DatasetRequest, Format, RetrievalData, TaskKind

NAME = "flickr8k"
SPLITS = ("train", "dev", "test")
SPLIT_ALIASES = {"val": "dev", "validation": "dev"}
TOKEN_FILE = "Flickr8k.token.txt"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
IMAGE_DIRS = ("Flicker8k_Dataset", "Flickr8k_Dataset")
TEXT_DIRS = ("text", "Flickr8k_text", ".")
# the development copy beside the main checkout (or beside a worktree's parent folder)
DEV_COPY = next((p / "shared" / "data" / NAME for p in Path(__file__).resolve().parents[3:5]
                 if (p / "shared" / "data" / NAME).is_dir()), Path(__file__).resolve().parents[3] / "shared" / "data" / NAME)
HINT = ("point at a copy with --data-root PATH (a folder holding flickr8k/) "
        "or the VLBENCH_DATA environment variable")


def _text_places(root: Path, filename: str) -> list[Path]:
    return [(root / d / filename) if d != "." else root / filename for d in TEXT_DIRS]


def candidate_roots(data_root: str | os.PathLike | None, folder: str = NAME) -> list[Path]:
    """Ordered places a copy may be; the first holding a token file wins.

    An explicit ``data_root`` is searched alone; without one, ``VLBENCH_DATA`` (if set) and
    then the development copy (if it exists)."""
    base = data_root if data_root is not None else (os.environ.get("VLBENCH_DATA") or None)
    roots = [Path(base) / folder, Path(base)] if base is not None else []
    if data_root is None and DEV_COPY.exists():
        roots.append(DEV_COPY.resolve())
    return roots


def find_root(data_root: str | os.PathLike | None, folder: str = NAME) -> tuple[Path, Path]:
    """Return (root, token file) or raise naming every place looked at."""
    looked: list[Path] = []
    for root in candidate_roots(data_root, folder):
        for place in _text_places(root, TOKEN_FILE):
            looked.append(place)
            if place.is_file():
                return root, place
    where = "\n  ".join(map(str, looked)) or "(no --data-root given, VLBENCH_DATA unset, no development copy)"
    raise DatasetNotFound(f"{NAME}: no copy found; looked for {TOKEN_FILE} in:\n  {where}", HINT, sep="\n")


def _existing(places: list[Path]) -> Path | None:
    return next((p for p in places if p.exists()), None)


def _first(places: list[Path], what: str) -> Path:
    found = _existing(places)
    if found is None:
        raise DatasetNotFound(f"{NAME}: {what} not found; looked in: " + ", ".join(map(str, places)), HINT, sep="\n")
    return found


def _find_text(root: Path, filename: str) -> Path:
    return _first(_text_places(root, filename), filename)


def _read_split(path: Path, strict: bool = False) -> list[str]:
    """Image names in file order; a repeated name is kept once (a skip, reported)."""
    # utf-8-sig: a byte-order mark (editors on Windows add one) is not part of the first name
    names = [ln.strip() for ln in path.read_text(encoding="utf-8-sig", errors="replace").splitlines()]
    names = [n for n in names if n]
    unique = list(dict.fromkeys(names))
    if len(unique) < len(names):
        skip(f"{NAME}: {len(names) - len(unique)} repeated image name(s) in {path} skipped, first kept", strict)
    return unique


def _lines(nums: list[int]) -> str:
    return ", ".join(map(str, nums[:8])) + (" ..." if len(nums) > 8 else "")


@dataclass(frozen=True)
class TokenContext:
    """What decides whether a caption's image is *unknown* and which bad lines the release
    is known to have. ``on_disk``: the image folder's names (None: no unknown-image check,
    e.g. a token file that covers splits not listed); ``release``: the file is the pinned
    release (every image name in it is a real Flickr8k image, even if this copy lacks it);
    ``known_defects``: kind -> line numbers declared in the manifest for these bytes."""

    on_disk: frozenset[str] | None = None
    release: bool = False
    known_defects: Mapping[str, frozenset[int]] = field(default_factory=dict)


KNOWN_NOTE = " (a known defect of this release, declared in datasets_manifest.yaml)"


def read_tokens(blob: bytes, path: Path, known: set[str], strict: bool = False,
                name: str = NAME, context: TokenContext | None = None) -> tuple[dict[str, dict[int, str]], dict[str, Any]]:
    """Parse token-file bytes: {image: {n: caption}} for images in ``known``, plus counts.
    Each kind of problem is one warning naming the file and lines (an error if ``strict``,
    unless the manifest declares exactly those lines a defect of this file's release)."""
    ctx = context or TokenContext()
    caps: dict[str, dict[int, str]] = {}
    bad: dict[str, list[int]] = {"malformed": [], "encoding": [], "empty": [], "duplicate": [], "stray": [],
                                 "unknown_image": []}
    stray_names: dict[str, None] = {}
    unknown_names: dict[str, None] = {}
    unsplit: dict[str, None] = {}
    raw = blob.removeprefix(b"\xef\xbb\xbf").split(b"\n")
    if raw and not raw[-1].strip():
        raw.pop()  # the file's final newline
    for no, rawline in enumerate(raw, 1):
        try:
            line = rawline.decode("utf-8")
        except UnicodeDecodeError:
            line = rawline.decode("utf-8", errors="replace")
            bad["encoding"].append(no)
        key, tab, caption = line.strip("\r\n").partition("\t")
        image, hash_, n = key.strip().rpartition("#")
        if not tab or not hash_ or not image or not n.strip().isdigit():
            bad["malformed"].append(no)
            continue
        if image not in known:
            if not image.lower().endswith(IMAGE_SUFFIXES):
                bad["stray"].append(no)
                stray_names[image] = None
            elif ctx.on_disk is not None and image not in ctx.on_disk and not ctx.release:
                bad["unknown_image"].append(no)  # in no split file and no such image: a typo, another dataset's
                unknown_names[image] = None
            else:
                unsplit[image] = None
            continue
        caption = caption.strip()
        if "\x00" in caption:  # a corrupt or binary file: no caption of it can be trusted, with or without --strict
            raise DatasetError(f"{path}: line {no}: the caption holds a NUL byte ({caption[:60]!r}); "
                               "the file is corrupt or not text")
        if not caption:
            bad["empty"].append(no)
            continue
        slot = caps.setdefault(image, {})
        if int(n) in slot:
            bad["duplicate"].append(no)
            continue
        slot[int(n)] = caption
    what = {"malformed": "blank or malformed line(s) skipped", "encoding": "line(s) with non-UTF-8 bytes (replaced)",
            "empty": "empty caption(s) skipped", "duplicate": "repeated (image, #n) entr(ies) skipped, first kept",
            "stray": "stray line(s) naming no image file skipped (" + ", ".join(stray_names) + ")",
            "unknown_image": "caption(s) of image(s) in no split file and not in the image folder skipped ("
                             + _names(list(unknown_names)) + ")"}
    known_defects: dict[str, int] = {}
    for kind, nums in bad.items():
        if nums:
            declared = set(nums) <= ctx.known_defects.get(kind, frozenset())
            if declared:
                known_defects[kind] = len(nums)
            skip(f"{name}: {len(nums)} {what[kind]} in {path}, line(s) {_lines(nums)}"
                 + (KNOWN_NOTE if declared else ""), strict and not declared)
    counts = {"dropped_malformed_lines": len(bad["malformed"]), "bad_encoding_lines": len(bad["encoding"]),
              "dropped_empty_captions": len(bad["empty"]), "dropped_duplicate_captions": len(bad["duplicate"]),
              "dropped_stray_lines": len(bad["stray"]), "stray_names": list(stray_names),
              "images_in_no_split": len(unsplit)}
    if bad["unknown_image"]:
        counts.update(dropped_unknown_image_captions=len(bad["unknown_image"]), unknown_images=list(unknown_names))
    if known_defects:
        counts["known_defects"] = known_defects
    return caps, counts


def _names(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f", ... {len(names) - n} more" if len(names) > n else "")


def _canonical(split: str) -> str:
    s = SPLIT_ALIASES.get(split, split)
    if s not in SPLITS:
        raise DatasetError(f"{NAME} has no split {split!r}; splits: {', '.join(SPLITS)} (alias: val -> dev)")
    return s


def _token_context(spec, token_path: Path, sha: str, on_disk: set[str]) -> TokenContext:
    """The release facts for this token file's bytes, from the manifest entry (if any)."""
    if spec is None:
        return TokenContext(on_disk=frozenset(on_disk))
    return TokenContext(on_disk=frozenset(on_disk), release=spec.annotation_sha256.get(token_path.name) == sha,
                        known_defects=spec.defects_of(token_path.name, sha))


def _scan(request: DatasetRequest, folder: str = NAME, spec=None) -> dict[str, Any]:
    """Everything load() and describe() need, without applying the missing-image policy."""
    split = _canonical(request.split)
    root, token_path = find_root(request.data_root, folder)
    split_path = _find_text(root, f"Flickr_8k.{split}Images.txt")
    names = _read_split(split_path, request.strict)
    known = set(names)
    for other in set(SPLITS) - {split}:  # names in no split file we can find: unused or stray
        with contextlib.suppress(DatasetError):
            known.update(_read_split(_find_text(root, f"Flickr_8k.{other}Images.txt")))
    image_dir = _first([root / d for d in IMAGE_DIRS], "image folder")
    with os.scandir(image_dir) as it:
        on_disk = {e.name for e in it}
    blob = token_path.read_bytes()
    sha = hashlib.sha256(blob).hexdigest()
    caps, counts = read_tokens(blob, token_path, known, request.strict,
                               context=_token_context(spec, token_path, sha, on_disk))
    return {"split": split, "root": root, "token_path": token_path, "split_path": split_path,
            "token_sha256": sha,
            "split_sha256": hashlib.sha256(split_path.read_bytes()).hexdigest(),
            "image_dir": image_dir, "names": names, "on_disk": on_disk, "caps": caps, "counts": counts}


def load(request: DatasetRequest, spec=None) -> RetrievalData:
    """Load one split as RetrievalData (lazy images); see the module docstring for the rules.
    ``spec`` (the manifest entry) may name another folder and which splits may be partial."""
    if request.task is not TaskKind.RETRIEVAL:
        raise DatasetError(f"{NAME} has only a retrieval view, not {request.task.value}")
    s = _scan(request, spec.folder if spec is not None else NAME, spec)
    split_spec = spec.splits.get(s["split"]) if spec is not None else None
    split, names, image_dir, on_disk = s["split"], s["names"], s["image_dir"], s["on_disk"]
    images = [(n, image_dir / n if n in on_disk else None,
               [cap for _, cap in sorted(s["caps"].get(n, {}).items())]) for n in names]
    info: dict[str, Any] = {
        "root": str(s["root"]), "token_file": str(s["token_path"]), "token_sha256": s["token_sha256"],
        "split_file": str(s["split_path"]), "split_sha256": s["split_sha256"], **s["counts"],
        "sha256": {s["token_path"].name: s["token_sha256"], s["split_path"].name: s["split_sha256"]},
    }
    return assemble_retrieval(NAME, split, images, f"from {image_dir}",
                              HINT,
                              (s["token_sha256"], s["split_sha256"]), info, request,
                              partial_ok=split_spec.partial_ok if split_spec is not None else None)


def probe(spec, data_root: str | None) -> str | None:
    """Cheap availability: the token file, one split file and the image folder exist."""
    roots = candidate_roots(data_root, spec.folder)
    try:
        root, _ = find_root(data_root, spec.folder)
    except DatasetError:
        return f"no {TOKEN_FILE} under {' or '.join(map(str, roots))}" if roots else NO_ROOT
    split_file = f"Flickr_8k.{spec.default_split}Images.txt"
    needed = ((split_file, _text_places(root, split_file)), ("image folder", [root / d for d in IMAGE_DIRS]))
    for what, places in needed:
        if _existing(places) is None:
            return f"{NAME}: {what} not found under {root}"
    return None


FORMAT = Format(name=NAME, tasks=(TaskKind.RETRIEVAL,), load=lambda spec, request: load(request, spec), probe=probe)
