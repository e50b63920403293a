import json
import os
import sys
from pathlib import Path

import pytest


def pytest_configure(config):
    """Under pytest-xdist (``make test`` runs ``-n 2``) each worker's torch, and the CLI
    subprocesses it starts, use one thread: two workers of two threads each on two cores
    spend their time switching, not computing."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")

ROOT = Path(__file__).resolve().parents[1]
# the main checkout sits beside shared/; a helper's worktree (wt/<name>) one level deeper
FLICKR8K = next((p / "shared" / "data" / "flickr8k" for p in (ROOT.parent, ROOT.parent.parent)
                 if (p / "shared" / "data" / "flickr8k").is_dir()), ROOT.parent / "shared" / "data" / "flickr8k")


@pytest.fixture(scope="session")
def vlbench_cache(tmp_path_factory):
    """One generated-data cache for the whole session (generating a split takes ~1 s)."""
    return tmp_path_factory.mktemp("vlbench-cache")


def _shared_env(cache) -> tuple[tuple[str, str], ...]:
    """The variables every fixture and test runs under: offline, the session's generated data."""
    return (("VLBENCH_CACHE", str(cache)), ("VLBENCH_OFFLINE", "1"), ("HF_HUB_OFFLINE", "1"))


@pytest.fixture(scope="session", autouse=True)
def session_env(vlbench_cache):
    """The same for module- and session-scoped fixtures, which are set up before the per-test
    env below: they loaded synthetic data into the user's cache, where two xdist workers'
    first loads of one split raced (one deleting the images the other was writing)."""
    mp = pytest.MonkeyPatch()
    for var, value in _shared_env(vlbench_cache):
        mp.setenv(var, value)
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def offline_env(monkeypatch, vlbench_cache, tmp_path):
    """Tests never reach a hub, whatever the machine's network. Generated data is shared by
    the session; embeddings are cached per test, so no test sees another's cache hits."""
    monkeypatch.setenv("VLBENCH_EMBEDDINGS", str(tmp_path / "embeddings"))
    for var, value in _shared_env(vlbench_cache):
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("VLBENCH_RESULTS", raising=False)
    yield
    memo = sys.modules.get("harness.core.memo")
    if memo is not None:
        memo.clear_all()  # memoised tower features are per test, as embeddings are


RECORD_KEYS = {"run_key", "schema_version", "main_metric", "metrics"}


class NonFiniteJSON(ValueError):
    """A bare NaN / Infinity / -Infinity: Python's json writes and reads them, strict parsers do not."""


def _refuse_constant(name: str):
    raise NonFiniteJSON(f"{name} is not JSON (a strict parser rejects it)")


def strict_load(path: Path):
    """``path`` parsed as strict JSON: bare NaN / Infinity / -Infinity fail, as in JavaScript."""
    try:
        return json.loads(path.read_text(encoding="utf-8"), parse_constant=_refuse_constant)
    except NonFiniteJSON as exc:
        raise NonFiniteJSON(f"{path}: {exc}") from None


def _is_record(path: Path) -> bool:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(raw, dict) and RECORD_KEYS <= raw.keys()


@pytest.fixture(autouse=True)
def records_are_strict_json(monkeypatch, tmp_path):
    """Issue 22: no record the test suite writes holds NaN or Infinity. Every ``store.save``
    (the one writer of records and their sidecars) is parsed back strictly at once; after the
    test, every record file under its tmp_path (written by a CLI subprocess too) is as well."""
    from harness.results import store

    real = store.save

    def checked(root, record, per_query=None):
        path = real(root, record, per_query)
        for written in (path, store.queries_path(path)):
            if written.exists():
                strict_load(written)
        return path

    monkeypatch.setattr(store, "save", checked)
    yield
    for path in tmp_path.rglob("*.json"):
        if path.is_file() and (path.name.endswith(store.QUERIES_SUFFIX) or _is_record(path)):
            try:
                strict_load(path)
            except NonFiniteJSON:
                raise
            except ValueError:  # a file a test broke on purpose (truncated, not JSON): not a written record
                pass


def needs_flickr8k():
    return pytest.mark.skipif(not FLICKR8K.is_dir(), reason=f"Flickr8k development copy not found at {FLICKR8K}")


@pytest.fixture
def no_racy_window(monkeypatch):
    """Remember digests of files written just now (ctime cannot be set back to leave the
    2 s racy window; the window itself is tested on its own)."""
    from harness.results import identity

    monkeypatch.setattr(identity, "RACY_NS", -1)
