"""Run one RunSpec (or a sweep of them) into the results store.

A run's key hashes everything that can change its numbers (model + weights, dataset
fingerprint, split, task, options), local weight files (shipped checkpoints, ``--weights
PATH``) and the split's images by content, so a re-trained checkpoint or a rewritten image
is not taken for the one already run. A record with that key already in the store is kept
and the run skipped unless forced, so a re-run sweep resumes where it stopped.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from pathlib import Path

from harness import distributed, faults, shard_plan, store
from harness.datasets import DATASETS, DatasetRequest
from harness.datasets.base import fingerprint
from harness.interfaces import LoadOptions, Precision
from harness.measure import Stage, default_workers
from harness.records import RecordError, ResultRecord
from harness.tasks import TASKS
from harness.tasks.encode import EncodeCache, EncodeOptions
from harness.tasks.rerank import DEFAULT_PAIR_BUDGET, DEFAULT_RERANK_K


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

    def keyed(self) -> dict:
        """The options that can change a result (paths to data do not; weights do).
        Rerank settings appear only when they apply, so dual-encoder keys stay put."""
        out = {"batch_size": self.batch_size, "device": self.device, "precision": self.precision.value,
               "seed": self.seed, "limit": self.limit, "weights": self.weights}
        if self.rerank_k is not None:
            out.update(rerank_k=self.rerank_k, prefilter=self.prefilter, pair_budget=self.pair_budget)
        if self.shots is not None:
            out["shots"] = self.shots
        if self.chunk_items is not None:  # batches never straddle a chunk, so it can change numbers
            out.update(chunk_items=self.chunk_items)
        return out


@dataclass(frozen=True)
class RunSpec:
    model: str
    dataset: str
    task: str
    split: str | None = None
    options: RunOptions = field(default_factory=RunOptions)


class RunStatus(str, Enum):
    DONE = "done"
    SKIPPED = "skipped"


@dataclass
class RunOutcome:
    status: RunStatus
    path: Path
    record: ResultRecord


def check_device(device: str) -> None:
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"--device {device!r}: use cpu or cuda[:N]")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: CUDA is not available on this machine")


def run_one(spec: RunSpec, results_root: Path, force: bool = False) -> RunOutcome:
    opts = spec.options
    meta = _resolve_model(spec.model)  # names first: a typo fails before torch is imported
    _prefetch_digests(meta, opts)  # the run key's weight digests hash while torch imports
    _prefetch_git_sha()
    dmeta, tmeta = DATASETS.get(spec.dataset), TASKS.get(spec.task)
    split = spec.split or dmeta.default_split
    opts = rerank_settings(meta, tmeta.name, opts)
    check_device(opts.device)
    precision = _precision_info(opts)  # refuses fp16 on CPU before any loading
    ctx, rank_device = distributed.from_env(opts.device)  # one process: (SINGLE, opts.device)
    ropts = replace(opts, device=rank_device)  # this rank's device; the key keeps the device asked for
    import torch

    started = time.perf_counter()
    distributed.set_stage("data_load")
    with Stage("data_load", ropts.device, warmup=0) as load_stage:
        data = shard_plan.rank0_first(lambda: _load_data(dmeta, tmeta, split, opts))
        load_stage.add_items(len(data.images))
    images = images_content(data, opts)
    run_key = _run_key(meta, dmeta, tmeta, split, data, opts, images)
    path = store.record_path(results_root, meta.name, dmeta.name, split, tmeta.name, run_key)
    if distributed.gather_objects(path.exists() and not force)[0]:  # rank 0 decides for all
        try:
            return RunOutcome(RunStatus.SKIPPED, path, store.read_record(path))
        except RecordError:
            pass  # an unreadable record is redone, not trusted
    if opts.shots is not None and tmeta.name != "linear_probe":
        raise ValueError(f"--shots applies to linear_probe, not {tmeta.name}")
    torch.manual_seed(opts.seed)
    distributed.set_stage("model_load")
    with Stage("model_load", ropts.device, warmup=0) as model_stage:
        model = meta.load(LoadOptions(device=ropts.device, precision=opts.precision, weights=opts.weights))
        extra = (_rerank_plan(meta, model, data, ropts) if tmeta.name == "retrieval"
                 else _task_extra(meta, tmeta.name, ropts))
    if opts.shots is not None:
        extra = {**extra, "shots": opts.shots}
    workers = default_workers(ropts.device) if opts.num_workers is None else opts.num_workers
    cache = encode_cache(ropts, meta, model, data, split)
    distributed.set_stage(tmeta.name)
    result = tmeta.evaluate(model, data, EncodeOptions(opts.batch_size, ropts.device, workers, cache=cache,
                                                       shard_gallery=opts.shard_gallery), **extra)
    timings = {"data_load": load_stage.timing(), "model_load": model_stage.timing(), **result.timings}
    timings, dist_info = shard_plan.merge_timings(timings)  # one process: as they are, None
    record = ResultRecord(
        model={"name": meta.name, "family": meta.family, "kind": meta.kind.value, "source": meta.source,
               "checkpoint": model.checkpoint.get("id"), "checkpoint_sha256": model.checkpoint.get("sha256"),
               "params": _params(model, meta), **_model_facts(model)},
        dataset={"name": dmeta.name, "split": split, "fingerprint": data.fingerprint, **images,
                 "images": len(data.images), **_dataset_counts(data), "info": _jsonable(data.info)},
        task=tmeta.name,
        options={**opts.keyed(), "num_workers": workers, **precision,
                 "pin_memory": opts.device.startswith("cuda"), "embedding_cache": cache.root is not None,
                 "oom_backoffs": sum(t.oom_backoffs for t in timings.values()),
                 **(extra["plan"].describe() if "plan" in extra else {}), **_scorer(meta, tmeta.name, extra),
                 **result.details, **_distributed_options(ctx, opts)},
        metrics=result.metrics,
        main_metric=result.main_metric,
        timings=timings,
        memory=_peak_memory(timings),
        environment={**_environment(ropts.device), **({"distributed": dist_info} if dist_info else {})},
        created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        runtime_s=time.perf_counter() - started,
        run_key=run_key,
    )
    return RunOutcome(RunStatus.DONE, _save(ctx, results_root, record, result.per_query), record)


def _load_data(dmeta, tmeta, split: str, opts: RunOptions):
    return dmeta.load(DatasetRequest(split=split, task=tmeta.kind, data_root=opts.data_root,
                                     cache_dir=opts.cache_dir, limit=opts.limit, seed=opts.seed, strict=opts.strict))


def _run_key(meta, dmeta, tmeta, split: str, data, opts: RunOptions, images: dict) -> str:
    return fingerprint(meta.name, meta.source, dmeta.name, split, data.fingerprint, tmeta.name, opts.keyed(),
                       *weights_content(meta, opts), images)


def existing_record(spec: RunSpec, results_root: Path) -> Path | None:
    """The readable record this spec would write, when the store has it (a sweep executor
    skips it before dispatch); loads the dataset (its fingerprint is part of the key)."""
    meta = _resolve_model(spec.model)
    dmeta, tmeta = DATASETS.get(spec.dataset), TASKS.get(spec.task)
    split = spec.split or dmeta.default_split
    opts = rerank_settings(meta, tmeta.name, spec.options)
    data = _load_data(dmeta, tmeta, split, opts)
    key = _run_key(meta, dmeta, tmeta, split, data, opts, images_content(data, opts))
    path = store.record_path(results_root, meta.name, dmeta.name, split, tmeta.name, key)
    try:
        return path if path.exists() and store.read_record(path) else None
    except RecordError:
        return None


def _save(ctx, results_root: Path, record: ResultRecord, per_query: dict) -> Path:
    """Rank 0 alone writes; the others wait for it, so a failed write fails every rank."""
    faults.maybe("run", ctx.rank)
    distributed.set_stage("writing the record")
    if ctx.is_main:
        path = store.save(results_root, record, per_query)
    else:
        path = store.record_path(results_root, record.model["name"], record.dataset["name"],
                                 record.dataset["split"], record.task, record.run_key)
    distributed.barrier()
    return path


def _distributed_options(ctx, opts: RunOptions) -> dict:
    out = {"world_size": ctx.world_size}
    if ctx.active:
        out.update(dist_backend=ctx.backend, shard_gallery=opts.shard_gallery)
    return out


def weights_identity(meta, weights: str | None) -> list | None:
    """``[[file name, sha256], ...]`` of the local files a model loads from (its shipped
    checkpoint, or ``--weights PATH``; ``ModelMeta.local_files``), read before loading, so a
    changed checkpoint changes the run key. None for weights resolved only at load (hub)."""
    from harness.models.weights import content_digest

    return [[Path(f).name, content_digest(f)] for f in _local_weight_files(meta, weights)] or None


def _local_weight_files(meta, weights: str | None) -> list[Path]:
    """The files a model's loader reads its weights from (``ModelMeta.local_files``, else
    ``--weights PATH`` itself, else none: hub weights)."""
    if meta.local_files is not None:
        return meta.local_files(weights)
    return [Path(weights)] if weights else []


def _prefetch_digests(meta, opts: RunOptions) -> None:
    """Start hashing the local weight files :func:`weights_identity` will ask for (same
    files, same digests; errors are left for that call to report)."""
    from harness.models.weights import prefetch_digest

    try:
        files = _local_weight_files(meta, opts.weights)
    except Exception:  # noqa: BLE001 - weights_identity raises it with its own message
        return
    for f in files:
        prefetch_digest(f)


def images_content(data, opts: RunOptions) -> dict:
    """The run key's image part: the split's images by content (``harness.digests``), so an
    image rewritten under its old name is a new run, not "skipped, already in the store"."""
    from harness.digests import images_digest

    out = {"images_digest": images_digest(data.images, opts.cache_dir)}
    train = getattr(data, "train", None)  # a linear probe is fitted on another split's images too
    if train is not None:
        out["train_images_digest"] = images_digest(train.images, opts.cache_dir)
    return out


def weights_content(meta, opts: RunOptions) -> list[dict]:
    """The run key's weights-content part: empty (the key of old) when nothing local is read."""
    content = {"weights": weights_identity(meta, opts.weights),
               "prefilter_weights": weights_identity(_resolve_model(opts.prefilter), None) if opts.prefilter else None}
    content = {k: v for k, v in content.items() if v is not None}
    return [content] if content else []


