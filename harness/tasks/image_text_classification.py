"""Image + text -> label: a linear probe on frozen fused features, with its modality ablation.

Each item is an image (two for NLVR2), a text and a label (binary, multi-class or
multi-label). Features (:mod:`harness.tasks.pair_features`): a dual encoder's embeddings
fused by a named head (``--task-option head=interact|concat``), or a cross-encoder's joint
vector. The classifier is the linear probe's machinery (:mod:`harness.metrics.probe`: L-BFGS
logistic regression, scikit-learn's objective), fitted on the train split with C chosen on a
seeded held-out part of it and refitted on all of it; multi-label data gets one probe per
label with its decision threshold chosen on the same held-out part
(:mod:`harness.metrics.ovr_probe`). The evaluation split is only ever scored.

Every run fits three probes: on the fused features, on image features alone and on text
features alone, so the record says how much fusion adds (``modality_gain`` = ``acc`` minus
the better single-modality ``acc``). Metrics: :mod:`harness.metrics.multimodal_cls`; main
``macro_f1``. The sidecar holds each item's label and the three probes' predictions (and the
fused probability of class 1 for a binary task), so the page bootstraps every number.
"""

from __future__ import annotations

from dataclasses import replace

from harness.core.errors import OptionError
from harness.core.interfaces import LabelPredictor, ModelKind
from harness.core.measure import Stage
from harness.datasets.base import TaskKind
from harness.metrics.keys import QueryKey
from harness.tasks.base import Prepared, Task, TaskContext, TaskResult, register
from harness.tasks.encode import EncodeOptions

ABLATIONS = ("image_only", "text_only")
FEATURES = ("auto", "embeddings", "joint")
MAX_CONFUSION_CLASSES = 30  # a larger confusion matrix stays in the sidecar (labels, predictions)


def _split_opts(opts: EncodeOptions, part) -> EncodeOptions:
    from harness.tasks.linear_probe import split_options

    return split_options(opts, part)


def _features(model, part, opts: EncodeOptions, features: str, head: str, prefix: str):
    from harness.tasks import pair_features as F

    split_opts = _split_opts(opts, part)
    if features == "joint":
        return F.joint_features(model, part, split_opts, prefix)
    return F.dual_features(model, part, split_opts, head, prefix)


def _fit_and_predict(train_x, eval_x, train, eval_data, probe_opts) -> dict:
    """One probe fitted on train, scored on eval: predictions (and scores) per item, its C."""
    import torch

    from harness.metrics.probe import fit_probe

    k = len(eval_data.classnames)
    if eval_data.multilabel:
        from harness.metrics.ovr_probe import fit_ovr

        y = _indicators(train.labels, k, train_x.device)
        ovr = fit_ovr(train_x, y, probe_opts)
        pred = ovr.predict(eval_x)
        return {"pred": [torch.nonzero(row).flatten().tolist() for row in pred.cpu()],
                "indicators": pred.cpu().numpy(), "c": ovr.c, "thresholds": ovr.thresholds, "search": None}
    y = torch.as_tensor(train.labels, dtype=torch.long, device=train_x.device)
    probe = fit_probe(train_x, y, k, probe_opts)
    logits = probe.logits(eval_x)
    # argmax in float64, as scikit-learn's predict: a probe always names a class (one that can
    # only tie, C -> 0 on a balanced task, names the first class, i.e. is at chance)
    out = {"pred": logits.double().argmax(1).tolist(), "c": probe.c, "search": probe.search}
    if k == 2:
        out["score"] = logits.double().softmax(-1)[:, 1].tolist()
    return out


def _indicators(labels, k: int, device=None):
    import torch

    y = torch.zeros(len(labels), k, dtype=torch.long, device=device)
    for i, ys in enumerate(labels):
        y[i, ys] = 1
    return y


def _metrics(fit: dict, data) -> dict:
    from harness.metrics.multimodal_cls import multilabel_metrics, single_label_metrics

    if data.multilabel:
        return multilabel_metrics(_indicators(data.labels, len(data.classnames)).numpy(), fit["indicators"])
    return single_label_metrics(data.labels, fit["pred"], len(data.classnames), fit.get("score"))


def _consistency(correct: list[bool], groups) -> float | None:
    """Percent of groups (NLVR: a sentence with its images) whose every item is right."""
    if groups is None:
        return None
    ok: dict = {}
    for c, g in zip(correct, groups):
        ok[g] = ok.get(g, True) and c
    return 100.0 * sum(ok.values()) / len(ok)


