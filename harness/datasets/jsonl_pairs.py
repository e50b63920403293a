"""Your own image + text -> label data, no code: ``--dataset jsonl:DIR``, or a manifest entry
with ``format: jsonl`` whose ``source.folder`` names the folder. DIR holds::

    DIR/train.jsonl   DIR/test.jsonl   (DIR/val.jsonl, optional)
    DIR/<images, anywhere inside DIR>

one JSON object per line::

    {"image": "imgs/0001.jpg", "text": "a tweet or a caption", "label": "positive"}
    {"image": "imgs/0002.jpg", "text": "a movie plot", "label": ["drama", "crime"]}   # multi-label

``image`` is a path relative to DIR and may not leave it. ``label`` is a string (an integer
is read as its digits) or, for a multi-label dataset, a list of them; a dataset is multi-label
when its labels are lists, and every line must then be. The classes are every label of every
split file, sorted (numerically when all are integers), so train and test share one list;
a class the evaluation split has and train lacks is reported by the task
(:func:`harness.datasets.pair_labels.check_labels`). Every problem names the file and line.
"""

from __future__ import annotations

from pathlib import Path

from .base import DatasetError, DatasetNotFound, DatasetRequest, Format, TaskKind, find_in_roots
from .pair_files import PairRow, PairSource, assemble_pairs, found, inside, read_jsonl, typed_field
from .pair_labels import ImageTextLabelData

PREFIX = "jsonl:"
REQUIRED_SPLITS = ("train", "test")
OPTIONAL_SPLITS = ("val",)
HINT = "DIR must hold train.jsonl and test.jsonl (val.jsonl optional), one {\"image\", \"text\", \"label\"} per line"


def _label_names(value, where: str) -> tuple[list[str], bool]:
    """(label names, written as a list) of one line's ``label``."""
    def name(v) -> str:
        if isinstance(v, bool) or not isinstance(v, (str, int)) or (isinstance(v, str) and not v.strip()):
            raise DatasetError(f"{where}: field 'label' must be a non-empty string, an integer or a list of them, "
                               f"got {type(v).__name__} {v!r}")
        return str(v).strip()

    if isinstance(value, list):
        if not value:
            raise DatasetError(f"{where}: a multi-label item with no labels (label is [])")
        return [name(v) for v in value], True
    return [name(value)], False


def _sort_key(names: set[str]):
    numeric = all(n.lstrip("-").isdigit() for n in names)
    return (lambda n: int(n)) if numeric else (lambda n: n)


def root_of(spec, data_root: str | None) -> Path:
    """DIR: an absolute ``source.folder`` as is, else looked for under the data roots."""
    folder = Path(spec.folder).expanduser()
    if folder.is_absolute():
        if not folder.is_dir():
            raise DatasetNotFound(f"{spec.name}: folder {folder} not found", HINT)
        return folder
    root, _ = find_in_roots(spec, data_root, ["train.jsonl"], False, spec.name)
    return root


def scan(root: Path, splits) -> tuple[dict[str, list[tuple[int, dict]]], dict[str, str], list[str], bool]:
    """Every split file read once: lines per split, sha256 per file, the shared classes and
    whether the dataset is multi-label (a mix of list and single labels fails)."""
    lines, shas, names, first_kind = {}, {}, set(), None
    for split in splits:
        path = root / f"{split}.jsonl"
        if not path.is_file():
            raise DatasetNotFound(f"{path}: not found", HINT)
        lines[split], shas[path.name] = read_jsonl(path)
        for no, obj in lines[split]:
            where = f"{path}:{no}"
            if "label" not in obj:
                raise DatasetError(f"{where}: missing field 'label'")
            got, is_list = _label_names(obj["label"], where)
            if first_kind is None:
                first_kind = (is_list, where)
            elif is_list != first_kind[0]:
                raise DatasetError(f"{where}: label is {'a list' if is_list else 'a single label'} but "
                                   f"{first_kind[1]} has {'a list' if first_kind[0] else 'a single label'}; "
                                   "a dataset is multi-label (lists) or not throughout")
            names.update(got)
    return lines, shas, sorted(names, key=_sort_key(names)), bool(first_kind and first_kind[0])


def load(spec, request: DatasetRequest) -> ImageTextLabelData:
    if request.task is not TaskKind.IMAGE_TEXT_CLASSIFICATION:
        raise DatasetError(f"{spec.name} has only an image_text_classification view")
    root = root_of(spec, request.data_root)
    lines, shas, classnames, multilabel = scan(root, list(spec.splits))
    index = {n: i for i, n in enumerate(classnames)}
    path = root / f"{request.split}.jsonl"
    rows = []
    for no, obj in lines[request.split]:
        where = f"{path}:{no}"
        ref = typed_field(obj, "image", str, where)
        names, _ = _label_names(obj["label"], where)
        label = sorted({index[n] for n in names}) if multilabel else index[names[0]]
        rows.append(PairRow(origin=f"{path.name}:{no}", key=f"{no}", image_ref=ref,
                            image=found(inside(root, ref, where)), text=typed_field(obj, "text", str, where),
                            label=label))
    info = {"root": str(root), "sha256": dict(shas)}
    return assemble_pairs(spec, request, rows, classnames,
                          PairSource(f"in {root}", tuple(sorted(shas.items())), info, multilabel, HINT))


def probe(spec, data_root: str | None) -> str | None:
    try:
        root = root_of(spec, data_root)
    except DatasetError as exc:
        return exc.reason
    missing = [s for s in spec.splits if not (root / f"{s}.jsonl").is_file()]
    return f"{', '.join(f'{s}.jsonl' for s in missing)} not found in {root}" if missing else None


def folder_spec(text: str):
    """The manifest entry ``jsonl:DIR`` stands for: DIR's splits (train, test, and val when
    present), named by DIR's absolute path."""
    from .manifest import DatasetSpec, SplitSpec

    folder = Path(text).expanduser()
    if not text.strip() or not folder.is_dir():
        raise DatasetNotFound(f"{PREFIX}{text}: folder {folder} not found", HINT)
    folder = folder.resolve()
    missing = [f"{s}.jsonl" for s in REQUIRED_SPLITS if not (folder / f"{s}.jsonl").is_file()]
    if missing:
        raise DatasetNotFound(f"{PREFIX}{text}: {', '.join(missing)} not found in {folder}", HINT)
    splits = [*REQUIRED_SPLITS[:1], *(s for s in OPTIONAL_SPLITS if (folder / f"{s}.jsonl").is_file()),
              *REQUIRED_SPLITS[1:]]
    return DatasetSpec(
        name=f"{PREFIX}{folder}", tasks=(TaskKind.IMAGE_TEXT_CLASSIFICATION,), format="jsonl",
        source={"kind": "local", "folder": str(folder)}, default_split="test",
        splits={s: SplitSpec(name=s) for s in splits}, license="the user's own data", citation="the user's own data",
        description=f"image + text -> label items from {folder}", origin=f"{PREFIX}{text}")


FORMAT = Format(name="jsonl", tasks=(TaskKind.IMAGE_TEXT_CLASSIFICATION,), load=load, probe=probe)