def rerank_settings(meta, task: str, opts: RunOptions) -> RunOptions:
    """Effective rerank options: a dual encoder has none; BLIP-like models (kind both) rerank
    their own ITC top-k unless ``rerank_k == 0``; cross-encoders need a positive k."""
    from harness.interfaces import ModelKind

    if task == "caption_selection" and meta.kind == ModelKind.BOTH:
        # BLIP's two rows: ITM on every pair (default) or ITC cosine (--rerank-k 0), no prefilter
        return replace(opts, rerank_k=0 if opts.rerank_k == 0 else None, prefilter=None)
    if task != "retrieval" or meta.kind == ModelKind.DUAL:
        if opts.prefilter and meta.kind == ModelKind.DUAL:
            raise ValueError(f"--prefilter applies to cross-encoders; {meta.name} is a dual encoder")
        return replace(opts, rerank_k=None, prefilter=None)
    k = DEFAULT_RERANK_K if opts.rerank_k is None else opts.rerank_k
    if k < 0 or (k == 0 and meta.kind == ModelKind.CROSS):
        raise ValueError(f"--rerank-k {k}: {meta.name} is a cross-encoder and needs k >= 1")
    if meta.kind == ModelKind.BOTH:
        return replace(opts, rerank_k=k, prefilter=opts.prefilter if k else None)
    return replace(opts, rerank_k=k, prefilter=opts.prefilter or meta.prefilter)


