"""The ``vlbench`` command line (a contract: see docs/architecture.md and docs/running.md). Heavy imports happen inside
the commands, so ``vlbench --help`` and ``vlbench list`` stay instant."""

from __future__ import annotations

import argparse
import errno
import os
import sys
import traceback

from harness import __version__
from harness.cli import commands
from harness.core import progress
from harness.core.errors import is_user_error


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=int, default=64, help="batch size for encoding (default 64)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16", "amp"])
    p.add_argument("--seed", type=int, default=0, help="seed for subsets and any randomness (default 0)")
    p.add_argument("--workers", type=int, default=None, help="data-loader workers (default: cores - 1, max 8)")
    p.add_argument("--data-root", default=os.environ.get("VLBENCH_DATA"),
                   help="root of local datasets, one folder per dataset (env VLBENCH_DATA)")
    p.add_argument("--results", default=None, help="results folder (env VLBENCH_RESULTS, default results/)")
    p.add_argument("--force", action="store_true", help="re-run even when a record for this run exists")
    p.add_argument("--rerank-k", type=int, default=None,
                   help="cross-encoders: rerank each query's top K prefilter candidates (default 128; "
                        "0 with BLIP: its ITC head alone)")
    p.add_argument("--prefilter", default=None,
                   help="cross-encoders: the dual encoder whose top-k is reranked (default: the model's own)")
    p.add_argument("--pair-budget", type=int, default=1_000_000,
                   help="cross-encoders without a prefilter: score all pairs up to this many (default 1e6)")
    p.add_argument("--shots", type=int, default=None,
                   help="linear_probe: fit on K seeded training images per class (default: the whole train split)")
    p.add_argument("--task-option", action="append", default=[], metavar="KEY=VALUE", dest="task_option",
                   help="an option the task declares itself (repeatable; `vlbench list tasks` shows them)")
    p.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE", dest="model_option",
                   help="an option the model declares itself (repeatable): open_clip CLIPs take "
                        "activation=gelu|quick_gelu (default: what the weights were trained with)")
    p.add_argument("--strict", action="store_true",
                   help="fail on any skipped data (bad lines, duplicate entries, dropped images) instead of warning")
    p.add_argument("--chunk-items", type=int, default=None,
                   help="items per embedding-cache chunk, the unit a sharded run deals to its ranks (default 2048)")
    p.add_argument("--shard-gallery", action="store_true",
                   help="under torchrun: each rank scores a slice of the gallery (automatic when it is too big)")
    p.add_argument("--no-cache", action="store_true",
                   help="encode everything again, neither reading nor writing the embedding cache "
                        "($VLBENCH_CACHE/embeddings)")
    progress.add_arguments(p)