def evaluate(model, data, opts: EncodeOptions, head: str = "interact", features: str = "embeddings",
             probe_opts=None, label_check: dict | None = None) -> TaskResult:
    from harness.metrics.probe import ProbeOptions

    probe_opts = probe_opts or ProbeOptions()
    train, ev = data.train, data.eval
    train_f, train_t = _features(model, train, opts, features, head, "train_")
    eval_f, eval_t = _features(model, ev, opts, features, head, "")
    fits = {}
    with Stage("fit", opts.device, warmup=0) as fit_stage:
        for variant in ("fused", *ABLATIONS):
            fits[variant] = _fit_and_predict(train_f.variant(variant), eval_f.variant(variant), train, ev, probe_opts)
        fit_stage.add_items(3 * len(train))
    with Stage("scoring", opts.device, warmup=0) as score_stage:
        fused = _metrics(fits["fused"], ev)
        alone = {v: _metrics(fits[v], ev) for v in ABLATIONS}
        score_stage.add_items(len(ev))
    details = _details(fits, fused, ev, head, features, probe_opts, label_check)
    timings = {**train_t, **eval_t, "fit": fit_stage.timing(), "scoring": score_stage.timing()}
    return _result(fits, fused, alone, ev, details, timings)


def evaluate_fitted(model, data, opts: EncodeOptions, probe_opts=None, label_check: dict | None = None) -> TaskResult:
    """A fitted classifier (``vlbench fit --task image_text_classification``): the fused
    prediction is the fitted head's own; the two ablations are probes on the towers' unimodal
    features (:mod:`harness.tasks.fitted_labels`), fitted on train as in :func:`evaluate`."""
    from harness.metrics.probe import ProbeOptions
    from harness.tasks.fitted_labels import fitted_outputs

    probe_opts = probe_opts or ProbeOptions()
    train, ev = data.train, data.eval
    _, train_f, train_t = fitted_outputs(model, train, _split_opts(opts, train), "train_")
    logits, eval_f, eval_t = fitted_outputs(model, ev, _split_opts(opts, ev), "")
    fits = {}
    with Stage("fit", opts.device, warmup=0) as fit_stage:
        for variant in ABLATIONS:
            fits[variant] = _fit_and_predict(train_f.variant(variant), eval_f.variant(variant), train, ev, probe_opts)
        fit_stage.add_items(2 * len(train))
    with Stage("scoring", opts.device, warmup=0) as score_stage:
        fits["fused"] = {**model.decide(logits), "c": None, "search": None}
        fused = _metrics(fits["fused"], ev)
        alone = {v: _metrics(fits[v], ev) for v in ABLATIONS}
        score_stage.add_items(len(ev))
    details = _details(fits, fused, ev, "fitted", "fitted", probe_opts, label_check)
    details.update(_fitted_details(model))
    timings = {**train_t, **eval_t, "fit": fit_stage.timing(), "scoring": score_stage.timing()}
    return _result(fits, fused, alone, ev, details, timings)


def _fitted_details(model) -> dict:
    from harness.tasks.fitted_labels import ABLATION_NOTE

    space = model.label_space
    out = {"fitted_design": model.design, "fitted_labels": list(space.classnames), "ablation": ABLATION_NOTE}
    if space.thresholds is not None:
        out["fitted_thresholds"] = list(space.thresholds)
    return out


def _result(fits: dict, fused: dict, alone: dict, ev, details: dict, timings: dict) -> TaskResult:
    from harness.metrics.multimodal_cls import modality_gain

    metrics = {k: v for k, v in fused.items() if k not in ("per_class_f1", "confusion")}
    for v in ABLATIONS:
        metrics[f"acc_{v}"], metrics[f"macro_f1_{v}"] = alone[v]["acc"], alone[v]["macro_f1"]
    metrics["modality_gain"] = modality_gain(metrics["acc"], metrics["acc_image_only"], metrics["acc_text_only"])
    correct = [p == y for p, y in zip(fits["fused"]["pred"], _sorted_labels(ev))]
    consistency = _consistency(correct, ev.groups)
    if consistency is not None:
        metrics["consistency"] = consistency
    per_query = {QueryKey.LABEL.value: _sorted_labels(ev), QueryKey.PRED.value: fits["fused"]["pred"],
                 QueryKey.CORRECT.value: [int(c) for c in correct],
                 **{f"pred_{v}": fits[v]["pred"] for v in ABLATIONS}}
    if "score" in fits["fused"]:
        per_query[QueryKey.SCORE.value] = fits["fused"]["score"]
    if ev.groups is not None:
        per_query[QueryKey.GROUP.value] = list(ev.groups)
    return TaskResult(metrics=metrics, main_metric="macro_f1", timings=timings, per_query=per_query, details=details)


def _sorted_labels(data) -> list:
    return [sorted(y) for y in data.labels] if data.multilabel else list(data.labels)


