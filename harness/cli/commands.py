"""What each ``vlbench`` subcommand does; argument parsing lives in cli.py."""

from __future__ import annotations

import sys
from pathlib import Path

from harness.core.errors import UserError


def results_arg(args) -> Path:
    from harness.results.store import results_dir

    return results_dir(args.results)


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths)),
                      *(fmt.format(*map(str, r)) for r in rows)])


def _params(n: int | None) -> str:
    return f"{n / 1e6:.1f}M" if n else "-"


def _reranks(meta) -> str:
    """Which dual encoder ranks first: a cross-encoder's prefilter, BLIP's own ITC head."""
    kind = meta.kind.value
    return {"dual": "-", "both": "itself (ITC)"}.get(kind) or (meta.prefilter or "(--prefilter M)")


def cmd_list(args) -> int:
    if args.what == "models":
        from harness.models import MODELS, availability

        rows = [[n, m.kind.value, m.family, _params(m.params), m.source, availability(m), _reranks(m),
                 ", ".join(m.aliases)] for n, m in MODELS.items()]
        print(_table(rows, ["model", "kind", "family", "params", "source", "offline", "prefilter", "aliases"]))
        print("\nAlso: open_clip:ARCH[/TAG] for any open_clip architecture and pretrained tag, "
              "hf:ORG/NAME for any transformers CLIP/SigLIP/ALIGN hub id; --weights PATH for local weights.")
    elif args.what == "datasets":
        from harness.datasets import DATASETS

        root = args.data_root
        rows = []
        for n, m in DATASETS.items():
            why = m.availability(root)  # cheap: file lookups only, no image decoding
            ranked = getattr(m.spec, "main_metric", None) or ""  # "": the task's own main metric
            rows.append([n, "/".join(t.value for t in m.tasks), ",".join(m.splits), m.default_split, ranked, m.source,
                         "yes" if why is None else f"no: {why}"])
        print(_table(rows, ["dataset", "tasks", "splits", "default", "ranked by", "source", "available here"]))
        print(f"\nLocal copies are looked for under --data-root / VLBENCH_DATA ({root or 'unset'}), "
              "one folder per dataset; see datasets_manifest.yaml.")
    elif args.what == "tasks":
        from harness.tasks import TASKS

        rows = [[n, t.main_metric, " ".join(sorted(k.value for k in t.model_kinds)),
                 " ".join(f"{k}={'|'.join(v)}" for k, v in t.task_options.items()) or "-", t.description]
                for n, t in TASKS.items()]
        print(_table(rows, ["task", "main metric", "model kinds", "task options", "description"]))
    else:
        from harness.run.suites import get_suite, suites

        rows = []
        for name, path in suites().items():
            suite = get_suite(name)
            rows.append([name, len(suite.entries), suite.description, str(path)])
        print(_table(rows, ["suite", "runs", "description", "file"]))
    return 0


def _run_options(args, weights: str | None = None, limit: int | None = None):
    from harness.core.interfaces import Precision
    from harness.core.model_options import parse_model_options
    from harness.run.runner import RunOptions
    from harness.tasks.options import parse_task_options

    if args.batch_size <= 0:
        raise UserError(f"--batch-size must be positive, got {args.batch_size}")
    if limit is not None and limit <= 0:
        raise UserError(f"--limit must be positive, got {limit}")
    if args.workers is not None and args.workers < 0:
        raise UserError(f"--workers must be 0 or more (0: load images in the main process), got {args.workers}")
    if args.rerank_k is not None and args.rerank_k < 0:
        raise UserError(f"--rerank-k must be 0 or more, got {args.rerank_k}")
    if args.shots is not None and args.shots <= 0:
        raise UserError(f"--shots must be positive, got {args.shots}")
    return RunOptions(batch_size=args.batch_size, device=args.device, precision=Precision(args.precision),
                      seed=args.seed, limit=limit, num_workers=args.workers, weights=weights,
                      data_root=args.data_root, rerank_k=args.rerank_k, prefilter=args.prefilter,
                      pair_budget=args.pair_budget, strict=args.strict, shots=args.shots,
                      use_cache=not args.no_cache, chunk_items=_positive(args, "chunk_items"),
                      task_options=parse_task_options(getattr(args, "task_option", None)),
                      model_options=parse_model_options(getattr(args, "model_option", None)),
                      shard_gallery=args.shard_gallery)


def _positive(args, name: str) -> int | None:
    value = getattr(args, name)
    if value is not None and value <= 0:
        raise UserError(f"--{name.replace('_', '-')} must be positive, got {value}")
    return value


