"""A built wheel carries what vlbench reads at run time -- the datasets manifest and the suites
(copied from the checkout at build time, harness/core/project_files.py), the shipped weights, the
dataset resources and the page's assets -- and, unpacked on its own with no checkout on the
path, finds them. Built from a copy of the tracked tree with ``pip wheel --no-deps
--no-build-isolation`` (about 4 s), so a packaging regression fails here, not in a user's venv."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tracked_files() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout (the wheel is built from its tracked files)")
    out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard"],
                         capture_output=True, text=True, check=True).stdout
    return [f for f in out.splitlines() if (ROOT / f).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("setuptools")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    for rel in _tracked_files():  # what a clean clone has, nothing built or cached
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, src / rel)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           str(src), "-w", str(tmp / "dist")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (whl,) = (tmp / "dist").glob("vlbench-*.whl")
    return whl


def _expected(pattern: str) -> list[Path]:
    found = sorted(p for p in ROOT.glob(pattern) if p.is_file())
    assert found, pattern  # a check that compared nothing fails
    return found


def test_wheel_carries_manifest_suites_weights_and_assets(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert zf.read("harness/_project/datasets_manifest.yaml") == (ROOT / "datasets_manifest.yaml").read_bytes()
        for suite in _expected("benchmarks/suites/*.y*ml"):
            assert zf.read(f"harness/_project/suites/{suite.name}") == suite.read_bytes(), suite.name
        assert "harness/_project/build_info.json" in names
    for pattern in ("harness/weights/*", "harness/datasets/data/*", "harness/verify/*.yaml", "leaderboard/assets/*"):
        missing = [str(p.relative_to(ROOT)) for p in _expected(pattern) if str(p.relative_to(ROOT)) not in names]
        assert not missing, f"not in the wheel: {missing}"
    assert "harness/importers/clip_benchmark.py" in names and "leaderboard/export.py" in names  # subpackages


USER_MANIFEST = """\
schema_version: 1
datasets:
  my-pets:
    tasks: [zeroshot]
    format: imagefolder
    source: {kind: local, folder: pets}
    default_split: val
    splits: {val: {}}
    classes: {names: folders, templates: ["a photo of a {}."]}
    license: CC0
    citation: none