def _add_executor_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--executor", default="local", choices=["local", "ray"],
                   help="local: one run after another here (default); ray: each run a Ray task "
                        "(pip install 'vlbench[ray]')")
    p.add_argument("--ray-address", default=None,
                   help="join this Ray cluster (host:port or ray://host:port; default: a local instance)")
    p.add_argument("--gpus-per-run", type=float, default=0, help="ray: GPUs each run asks for (default 0)")
    p.add_argument("--cpus-per-run", type=float, default=1, help="ray: CPUs each run asks for (default 1)")
    p.add_argument("--max-retries", type=int, default=1,
                   help="ray: attempts after a failed or killed run before it is reported (default 1)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlbench", description="Compare image-text models side by side.")
    parser.add_argument("--version", action="version", version=f"vlbench {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list models, datasets, tasks or suites")
    p.add_argument("what", choices=["models", "datasets", "tasks", "suites"])
    p.add_argument("--data-root", default=os.environ.get("VLBENCH_DATA"),
                   help="where local datasets are looked for (env VLBENCH_DATA)")

    p = sub.add_parser("run", help="evaluate one model on one dataset")
    p.add_argument("--model", required=True, help="registered name/alias or open_clip:ARCH[/TAG]")
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--split", default=None, help="default: the dataset's standard evaluation split")
    p.add_argument("--task", action="append", default=None,
                   help="retrieval, zeroshot, caption_selection, ...; repeatable (default: every task the dataset offers)")
    p.add_argument("--limit", type=int, default=None, help="deterministic subset of N images (seeded)")
    p.add_argument("--weights", default=None, help="local checkpoint file or directory for the model")
    _add_run_options(p)

    p = sub.add_parser("sweep", help="run every entry of a suite (skips runs already in the store)")
    p.add_argument("--suite", required=True, help="suite name (vlbench list suites) or a YAML path")
    p.add_argument("--model", dest="only_models", action="append", default=None, metavar="NAME",
                   help="run only the suite's runs of this model (repeatable)")
    _add_run_options(p)
    _add_executor_options(p)

    p = sub.add_parser("data", help="inspect datasets")
    dsub = p.add_subparsers(dest="data_command", required=True)
    d = dsub.add_parser("describe", help="counts, missing/bad files and fingerprint of a split")
    d.add_argument("dataset")
    d.add_argument("--split", default=None)
    d.add_argument("--data-root", default=os.environ.get("VLBENCH_DATA"))
    d.add_argument("--strict", action="store_true", help="treat every skipped item as an error")
    d.add_argument("--decode", action="store_true", help="also decode every image (slow; load only checks file ends)")
    progress.add_arguments(d)
    d = dsub.add_parser("export-wds", help="write a split in CLIP_benchmark's webdataset layout (wds:DIR reads it)")
    d.add_argument("dataset")
    d.add_argument("--split", default=None, help="default: the dataset's default split")
    d.add_argument("--out", required=True, help="dataset folder to write (the split goes in OUT/SPLIT/)")
    d.add_argument("--task", choices=["retrieval", "zeroshot"], default=None,
                   help="the view to export when the dataset has both (default: retrieval)")
    d.add_argument("--samples-per-shard", type=int, default=10_000, help="default 10000, as CLIP_benchmark")
    d.add_argument("--max-shard-bytes", type=int, default=1_000_000_000, help="default 1e9, as CLIP_benchmark")
    d.add_argument("--limit", type=int, default=None, help="a seeded subset of this many images")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--data-root", default=os.environ.get("VLBENCH_DATA"))

    p = sub.add_parser("fit", help="train a fusion head over frozen encoders (fixed, seeded recipe)")
    p.add_argument("model", help="a fusion model (vlbench list models, family fusion)")
    p.add_argument("--task", default=None, help="retrieval (default: the matching head) or image_text_classification "
                                                "(a classifier of --dataset's labels)")
    p.add_argument("--dataset", default=None, help="default: the data the model's shipped checkpoint used; "
                                                   "jsonl:DIR for your own image + text -> label folder")
    p.add_argument("--split", default="train")
    p.add_argument("--select-split", default=None, help="split the best epoch is chosen on (default val/dev)")
    p.add_argument("--out", default=None, help="folder for <model>.safetensors + card (default results/fits)")
    p.add_argument("--name", default=None, help="classifier: file name (default <model>-<dataset>)")
    p.add_argument("--epochs", type=int, default=None, help="default: the model's recipe")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None, help="classifier default: a grid chosen on held-out train")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--limit", type=int, default=None, help="classifier: a seeded subset of N train items")
    p.add_argument("--max-train-images", type=int, default=None,
                   help="train on a seeded subset of whole hard-negative families (default: the recipe's)")
    p.add_argument("--prefilter-weights", default=None,
                   help="cross heads: late-fusion checkpoint that mines negatives and prefilters (default: shipped)")
    p.add_argument("--init", default=None,
                   help="classifier: start the trunk from a matching checkpoint of the same design "
                        "(a path, or 'matching' for the model's shipped one); default: seeded random")
    p.add_argument("--data-root", default=os.environ.get("VLBENCH_DATA"))
    progress.add_arguments(p)

    p = sub.add_parser("leaderboard", help="rebuild the HTML leaderboard from the results store")
    p.add_argument("--results", default=None)
    p.add_argument("--out", default="leaderboard/index.html")
    p.add_argument("--title", default="vlbench leaderboard")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for intervals and tests")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (fixed: the page is reproducible)")
    p.add_argument("--no-plots", action="store_true", help="tables only (faster)")
    p.add_argument("--suite", action="append", default=None, dest="suites",
                   help="show this suite's score (name or YAML path; repeatable; default: every suite with an "
                        "'aggregate' block that the records touch)")
    p.add_argument("--no-suite-scores", action="store_true", help="show no suite scores")

    p = sub.add_parser("export", help="write the leaderboard's table (one row per run) as csv, parquet or jsonl")
    p.add_argument("--results", default=None, help="results folder (env VLBENCH_RESULTS, default results/)")
    p.add_argument("--format", required=True, choices=["csv", "parquet", "jsonl"])
    p.add_argument("--out", default=None, help="file to write (default: stdout; parquet needs a file)")
    p.add_argument("--history", action="store_true", help="every record, not only the latest of each entry")
    p.add_argument("--force", action="store_true", help="replace --out when it exists")

    p = sub.add_parser("import", help="turn other tools' result files into records (marked as imported)")
    isub = p.add_subparsers(dest="import_command", required=True)
    i = isub.add_parser("clip-benchmark", help="CLIP_benchmark result JSONs (clip_benchmark eval --output)")
    i.add_argument("files", nargs="+", help="result JSON files")
    i.add_argument("--results", default=None, help="results folder (env VLBENCH_RESULTS, default results/)")
    i.add_argument("--split", default="test", help="the --split they were evaluated on (not in the JSON; "
                   "CLIP_benchmark's default: test)")
    i.add_argument("--model-type", default="open_clip",
                   help="their --model_type (not in the JSON; CLIP_benchmark's default: open_clip)")

    p = sub.add_parser("check", help="compare the latest records with a baseline; exit 1 on a regression")
    p.add_argument("--baseline", default=None, help="baseline JSON file (vlbench baseline update writes one)")
    p.add_argument("--results", default=None, help="results folder (env VLBENCH_RESULTS, default results/)")
    p.add_argument("--no-throughput", action="store_true", help="check accuracy only, not items/s")
    p.add_argument("--model", dest="only_models", action="append", default=None, metavar="NAME",
                   help="with --baseline: compare only this model's baseline entries (repeatable; "
                        "an error when the baseline has none)")
    p.add_argument("--throughput-ratios", default=None, metavar="FILE",
                   help="run the ratio benchmarks (harness path vs bare reference, interleaved) and fail when "
                        "a median ratio falls below its floor in FILE (benchmarks/baselines/perf_ratios.json); "
                        "the result goes to RESULTS/.perf-check/latest.json for the leaderboard")
    p.add_argument("--only", action="append", default=None, metavar="BENCH",
                   help="with --throughput-ratios: run only this bench (repeatable)")

    p = sub.add_parser("verify", help="do the records reproduce the published numbers? (exit 1 on a miss); "
                       "--invariance: do batch size, chunk size and precision change a model's scores?")
    p.add_argument("--results", default=None, help="results folder (env VLBENCH_RESULTS, default results/)")
    p.add_argument("--invariance", action="store_true",
                   help="re-run a small seeded subset with another batch size, chunk size and precision "
                        "and report each metric's change (needs --model and --dataset)")
    p.add_argument("--model", dest="models", action="append", default=None, metavar="NAME",
                   help="--invariance: the model (repeatable)")
    p.add_argument("--dataset", default=None, help="--invariance: the dataset")
    p.add_argument("--split", default=None, help="--invariance: the split (default: the dataset's)")
    p.add_argument("--task", action="append", default=None,
                   help="--invariance: only this task (repeatable; default: every task the model can run)")
    p.add_argument("--limit", type=int, default=100, help="--invariance: seeded subset size (default 100)")
    p.add_argument("--device", default="cpu", help="--invariance: cpu or cuda[:N] (default cpu)")
    p.add_argument("--data-root", default=os.environ.get("VLBENCH_DATA"))
    progress.add_arguments(p)

    p = sub.add_parser("baseline", help="write regression-check baselines")
    bsub = p.add_subparsers(dest="baseline_command", required=True)
    b = bsub.add_parser("update", help="write a baseline from the latest records of a suite's runs")
    b.add_argument("--suite", required=True, help="suite name (vlbench list suites) or a YAML path")
    b.add_argument("--results", default=None, help="results folder (env VLBENCH_RESULTS, default results/)")
    b.add_argument("--out", default=None, help="baseline file (default benchmarks/baselines/<suite>.json)")
    return parser


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """Loader warnings (skipped lines, dropped images) as one readable line for users."""
    return f"vlbench: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import warnings

    warnings.formatwarning = _format_warning

    handler = getattr(commands, f"cmd_{args.command}")
    try:
        with progress.session(progress.from_args(args)):
            return handler(args) or 0
    except KeyboardInterrupt:
        print("vlbench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output has gone (`| head`): not an error to report
        from harness.core.process_exit import silence_stdout

        silence_stdout()
        return 141  # what a shell reports for a process ended by SIGPIPE (128 + 13)
    except Exception as exc:  # noqa: BLE001 - the user gets one line, --debug the traceback
        if args.debug or os.environ.get("VLBENCH_DEBUG"):
            traceback.print_exc()
        if is_user_error(exc):
            print(f"vlbench: error: {_one_line(exc)}", file=sys.stderr)
            return 2
        if isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS:
            print(f"vlbench: error: {_storage_line(exc)}", file=sys.stderr)
            return 2
        print(f"vlbench: internal error in '{args.command}': {type(exc).__name__}: {exc} "
              "(run with --debug for the traceback)",
              file=sys.stderr)
        return 1


def entry() -> None:
    """The console script and ``python -m harness``: :func:`main`, then an exit without the
    interpreter's teardown (``harness.core.process_exit``; 1.4-1.6 s once torch is loaded)."""
    from harness.core.process_exit import fast_exit, silence_stdout

    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()
        code = 141
    fast_exit(code)


_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def _storage_line(exc: OSError) -> str:
    """A full/read-only disk met anywhere (a cache, a library's own files): name the path."""
    from harness.results.store import storage_error

    path = exc.filename if exc.filename is not None else "a file (path not reported)"
    return str(storage_error(path, exc))


def _one_line(exc: BaseException) -> str:
    """The message of an error re-raised from a DataLoader worker is the worker's whole
    traceback; its last line holds the message, prefixed with the exception's type."""
    text = str(exc)
    if "Original Traceback" in text:
        last = [ln for ln in text.splitlines() if ln.strip()][-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return text

