"""Flickr8k-Expert and Flickr8k-CF (Hodosh et al. 2013): human judgments of how well a
caption describes an image, read from the official files in the Flickr8k layout
(:mod:`harness.datasets.flickr8k`)::

    <root>/text/ExpertAnnotations.txt        <query image> TAB <caption id> TAB e1 TAB e2 TAB e3   (1..4)
    <root>/text/CrowdFlowerAnnotations.txt   <query image> TAB <caption id> TAB <fraction yes> TAB <#yes> TAB <#no>
    <root>/text/Flickr8k.token.txt           the captions, by id ``<image>.jpg#<n>``
    <root>/Flicker8k_Dataset/*.jpg           the query images (all in the official test split)

Protocol of CLIPScore (Hessel et al. 2021), so numbers compare with its Table 1/2:

- Expert: the pairs whose caption is one of the query image's own reference captions are
  dropped (158 in the official file; counted in ``info["dropped_own_caption_pairs"]``), and
  each of the three expert scores is its own row: 5,664 pairs, 16,992 rows; Kendall tau-c.
- CF: one row per pair, rated by the fraction of yes votes; Kendall tau-b.

Bad lines (not UTF-8, binary junk, wrong field count, scores out of range or inconsistent,
a malformed caption id) are skipped with ONE warning per kind naming the file and the lines
(ranges), and counted in ``info``; so are captions missing from the token file and repeated
pairs (first kept). ``--strict`` makes every skip an error. The query images follow the
evaluation-split rule of :mod:`harness.datasets.assemble`: every one must be readable.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

from . import flickr8k
from .assemble import content_hash, skip, usable_files
from .base import NO_ROOT, DatasetError, DatasetRequest, Format, ImageSet, TaskKind, fingerprint
from .views import JudgmentData, limit_judgments

NAME = "flickr8k_judgments"
# annotations option -> (file, Kendall variant, whether own-caption pairs are dropped)
KINDS = {"expert": ("ExpertAnnotations.txt", "c", True), "crowdflower": ("CrowdFlowerAnnotations.txt", "b", False)}
EXPERT_SCALE = (1, 4)


def _ranges(nums: list[int], most: int = 6) -> str:
    """``[3, 4, 5, 9]`` -> ``"3-5, 9"`` (the first ``most`` runs, then "...")."""
    runs: list[list[int]] = []
    for n in nums:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    text = ", ".join(f"{a}-{b}" if b > a else str(a) for a, b in runs[:most])
    return text + (", ..." if len(runs) > most else "")


def _scores(kind: str, fields: list[str]) -> list[float] | None:
    """The judgment rows of one line's score fields, or None when they are malformed."""
    try:
        if kind == "expert":
            vals = [int(f) for f in fields]
            return [float(v) for v in vals] if all(EXPERT_SCALE[0] <= v <= EXPERT_SCALE[1] for v in vals) else None
        frac, yes, no = float(fields[0]), int(fields[1]), int(fields[2])
    except ValueError:
        return None
    if yes < 0 or no < 0 or yes + no == 0 or not math.isclose(frac, yes / (yes + no), abs_tol=1e-3):
        return None
    return [yes / (yes + no)]


