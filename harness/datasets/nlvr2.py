"""NLVR2 (Suhr, Zhou et al. 2019, "A Corpus for Reasoning About Natural Language Grounded in
Photographs"): a sentence about a pair of photographs, true or false. Local copy in the
release's layout (github.com/lil-lab/nlvr, ``nlvr2/``)::

    <root>/data/{split}.json     one JSON object per line: identifier ("split-set-pair-sentence"),
                                 sentence, label ("True"/"False"), left_url, right_url, ...
    <root>/images/{split}/...    {split}-{set}-{pair}-img0.png (left) and -img1.png (right),
                                 at any depth (train is spread over numbered folders)

Splits: train, dev, test1 (the public test set). Each item has two images: ``images`` holds
the left and ``images_right`` the right one; ``info["pair_mode"]`` says how each model kind
reads a pair. ``groups`` joins the items of one sentence across image pairs (the identifier
without its pair number), the unit of the release's ``consistency`` (``eval/metrics.py``);
``holdout_groups`` is the image set, which the release says should not straddle a
validation cut.
"""

from __future__ import annotations

from .base import DatasetError, DatasetRequest, Format, TaskKind, files_probe, find_in_roots
from .nlvr import CLASSNAMES, parse_label, split_name
from .pair_files import PairRow, PairSource, assemble_pairs, file_index, read_jsonl, typed_field
from .pair_labels import ImageTextLabelData


def image_names(identifier: str, where: str) -> tuple[str, str, str]:
    """(left file, right file, consistency group) of an identifier.

    >>> image_names("dev-850-0-0", "x")
    ('dev-850-0-img0.png', 'dev-850-0-img1.png', 'dev-850--0')
    """
    parts = identifier.split("-")
    if len(parts) != 4 or not all(parts):
        raise DatasetError(f"{where}: identifier {identifier!r} is not split-set-pair-sentence")
    stem = "-".join(parts[:3])
    return f"{stem}-img0.png", f"{stem}-img1.png", "-".join([parts[0], parts[1], "", parts[3]])


def load(spec, request: DatasetRequest) -> ImageTextLabelData:
    if request.task is not TaskKind.IMAGE_TEXT_CLASSIFICATION:
        raise DatasetError(f"{spec.name} has only an image_text_classification view")
    name = split_name(spec, request.split)
    root, path = find_in_roots(spec, request.data_root, [f"data/{name}.json"], False, f"{spec.name}/{request.split}")
    lines, sha = read_jsonl(path)
    folder = root / "images" / name
    by_name = file_index(folder)
    rows = []
    for no, obj in lines:
        where = f"{path}:{no}"
        identifier = typed_field(obj, "identifier", str, where)
        left, right, group = image_names(identifier, where)
        rows.append(PairRow(origin=f"{path.name}:{no}", key=identifier, image_ref=left, image=by_name.get(left),
                            text=typed_field(obj, "sentence", str, where), label=parse_label(obj.get("label"), where),
                            right_ref=right, right=by_name.get(right), group=group,
                            holdout=identifier.split("-")[1]))  # the eight-image set
    info = {"root": str(root), "sha256": {path.name: sha}}
    return assemble_pairs(spec, request, rows, CLASSNAMES, PairSource(f"in {folder}", (sha,), info))


FORMAT = Format(name="nlvr2", tasks=(TaskKind.IMAGE_TEXT_CLASSIFICATION,), load=load,
                probe=files_probe(lambda spec: [f"data/{split_name(spec, spec.default_split)}.json"]))
