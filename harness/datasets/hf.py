"""Retrieval datasets through the Hugging Face ``datasets`` library (e.g. ``nlphuji/flickr30k``).

Where the rows come from, first match wins:

1. a local copy written by ``datasets``' ``save_to_disk`` in ``<data_root>/<folder>/`` (or
   ``<data_root>/<folder>/hf/``): read with ``load_from_disk``, no network;
2. the hub, ``load_dataset(id, revision=...)``, when ``huggingface.co`` answers (probed
   once, quickly, by :func:`harness.core.network.host_reachable`) or, offline, when the
   local Hugging Face cache holds the dataset (the library then runs in offline mode);
3. otherwise one line naming the dataset and how to point at a local copy; never a hang.

Manifest ``options``: ``hf_split`` (the hub split holding the rows, default the split's
``source_split`` or its name), ``split_column`` (a column naming our split, e.g. ``split``
in nlphuji/flickr30k whose single ``test`` split holds all 31,014 images),
``image_column`` (default ``image``) and ``caption_column`` (default ``caption``: a list
of captions or one caption per row). Rows with no usable caption are skipped and counted.

Datasets that hold captions and file names but no pixels (``yerevann/coco-karpathy``) name
``file_column`` (and ``dir_column``) instead of an image column, and ``images_folder``: the
local folder under ``--data-root`` / ``VLBENCH_DATA`` holding ``<dir>/<file>``; those files
then follow the shared missing/bad-file policy of :mod:`harness.datasets.assemble`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .assemble import assemble_retrieval, content_hash, skip
from .base import (
    NO_ROOT,
    DatasetError,
    DatasetRequest,
    Format,
    RetrievalData,
    TaskKind,
    apply_limit,
    data_roots,
    fingerprint,
)
from .fields import relative_path
from .images import HFImages


def _cache_dirs(repo_id: str) -> list[Path]:
    """Folders the hub cache / datasets cache would hold ``repo_id`` in."""
    home = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface").expanduser()
    hub = Path(os.environ.get("HF_HUB_CACHE") or home / "hub")
    ds_cache = Path(os.environ.get("HF_DATASETS_CACHE") or home / "datasets")
    return [hub / f"datasets--{repo_id.replace('/', '--')}", ds_cache / repo_id.replace("/", "___")]


def local_copy(spec, data_root: str | None) -> Path | None:
    for root in data_roots(spec.folder, data_root):
        for place in (root, root / "hf"):
            if (place / "dataset_dict.json").is_file() or (place / "state.json").is_file():
                return place
    return None


def offline_message(spec) -> str:
    src = spec.source
    return (f"{spec.name}: Hugging Face dataset {src['id']}@{src['revision']} is not in the local cache and "
            "huggingface.co cannot be reached; point --data-root (or VLBENCH_DATA) at a folder holding "
            f"{spec.folder}/ written by datasets' save_to_disk, or populate HF_HOME on a machine with network")


def _go_offline() -> None:
    """Make ``datasets``/``huggingface_hub`` use the cache only (their flags are read at import)."""
    os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
    import datasets.config
    import huggingface_hub.constants

    datasets.config.HF_HUB_OFFLINE = True
    huggingface_hub.constants.HF_HUB_OFFLINE = True


def open_table(spec, split: str, data_root: str | None) -> tuple[Any, str]:
    """(datasets.Dataset holding the split's rows, where it came from)."""
    from harness.core.network import host_reachable

    hf_split = spec.options.get("hf_split") or spec.splits[split].source_split or split
    copy = local_copy(spec, data_root)
    if copy is not None:
        import datasets

        obj = datasets.load_from_disk(str(copy))
        if isinstance(obj, datasets.DatasetDict):
            if hf_split not in obj:
                raise DatasetError(f"{copy}: no split {hf_split!r}; it holds {', '.join(obj)}")
            obj = obj[hf_split]
        return obj, str(copy)
    src = spec.source
    if not host_reachable():
        if not any(d.is_dir() for d in _cache_dirs(src["id"])):
            raise DatasetError(offline_message(spec))
        _go_offline()
    import datasets

    try:
        table = datasets.load_dataset(src["id"], revision=src["revision"], split=hf_split)
    except Exception as exc:  # noqa: BLE001 - the hub client raises many types; one line for the user
        raise DatasetError(f"{spec.name}: cannot load {src['id']}@{src['revision']} split {hf_split!r} "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    return table, f"hf://{src['id']}@{src['revision']}"


def load(spec, request: DatasetRequest) -> RetrievalData:
    if request.task is not TaskKind.RETRIEVAL:
        raise DatasetError(f"{spec.name} has only a retrieval view, not {request.task.value}")
    table, origin = open_table(spec, request.split, request.data_root)
    opts = spec.options
    image_col, caption_col = opts.get("image_column", "image"), opts.get("caption_column", "caption")
    by_file = opts.get("file_column") is not None
    wanted = (caption_col, opts.get("split_column"), *((opts["file_column"], opts.get("dir_column")) if by_file
                                                       else (image_col,)))
    missing = [c for c in wanted if c and c not in table.column_names]
    if missing:
        raise DatasetError(f"{spec.name}: {origin} has no column(s) {missing}; columns: {table.column_names}")
    want = spec.splits[request.split].source_split or request.split
    in_split = table[opts["split_column"]] if opts.get("split_column") else None
    rows, caps_per_row, empty = [], [], []
    for i, caps in enumerate(table[caption_col]):  # reads one column, images stay undecoded
        if in_split is not None and in_split[i] != want:
            continue
        caps = [c.strip() for c in (caps if isinstance(caps, list) else [caps]) if isinstance(c, str) and c.strip()]
        if not caps:
            empty.append(i)
            continue
        rows.append(i)
        caps_per_row.append(caps)
    if empty:
        skip(f"{spec.name}: {len(empty)} row(s) without a caption skipped in {origin} (rows {empty[:5]})",
             request.strict)
    if not rows:
        raise DatasetError(f"{spec.name}/{request.split}: {origin} holds no rows for this split")
    src = spec.source
    if by_file:
        return _with_local_images(spec, request, table, rows, caps_per_row, origin, len(empty))
    pairs = [(c, k) for k, caps in enumerate(caps_per_row) for c in caps]
    digest = content_hash(map(str, rows), ((k, c) for c, k in pairs))
    data = RetrievalData(
        name=spec.name, split=request.split, images=HFImages(table, image_col, rows, f"{origin}/{want}"),
        captions=[c for c, _ in pairs], caption_to_image=[k for _, k in pairs],
        fingerprint=fingerprint(spec.name, request.split, src["id"], src["revision"], digest),
        info={"origin": origin, "hf_id": src["id"], "hf_revision": src["revision"],
              "dropped_rows_without_captions": len(empty)})
    return apply_limit(data, request.limit, request.seed)


def _with_local_images(spec, request: DatasetRequest, table, rows: list[int], caps_per_row: list[list[str]],
                       origin: str, n_empty: int) -> RetrievalData:
    """Rows that name image files: find them under the local images folder, then the shared policy."""
    opts, src = spec.options, spec.source
    folder = opts.get("images_folder", spec.folder)
    roots = [r for r in data_roots(folder, request.data_root) if r.is_dir()]
    files, dirs = table[opts["file_column"]], table[opts["dir_column"]] if opts.get("dir_column") else None
    listings: dict[Path, set[str]] = {}

    def find(rel: str, row: int) -> Path | None:
        rel = relative_path(rel, f"{origin}: row {row}: {opts['file_column']}")
        for root in roots:
            p = root / rel
            if p.parent not in listings:
                listings[p.parent] = {q.name for q in p.parent.iterdir()} if p.parent.is_dir() else set()
            if p.name in listings[p.parent]:
                return p
        return None

    def rel(i: int) -> str:  # each cell checked: a null or a number names its row and column
        parts = [(opts["dir_column"], dirs[i])] if dirs is not None and dirs[i] not in (None, "") else []
        return "/".join(relative_path(v, f"{origin}: row {i}: {col}") for col, v in [*parts, (opts["file_column"], files[i])])

    rels = [rel(i) for i in rows]
    images = [(rel, find(rel, row), caps) for rel, row, caps in zip(rels, rows, caps_per_row)]
    where = f"(looked in {', '.join(map(str, listings)) or NO_ROOT})"
    hint = f"point --data-root (or VLBENCH_DATA) at a folder holding {folder}/ with the image files"
    info = {"origin": origin, "hf_id": src["id"], "hf_revision": src["revision"],
            "dropped_rows_without_captions": n_empty}
    return assemble_retrieval(spec.name, request.split, images, where, hint, (src["id"], src["revision"]), info,
                              request, partial_ok=spec.splits[request.split].partial_ok)


def probe(spec, data_root: str | None) -> str | None:
    """Cheap: a local copy or a cache folder exists (the network is not probed here)."""
    if local_copy(spec, data_root) is not None or any(d.is_dir() for d in _cache_dirs(spec.source["id"])):
        return None
    return f"no local copy or Hugging Face cache of {spec.source['id']} (needs network)"


FORMAT = Format(name="hf", tasks=(TaskKind.RETRIEVAL,), load=load, probe=probe,
                options={"hf_split": str, "split_column": str, "image_column": str, "caption_column": str,
                         "file_column": str, "dir_column": str, "images_folder": str})
