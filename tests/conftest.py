from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the main checkout sits beside shared/; a helper's worktree (wt/<name>) one level deeper
FLICKR8K = next((p / "shared" / "data" / "flickr8k" for p in (ROOT.parent, ROOT.parent.parent)
                 if (p / "shared" / "data" / "flickr8k").is_dir()), ROOT.parent / "shared" / "data" / "flickr8k")


@pytest.fixture(scope="session")
def vlbench_cache(tmp_path_factory):
    """One generated-data cache for the whole session (generating a split takes ~1 s)."""
    return tmp_path_factory.mktemp("vlbench-cache")


@pytest.fixture(autouse=True)
def offline_env(monkeypatch, vlbench_cache, tmp_path):
    """Tests never reach a hub, whatever the machine's network. Generated data is shared by
    the session; embeddings are cached per test, so no test sees another's cache hits."""
    monkeypatch.setenv("VLBENCH_EMBEDDINGS", str(tmp_path / "embeddings"))
    monkeypatch.setenv("VLBENCH_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("VLBENCH_CACHE", str(vlbench_cache))
    monkeypatch.delenv("VLBENCH_RESULTS", raising=False)
    yield


def needs_flickr8k():
    return pytest.mark.skipif(not FLICKR8K.is_dir(), reason=f"Flickr8k development copy not found at {FLICKR8K}")


@pytest.fixture
def no_racy_window(monkeypatch):
    """Remember digests of files written just now (ctime cannot be set back to leave the
    2 s racy window; the window itself is tested on its own)."""
    from harness.results import identity

    monkeypatch.setattr(identity, "RACY_NS", -1)
