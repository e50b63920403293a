"""Tiny datasets in CLIP_benchmark's published webdataset layout, written the way its
``convert_dataset`` writes them: webdataset's ShardWriter over ``<split>/%d.tar``, keys
``s%07d``, the image under its format's extension, ``cls`` as an integer, ``txt`` as captions
one a line, ``npy`` as a 0/1 vector; ``nshards.txt``, ``classnames.txt``,
``zeroshot_classification_templates.txt`` (class name as ``{c}``) and ``dataset_type.txt``."""

from __future__ import annotations

import io
from pathlib import Path

from tests.imagefiles import jpeg_bytes

CLASSNAMES = ["cat", "dog", "fish"]
TEMPLATES = ["a photo of a {c}.", "a drawing of a {c}."]
CAPTIONS = [["a red square", "a square, red"], ["a green square"], ["a blue one", "blue", "the blue square"]]


def png_bytes(colour=(10, 200, 10), size: int = 8) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, "PNG")
    return buf.getvalue()


def webp_bytes(colour=(10, 10, 200), size: int = 8) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, "WEBP", lossless=True)
    return buf.getvalue()


IMAGES = [("jpg", lambda i: jpeg_bytes((20 * i % 255, 30, 30))), ("png", lambda i: png_bytes((30, 20 * i % 255, 30))),
          ("webp", lambda i: webp_bytes((30, 30, 20 * i % 255)))]


def image(i: int) -> tuple[str, bytes]:
    ext, make = IMAGES[i % len(IMAGES)]
    return ext, make(i)


def write(root: Path, kind: str, n: int = 7, per_shard: int = 3, split: str = "test", samples=None) -> Path:
    """``kind``: classification | retrieval | multilabel. ``samples`` (list of dicts without
    ``__key__``) replaces the generated ones."""
    import numpy as np
    import webdataset as wds

    (root / split).mkdir(parents=True, exist_ok=True)
    if samples is None:
        samples = []
        for i in range(n):
            ext, blob = image(i)
            if kind == "retrieval":
                target = {"txt": "\n".join(CAPTIONS[i % len(CAPTIONS)])}
            elif kind == "multilabel":
                vec = np.zeros(len(CLASSNAMES), dtype=np.int64)
                vec[i % len(CLASSNAMES)] = vec[(i + 1) % len(CLASSNAMES)] = 1
                target = {"npy": vec}
            else:
                target = {"cls": i % len(CLASSNAMES)}
            samples.append({ext: blob, **target})
    sink = wds.ShardWriter(str(root / split / "%d.tar"), maxcount=per_shard, verbose=0)
    for i, sample in enumerate(samples):
        sink.write({"__key__": f"s{i:07d}", **sample})
    nshards = sink.shard
    sink.close()
    (root / split / "nshards.txt").write_text(f"{nshards}\n")
    if kind != "classification":
        (root / "dataset_type.txt").write_text(f"{kind}\n")
    if kind != "retrieval":
        (root / "classnames.txt").write_text("".join(f"{c}\n" for c in CLASSNAMES))
        (root / "zeroshot_classification_templates.txt").write_text("".join(f"{t}\n" for t in TEMPLATES))
    return root