def _task_extra(meta, task: str, opts: RunOptions) -> dict:
    """Caption selection on a model that is both dual and cross (BLIP): ``use_itc`` for its ITC row."""
    return {"use_itc": opts.rerank_k == 0} if task == "caption_selection" and meta.kind.value == "both" else {}


def _scorer(meta, task: str, extra: dict) -> dict:
    """Caption selection records how pairs were scored: cosine, or the cross-encoder's score."""
    if task != "caption_selection":
        return {}
    dual = meta.kind.value == "dual" or extra.get("use_itc")
    return {"scorer": "cosine" if dual else "cross-encoder, every pair"}


def _rerank_plan(meta, model, data, opts: RunOptions) -> dict:
    """``{"plan": RerankPlan}`` for a reranked retrieval run, else ``{}``."""
    if not opts.rerank_k:
        return {}
    from harness.tasks.rerank import plan_for

    cache = None
    if opts.prefilter:
        pmeta = _resolve_model(opts.prefilter)
        prefilter = pmeta.load(LoadOptions(device=opts.device, precision=opts.precision))
        cache = encode_cache(opts, pmeta, prefilter, data, data.split)  # its own weights key its embeddings
    else:
        prefilter = model if meta.kind.value == "both" else None
    return {"plan": plan_for(len(data.images), len(data.captions), opts.rerank_k, prefilter,
                             opts.prefilter or (meta.name if prefilter is not None else None),
                             opts.pair_budget, cache)}


