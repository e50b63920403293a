"""Hateful Memes (Kiela et al. 2020), local copy in the release's layout::

    <root>/img/<id>.png
    <root>/train.jsonl  dev_seen.jsonl  dev_unseen.jsonl  test_seen.jsonl  test_unseen.jsonl

One JSON object per line: ``{"id": 42953, "img": "img/42953.png", "label": 0, "text": "..."}``;
label 1 is hateful. A binary task whose headline metric is AUROC. A split's file is
``<split>.jsonl`` (or the manifest's ``source_split``); a line without a 0/1 ``label`` (the
phase-1 ``test.jsonl`` has none) fails, naming the file and line.
"""

from __future__ import annotations

from .base import DatasetError, DatasetRequest, Format, TaskKind, files_probe, find_in_roots
from .pair_files import PairRow, PairSource, assemble_pairs, found, inside, read_jsonl, typed_field
from .pair_labels import ImageTextLabelData

CLASSNAMES = ["not hateful", "hateful"]


def jsonl_name(spec, split: str) -> str:
    s = spec.splits.get(split)
    return f"{s.source_split if s is not None and s.source_split else split}.jsonl"


def load(spec, request: DatasetRequest) -> ImageTextLabelData:
    if request.task is not TaskKind.IMAGE_TEXT_CLASSIFICATION:
        raise DatasetError(f"{spec.name} has only an image_text_classification view")
    root, path = find_in_roots(spec, request.data_root, [jsonl_name(spec, request.split)], False,
                               f"{spec.name}/{request.split}")
    lines, sha = read_jsonl(path)
    rows = []
    for no, obj in lines:
        where = f"{path}:{no}"
        label = typed_field(obj, "label", int, where)
        if label not in (0, 1):
            raise DatasetError(f"{where}: field 'label' must be 0 or 1, got {label!r}")
        ref = typed_field(obj, "img", str, where)
        key = str(typed_field(obj, "id", (int, str), where))
        rows.append(PairRow(origin=f"{path.name}:{no}", key=key, image_ref=ref, image=found(inside(root, ref, where)),
                            text=typed_field(obj, "text", str, where), label=label))
    info = {"root": str(root), "sha256": {path.name: sha}}
    return assemble_pairs(spec, request, rows, CLASSNAMES, PairSource(f"under {root}", (sha,), info))


FORMAT = Format(name="hateful_memes", tasks=(TaskKind.IMAGE_TEXT_CLASSIFICATION,), load=load,
                probe=files_probe(lambda spec: [jsonl_name(spec, spec.default_split)]))
