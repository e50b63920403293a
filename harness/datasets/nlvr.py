"""NLVR (Suhr et al. 2017, "A Corpus of Natural Language for Visual Reasoning"): a sentence
about an image of three boxes of shapes, true or false. Local copy in the release's layout
(github.com/lil-lab/nlvr, ``nlvr/``)::

    <root>/{split}/{split}.json      one JSON object per line: sentence, label ("true"/"false"),
                                     identifier ("n-m"), directory, structured_rep, evals
    <root>/{split}/images/<directory>/{split}-<identifier>-<k>.png     k = 0..5

Each sentence comes with six images (the same boxes in six orders), all with the sentence's
label; each (sentence, image) is an item, and ``groups`` holds the identifier so the task can
report ``consistency`` (all six right), as the release's ``metrics_images.py`` does. Splits:
train, dev, test (the public test set). ``holdout_groups`` is the presentation n of an
identifier n-m: the release advises against validation sets that split an example's box
orders or the examples shown together.

``structured_rep`` (the symbolic scene) and ``evals`` (raters' votes) are never read into an
item: a model sees the sentence and the PNG only. Copies whose lines lack ``directory``
(the first release) are found by file name under ``{split}/images/``.
"""

from __future__ import annotations

from .base import DatasetError, DatasetRequest, Format, TaskKind, files_probe, find_in_roots
from .pair_files import PairRow, PairSource, assemble_pairs, file_index, found, read_jsonl, typed_field
from .pair_labels import ImageTextLabelData

CLASSNAMES = ["false", "true"]
PERMUTATIONS = 6


def split_name(spec, split: str) -> str:
    s = spec.splits.get(split)
    return s.source_split if s is not None and s.source_split else split


def parse_label(value, where: str) -> int:
    """``"true"``/``"false"`` (any case; NLVR2 writes ``"True"``) -> 1/0."""
    if not isinstance(value, str) or value.lower() not in CLASSNAMES:
        raise DatasetError(f"{where}: field 'label' must be \"true\" or \"false\", got {value!r}")
    return CLASSNAMES.index(value.lower())


def load(spec, request: DatasetRequest) -> ImageTextLabelData:
    if request.task is not TaskKind.IMAGE_TEXT_CLASSIFICATION:
        raise DatasetError(f"{spec.name} has only an image_text_classification view")
    name = split_name(spec, request.split)
    root, path = find_in_roots(spec, request.data_root, [f"{name}/{name}.json"], False, f"{spec.name}/{request.split}")
    lines, sha = read_jsonl(path)
    images = root / name / "images"
    by_name = None  # built once, only for lines without a directory
    rows = []
    for no, obj in lines:
        where = f"{path}:{no}"
        sentence = typed_field(obj, "sentence", str, where)
        identifier = typed_field(obj, "identifier", str, where)
        label = parse_label(obj.get("label"), where)
        directory = obj.get("directory")
        if isinstance(directory, bool) or not isinstance(directory, (str, int, type(None))):
            raise DatasetError(f"{where}: field 'directory' must be a folder number, got {directory!r}")
        for k in range(PERMUTATIONS):
            file = f"{name}-{identifier}-{k}.png"
            if directory is not None:
                image, ref = found(images / str(directory) / file), f"images/{directory}/{file}"
            else:
                by_name = file_index(images) if by_name is None else by_name
                image, ref = by_name.get(file), f"images/*/{file}"
            rows.append(PairRow(origin=f"{path.name}:{no}", key=f"{identifier}-{k}", image_ref=ref, image=image,
                                text=sentence, label=label, group=identifier,
                                holdout=identifier.split("-")[0]))  # n of n-m: one presentation
    info = {"root": str(root), "sha256": {path.name: sha}, "images_per_sentence": PERMUTATIONS,
            "sentences": len(lines)}
    return assemble_pairs(spec, request, rows, CLASSNAMES, PairSource(f"in {images}", (sha,), info))


def _split_file(spec) -> list[str]:
    name = split_name(spec, spec.default_split)
    return [f"{name}/{name}.json"]


FORMAT = Format(name="nlvr", tasks=(TaskKind.IMAGE_TEXT_CLASSIFICATION,), load=load, probe=files_probe(_split_file))