def _precision_info(opts: RunOptions) -> dict:
    from harness.models.common import precision_info

    return precision_info(opts.device, opts.precision)


def encode_cache(opts: RunOptions, meta, model, data, split: str) -> EncodeCache:
    """The identity that keys this run's cached embeddings: the weights (checkpoint sha256,
    else a digest of the loaded parameters), precision, device type and dataset. Batch size
    and the items themselves are added by the encode loops."""
    from harness.cache import cache_root, module_digest

    if not opts.use_cache:
        return EncodeCache(root=None, chunk_items=_chunk_items(opts))
    ckpt = getattr(model, "checkpoint", None) or {}
    weights = ckpt.get("sha256")
    if not weights:
        inner = getattr(model, "model", None)
        if inner is None or not hasattr(inner, "state_dict"):
            return EncodeCache(root=None, chunk_items=_chunk_items(opts))  # nothing identifies the weights: never risk a stale hit
        weights = "params:" + module_digest(inner)
    identity = {"model": meta.name, "source": meta.source, **_content_identity(ckpt), "weights": weights,
                "precision": opts.precision.value, "device_type": opts.device.split(":")[0],
                "dataset": data.name, "split": split, "dataset_fingerprint": data.fingerprint}
    return EncodeCache(root=str(cache_root(opts.cache_dir)), identity=identity, chunk_items=_chunk_items(opts),
                       digest_dir=opts.cache_dir)


def _content_identity(ckpt: dict) -> dict:
    """A checkpoint (and its components: a fusion model's towers) by content: a file's sha256
    names the weights wherever they lie (a checkout, an installed wheel), so its path is left
    out; the id stays only where nothing was hashed (a hub name, random init).

    >>> _content_identity({"id": "/a/w.pt", "sha256": "ab", "components": {"image": {"id": "x", "sha256": None}}})
    {'checkpoint': None, 'components': {'image': {'checkpoint': 'x'}}}
    """
    parts = ckpt.get("components")
    out = {"checkpoint": None if ckpt.get("sha256") else ckpt.get("id")}
    if parts:
        out["components"] = {k: {**_content_identity(v), **({"sha256": v["sha256"]} if v.get("sha256") else {})}
                             for k, v in sorted(parts.items())}
    return out


