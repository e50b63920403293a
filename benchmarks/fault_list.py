"""Issue 13's fault list, run end to end through the command line (a script, not a test: it
takes minutes). Prints one line per check and exits non-zero if any fails.

    python benchmarks/fault_list.py --work /tmp/faults [--suite S] [--kills 10] [--skip-sweeps | --sweeps-only]

* kill -9 mid-sweep: a reference sweep of the suite, then the same sweep killed with SIGKILL
  ``--kills`` times at seeded random moments (cold embedding cache, so kills land mid-encode)
  and resumed; every record's metrics and every per-query sidecar must equal the reference's
  byte for byte, with no temp file left.
* two concurrent sweeps into one store: same comparison.
* hostile strings in every string field of a record: the page has no element or attribute
  that came from them.
* bad inputs: each must exit non-zero with one line naming the file (or warn, where noted).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = [sys.executable, "-m", "harness"]
FAILED: list[str] = []


def report(ok: bool, what: str, detail: str = "") -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {what}" + (f": {detail}" if detail else ""), flush=True)
    if not ok:
        FAILED.append(what)


def env(**extra) -> dict:
    out = {**os.environ, "PYTHONPATH": str(ROOT), "VLBENCH_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    out.update({k: str(v) for k, v in extra.items()})
    return out


def vlbench(*argv, timeout=900, **extra) -> subprocess.CompletedProcess:
    return subprocess.run([*PY, *map(str, argv)], capture_output=True, text=True, env=env(**extra),
                          timeout=timeout, cwd=ROOT)


# ------------------------------------------------------------------ store comparison

def snapshot(results: Path) -> dict[str, tuple[str, bytes | None]]:
    """relative record path -> (canonical metrics JSON, sidecar bytes)."""
    out = {}
    for p in sorted(results.rglob("*.json")):
        if p.name.endswith(".queries.json") or any(part.startswith(".") for part in p.relative_to(results).parts):
            continue
        rec = json.loads(p.read_text())
        side = p.with_name(p.stem + ".queries.json")
        out[str(p.relative_to(results))] = (json.dumps(rec["metrics"], sort_keys=True),
                                            side.read_bytes() if side.exists() else None)
    return out


def same_as(ref: dict, results: Path, what: str) -> None:
    got = snapshot(results)
    temps = [p for p in results.rglob("*") if p.name.endswith(".tmp")]
    diff = [k for k in ref if got.get(k) != ref[k]]
    report(set(got) == set(ref) and not diff and not temps, what,
           f"{len(got)} records (reference {len(ref)}), {len(ref) - len(diff)} identical in metrics and sidecar bytes,"
           f" {len(temps)} temp files")


def sweep(suite: str, results: Path, embeddings: Path) -> subprocess.Popen:
    return subprocess.Popen([*PY, "sweep", "--suite", suite, "--results", str(results)], env=env(
        VLBENCH_EMBEDDINGS=embeddings), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)


def kill_test(args, ref: dict) -> None:
    results, emb = args.work / "killed", args.work / "killed-emb"
    rng = random.Random(13)
    kills = 0
    started = time.perf_counter()
    while kills < args.kills:
        proc = sweep(args.suite, results, emb)
        delay = rng.uniform(args.min_delay, args.max_delay)
        try:
            proc.wait(timeout=delay)
            break  # finished before the kill: nothing left to interrupt
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
            done = len(snapshot(results)) if results.exists() else 0
            print(f"     kill -9 #{kills} after {delay:.1f}s: {done} records so far", flush=True)
    proc = sweep(args.suite, results, emb)
    out, _ = proc.communicate()
    report(proc.returncode == 0, f"sweep resumed after {kills} kill -9", f"rc {proc.returncode}, "
           f"{time.perf_counter() - started:.0f}s in all")
    same_as(ref, results, f"after {kills} kill -9 + resume, records equal the uninterrupted sweep's")


def concurrent_test(args, ref: dict) -> None:
    """Both sweeps share the embedding cache the kill test filled (warm: the contention is
    on the store and the cache manifests, not on CPU time)."""
    results, emb = args.work / "concurrent", args.work / "killed-emb"
    procs = [sweep(args.suite, results, emb) for _ in range(2)]
    codes = [p.wait() for p in procs]
    report(codes == [0, 0], "two concurrent sweeps into one store", f"rc {codes}")
    same_as(ref, results, "two concurrent sweeps: records equal the single sweep's")


# ------------------------------------------------------------------ hostile strings

HOSTILE = ['<script>alert(1)</script>', '"><img src=x onerror=alert(2)>', "' onmouseover='alert(3)",
           "</td></tr></table><h1>x", "$\\frac{a$", "\u202eevil\u0000nul", "{{7*7}}"]


def hostile_test(args) -> None:
    import datetime as dt
    from html.parser import HTMLParser

    sys.path.insert(0, str(ROOT))
    from harness.results import store
    from harness.results.records import ResultRecord, StageTiming

    results = args.work / "hostile"
    for i, bad in enumerate(HOSTILE):
        rec = ResultRecord(
            model={"name": bad, "family": bad, "kind": "dual", "source": bad, "checkpoint": bad,
                   "checkpoint_sha256": bad, "params": 1000},
            dataset={"name": bad, "split": bad, "fingerprint": bad, "images": 10}, task="retrieval",
            options={"batch_size": 8, "device": bad, "precision": bad, "seed": 0, "limit": None, "weights": bad},
            metrics={"rsum": 100.0 + i, "t2i_R@1": 10.0}, main_metric="rsum",
            timings={"image_encode": StageTiming(seconds=1.0, items=10, items_per_s=10.0)},
            memory={"peak_rss_mb": 10.0, "peak_device_mem_mb": None},
            environment={"harness_version": bad, "git_sha": bad, "torch": bad, "device_name": bad},
            created_at=dt.datetime(2025, 1, 1, i, tzinfo=dt.timezone.utc).isoformat(), runtime_s=1.0,
            run_key=f"{i:024d}")
        store.save(results, rec)
    out = args.work / "hostile.html"
    r = vlbench("leaderboard", "--results", results, "--out", out, "--n-boot", 20)
    found: list[tuple[str, dict]] = []

    class Tags(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, dict(attrs)))

    Tags().feed(out.read_text() if out.exists() else "")
    tags = [t for t, _ in found]
    injected = ([f"{t}@{a}" for t, attrs in found for a in attrs if a.startswith("on")]
                + [t for t, attrs in found if t == "img" and not str(attrs.get("src", "")).startswith("data:image/png")]
                + ["h1"] * (tags.count("h1") - 1) + ["script"] * (tags.count("script") - 1))
    report(r.returncode == 0 and not injected, "hostile strings in every record field",
           f"rc {r.returncode}, {len(HOSTILE)} records, {tags.count('img')} plots, injected elements/attributes: "
           f"{injected or 'none'}")


# ------------------------------------------------------------------ bad inputs

def one_line(r: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("vlbench: error")]
    return lines[0] if len(lines) == 1 and "internal error" not in r.stderr and "Traceback" not in r.stderr else ""


def expect_error(what: str, r: subprocess.CompletedProcess, *words: str) -> None:
    line = one_line(r)
    report(r.returncode != 0 and bool(line) and all(w in line for w in words), what, line or r.stderr[-300:])


def flickr_copy(work: Path, names: list[str], name: str) -> Path:
    """A Flickr8k copy whose dev split is ``names`` (images linked from the real copy)."""
    from tests.conftest import FLICKR8K

    root = work / name / "flickr8k"
    (root / "text").mkdir(parents=True, exist_ok=True)
    (root / "Flicker8k_Dataset").mkdir(exist_ok=True)
    token = (FLICKR8K / "text" / "Flickr8k.token.txt").read_text()
    keep = [ln for ln in token.splitlines() if ln.split("#", 1)[0] in set(names)]
    (root / "text" / "Flickr8k.token.txt").write_text("\n".join(keep) + "\n")
    (root / "text" / "Flickr_8k.devImages.txt").write_text("\n".join(names) + "\n")
    for n in names:
        dst = root / "Flicker8k_Dataset" / n
        if not dst.exists():
            dst.symlink_to(FLICKR8K / "Flicker8k_Dataset" / n)
    return root


def bad_inputs(args) -> None:
    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT))
    from tests.conftest import FLICKR8K
    from tests.test_error_messages import png_header_only

    w = args.work / "bad"
    w.mkdir(parents=True, exist_ok=True)
    res = w / "results"
    run = ["run", "--model", "tiny-clip-synth", "--dataset", "synthetic", "--task", "retrieval", "--limit", 20,
           "--workers", 0, "--results", res]
    (w / "file").write_text("x")
    expect_error("--results under a regular file (read-only as root)",
                 vlbench(*run[:-1], w / "file" / "results"), "results folder not writable", str(w / "file"))
    expect_error("sweep --results under a regular file",
                 vlbench("sweep", "--suite", args.suite, "--results", w / "file" / "r"), "results folder not writable")
    (w / "rand.bin").write_bytes(np.random.default_rng(0).integers(0, 256, 1 << 16, dtype=np.uint8).tobytes())
    for model in ("tiny-clip-synth", "open_clip:ViT-S-32", "fusion-late-synth"):
        expect_error(f"--weights of random bytes ({model})", vlbench(*run[:2], model, *run[3:], "--weights",
                                                                     w / "rand.bin"), str(w / "rand.bin"))

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {w / 'pwned'}",))

    torch.save({"w": Evil()}, w / "evil.pt")
    r = vlbench(*run[:2], "open_clip:ViT-S-32", *run[3:], "--weights", w / "evil.pt")
    expect_error("--weights pickle calling os.system", r, str(w / "evil.pt"), "UnpicklingError")
    report(not (w / "pwned").exists(), "the pickle's payload did not run")
    expect_error("--weights missing path (tiny-clip-synth)", vlbench(*run, "--weights", w / "nope"),
                 "does not exist", "--weights path")
    expect_error("--workers -2", vlbench(*run, "--workers", -2), "--workers must be 0 or more")
    expect_error("--rerank-k -3 on a dual encoder", vlbench(*run, "--rerank-k", -3), "--rerank-k must be 0 or more")
    expect_error("--rerank-k 5 on a dual encoder", vlbench(*run, "--rerank-k", 5), "is a dual encoder")
    if os.path.exists("/dev/full"):
        r = vlbench("leaderboard", "--results", res, "--out", "/dev/full", "--no-plots")
        expect_error("leaderboard --out /dev/full", r, "/dev/full", "not a regular file")
        report(stat.S_ISCHR(os.stat("/dev/full").st_mode), "/dev/full is still a device node")
    if not FLICKR8K.is_dir():
        print("skip Flickr8k cases: no development copy")
        return
    names = (FLICKR8K / "text" / "Flickr_8k.devImages.txt").read_text().split()[:6]
    frun = ["run", "--model", "tiny-clip-synth", "--dataset", "flickr8k", "--split", "dev", "--workers", 0,
            "--results", res, "--no-cache"]
    root = flickr_copy(w, names, "huge")
    (root / "Flicker8k_Dataset" / names[2]).unlink()
    png_header_only(root / "Flicker8k_Dataset" / names[2], 20000, 20000)
    expect_error("20000x20000 PNG (decompression bomb)", vlbench(*frun, "--data-root", root.parent),
                 names[2], "VLBENCH_MAX_IMAGE_PIXELS")
    root = flickr_copy(w, names, "cut")
    data = (FLICKR8K / "Flicker8k_Dataset" / names[1]).read_bytes()
    (root / "Flicker8k_Dataset" / names[1]).unlink()
    (root / "Flicker8k_Dataset" / names[1]).write_bytes(data[: len(data) // 2] + b"\xff\xd9")
    r = vlbench(*frun, "--data-root", root.parent)
    report(r.returncode == 0 and f"{names[1]}: JPEG data ends early" in r.stderr,
           "JPEG cut in half + end marker warns",
           next((ln for ln in r.stderr.splitlines() if "ends early" in ln), r.stderr[-200:]))
    root = flickr_copy(w, names, "bom")
    split = root / "text" / "Flickr_8k.devImages.txt"
    split.write_bytes(b"\xef\xbb\xbf" + split.read_bytes())
    r = vlbench("data", "describe", "flickr8k", "--split", "dev", "--data-root", root.parent)
    report(r.returncode == 0 and "\ufeff" not in r.stdout + r.stderr and "missing" not in r.stdout,
           "BOM at the start of Flickr_8k.devImages.txt", f"rc {r.returncode}")
    r = vlbench("data", "describe", "flickr8k", "--split", "dev", "--strict", "--data-root", FLICKR8K.parent)
    report(r.returncode == 0 and "usable: True" in r.stdout, "--strict on the official Flickr8k dev files",
           f"rc {r.returncode}")
    old = os.umask(0o027)
    try:
        r = vlbench(*run[:-1], w / "umask-results")
    finally:
        os.umask(old)
    modes = sorted({oct(stat.S_IMODE(p.stat().st_mode)) for p in (w / "umask-results").rglob("*.json")})
    report(r.returncode == 0 and modes == ["0o640"], "umask 027: record and sidecar modes", f"{modes}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, required=True, help="scratch folder (several GB free)")
    p.add_argument("--suite", default="default")
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--min-delay", type=float, default=8.0, help="seconds before a kill (start-up takes ~5 s)")
    p.add_argument("--max-delay", type=float, default=40.0)
    p.add_argument("--reference", type=Path, default=None, help="an uninterrupted sweep's results (else run one)")
    p.add_argument("--skip-sweeps", action="store_true", help="only the hostile-string and bad-input checks")
    p.add_argument("--sweeps-only", action="store_true", help="only the kill -9 and concurrent-sweep checks")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if not args.sweeps_only:
        hostile_test(args)
        bad_inputs(args)
    if not args.skip_sweeps:
        ref_dir = args.reference
        if ref_dir is None:
            ref_dir = args.work / "reference"
            proc = sweep(args.suite, ref_dir, args.work / "reference-emb")
            proc.communicate()
            report(proc.returncode == 0, "reference sweep", f"rc {proc.returncode}")
        ref = snapshot(ref_dir)
        print(f"     reference: {len(ref)} records in {ref_dir}", flush=True)
        kill_test(args, ref)
        concurrent_test(args, ref)
    print(f"{len(FAILED)} check(s) failed" + (f": {', '.join(FAILED)}" if FAILED else ""))
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
