"""pytest-benchmark suite of the hot paths (``make perf``); not part of ``make test``.

Data is generated into a temporary cache per session; nothing reaches a network."""

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def perf_env(tmp_path_factory):
    old = {k: os.environ.get(k) for k in ("VLBENCH_CACHE", "VLBENCH_EMBEDDINGS", "VLBENCH_OFFLINE", "HF_HUB_OFFLINE")}
    cache = tmp_path_factory.mktemp("perf-cache")
    os.environ.update(VLBENCH_CACHE=str(cache), VLBENCH_EMBEDDINGS=str(cache / "embeddings"),
                      VLBENCH_OFFLINE="1", HF_HUB_OFFLINE="1")
    yield cache
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