def parse_judgments(blob: bytes, path: Path, kind: str, strict: bool = False,
                    name: str = NAME) -> tuple[list[tuple], dict[str, Any]]:
    """``[(query image, caption image, caption #n, [rows...]), ...]`` in file order, plus the
    skip counts. Own-caption pairs are kept here (the caller drops them for Expert)."""
    n_fields = 5
    bad: dict[str, list[int]] = {"unreadable": [], "duplicate": []}
    out, seen = [], set()
    raw = blob.removeprefix(b"\xef\xbb\xbf").split(b"\n")
    if raw and not raw[-1].strip():
        raw.pop()
    for no, rawline in enumerate(raw, 1):
        try:
            fields = rawline.decode("utf-8").strip("\r\n").split("\t")
        except UnicodeDecodeError:
            bad["unreadable"].append(no)
            continue
        cap_image, hash_, n = fields[1].rpartition("#") if len(fields) == n_fields else ("", "", "")
        scores = _scores(kind, fields[2:]) if hash_ else None
        if scores is None or not fields[0] or not cap_image or not n.isdigit():
            bad["unreadable"].append(no)
            continue
        key = (fields[0], fields[1])
        if key in seen:
            bad["duplicate"].append(no)
            continue
        seen.add(key)
        out.append((fields[0], cap_image, int(n), scores))
    what = {"unreadable": "unreadable line(s) (not UTF-8, binary, or not 5 valid tab-separated fields) skipped",
            "duplicate": "repeated (image, caption) pair(s) skipped, first kept"}
    for k, nums in bad.items():
        if nums:
            skip(f"{name}: {len(nums)} {what[k]} in {path}, line(s) {_ranges(nums)}", strict)
    return out, {"dropped_unreadable_lines": len(bad["unreadable"]), "dropped_duplicate_pairs": len(bad["duplicate"])}


def _captions(token_path: Path, needed: set[str], strict: bool, name: str) -> tuple[dict, str]:
    blob = token_path.read_bytes()
    caps, _ = flickr8k.read_tokens(blob, token_path, needed, strict, name=name)
    return caps, hashlib.sha256(blob).hexdigest()


def judgment_table(root: Path, token_path: Path, kind: str, strict: bool = False,
                   name: str = NAME) -> dict[str, Any]:
    """Everything but the images: the protocol's pairs and rows, captions by id, and counts.
    This is what the row counts (16,992 Expert / 47,288 CF here) are checked on."""
    fname, variant, drop_own = KINDS[kind]
    path = flickr8k._find_text(root, fname)
    blob = path.read_bytes()
    lines, counts = parse_judgments(blob, path, kind, strict, name)
    # the query images' own captions too: reference-based caption metrics score against them
    caps, token_sha = _captions(token_path, {c for _, c, _, _ in lines} | {q for q, _, _, _ in lines}, strict, name)
    own = [x for x in lines if x[0] == x[1]] if drop_own else []
    kept = [x for x in lines if not (drop_own and x[0] == x[1])]
    unknown = [x for x in kept if x[2] not in caps.get(x[1], {})]
    if unknown:
        skip(f"{name}: {len(unknown)} pair(s) in {path} name captions that {token_path} lacks "
             f"(e.g. {unknown[0][1]}#{unknown[0][2]}); skipped", strict)
        kept = [x for x in kept if x[2] in caps.get(x[1], {})]
    sha = hashlib.sha256(blob).hexdigest()
    return {"path": path, "variant": variant, "pairs": kept, "captions": caps, "sha256": sha, "token_sha256": token_sha,
            "counts": {**counts, "dropped_own_caption_pairs": len(own), "dropped_unknown_captions": len(unknown)}}


def _query_split(root: Path, queries: list[str]) -> str:
    """Which official split the query images are in ("test" for the real files), for the record."""
    names = set(queries)
    for split in flickr8k.SPLITS:
        try:
            listed = set(flickr8k._read_split(flickr8k._find_text(root, f"Flickr_8k.{split}Images.txt")))
        except DatasetError:
            continue
        if names <= listed:
            return split
    return "mixed or unlisted"