def _run_specs(specs, results: Path, force: bool, keep_going: bool, overall: str | None = None) -> int:
    """Run ``specs``, one line each; ``overall`` names a bar counting the runs (a sweep)."""
    from harness.core import progress
    from harness.parallel import distributed
    from harness.results.store import StorageError, check_writable
    from harness.run.runner import run_one

    check_writable(results)  # once, before any model loads: a read-only/full store fails now, not after the compute

    failures = 0
    for spec in progress.track(specs, overall, unit="run", leave=True) if overall else specs:
        try:
            outcome = run_one(spec, results, force=force)
            if distributed.current().is_main:  # a sharded run reports once
                progress.echo(outcome.summary())
        except Exception as exc:
            if not keep_going or isinstance(exc, StorageError):  # a full store fails every later run too
                raise
            failures += 1
            progress.echo(f"vlbench: error: {spec.model} on {spec.dataset} ({spec.task}): {exc}", sys.stderr)
    if failures:
        print(f"vlbench: {failures} of {len(specs)} runs failed", file=sys.stderr)
    return 1 if failures else 0


def _refuse_rerank_on_dual(args) -> None:
    """``run --rerank-k`` on a dual encoder would be dropped without a word (a suite's shared
    rerank_k is meant for its cross-encoders only, so only ``run`` refuses)."""
    from harness.core.interfaces import ModelKind
    from harness.models import resolve

    if args.rerank_k is not None and resolve(args.model).kind == ModelKind.DUAL:
        raise UserError(f"--rerank-k applies to cross-encoders and BLIP-style models; {args.model} is a dual "
                        "encoder (it ranks every candidate itself): drop --rerank-k")


def cmd_run(args) -> int:
    from harness.parallel import distributed
    from harness.run.runner import expand

    options = _run_options(args, weights=args.weights, limit=args.limit)
    _refuse_rerank_on_dual(args)
    specs = expand(args.model, args.dataset, args.task, args.split, options)
    try:
        return _run_specs(specs, results_arg(args), args.force, keep_going=False)
    finally:
        distributed.shutdown()


def cmd_sweep(args) -> int:
    from harness.parallel import distributed
    from harness.run.runner import suite_specs
    from harness.run.suites import get_suite

    if distributed.requested():
        raise UserError("vlbench sweep runs whole runs, not one run over ranks: unset WORLD_SIZE, or use "
                        "--executor ray to spread the runs (torchrun is for one `vlbench run`)")
    suite = get_suite(args.suite)
    specs = suite_specs(suite, _run_options(args))
    if args.only_models:
        specs = _only_models(specs, args.only_models, f"suite {suite.name}")
    if args.executor == "ray":
        from harness.run.executors import RayOptions, ray_sweep

        ray_options = RayOptions(address=args.ray_address, gpus_per_run=args.gpus_per_run,
                                 cpus_per_run=args.cpus_per_run, max_retries=args.max_retries)  # checks them
    print(f"suite {suite.name}: {len(specs)} runs -> {results_arg(args)} (executor {args.executor})", flush=True)
    if args.executor == "ray":
        return ray_sweep(specs, results_arg(args), args.force, ray_options)
    return _run_specs(specs, results_arg(args), args.force, keep_going=True, overall=f"suite {suite.name}")


def _only_models(specs: list, names: list[str], where: str) -> list:
    """The specs of the named models (aliases resolved); a name with none is an error naming
    the models ``where`` has, not an empty sweep that passes."""
    from harness.gate.check import select_models
    from harness.models import resolve

    # strict here: an unregistered name is the registry's error (with its did-you-mean)
    kept, absent, have = select_models(specs, names, lambda s: s.model, canonical=lambda n: resolve(n).name)
    if absent:
        raise UserError(f"{where} has no runs of {', '.join(map(repr, absent))}; its models: {', '.join(have)}")
    return kept


def cmd_data(args) -> int:
    if args.data_command == "export-wds":
        from harness.datasets import export_cmd

        return export_cmd.run(args)
    from harness.datasets import resolve_dataset
    from harness.datasets.describe import describe

    meta = resolve_dataset(args.dataset)  # a registered name, or jsonl:DIR
    report = describe(meta, args.split or meta.default_split, args.data_root, strict=args.strict,
                      decode=args.decode)
    for key, value in report.items():
        print(f"{key:>24}: {value}")
    return 0 if report.get("usable") else 1


def cmd_fit(args) -> int:
    from harness.models import MODELS
    from harness.models.fusion.model import SPECS

    meta = MODELS.get(args.model)
    if meta.name not in SPECS:
        raise UserError(f"fit trains fusion heads; {meta.name!r} is not one (fusion models: {', '.join(SPECS)})")
    task = _fit_task(args.task)
    if task == "image_text_classification":
        from harness.training.classifier_fit import fit_command
    else:
        from harness.training.fusion_fit import fit_command
        if args.limit is not None or args.name is not None or args.init is not None:
            raise UserError("--limit, --name and --init apply to fit --task image_text_classification")
    fit_command(SPECS[meta.name], args)
    return 0


def _fit_task(name: str | None) -> str:
    """What ``fit --task`` trains for: matching (retrieval, the default) or a classifier."""
    from harness.tasks import TASKS

    task = TASKS.get(name).name if name else "retrieval"
    if task not in ("retrieval", "image_text_classification"):
        raise UserError(f"fit --task {name}: fusion heads are fitted for retrieval (matching) or "
                        "image_text_classification")
    return task


def cmd_leaderboard(args) -> int:
    import leaderboard

    if args.n_boot < 1:
        raise UserError(f"--n-boot must be positive, got {args.n_boot}")
    results = results_arg(args)
    suites = () if args.no_suite_scores else (tuple(args.suites) if args.suites else None)
    options = leaderboard.PageOptions(title=args.title, plots=not args.no_plots, suites=suites,
                                      uncertainty=leaderboard.UncertaintyOptions(n_boot=args.n_boot, seed=args.seed))
    out = leaderboard.build(results, Path(args.out), title=args.title, options=options)
    df = leaderboard.load(results)
    print(leaderboard.format_text(df))
    print(f"\nleaderboard: {len(df)} records -> {out}")
    return 0


def cmd_export(args) -> int:
    from leaderboard.export import export

    out, rows = export(results_arg(args), args.format, args.out, history=args.history, force=args.force)
    print(f"export: {rows} rows as {args.format} -> {out or 'stdout'}", file=sys.stderr)  # stdout: the data
    return 0


def cmd_import(args) -> int:
    from harness.importers import clip_benchmark

    options = clip_benchmark.ImportOptions(split=args.split, model_type=args.model_type)
    results = results_arg(args)
    for src, path in zip(args.files, clip_benchmark.import_files([Path(f) for f in args.files], results, options)):
        print(f"import: {src} -> {path}")
    return 0


def cmd_check(args) -> int:
    if not args.baseline and not args.throughput_ratios:
        raise UserError("check needs --baseline FILE and/or --throughput-ratios FILE")
    status = 0
    if args.throughput_ratios:
        from harness.gate.perf.cli import ratio_check

        status = ratio_check(Path(args.throughput_ratios), results_arg(args), args.only)
    return max(status, _baseline_check(args)) if args.baseline else status


def _baseline_check(args) -> int:
    from harness.gate import check

    baseline = check.load_baseline(Path(args.baseline))
    if args.only_models:
        baseline = check.only_models(baseline, args.only_models, args.baseline)
    records = check.load_records(results_arg(args))
    findings = check.compare(records, baseline, throughput=not args.no_throughput)
    findings += _aggregate_findings(args, baseline, records)
    print(f"baseline {args.baseline} (suite {baseline.get('suite')}) vs {results_arg(args)}")
    print(check.format_findings(findings))
    return 1 if any(f.status == "regression" for f in findings) else 0


def _aggregate_findings(args, baseline: dict, records) -> list:
    from harness.gate import aggregate as aggregate_gate

    entries = aggregate_gate.validate(baseline, args.baseline)
    if args.only_models:
        entries = aggregate_gate.only_models(entries, args.only_models)
    return aggregate_gate.compare(records, baseline, entries)


def cmd_baseline(args) -> int:
    from harness.gate import aggregate as aggregate_gate
    from harness.gate import check
    from harness.run.suites import get_suite

    suite, results = get_suite(args.suite), results_arg(args)
    records = check.suite_records(suite, check.load_records(results), results)
    out = Path(args.out or f"benchmarks/baselines/{suite.name}.json")
    aggregates = aggregate_gate.baseline_entries(suite, records)  # the suite's scores, gated as a whole
    check.write_baseline(records, suite.name, out, {"aggregates": aggregates} if aggregates else None)
    scores = f" and {len(aggregates)} suite score(s)" if aggregates else ""
    print(f"baseline for suite {suite.name}: {len(records)} runs{scores} from {results} -> {out}")
    return 0


def cmd_verify(args) -> int:
    if not args.invariance:
        if args.models or args.dataset:
            raise UserError("--model/--dataset go with --invariance; `vlbench verify` alone compares the "
                            "records in --results with the published references")
        from harness.verify import verify_results

        return verify_results(results_arg(args))
    if not args.models or not args.dataset:
        raise UserError("verify --invariance needs --model M (repeatable) and --dataset D")
    if args.limit <= 0:
        raise UserError(f"--limit must be positive, got {args.limit}")
    from harness.verify import invariance

    opts = invariance.InvarianceOptions(limit=args.limit, device=args.device)
    out = invariance.check(args.models, args.dataset, args.task, args.split, opts, data_root=args.data_root)
    print(invariance.summary(out))
    return 1 if out.failed else 0
