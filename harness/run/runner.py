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
from typing import Any

from harness.core import faults
from harness.core.errors import OptionError
from harness.core.interfaces import LoadOptions, Precision, model_facts
from harness.core.measure import Stage, default_workers
from harness.core.model_options import check_model_options, parse_model_options
from harness.datasets import DatasetRequest, resolve_dataset
from harness.datasets.base import fingerprint
from harness.parallel import distributed, shard_plan
from harness.results import finite, store
from harness.results.records import RecordError, ResultRecord
from harness.tasks import TASKS
from harness.tasks.base import Task, TaskContext
from harness.tasks.encode import EncodeOptions, encode_cache
from harness.tasks.options import RunOptions, parse_task_options

__all__ = ["RunOptions", "RunSpec", "RunStatus", "RunOutcome", "run_one", "existing_record", "expand", "suite_specs"]


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

    def summary(self) -> str:
        """One terminal line: model, dataset/split, task, main metric, time (or skipped), path."""
        rec = self.record
        main = rec.metrics.get(rec.main_metric)
        shown = f"{main:7.2f}" if isinstance(main, (int, float)) else "    n/a"
        where = f"{rec.dataset['name']}/{rec.dataset['split']}"
        verb = "skipped, already in the store" if self.status is RunStatus.SKIPPED else f"{rec.runtime_s:.1f}s"
        name = rec.model["name"] + (f" +rerank k={rec.options['rerank_k']}" if rec.options.get("rerank_k") else "")
        return f"{name:<22} {where:<16} {rec.task:<9} {rec.main_metric}={shown}  ({verb}) {self.path}"


@dataclass(frozen=True)
class Resolved:
    """A spec with every name resolved once: model, dataset and task entries, the split, and
    the options as the task reads them for this model."""

    meta: Any
    dmeta: Any
    task: Task
    split: str
    options: RunOptions

    @classmethod
    def of(cls, spec: RunSpec) -> Resolved:
        meta = _resolve_model(spec.model)  # names first: a typo fails before torch is imported
        dmeta, task = resolve_dataset(spec.dataset), TASKS.get(spec.task)
        task.check_model(meta)
        check_model_options(meta, spec.options.model_options)
        return cls(meta, dmeta, task, spec.split or dmeta.default_split, task.settings(meta, spec.options))

    def load_data(self):
        o = self.options
        return self.dmeta.load(DatasetRequest(split=self.split, task=self.task.view, data_root=o.data_root,
                                              cache_dir=o.cache_dir, limit=o.limit, seed=o.seed, strict=o.strict,
                                              images=self.meta.reads_images))

    def load_options(self, device: str) -> LoadOptions:
        o = self.options
        return LoadOptions(device=device, precision=o.precision, weights=o.weights, model_options=o.model_options)

    def run_key(self, data, images: dict) -> str:
        revision = (("task_revision", self.task.revision),) if self.task.revision else ()
        return fingerprint(self.meta.name, self.meta.source, self.dmeta.name, self.split, data.fingerprint,
                           self.task.name, *revision, self.options.keyed(), *weights_content(self.meta, self.options, self.task),
                           *model_plan(self.meta, self.load_options(self.options.device),
                                       self.task.auxiliary_models(self.options)), images)

    def record_path(self, results_root: Path, key: str) -> Path:
        return store.record_path(results_root, self.meta.name, self.dmeta.name, self.split, self.task.name, key)


