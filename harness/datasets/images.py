"""Images of a split: lazily opened files, in-memory arrays (CIFAR), Hugging Face rows.

Where bad image files are caught (the policy every loader shares):

* **At load** (cheap, no decoding): :func:`file_problem` reads each file's first bytes and
  last 4 KiB. It catches empty files, files that are not images and truncated JPEG/PNG
  (no end-of-image marker / no IEND chunk). :func:`harness.datasets.assemble` then treats
  such a file like a missing one (fails an evaluation split, dropped and counted otherwise).
* **At encoding**: a file that passes that check but cannot be decoded raises
  :class:`ImageDecodeError` naming the file; the run fails, nothing is dropped silently.
* **Huge images**: Pillow refuses files over twice ``PIL.Image.MAX_IMAGE_PIXELS`` (89.5M
  pixels by default) as possible decompression bombs; the error names the file, and
  ``VLBENCH_MAX_IMAGE_PIXELS`` (a pixel count, or ``none``) raises the limit.
* **Cut-short JPEGs** that still end with an end marker decode with grey fill; a warning
  names the file (:func:`_looks_cut_short`).
* **Modes**: greyscale, palette, CMYK and 16-bit images are converted to RGB; transparent
  images (RGBA, LA, palette with transparency) are composited on white, not on black.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DatasetError

TAIL_BYTES = 4096
_SIGNATURES = {b"\xff\xd8\xff": "jpeg", b"\x89PNG\r\n\x1a\n": "png", b"GIF8": "gif", b"BM": "bmp",
               b"II*\x00": "tiff", b"MM\x00*": "tiff"}


class ImageDecodeError(DatasetError):
    """An image file cannot be decoded; the message names the file."""


def file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a usable image file (cheap: two small reads), or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
            if not head:
                return "empty file"
            kind = next((k for sig, k in _SIGNATURES.items() if head.startswith(sig)), None)
            if kind is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
                kind = "webp"
            if kind is None:
                return "not an image file (unknown format signature)"
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - TAIL_BYTES))
            tail = f.read()
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    # entropy-coded JPEG data never holds FF D9 (0xFF is stuffed), so it marks the real end;
    # some cameras append bytes after it, hence a tail window rather than the last 2 bytes
    if kind == "jpeg" and b"\xff\xd9" not in tail:
        return "truncated JPEG (no end-of-image marker)"
    if kind == "png" and b"IEND" not in tail:
        return "truncated PNG (no IEND chunk)"
    return None


def to_rgb(im):
    """RGB copy of a PIL image: transparency composited on white, 16-bit scaled to 8."""
    from PIL import Image

    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        im = im.point(lambda v: v / 256).convert("L")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


PIXELS_ENV = "VLBENCH_MAX_IMAGE_PIXELS"


def pixel_limit() -> int | None:
    """Pillow's decompression-bomb limit, from ``$VLBENCH_MAX_IMAGE_PIXELS`` when set (a
    whole number of pixels, or ``none`` to lift it) else Pillow's own (89,478,485 pixels,
    ~9459x9459). Pillow warns above the limit and refuses above twice it."""
    from PIL import Image

    raw = os.environ.get(PIXELS_ENV, "").strip()
    if not raw:
        return Image.MAX_IMAGE_PIXELS
    if raw.lower() in ("none", "off", "0"):
        return None
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        raise DatasetError(f"{PIXELS_ENV}={raw!r}: give a whole number of pixels, or 'none' for no limit") from None
    if value < 0:
        raise DatasetError(f"{PIXELS_ENV}={raw!r}: give a positive number of pixels, or 'none' for no limit")
    return value


def _looks_cut_short(path, im) -> bool:
    """A baseline JPEG whose data ends early (a cut file with an end marker appended) still
    decodes: libjpeg fills every block it did not get with mid-grey and Pillow does not pass
    its "premature end of data" warning on. The fill shows as a bottom MCU row of exactly
    128 in every channel, which camera JPEG noise makes all but impossible in a real photo."""
    import numpy as np

    if im.format != "JPEG" or im.mode not in ("RGB", "L", "YCbCr"):
        return False
    rows = np.asarray(im)[-8:]
    return rows.size > 0 and bool((rows == 128).all())


def load_rgb(path, label: str | None = None):
    """Decode ``path`` (a file, or a binary file object named by ``label``) fully as RGB; any
    failure is an :class:`ImageDecodeError` naming it."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = pixel_limit()  # per call: DataLoader workers read the environment too
    name = path if label is None else label
    try:
        with Image.open(path) as im:
            im.load()
            if _looks_cut_short(path, im):
                warnings.warn(f"{name}: JPEG data ends early (the bottom of the image is libjpeg's grey fill); "
                              "the file is probably truncated: replace it", stacklevel=2)
            return to_rgb(im)
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"{name}: image too large to decode safely ({exc.args[0].split('.')[0]})",
                               f"if the file is trusted, raise the limit: {PIXELS_ENV}=<pixels> "
                               f"(or 'none'); Pillow refuses above twice it") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"{name}: cannot decode image ({exc})",
                               "check the split with `vlbench data describe`, or replace the file") from None


@dataclass
class ImageSet:
    """Image files, opened only when an item is asked for."""

    paths: list[Path]

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int):
        return load_rgb(self.paths[index])

    def key(self, index: int) -> str:
        return self.paths[index].name

    def subset(self, keep: Sequence[int]) -> ImageSet:
        return ImageSet([self.paths[i] for i in keep])


@dataclass
class ArrayImages:
    """Images held in memory as a (N, H, W, 3) uint8 array (CIFAR); keys name the source."""

    pixels: Any           # numpy array
    keys: list[str]

    @property
    def paths(self) -> list[Path]:  # no files: callers that need paths must use key()
        return [Path(k) for k in self.keys]

    def __len__(self) -> int:
        return len(self.keys)

    def load(self, index: int):
        from PIL import Image

        return Image.fromarray(self.pixels[index])  # (H, W, 3) uint8 -> RGB

    def key(self, index: int) -> str:
        return self.keys[index]

    def subset(self, keep: Sequence[int]) -> ArrayImages:
        return ArrayImages(self.pixels[list(keep)], [self.keys[i] for i in keep])


@dataclass
class HFImages:
    """Rows of a Hugging Face ``datasets.Dataset`` whose ``column`` holds a PIL image."""

    table: Any            # datasets.Dataset (memory-mapped Arrow; pickles cheaply to workers)
    column: str
    rows: list[int]
    origin: str           # "hf://<id>@<revision>/<split>" for keys and error messages

    @property
    def paths(self) -> list[Path]:
        return [Path(self.key(i)) for i in range(len(self))]

    def __len__(self) -> int:
        return len(self.rows)

    def load(self, index: int):
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = pixel_limit()
        try:
            return to_rgb(self.table[self.rows[index]][self.column])
        except Image.DecompressionBombError as exc:
            raise ImageDecodeError(f"{self.key(index)}: image too large to decode safely ({exc.args[0].split('.')[0]})",
                                   f"if the data is trusted, raise the limit: {PIXELS_ENV}=<pixels> (or 'none')") from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise ImageDecodeError(f"{self.key(index)}: cannot decode image ({exc})") from None

    def key(self, index: int) -> str:
        return f"{self.origin}#{self.rows[index]}"

    def subset(self, keep: Sequence[int]) -> HFImages:
        return HFImages(self.table, self.column, [self.rows[i] for i in keep], self.origin)
