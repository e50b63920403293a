"""Images stored as members of webdataset tar shards, read back by byte offset.

The shards are listed once at load (:mod:`harness.datasets.wds`): each image member's data
offset and size in its (local or cached) shard file, and the sha256 of its bytes. Loading an
image is then one seek and one read, from any process (DataLoader workers included: the set
pickles as plain lists). The content digest of an image is the sha256 of its bytes, exactly
what :func:`harness.results.identity.file_digests` gives for the same bytes in a file, so a split
exported to shards and read back has the same image identity as the original files.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import DatasetError
from .images import load_rgb


@dataclass(frozen=True)
class Member:
    """Where one image's bytes are: shard index (into ``WdsImages.shards``), offset, size."""

    shard: int
    offset: int
    size: int


@dataclass
class WdsImages:
    shards: list[str]          # shard files on disk (local copy or the download cache)
    members: list[Member]
    names: list[str]           # "<split>/<n>.tar:<key>.<ext>": the sample's identity, for keys and errors
    digests: list[str]         # sha256 hex of each image's bytes

    @property
    def paths(self) -> list[Path]:  # no files of their own: callers that need paths use key()
        return [Path(n) for n in self.names]

    def __len__(self) -> int:
        return len(self.members)

    def read_bytes(self, index: int) -> bytes:
        m = self.members[index]
        try:
            with open(self.shards[m.shard], "rb") as f:
                f.seek(m.offset)
                blob = f.read(m.size)
        except OSError as exc:
            raise DatasetError(f"{self.names[index]}: cannot read the shard ({exc.strerror or exc})") from None
        if len(blob) != m.size:
            raise DatasetError(f"{self.names[index]}: the shard {self.shards[m.shard]} changed or was cut short "
                               "since it was listed; load the dataset again")
        return blob

    def load(self, index: int):
        return load_rgb(io.BytesIO(self.read_bytes(index)), label=self.names[index])

    def key(self, index: int) -> str:
        return self.names[index]

    def extension(self, index: int) -> str:
        return self.names[index].rsplit(".", 1)[-1]

    def subset(self, keep: Sequence[int]) -> WdsImages:
        return WdsImages(self.shards, [self.members[i] for i in keep], [self.names[i] for i in keep],
                         [self.digests[i] for i in keep])
