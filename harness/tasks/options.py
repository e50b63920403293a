"""How a run is asked to run: the options every task shares (batch size, device, precision,
...), the few that belong to one task family (rerank, shots), and ``task_options`` for the
options a task declares itself (``--task-option KEY=VALUE``, a suite's ``task_options``).
Below the tasks, so a task can read and normalise them; the runner only carries them."""

from __future__ import annotations

from dataclasses import dataclass

from harness.core.interfaces import Precision

DEFAULT_PAIR_BUDGET = 1_000_000  # cross-encoders with no prefilter: score every pair up to this many


@dataclass(frozen=True)
class RunOptions:
    batch_size: int = 64
    device: str = "cpu"
    precision: Precision = Precision.FP32
    seed: int = 0
    limit: int | None = None
    num_workers: int | None = None  # None: chosen from the cores available (recorded)
    weights: str | None = None
    data_root: str | None = None
    cache_dir: str | None = None  # generated data and the embedding cache (default $VLBENCH_CACHE)
    use_cache: bool = True        # embedding cache; --no-cache turns it off (results are the same)
    rerank_k: int | None = None     # cross-encoders: candidates per query (None: 128; 0: BLIP ITC only)
    prefilter: str | None = None    # cross-encoders: the dual encoder to rerank (None: the model's own)
    pair_budget: int = DEFAULT_PAIR_BUDGET  # all pairs scored when images x captions fit, no prefilter
    strict: bool = False  # skipped data fails the run (recorded as dataset.info.strict)
    shots: int | None = None  # linear_probe: K seeded training images per class (None: all of train)
    chunk_items: int | None = None  # embedding-cache chunk = unit of work of a sharded run (None: 2048)
    shard_gallery: bool = False     # sharded run: each rank scores a slice of the gallery (same numbers)
    task_options: tuple[tuple[str, str], ...] = ()  # a task's own options, sorted (key, value) pairs
    # a model's own options (--model-option; ModelMeta.model_options), sorted pairs. Not in keyed():
    # the run key holds what they make the loader build (ModelMeta.plan), see runner.model_plan
    model_options: tuple[tuple[str, str], ...] = ()

    def keyed(self) -> dict:
        """The options that can change a result (paths to data do not; weights do).
        Task-family options appear only when they apply, so other runs' keys stay put."""
        out = {"batch_size": self.batch_size, "device": self.device, "precision": self.precision.value,
               "seed": self.seed, "limit": self.limit, "weights": self.weights}
        if self.rerank_k is not None:
            out.update(rerank_k=self.rerank_k, prefilter=self.prefilter, pair_budget=self.pair_budget)
        if self.shots is not None:
            out["shots"] = self.shots
        if self.chunk_items is not None:  # batches never straddle a chunk, so it can change numbers
            out.update(chunk_items=self.chunk_items)
        if self.task_options:
            out["task_options"] = dict(self.task_options)
        return out

    def task_option(self, key: str, default: str | None = None) -> str | None:
        return dict(self.task_options).get(key, default)


def parse_task_options(pairs: list[str] | dict | None) -> tuple[tuple[str, str], ...]:
    """``["head=concat", ...]`` (the command line) or ``{"head": "concat"}`` (a suite) -> sorted pairs.

    >>> parse_task_options(["head=concat", "beams=3"])
    (('beams', '3'), ('head', 'concat'))
    """
    from harness.core.errors import OptionError

    if not pairs:
        return ()
    items = pairs.items() if isinstance(pairs, dict) else []
    if not isinstance(pairs, dict):
        for p in pairs:
            key, eq, value = str(p).partition("=")
            if not eq or not key.strip():
                raise OptionError(f"--task-option {p!r}: expected KEY=VALUE")
            items.append((key.strip(), value.strip()))
    out = dict((str(k), str(v)) for k, v in items)
    return tuple(sorted(out.items()))