def run_one(spec: RunSpec, results_root: Path, force: bool = False) -> RunOutcome:
    """resolve -> load data -> key -> skip if stored -> load model -> task prepares and
    evaluates -> record -> save. Everything task-specific is asked of the task."""
    run = Resolved.of(spec)
    opts, meta, task = run.options, run.meta, run.task
    _prefetch_digests(meta, opts)  # the run key's weight digests hash while torch imports
    _prefetch_git_sha()
    check_device(opts.device)
    precision = _precision_info(opts)  # refuses fp16 on CPU before any loading
    ctx, rank_device = distributed.from_env(opts.device)  # one process: (SINGLE, opts.device)
    ropts = replace(opts, device=rank_device)  # this rank's device; the key keeps the device asked for
    import torch

    started = time.perf_counter()
    distributed.set_stage("data_load")
    with Stage("data_load", ropts.device, warmup=0) as load_stage:
        data = shard_plan.rank0_first(run.load_data)
        load_stage.add_items(len(data.images))
    images = images_content(data, opts, meta.reads_images)
    run_key = run.run_key(data, images)
    path = run.record_path(results_root, run_key)
    if distributed.gather_objects(path.exists() and not force)[0]:  # rank 0 decides for all
        try:
            return RunOutcome(RunStatus.SKIPPED, path, store.read_record(path))
        except RecordError:
            pass  # an unreadable record is redone, not trusted
    torch.manual_seed(opts.seed)
    distributed.set_stage("model_load")
    with Stage("model_load", ropts.device, warmup=0) as model_stage:
        load = run.load_options(ropts.device)
        model = meta.load(load)
        check_plan(meta, load, model)
        prepared = task.prepare(_context(run, model, data, ropts))
    workers = default_workers(ropts.device) if opts.num_workers is None else opts.num_workers
    cache = encode_cache(ropts, meta, model, data, run.split)
    distributed.set_stage(task.name)
    result = task.evaluate(model, data, EncodeOptions(opts.batch_size, ropts.device, workers, cache=cache,
                                                      shard_gallery=opts.shard_gallery), **prepared.evaluate_kwargs)
    main = _main_metric(run.dmeta, result)
    metrics, undefined = finite.settle(result.metrics, main,
                                       result.details.pop(finite.UNDEFINED_KEY, {}), f"{run.dmeta.name}/{run.split}")
    timings = {"data_load": load_stage.timing(), "model_load": model_stage.timing(), **result.timings}
    timings, dist_info = shard_plan.merge_timings(timings)  # one process: as they are, None
    record = ResultRecord(
        model={"name": meta.name, "family": meta.family, "kind": meta.kind.value, "source": meta.source,
               "checkpoint": model.checkpoint.get("id"), "checkpoint_sha256": model.checkpoint.get("sha256"),
               "params": _params(model, meta), **_model_facts(model)},
        dataset={"name": run.dmeta.name, "split": run.split, "fingerprint": data.fingerprint, **images,
                 "language": _language(run.dmeta, data),
                 "images": len(data.images), **data.counts(), "info": _jsonable(data.info)},
        task=task.name,
        options={**opts.keyed(), "num_workers": workers, **precision,
                 "pin_memory": opts.device.startswith("cuda"), "embedding_cache": cache.root is not None,
                 "oom_backoffs": sum(t.oom_backoffs for t in timings.values()),
                 **({"model_options": dict(opts.model_options)} if opts.model_options else {}),
                 **prepared.record_options, **result.details, **_distributed_options(ctx, opts),
                 **({finite.UNDEFINED_KEY: undefined} if undefined else {})},
        metrics=metrics,
        main_metric=main,
        timings=timings,
        memory=_peak_memory(timings),
        environment={**_environment(ropts.device), **({"distributed": dist_info} if dist_info else {})},
        created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        runtime_s=time.perf_counter() - started,
        run_key=run_key,
    )
    return RunOutcome(RunStatus.DONE, _save(ctx, results_root, record, result.per_query), record)


def _context(run: Resolved, model, data, opts: RunOptions) -> TaskContext:
    """The services a task may use while preparing: another model on this run's device, and
    the embedding-cache identity of a model on this data."""
    def load_model(name: str):
        other = _resolve_model(name)
        return other, other.load(LoadOptions(device=opts.device, precision=opts.precision))

    return TaskContext(meta=run.meta, model=model, data=data, options=opts, load_model=load_model,
                       encode_cache=lambda meta, loaded: encode_cache(opts, meta, loaded, data, run.split))


