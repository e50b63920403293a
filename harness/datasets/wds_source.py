"""Where a webdataset folder is: a local folder, or an ``http(s)://`` / ``hf://`` location
whose files are downloaded once into the cache folder and read from there afterwards.

``hf://OWNER/REPO[@REVISION]`` (also ``hf://datasets/OWNER/REPO``) names a Hugging Face
dataset repository, e.g. ``hf://clip-benchmark/wds_imagenet1k``; files are fetched from its
``resolve/REVISION/`` URLs (git-LFS shards and plain text files alike), as CLIP_benchmark does.
A remote file is fetched whole into ``$VLBENCH_CACHE/wds/<hash of the location>/<path>``
(atomically: a download cut off leaves nothing behind) and never fetched again; a revision
such as ``main`` is not a pin, so remove that folder to pick up a changed upstream. Offline,
a file that is not in the cache is one line naming it and what to do.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from .errors import DatasetError, DatasetNotFound

HF_URL = "https://huggingface.co/datasets/{repo}/resolve/{revision}"
TIMEOUT_S = 60
_CHUNK = 1 << 20


def cache_root(cache_dir: str | None = None) -> Path:
    """``<cache_dir>/wds``, else ``$VLBENCH_CACHE/wds``, else ``~/.cache/vlbench/wds``."""
    base = cache_dir or os.environ.get("VLBENCH_CACHE") or "~/.cache/vlbench"
    return Path(base).expanduser() / "wds"


def hf_base(location: str) -> str:
    """The download URL prefix of an ``hf://`` location.

    >>> hf_base("hf://clip-benchmark/wds_vtab-cifar10@abc1")
    'https://huggingface.co/datasets/clip-benchmark/wds_vtab-cifar10/resolve/abc1'
    >>> hf_base("hf://datasets/clip-benchmark/wds_flickr30k")
    'https://huggingface.co/datasets/clip-benchmark/wds_flickr30k/resolve/main'
    """
    rest = location[len("hf://"):].strip("/")
    if rest.startswith("datasets/"):
        rest = rest[len("datasets/"):]
    repo, _, revision = rest.partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise DatasetError(f"{location}: an hf:// location is hf://OWNER/REPO[@REVISION]")
    return HF_URL.format(repo=repo, revision=revision or "main")


def is_remote(location: str) -> bool:
    return location.startswith(("http://", "https://", "hf://"))


@dataclass(frozen=True)
class Location:
    """A webdataset root. ``fetch(rel)`` gives a local path of the file ``rel`` (``test/0.tar``)."""

    name: str                 # as the user gave it (a folder, a URL, hf://...)
    local: Path | None        # the folder itself, for a local root
    base_url: str | None = None
    cache: Path | None = None  # download folder of a remote root

    @classmethod
    def of(cls, location: str, cache_dir: str | None = None) -> Location:
        if not is_remote(location):
            return cls(location, Path(location).expanduser().resolve())
        url = hf_base(location) if location.startswith("hf://") else location.rstrip("/")
        digest = hashlib.sha256(url.encode()).hexdigest()[:24]
        return cls(location, None, url, cache_root(cache_dir) / digest)

    def where(self, rel: str) -> str:
        return str(self.local / rel) if self.local is not None else f"{self.base_url}/{rel}"

    def has(self, rel: str) -> bool:
        """Cheap: the file is on disk (a local root, or already in the cache)."""
        return (self.local / rel).is_file() if self.local is not None else (self.cache / rel).is_file()

    def fetch(self, rel: str, optional: bool = False) -> Path | None:
        """Local path of ``rel``; None for an absent ``optional`` file; else a DatasetError."""
        if self.local is not None:
            path = self.local / rel
            if path.is_file():
                return path
            if optional:
                return None
            raise DatasetNotFound(f"{path} not found", "a webdataset folder holds {split}/nshards.txt and "
                                  "{split}/0.tar ... (CLIP_benchmark's layout)")
        path = self.cache / rel
        if path.is_file():
            return path
        if optional and absent_marker(path).is_file():  # fetched before: the location has no such file
            return None
        return _download(f"{self.base_url}/{rel}", path, optional, self.name)


def absent_marker(path: Path) -> Path:
    """Left in the cache when an optional file (dataset_type.txt ...) answered 404, so that an
    offline run knows it is absent rather than not yet fetched."""
    return path.with_name(f"{path.name}.absent")


def _reachable(url: str) -> bool:
    from harness.core.network import host_reachable

    parsed = urlparse(url)
    return host_reachable(parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80))


def _download(url: str, dest: Path, optional: bool, name: str) -> Path | None:
    import urllib.error
    import urllib.request

    if not _reachable(url):
        raise DatasetError(f"{url}: not in the download cache ({dest}) and {urlparse(url).hostname} cannot be "
                           "reached", f"fetch {name} where there is network (the same VLBENCH_CACHE), or point "
                           "--dataset wds:DIR at a local copy")
    headers = {}
    token = os.environ.get("HF_TOKEN")
    if token and urlparse(url).hostname == "huggingface.co":
        headers["Authorization"] = f"Bearer {token}"
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S) as resp, \
                open(tmp, "wb") as out:
            while chunk := resp.read(_CHUNK):
                out.write(chunk)
        os.replace(tmp, dest)
    except urllib.error.HTTPError as exc:
        if exc.code == 404 and optional:
            absent_marker(dest).touch()
            return None
        raise DatasetError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DatasetError(f"{url}: download failed ({getattr(exc, 'reason', None) or exc})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest
