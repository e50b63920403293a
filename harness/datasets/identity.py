"""The content identity of a split's images: what a run key and the embedding cache name images
by, so an image rewritten under its old name is a new run. Files are hashed through the one
file-identity cache (``harness.results.identity``); images held in memory by their pixels; hub
rows by their pinned source."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

from harness.results.identity import ALGORITHM, file_digests

from .errors import DatasetError
from .images import ArrayImages, HFImages, ImageSet


def images_digest(images, cache_dir: str | os.PathLike | None = None) -> str:
    """One digest of a split's images, in order: of each file's content (image files), of the
    pixels (images held in memory), or of the pinned source rows (hub datasets, whose revision
    the dataset fingerprint already names). Raises DatasetError naming a file that vanished."""
    from .compositional import CroppedImages
    from .wds_images import WdsImages
    from .winoground import HFCells

    h = hashlib.sha256(f"{ALGORITHM}\n".encode())
    if isinstance(images, (ImageSet, CroppedImages)):  # files (ARO's regions: and each one's box)
        try:
            parts: Sequence[str] = file_digests(images.paths, cache_dir)
        except OSError as exc:
            raise DatasetError(f"{exc.filename}: cannot read image file to hash its content "
                               f"({exc.strerror or exc})") from None
        h.update("\n".join(parts).encode())
        if isinstance(images, CroppedImages):
            h.update("\n".join(map(str, images.boxes)).encode())
    elif isinstance(images, WdsImages):  # tar members: the sha256 of their bytes, as for files
        h.update("\n".join(images.digests).encode())
    elif isinstance(images, ArrayImages):
        import numpy as np

        h.update(np.ascontiguousarray(images.pixels).tobytes())
        h.update("\0".join(images.keys).encode("utf-8", "replace"))
    elif isinstance(images, HFImages):
        h.update(f"{images.origin}\n{images.rows}".encode())
    elif isinstance(images, HFCells):  # Winoground's image cells of a pinned hub table
        h.update(f"{images.origin}\n{images.cells}".encode())
    else:
        raise TypeError(f"images_digest: no content identity for {type(images).__name__}")
    return h.hexdigest()[:32]