def existing_record(spec: RunSpec, results_root: Path) -> Path | None:
    """The readable record this spec would write, when the store has it (a sweep executor
    skips it before dispatch); loads the dataset (its fingerprint is part of the key)."""
    run = Resolved.of(spec)
    data = run.load_data()
    path = run.record_path(results_root, run.run_key(data, images_content(data, run.options, run.meta.reads_images)))
    try:
        return path if path.exists() and store.read_record(path) else None
    except RecordError:
        return None


def model_plan(meta, load: LoadOptions, auxiliary: dict[str, str] | None = None) -> list[dict]:
    """The run key's build part: what the loader will build that can change the numbers, known
    before loading (``ModelMeta.plan``: open_clip's MLP activation), plus any model option the
    plan does not cover, and the plans of the other models the task reads (a prefilter, a
    judge: loaded with their defaults); empty (the key of old) for models with none of these.

    >>> from harness.core.interfaces import ModelKind, ModelMeta
    >>> meta = ModelMeta("m", "f", ModelKind.DUAL, "s", loader=print, plan=lambda o: {"activation": "gelu"})
    >>> model_plan(meta, LoadOptions()), model_plan(ModelMeta("n", "f", ModelKind.DUAL, "s", loader=print), LoadOptions())
    ([{'build': {'activation': 'gelu'}}], [])
    """
    planned = dict(meta.plan(load)) if meta.plan else {}
    build = {**{k: v for k, v in load.model_options if k not in planned}, **planned}
    out = {"build": build} if build else {}
    for role, name in (auxiliary or {}).items():
        other = _resolve_model(name)
        if other.plan:
            out[f"{role}_build"] = dict(other.plan(LoadOptions(device=load.device, precision=load.precision)))
    return [out] if out else []


def check_plan(meta, load: LoadOptions, model) -> None:
    """The loaded model is what the run key says was built; a mismatch is a bug, never a result."""
    planned = dict(meta.plan(load)) if meta.plan else {}
    built = model_facts(model)
    wrong = {k: (v, built.get(k)) for k, v in planned.items() if k in built and built[k] != v}
    if wrong:
        raise RuntimeError(f"{meta.name}: the run key planned {wrong} (planned, built); not recording it")


def weights_content(meta, opts: RunOptions, task: Task | None = None) -> list[dict]:
    """The run key's weights-content part: the local files of the model and of every other
    model the task reads (a prefilter, a judge); empty (the key of old) when nothing local is read."""
    content = {"weights": weights_identity(meta, opts.weights)}
    for role, name in (task.auxiliary_models(opts) if task else {}).items():
        content[f"{role}_weights"] = weights_identity(_resolve_model(name), None)
    content = {k: v for k, v in content.items() if v is not None}
    return [content] if content else []


def expand(model: str, dataset: str, tasks: list[str] | None, split: str | None,
           options: RunOptions) -> list[RunSpec]:
    """One spec per task and variant; with no task given, every task the dataset offers that
    runs in a sweep for this model's kind."""
    dmeta, meta = resolve_dataset(dataset), _resolve_model(model)  # a registered name, or jsonl:DIR
    if tasks:
        chosen = [TASKS.get(t) for t in tasks]
    else:
        chosen = [t for _, t in TASKS.items() if t.view in dmeta.tasks and t.runs_in_sweep(meta)]
    specs = [RunSpec(model, dmeta.name, t.name, split, options) for t in chosen]
    extra = [RunSpec(model, dmeta.name, t.name, split, o) for t in chosen for o in t.variants(meta, options)[1:]]
    return specs + extra


def check_device(device: str) -> None:
    if device != "cpu" and not device.startswith("cuda"):
        raise OptionError(f"--device {device!r}: use cpu or cuda[:N]")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise OptionError(f"--device {device}: CUDA is not available on this machine")


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