"""


def test_unpacked_wheel_runs_without_a_checkout_and_takes_user_files(wheel, tmp_path):
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "mine.yaml").write_text("runs: [{models: tiny-clip-synth, datasets: my-pets, "
                                                   "tasks: zeroshot}]\n", encoding="utf-8")
    (tmp_path / "mine.yaml").write_text(USER_MANIFEST, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(site)}  # the unpacked wheel first; deps from this venv
    env.pop("VLBENCH_SUITES", None)
    env.pop("VLBENCH_MANIFEST", None)
    code = ("import harness, harness.datasets.manifest as m, harness.run.suites as s, harness.models.weights as w;"
            "print(harness.__file__); print(m.MANIFEST_PATH); print(s.suites().get('default'));"
            "print(w.SHIPPED_DIR)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert len(lines) == 4 and all(line.startswith(str(site)) for line in lines), lines

    env.update(VLBENCH_SUITES=str(tmp_path / "suites"), VLBENCH_MANIFEST=str(tmp_path / "mine.yaml"))
    for what, names in (("datasets", ("synthetic", "flickr8k", "my-pets")), ("suites", ("default", "mine"))):
        listed = subprocess.run([sys.executable, "-m", "harness", "list", what], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=120)
        assert listed.returncode == 0, listed.stderr[-2000:]
        assert all(n in listed.stdout.split() for n in names), (what, listed.stdout)


def test_unpacked_wheel_reads_a_jsonl_folder(wheel, tmp_path):
    """``jsonl:DIR`` needs no manifest entry and no checkout: the installed package reads it and
    runs image_text_classification on it."""
    import json

    from tests.test_pair_loaders import write_png

    site, data = tmp_path / "site", tmp_path / "my data"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    for split, rows in (("train", [("a.png", "sunny", "pos"), ("b.png", "rain", "neg"), ("c.png", "sun", "pos"),
                                   ("e.png", "hail", "neg")]),
                        ("test", [("d.png", "storm", "neg")])):
        (data / "imgs").mkdir(parents=True, exist_ok=True)
        (data / f"{split}.jsonl").write_text("".join(json.dumps({"image": f"imgs/{f}", "text": t, "label": y}) + "\n"
                                                     for f, t, y in rows))
        for f, _, _ in rows:
            write_png(data / "imgs" / f)
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-m", "harness", "data", "describe", f"jsonl:{data}", "--split", "train"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "image_text_classification.items: 4" in out.stdout and "class_counts: neg=2, pos=2" in out.stdout
    run = subprocess.run([sys.executable, "-m", "harness", "run", "--model", "tiny-clip-synth", "--dataset",
                          f"jsonl:{data}", "--task", "image_text_classification", "--results", str(tmp_path / "res"),
                          "--quiet"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    (record,) = [p for p in (tmp_path / "res").rglob("*.json") if p.name.count(".") == 1]  # not its sidecar
    rec = json.loads(record.read_text())
    assert rec["task"] == "image_text_classification" and rec["dataset"]["items"] == 1
    assert rec["dataset"]["train_items"] == 4 and set(rec["metrics"]) >= {"acc", "macro_f1", "acc_image_only"}


def _imports(tree) -> tuple[set[str], set[str]]:
    """(top-level modules imported anywhere, those imported only inside ``try: ... except
    ImportError``), lazy imports in functions included."""
    import ast

    every, guarded = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
                for h in node.handlers):
            guarded |= {n for stmt in node.body for n in _names(stmt)}
        every |= set(_names(node)) if isinstance(node, (ast.Import, ast.ImportFrom)) else set()
    return every, guarded


def _names(node) -> list[str]:
    import ast

    if isinstance(node, ast.Import):
        return [a.name.split(".")[0] for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module.split(".")[0]]
    return []


def test_every_third_party_import_is_a_declared_dependency(wheel):
    """CI installs the wheel with --no-deps beside make setup's environment (which resolves the
    same pyproject), so this is where an import of an undeclared package -- one that only the
    test extra or a dependency's dependency brings -- fails: each third-party module that
    harness/ or leaderboard/ imports is a base Requires-Dist of the wheel, unless every import
    of it sits in a ``try/except ImportError`` that names what to install (ray, pyarrow)."""
    import ast
    import importlib.metadata as md
    import re

    norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()  # noqa: E731 - PEP 503
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        requires = [ln.split(":", 1)[1].strip() for ln in zf.read(meta).decode().splitlines()
                    if ln.startswith("Requires-Dist:")]
    base = {norm(re.split(r"[ ;<>=!~\[]", r, maxsplit=1)[0]) for r in requires if "extra ==" not in r}
    dists = md.packages_distributions()
    unguarded, seen = {}, set()
    for path in sorted([*ROOT.glob("harness/**/*.py"), *ROOT.glob("leaderboard/**/*.py")]):
        every, guarded = _imports(ast.parse(path.read_text(encoding="utf-8")))
        third = every - set(sys.stdlib_module_names) - {"harness", "leaderboard", "__future__"}
        seen |= third
        for mod in third - guarded:
            unguarded.setdefault(mod, str(path.relative_to(ROOT)))
    assert {"torch", "open_clip", "tqdm", "yaml", "ray"} <= seen  # the scan found the imports it must
    undeclared = {mod: (where, dists.get(mod)) for mod, where in unguarded.items()
                  if not any(norm(d) in base for d in dists.get(mod, [mod]))}
    assert not undeclared, f"imported but not a base dependency in pyproject.toml: {undeclared}"
    assert "ray" not in unguarded  # the optional extra stays optional
