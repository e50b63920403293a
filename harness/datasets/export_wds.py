"""``vlbench data export-wds D --split S --out DIR``: any dataset vlbench reads, written in
CLIP_benchmark's webdataset layout (:mod:`harness.datasets.wds_read`), to shard a user's data
for a cluster or to read it back with ``--dataset wds:DIR``.

What is written, as CLIP_benchmark's ``convert_dataset`` does: samples keyed ``s%07d`` in
dataset order; shards of at most ``samples_per_shard`` samples (its default 10,000) and about
``max_shard_bytes``; ``nshards.txt``; ``classnames.txt`` and the templates with ``{c}``
(classification); ``dataset_type.txt``. Image bytes are copied unchanged when they are JPEG,
PNG or WebP (the layout's image types); any other file, and images held only as pixels
(CIFAR arrays), are written as lossless PNG and counted (``reencoded_png``). Captions are one
a line, in dataset order, so a split read back gives the same captions and ground truth.

Nothing half-written is left: the split is written into a hidden folder beside its target
and renamed into place when complete; an existing split is never overwritten, and root
files already there must hold the same text (another split of the same dataset).
"""

from __future__ import annotations

import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import ClassificationData, DatasetError, RetrievalData
from .wds_read import CLASSIFICATION, RETRIEVAL

KEEP = {b"\xff\xd8\xff": "jpg", b"\x89PNG\r\n\x1a\n": "png"}
TAR_MTIME = 0  # fixed member times: the same data exports to the same bytes


@dataclass(frozen=True)
class ExportOptions:
    samples_per_shard: int = 10_000
    max_shard_bytes: int = 1_000_000_000


def _kind(blob: bytes) -> str | None:
    for sig, ext in KEEP.items():
        if blob.startswith(sig):
            return ext
    return "webp" if blob[:4] == b"RIFF" and blob[8:12] == b"WEBP" else None


def _png(image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def image_reader(images):
    """index -> (bytes, extension, re-encoded?): the stored bytes when they are an image type
    of the layout, else a lossless PNG of the decoded pixels."""
    from .images import ArrayImages, HFImages, ImageSet
    from .wds_images import WdsImages

    if isinstance(images, WdsImages):
        stored = images.read_bytes
    elif type(images) is ImageSet:  # not a subclass: a crop set's boxes must be applied, so re-encoded
        def stored(index: int) -> bytes:
            try:
                return Path(images.paths[index]).read_bytes()
            except OSError as exc:
                raise DatasetError(f"{images.paths[index]}: cannot read ({exc.strerror or exc})") from None
    elif isinstance(images, HFImages):
        import datasets

        raw = images.table.cast_column(images.column, datasets.Image(decode=False))  # once, not per image

        def stored(index: int) -> bytes | None:
            cell = raw[images.rows[index]][images.column]
            return cell.get("bytes") if isinstance(cell, dict) else None
    elif isinstance(images, ArrayImages) or hasattr(images, "load"):
        stored = None
    else:
        raise DatasetError(f"cannot export images of type {type(images).__name__}")

    def read(index: int) -> tuple[bytes, str, bool]:
        blob = stored(index) if stored is not None else None
        ext = _kind(blob) if blob else None
        if ext is not None:
            return blob, ext, False
        return _png(images.load(index)), "png", True
    return read


def _samples(data: RetrievalData | ClassificationData):
    """(fields without the image, image index) per sample, in dataset order."""
    if isinstance(data, RetrievalData):
        per_image: list[list[str]] = [[] for _ in range(len(data.images))]
        for cap, img in zip(data.captions, data.caption_to_image):
            if "\n" in cap or "\r" in cap:
                raise DatasetError(f"{data.name}/{data.split}: caption of {data.images.key(img)} holds a line break "
                                   "(the layout stores one caption a line): {cap[:60]!r}")
            per_image[img].append(cap)
        for i, caps in enumerate(per_image):
            yield {"txt": "\n".join(caps).encode("utf-8")}, i
    else:
        for i, y in enumerate(data.labels):
            yield {"cls": str(int(y)).encode("ascii")}, i


def _check_caption_order(data: RetrievalData) -> None:
    """Read back, captions come image by image; the source's order must already be so, or
    per-caption results (t2i ranks) would be listed in another order."""
    if any(b < a for a, b in zip(data.caption_to_image, data.caption_to_image[1:])):
        raise DatasetError(f"{data.name}/{data.split}: captions are not grouped image by image; "
                           "the layout cannot keep their order")


def _root_file(out: Path, name: str, text: str) -> None:
    path = out / name
    if path.exists():
        if path.read_text(encoding="utf-8") != text:
            raise DatasetError(f"{path} exists with other content (another dataset?); export into a new folder")
        return
    tmp = path.with_name(f".{name}.{os.getpid()}.part")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _write_shards(data, folder: Path, opts: ExportOptions) -> dict[str, Any]:
    from webdataset import TarWriter

    read = image_reader(data.images)
    shard, writer, handle, count, size = -1, None, None, 0, 0
    stats = {"samples": 0, "reencoded_png": 0, "bytes": 0}

    def close():
        if writer is not None:
            writer.close()
            handle.close()

    try:
        for index, (fields, img) in enumerate(_samples(data)):
            if writer is None or count >= opts.samples_per_shard or size >= opts.max_shard_bytes:
                close()
                shard, count, size = shard + 1, 0, 0
                handle = open(folder / f"{shard}.tar", "wb")
                writer = TarWriter(handle, encoder=False, mtime=TAR_MTIME)
            blob, ext, reencoded = read(img)
            size += writer.write({"__key__": f"s{index:07d}", ext: blob, **fields})
            count += 1
            stats["samples"] += 1
            stats["reencoded_png"] += reencoded
            stats["bytes"] += len(blob)
    finally:
        close()
    (folder / "nshards.txt").write_text(f"{shard + 1}\n", encoding="ascii")
    return {**stats, "shards": shard + 1}


def export(data: RetrievalData | ClassificationData, out: str | os.PathLike, split: str,
           opts: ExportOptions = ExportOptions()) -> dict[str, Any]:
    """Write ``data`` as ``<out>/<split>/`` (+ root files); returns what was written."""
    if opts.samples_per_shard < 1 or opts.max_shard_bytes < 1:
        raise DatasetError("--samples-per-shard and --max-shard-bytes must be positive")
    if len(data.images) == 0:
        raise DatasetError(f"{data.name}/{data.split}: nothing to export (no images)")
    out = Path(out)
    target = out / split
    if target.exists():
        raise DatasetError(f"{target} already exists; export into a new folder (nothing was written)")
    kind = RETRIEVAL if isinstance(data, RetrievalData) else CLASSIFICATION
    if kind == RETRIEVAL:
        _check_caption_order(data)
    out.mkdir(parents=True, exist_ok=True)
    partial = out / f".{split}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        stats = _write_shards(data, partial, opts)
        _root_file(out, "dataset_type.txt", kind + "\n")
        if kind == CLASSIFICATION:
            _root_file(out, "classnames.txt", "".join(f"{c}\n" for c in data.classnames))
            _root_file(out, "zeroshot_classification_templates.txt",
                       "".join(f"{t.replace('{}', '{c}')}\n" for t in data.templates))
        os.replace(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return {"dataset": data.name, "split": data.split, "type": kind, "out": str(target), **stats}