def build(name: str, split: str, table: dict[str, Any], image_dir: Path, on_disk: set[str], hint: str,
          request: DatasetRequest, query_split: str) -> JudgmentData:
    pairs = table["pairs"]
    queries = list(dict.fromkeys(q for q, _, _, _ in pairs))
    if request.images:
        keep, img_counts = usable_files(name, split, [(q, image_dir / q if q in on_disk else None) for q in queries],
                                        f"from {image_dir}", hint, partial_ok=False, strict=request.strict)
        del keep  # an evaluation split: usable_files raised unless every query image is readable
    else:
        img_counts = {"images_read": False}  # a text-only scorer: the images need not be here
    cap_ids = list(dict.fromkeys((c, n) for _, c, n, _ in pairs))
    q_index, c_index = {q: i for i, q in enumerate(queries)}, {c: i for i, c in enumerate(cap_ids)}
    row_pair, human = [], []
    for p, (_, _, _, scores) in enumerate(pairs):
        row_pair += [p] * len(scores)
        human += scores
    digest = content_hash((f"{q}\t{c}#{n}" for q, c, n, _ in pairs), zip(row_pair, human))
    info = {"root": str(table["path"].parent), "annotation_file": str(table["path"]), "query_split": query_split,
            "sha256": {table["path"].name: table["sha256"], flickr8k.TOKEN_FILE: table["token_sha256"]},
            "kendall_variant": table["variant"], **table["counts"], **img_counts}
    data = JudgmentData(
        name=name, split=split, images=ImageSet([image_dir / q for q in queries]),
        captions=[table["captions"][c][n] for c, n in cap_ids],
        pair_image=[q_index[q] for q, _, _, _ in pairs], pair_caption=[c_index[(c, n)] for _, c, n, _ in pairs],
        row_pair=row_pair, human=human, variant=table["variant"],
        fingerprint=fingerprint(name, split, table["sha256"], table["token_sha256"], digest), info=info,
        **_references(table["captions"], queries, pairs))
    return limit_judgments(data, request.limit, request.seed)


def _references(caps: dict, queries: list[str], pairs: list[tuple]) -> dict[str, list]:
    """Each query image's own captions (token-file order) and, per pair, the index among them
    of the candidate when it is one of them (CF keeps such pairs; -1 otherwise)."""
    numbers = {q: sorted(caps.get(q, {})) for q in queries}
    return {"references": [[caps[q][n] for n in numbers[q]] for q in queries],
            "pair_own_ref": [numbers[q].index(n) if c == q and n in numbers[q] else -1 for q, c, n, _ in pairs]}


def load(spec, request: DatasetRequest) -> JudgmentData:
    if request.task is not TaskKind.HUMAN_AGREEMENT:
        raise DatasetError(f"{spec.name} has only a human_agreement view, not {request.task.value}")
    if request.split not in spec.splits:
        raise DatasetError(f"{spec.name} has no split {request.split!r}; splits: {', '.join(spec.splits)}")
    root, token_path = flickr8k.find_root(request.data_root, spec.folder)
    table = judgment_table(root, token_path, spec.options["annotations"], request.strict, spec.name)
    if not table["pairs"]:
        raise DatasetError(f"{spec.name}: no usable judgments in {table['path']}")
    if request.images:
        image_dir = flickr8k._first([root / d for d in flickr8k.IMAGE_DIRS], "image folder")
        on_disk = {p.name for p in image_dir.iterdir()}
    else:  # a text-only scorer: where the images would be, read by no one
        image_dir = flickr8k._existing([root / d for d in flickr8k.IMAGE_DIRS]) or root / flickr8k.IMAGE_DIRS[0]
        on_disk = set()
    queries = list(dict.fromkeys(q for q, _, _, _ in table["pairs"]))
    return build(spec.name, request.split, table, image_dir, on_disk, flickr8k.HINT, request,
                 _query_split(root, queries))


def probe(spec, data_root: str | None) -> str | None:
    """Cheap availability: the annotation file, the token file and the image folder exist."""
    if spec.options.get("annotations") not in KINDS:
        return f"{spec.name}: options.annotations must be one of {', '.join(KINDS)}"
    try:
        root, _ = flickr8k.find_root(data_root, spec.folder)
    except DatasetError:
        roots = flickr8k.candidate_roots(data_root, spec.folder)
        return f"no {flickr8k.TOKEN_FILE} under {' or '.join(map(str, roots))}" if roots else NO_ROOT
    fname = KINDS[spec.options["annotations"]][0]
    if flickr8k._existing(flickr8k._text_places(root, fname)) is None:
        return f"{spec.name}: {fname} not found under {root}"
    if flickr8k._existing([root / d for d in flickr8k.IMAGE_DIRS]) is None:
        return f"{spec.name}: image folder not found under {root}"
    return None


FORMAT = Format(name=NAME, tasks=(TaskKind.HUMAN_AGREEMENT,), load=load, probe=probe, options={"annotations": str})