def _details(fits, fused, ev, head, features, probe_opts, label_check) -> dict:
    from harness.tasks.joint_encode import ABLATION_NOTE
    from harness.tasks.pair_features import PAIR_MODE

    out = {"probe_head": head if features != "joint" else "joint", "probe_features": features,
           "probe_c": fits["fused"]["c"], "probe_c_image_only": fits["image_only"]["c"],
           "probe_c_text_only": fits["text_only"]["c"], "probe_search": fits["fused"]["search"],
           "probe_c_convention": "softmax over the classes, scikit-learn's multinomial objective (two classes: "
                                 "its binary LogisticRegression at 2C)",
           "probe_holdout": probe_opts.holdout, "probe_seed": probe_opts.seed, "classification": ev.kind,
           "classnames": list(ev.classnames),
           "per_class_f1": dict(zip(ev.classnames, fused["per_class_f1"])),
           "ablation": ABLATION_NOTE if features == "joint" else
           "unimodal features: image-only probe on the image embedding(s), text-only on the text embedding",
           **(label_check or {})}
    if "thresholds" in fits["fused"]:
        out["probe_thresholds"] = fits["fused"]["thresholds"]
    if "confusion" in fused and len(ev.classnames) <= MAX_CONFUSION_CLASSES:
        out["confusion"] = fused["confusion"]
    if ev.is_pair:
        out["pair_mode"] = PAIR_MODE[features]
    return out


@register
class ImageTextClassification(Task):
    name = "image_text_classification"
    view = TaskKind.IMAGE_TEXT_PROBE
    main_metric = "macro_f1"
    revision = 2  # 1: scipy L-BFGS-B, the refit from zeros; 2: stopped at tol 1e-8 (gate stability)
    description = ("image + text -> label: linear probe on frozen fused features (train split, C on held-out "
                   "train), with image-only and text-only ablations; macro-F1, accuracy, AUROC")
    aliases = ("mm_classification", "fused_classification")
    model_kinds = frozenset({ModelKind.DUAL, ModelKind.BOTH, ModelKind.CROSS})
    task_options = {"head": ("interact", "concat"), "features": FEATURES}

    def settings(self, meta, opts):
        given = dict(opts.task_options)
        out = super().settings(meta, opts)
        own = dict(out.task_options)
        features = own["features"]
        if features == "auto":
            features = "joint" if meta.kind == ModelKind.CROSS else "embeddings"
        if features == "joint" and meta.kind == ModelKind.DUAL:
            raise OptionError(f"--task-option features=joint needs a cross-encoder; {meta.name} is a dual encoder")
        if features == "embeddings" and meta.kind == ModelKind.CROSS:
            raise OptionError(f"--task-option features=embeddings needs a dual encoder; {meta.name} is a cross-encoder")
        if features == "joint":
            if "head" in given:
                raise OptionError(f"--task-option head={given['head']}: a cross-encoder's joint features are "
                                  "already fused; head applies to dual encoders")
            own["head"] = "joint"
        own["features"] = features
        return replace(out, task_options=tuple(sorted(own.items())))

    def variants(self, meta, opts):
        """BLIP (both kinds): a row on its ITC embeddings and one on its ITM joint features."""
        if meta.kind != ModelKind.BOTH or "features" in dict(opts.task_options):
            return [opts]
        joint = tuple(sorted({**dict(opts.task_options), "features": "joint"}.items()))
        return [opts, replace(opts, task_options=joint)]

    def prepare(self, ctx: TaskContext) -> Prepared:
        from harness.datasets.pair_labels import check_holdout, check_labels
        from harness.metrics.probe import ProbeOptions

        label_check = check_labels(ctx.data.train, ctx.data.eval)
        check_holdout(ctx.data.train)
        own = dict(ctx.options.task_options)
        probe_opts = ProbeOptions(seed=ctx.options.seed)
        if isinstance(ctx.model, LabelPredictor):
            self._check_fitted(ctx)
            return Prepared({"fitted": True, "label_check": label_check, "probe_opts": probe_opts})
        return Prepared({"head": own["head"], "features": own["features"], "label_check": label_check,
                         "probe_opts": probe_opts})

    def _check_fitted(self, ctx: TaskContext) -> None:
        """A fitted classifier predicts its own label set: the data's must be the same, and the
        probe's head / features options (anything but their defaults) do not apply."""
        space, ev = ctx.model.label_space, ctx.data.eval
        if list(space.classnames) != list(ev.classnames) or space.multilabel != ev.multilabel:
            raise OptionError(f"{ctx.model.checkpoint.get('id')}: fitted for labels {_names(space.classnames)} "
                              f"({space.kind}), but {ev.name}/{ev.split} has labels {_names(ev.classnames)} "
                              f"({ev.kind})")
        defaults = self.settings(ctx.meta, replace(ctx.options, task_options=())).task_options
        if tuple(ctx.options.task_options) != tuple(defaults):
            raise OptionError(f"{ctx.meta.name} with fitted classifier weights predicts by its fitted head; "
                              "--task-option head/features apply to probes: drop them")

    def evaluate(self, model, data, opts, **kwargs) -> TaskResult:
        if kwargs.pop("fitted", False):
            return evaluate_fitted(model, data, opts, **kwargs)
        return evaluate(model, data, opts, **kwargs)


def _names(classnames, most: int = 8) -> str:
    names = list(classnames)
    return "[" + ", ".join(names[:most]) + (f", ... ({len(names)} in all)" if len(names) > most else "") + "]"
