"""The task protocol: what a task declares, what the runner asks of it, and the registry.

A task is one module that defines a :class:`Task` subclass and registers an instance of it
with :func:`register`, and one line in ``harness/tasks/__init__.py`` listing the module. The
runner never names a task: it asks the task

* which dataset view it reads (``view``) and which model kinds it accepts (``model_kinds``,
  ``sweep_kinds`` for a sweep that names no task);
* what the options mean for this model (:meth:`Task.settings`: validation, defaults), which
  rows a sweep expands to (:meth:`Task.variants`), which other models a run reads
  (:meth:`Task.auxiliary_models`: their weights are part of the run key);
* what to prepare once the model is loaded (:meth:`Task.prepare`: a rerank plan, a prefilter,
  a scorer choice), what it adds to the record (:meth:`Task.record_options`), and
* to :meth:`Task.evaluate`, returning a :class:`TaskResult` with its metric keys and main metric.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from harness.core.errors import OptionError, UserError
from harness.core.interfaces import ModelKind
from harness.core.measure import StageTiming
from harness.core.registry import Registry
from harness.datasets.base import TaskKind
from harness.tasks.options import RunOptions


@dataclass
class TaskResult:
    metrics: dict[str, float | None]
    main_metric: str
    timings: dict[str, StageTiming]
    per_query: dict[str, list] = field(default_factory=dict)  # ranks / correctness, for bootstrap
    details: dict[str, Any] = field(default_factory=dict)  # how the task ran (lands in record.options)


@dataclass
class Prepared:
    """What :meth:`Task.prepare` hands the runner: keyword arguments for :meth:`Task.evaluate`
    and the record options that describe them (a rerank plan, the scorer used)."""

    evaluate_kwargs: dict[str, Any] = field(default_factory=dict)
    record_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TaskContext:
    """Everything a task may read while preparing a run: the model (its meta and the loaded
    adapter), the data, the effective options, and two services the run provides -- loading
    another registered model, and the embedding-cache identity for a model on this data."""

    meta: Any
    model: Any
    data: Any
    options: RunOptions
    load_model: Callable[[str], tuple[Any, Any]]  # name -> (meta, loaded model) on this run's device
    encode_cache: Callable[[Any, Any], Any]       # (meta, model) -> EncodeCache for this data


# Options that belong to one task family: a task that does not list one clears it (so a sweep
# with --rerank-k still runs zero-shot), except those whose misuse would silently change a
# result, which are refused.
FAMILY_OPTIONS = ("rerank_k", "prefilter", "shots")
REFUSED_WHEN_UNUSED = ("shots",)


class Task:
    """Base class; subclasses set the class attributes and override what differs."""

    name: ClassVar[str]
    view: ClassVar[TaskKind]
    main_metric: ClassVar[str]
    description: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    model_kinds: ClassVar[frozenset[ModelKind]] = frozenset({ModelKind.DUAL, ModelKind.BOTH})
    # kinds a sweep with no task runs it for (default: every accepted kind)
    sweep_kinds: ClassVar[frozenset[ModelKind] | None] = None
    family_options: ClassVar[tuple[str, ...]] = ()   # of FAMILY_OPTIONS, those this task reads
    task_options: ClassVar[dict[str, tuple[str, ...]]] = {}  # own option -> allowed values ("" first: default)
    # the method's revision, in the run key when > 0: raised when what the task computes from the
    # same inputs changes (a new solver), so a store's results of the old method are not reused
    revision: ClassVar[int] = 0

    # -- before anything loads -------------------------------------------------------------
    def accepts(self, meta) -> bool:
        """Any kind the model serves (``ModelMeta.also``: CoCa is a dual encoder and a captioner)."""
        return any(k in self.model_kinds for k in _kinds(meta))

    def runs_in_sweep(self, meta) -> bool:
        kinds = self.model_kinds if self.sweep_kinds is None else self.sweep_kinds
        return any(k in kinds for k in _kinds(meta))

    def check_model(self, meta) -> None:
        if not self.accepts(meta):
            kinds = " or ".join(sorted(k.value for k in self.model_kinds))
            raise UserError(f"{self.name} needs a {kinds} model; {meta.name} is {meta.kind.value}")

    def settings(self, meta, opts: RunOptions) -> RunOptions:
        """The effective options for ``meta``: family options this task does not read are
        cleared (or refused), its own ``task_options`` are checked and their defaults filled."""
        cleared = {}
        for name in FAMILY_OPTIONS:
            if name in self.family_options or getattr(opts, name) is None:
                continue
            if name in REFUSED_WHEN_UNUSED:
                raise OptionError(f"--{name.replace('_', '-')} does not apply to {self.name}")
            if name == "prefilter" and meta.kind == ModelKind.DUAL:
                raise OptionError(f"--prefilter applies to cross-encoders; {meta.name} is a dual encoder")
            cleared[name] = None
        return replace(opts, **cleared, task_options=self.own_options(opts))

    def own_options(self, opts: RunOptions) -> tuple[tuple[str, str], ...]:
        given = dict(opts.task_options)
        unknown = sorted(set(given) - set(self.task_options))
        if unknown:
            known = ", ".join(sorted(self.task_options)) or "none"
            raise OptionError(f"--task-option {unknown[0]}: not an option of {self.name} (its options: {known})")
        out = {}
        for key, allowed in self.task_options.items():
            value = given.get(key, allowed[0])
            if len(allowed) > 1 and value not in allowed:
                raise OptionError(f"--task-option {key}={value}: {self.name} takes one of {', '.join(allowed)}")
            out[key] = value
        return tuple(sorted(out.items()))

    def variants(self, meta, opts: RunOptions) -> list[RunOptions]:
        """The runs a sweep makes of this task for ``meta`` (BLIP: an ITC row and an ITM row)."""
        return [opts]

    def auxiliary_models(self, opts: RunOptions) -> dict[str, str]:
        """Other registered models the run reads (role -> name): their weights join the run key."""
        return {}

    # -- once the model is loaded ----------------------------------------------------------
    def prepare(self, ctx: TaskContext) -> Prepared:
        return Prepared()

    def evaluate(self, model, data, opts, **kwargs) -> TaskResult:
        raise NotImplementedError


def itc_and_itm_rows(meta, opts: RunOptions) -> list[RunOptions]:
    """A model that is both kinds (BLIP) and no ``--rerank-k`` given: two rows, "ITC -> ITM" (the
    default) and "ITC only" (``rerank_k=0``), as the BLIP paper reports them; else the one run."""
    if meta.kind == ModelKind.BOTH and opts.rerank_k is None:
        return [opts, replace(opts, rerank_k=0)]
    return [opts]


def _kinds(meta) -> tuple:
    kinds = getattr(meta, "kinds", None)
    return kinds() if callable(kinds) else (meta.kind,)


TASKS: Registry[Task] = Registry("task")


def register(task_class: type[Task]) -> type[Task]:
    """Class decorator: register one instance under the task's name and aliases."""
    TASKS.register(task_class.name, task_class(), aliases=task_class.aliases)
    return task_class


def require_dual(model: Any, task: str) -> None:
    from harness.core.interfaces import DualEncoder

    if not isinstance(model, DualEncoder):
        raise UserError(f"{task} needs a dual encoder; {getattr(model, 'name', model)!r} is not one")
