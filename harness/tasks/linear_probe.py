"""Linear probe: logistic regression on frozen image embeddings (CLIP protocol, harness.metrics.probe).

Embeddings come through the embedding cache, keyed per split exactly as a zero-shot run keys
them, so a probe after zero-shot (or a second probe, another ``--shots``) encodes nothing it
already has. The probe is fitted on the train split only (``--shots K``: K seeded images per
class of it); C is chosen on a seeded held-out part of that training set, then the probe is
refitted on all of it. The evaluation split is only ever scored. Metrics and the per-image
sidecar are zero-shot's (acc1, acc5, macro-F1, balanced accuracy; correct / pred / label).
"""

from __future__ import annotations

from dataclasses import replace

from harness.core.measure import Stage
from harness.datasets.base import TaskKind
from harness.datasets.views import ProbeData
from harness.metrics.keys import MetricKey, QueryKey
from harness.tasks.base import Prepared, Task, TaskContext, TaskResult, register, require_dual
from harness.tasks.encode import EncodeOptions, encode_images


def split_options(opts: EncodeOptions, part) -> EncodeOptions:
    """Encode options whose cache identity names ``part``'s split and fingerprint, as the
    runner keys a run on that split alone (so zero-shot's cached embeddings are found)."""
    if opts.cache is None or opts.cache.root is None:
        return opts
    identity = {**opts.cache.identity, "split": part.split, "dataset_fingerprint": part.fingerprint}
    return replace(opts, cache=replace(opts.cache, identity=identity))


def check_shots(labels: list[int], shots: int, where: str) -> None:
    """``--shots K`` where every class of train has K images or fewer selects all of train: the
    run without ``--shots`` under another run key, the same result twice. Refused, naming the
    largest class; classes smaller than K (using all they have) get one warning.

    >>> check_shots([0, 0, 0, 1, 1], 3, "d")
    Traceback (most recent call last):
    ...
    harness.core.errors.UserError: --shots 3: no class of d's train split has more than 3 images, so every class would use all of them: that is the probe on all of train (drop --shots)
    """
    import warnings
    from collections import Counter

    from harness.core.errors import UserError

    sizes = Counter(labels)
    if not sizes or shots >= max(sizes.values()):
        raise UserError(f"--shots {shots}: no class of {where}'s train split has more than {max(sizes.values(), default=0)} "
                        "images, so every class would use all of them: that is the probe on all of train (drop --shots)")
    short = sorted(y for y, n in sizes.items() if n < shots)
    if short:
        warnings.warn(f"--shots {shots}: {len(short)} class(es) of {where}'s train split have fewer images and use all "
                      f"they have (class index {', '.join(map(str, short[:5]))}{', ...' if len(short) > 5 else ''})",
                      stacklevel=2)


def evaluate(model, data: ProbeData, opts: EncodeOptions, shots: int | None = None,
             probe_opts=None) -> TaskResult:
    import torch

    from harness.metrics import functional as M
    from harness.metrics.probe import ProbeOptions, fit_probe, sample_shots  # torch at import: run time only

    probe_opts = probe_opts or ProbeOptions()
    require_dual(model, "linear probe")
    if shots:
        check_shots(data.train.labels, shots, data.train.name)
    with Stage("train_encode", opts.device, opts.warmup_batches) as train_stage:
        train_x = encode_images(model, data.train.images, split_options(opts, data.train), train_stage)
    with Stage("image_encode", opts.device, opts.warmup_batches) as img_stage:
        eval_x = encode_images(model, data.eval.images, split_options(opts, data.eval), img_stage)
    keep = sample_shots(data.train.labels, shots, probe_opts.seed) if shots else list(range(len(data.train.labels)))
    y = torch.as_tensor([data.train.labels[i] for i in keep], dtype=torch.long)
    n_classes = len(data.eval.classnames)
    with Stage("fit", opts.device, warmup=0) as fit_stage:
        probe = fit_probe(train_x[torch.as_tensor(keep, device=train_x.device)], y.to(train_x.device), n_classes,
                          probe_opts)
        fit_stage.add_items(len(keep))
    labels = torch.as_tensor(data.eval.labels, dtype=torch.long, device=eval_x.device)
    with Stage("scoring", opts.device, warmup=0) as score_stage:
        logits = probe.logits(eval_x)  # float64, as the probe was fitted: no float32 rounding of close logits
        metrics = M.classification_metrics(logits, labels)
        score_stage.add_items(len(labels))
    return TaskResult(
        metrics={k.value: float(v) for k, v in metrics.items()}, main_metric=MetricKey.ACC1.value,
        timings={s.name: s.timing() for s in (train_stage, img_stage, fit_stage, score_stage)},
        per_query={QueryKey.CORRECT.value: M.per_sample_correct(logits, labels).tolist(),
                   QueryKey.PRED.value: M.pessimistic_predictions(logits, labels).tolist(),
                   QueryKey.LABEL.value: labels.tolist()},
        details={"shots": shots, "probe_train_images": len(keep), "probe_c": probe.c,
                 "probe_search": probe.search, "probe_holdout": probe_opts.holdout, "probe_seed": probe_opts.seed})


@register
class LinearProbe(Task):
    name = "linear_probe"
    view = TaskKind.LINEAR_PROBE
    main_metric = "acc1"
    revision = 2  # 1: scipy L-BFGS-B, the refit from zeros; 2: stopped at tol 1e-8 (gate stability)
    description = "logistic regression on frozen image embeddings (CLIP protocol: L-BFGS, L2 chosen on held-out train)"
    aliases = ("linear-probe", "probe")
    family_options = ("shots",)

    def prepare(self, ctx: TaskContext) -> Prepared:
        return Prepared({"shots": ctx.options.shots})  # the record has it from the run options

    def evaluate(self, model, data, opts, **kwargs) -> TaskResult:
        return evaluate(model, data, opts, **kwargs)