def images_content(data, opts: RunOptions, reads_images: bool = True) -> dict:
    """The run key's image part: the split's images by content (``harness.datasets.identity``), so
    an image rewritten under its old name is a new run, not "skipped, already in the store".
    None for a scorer that reads no image (they need not even be there)."""
    from harness.datasets.identity import images_digest

    if not reads_images:
        return {"images_digest": None}
    out = {"images_digest": images_digest(data.images, opts.cache_dir)}
    train = getattr(data, "train", None)  # a probe is fitted on another split's images too
    if train is not None:  # all of them: an image pair's right images (NLVR2) as well
        out["train_images_digest"] = images_digest(getattr(train, "all_images", train.images), opts.cache_dir)
    return out


def _precision_info(opts: RunOptions) -> dict:
    from harness.models.common import precision_info

    return precision_info(opts.device, opts.precision)


def _prefetch_git_sha() -> None:
    from harness.core.environment import prefetch_git_sha

    prefetch_git_sha()


def _environment(device: str) -> dict:
    from harness.core.environment import environment

    return environment(device)


def _params(model, meta) -> int | None:
    inner = getattr(model, "model", None)
    if inner is not None and hasattr(inner, "parameters"):
        return sum(p.numel() for p in inner.parameters())
    return meta.params


def _model_facts(model) -> dict:
    """What an adapter states about how its network computes (open_clip: ``activation`` and
    why it was chosen), for ``vlbench verify`` to hold against a reference's protocol."""
    facts = model_facts(model)
    why = getattr(model, "activation_from", None)
    return {**facts, **({"activation_from": why} if facts and isinstance(why, str) else {})}


def _peak_memory(timings: dict) -> dict:
    rss = [t.peak_rss_mb for t in timings.values() if t.peak_rss_mb is not None]
    dev = [t.peak_device_mem_mb for t in timings.values() if t.peak_device_mem_mb is not None]
    return {"peak_rss_mb": max(rss) if rss else None, "peak_device_mem_mb": max(dev) if dev else None}


def _jsonable(info: dict) -> dict:
    """Dataset info minus bulky per-item lists (scene descriptions live with the dataset)."""
    return {k: v for k, v in info.items() if not (isinstance(v, (list, dict)) and len(v) > 50)}


def suite_specs(suite, options: RunOptions) -> list[RunSpec]:
    """A suite's ``options`` (batch_size, precision, ...) override the command line's."""
    unknown = set(suite.options) - set(asdict(options))
    if unknown:
        raise OptionError(f"{suite.path}: unknown option(s) {sorted(unknown)}; allowed: {sorted(asdict(options))}")
    overrides = dict(suite.options)
    if "precision" in overrides:
        overrides["precision"] = Precision(overrides["precision"])
    if "task_options" in overrides:
        overrides["task_options"] = parse_task_options(overrides["task_options"])
    if "model_options" in overrides:
        overrides["model_options"] = parse_model_options(overrides["model_options"])
    shared = replace(options, **overrides)
    specs = []
    for e in suite.entries:
        specs.append(RunSpec(e.model, e.dataset, e.task, e.split,
                             replace(shared, limit=e.limit if e.limit is not None else shared.limit)))
    return specs


def _language(dmeta, data) -> str | None:
    """The language of the split's text (a multilingual set's split), else the dataset's one."""
    langs = getattr(dmeta.spec, "languages", ())
    return data.info.get("language") or (langs[0] if len(langs) == 1 else None)


def _main_metric(dmeta, result) -> str:
    """The metric the dataset is ranked by (its manifest ``main_metric``, e.g. DataComp's mean
    per-class recall for Pets) when the task reports it, else the task's own."""
    want = getattr(dmeta.spec, "main_metric", None)
    return want if want in result.metrics else result.main_metric


def _resolve_model(name: str):
    from harness.models import resolve

    return resolve(name)