def _chunk_items(opts: RunOptions) -> int:
    from harness.cache import DEFAULT_CHUNK_ITEMS

    return opts.chunk_items or DEFAULT_CHUNK_ITEMS


def _resolve_model(name: str):
    from harness.models import resolve

    return resolve(name)


def _prefetch_git_sha() -> None:
    from harness.environment import prefetch_git_sha

    prefetch_git_sha()


def _environment(device: str) -> dict:
    from harness.environment import environment

    return environment(device)


def _params(model, meta) -> int | None:
    inner = getattr(model, "model", None)
    if inner is not None and hasattr(inner, "parameters"):
        return sum(p.numel() for p in inner.parameters())
    return meta.params


def _model_facts(model) -> dict:
    """What an adapter states about how its network computes (open_clip: ``activation``),
    for ``vlbench verify`` to hold against a reference's protocol."""
    act = getattr(model, "activation", None)
    return {"activation": act} if isinstance(act, str) else {}


def _dataset_counts(data) -> dict:
    if hasattr(data, "counts"):  # judgments (captions, pairs, rows), probe data (classes, train images)
        return data.counts()
    if hasattr(data, "captions"):
        return {"captions": len(data.captions)}
    if hasattr(data, "items"):  # caption selection
        return {"items": len(data.items), "groups": sum(it.is_group for it in data.items)}
    return {"classes": len(data.classnames), "templates": len(data.templates)}


def _peak_memory(timings: dict) -> dict:
    rss = [t.peak_rss_mb for t in timings.values() if t.peak_rss_mb is not None]
    dev = [t.peak_device_mem_mb for t in timings.values() if t.peak_device_mem_mb is not None]
    return {"peak_rss_mb": max(rss) if rss else None, "peak_device_mem_mb": max(dev) if dev else None}


def _jsonable(info: dict) -> dict:
    """Dataset info minus bulky per-item lists (scene descriptions live with the dataset)."""
    return {k: v for k, v in info.items() if not (isinstance(v, (list, dict)) and len(v) > 50)}


CROSS_TASKS = ("retrieval", "caption_selection")  # the tasks a cross-encoder can run


def expand(model: str, dataset: str, tasks: list[str] | None, split: str | None,
           options: RunOptions) -> list[RunSpec]:
    """One spec per task; with no task given, every task the dataset offers."""
    dmeta = DATASETS.get(dataset)
    kind = _resolve_model(model).kind.value
    if tasks:
        names = [TASKS.resolve(t) for t in tasks]
    else:  # every task the dataset offers that the model can do (cross-encoders: those marked for them)
        names = [n for n, t in TASKS.items() if t.kind in dmeta.tasks
                 and (kind != "cross" or n in CROSS_TASKS or t.cross_encoders)]
    specs = [RunSpec(model, dmeta.name, n, split, options) for n in names]
    for task in ("retrieval", "caption_selection"):
        if task in names and options.rerank_k is None and kind == "both":
            # BLIP-style models report "ITC only" and "ITC -> ITM" as separate rows (as the BLIP paper does)
            specs.append(RunSpec(model, dmeta.name, task, split, replace(options, rerank_k=0)))
    return specs


def suite_specs(suite, options: RunOptions) -> list[RunSpec]:
    """A suite's ``options`` (batch_size, precision, ...) override the command line's."""
    unknown = set(suite.options) - set(asdict(options))
    if unknown:
        raise ValueError(f"{suite.path}: unknown option(s) {sorted(unknown)}; allowed: {sorted(asdict(options))}")
    overrides = dict(suite.options)
    if "precision" in overrides:
        overrides["precision"] = Precision(overrides["precision"])
    shared = replace(options, **overrides)
    specs = []
    for e in suite.entries:
        specs.append(RunSpec(e.model, e.dataset, e.task, e.split,
                             replace(shared, limit=e.limit if e.limit is not None else shared.limit)))
    return specs
