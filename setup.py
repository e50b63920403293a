"""Build step (configuration is in pyproject.toml): a wheel carries the project files vlbench
reads at run time -- the datasets manifest and the suites -- copied at build time from the
checkout, which stays their one source of truth. What is copied, and to where, is the table
``SHIPPED`` in harness/core/project_files.py, which the run-time lookup reads too."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def _project_files_module():
    # Loaded by path: importing the package at build time would need its dependencies.
    spec = importlib.util.spec_from_file_location("_vlbench_project_files", ROOT / "harness" / "core" / "project_files.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None  # an sdist or an exported tree: no repository
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=5).stdout.strip()
    return out + ("-dirty" if dirty else "") if out else None


class BuildPyWithProjectFiles(build_py):
    """build_py, plus the checkout's project files copied into ``harness/_project/``."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads the checkout's files where they are
            return
        pf = _project_files_module()
        target = Path(self.build_lib) / "harness" / pf.SHIPPED_DIR.name
        copied = 0
        for checkout_path, (shipped_as, patterns) in pf.SHIPPED.items():
            source = ROOT / checkout_path
            files = [source] if source.is_file() else sorted(p for pat in patterns for p in source.glob(pat))
            if not files:
                raise SystemExit(f"setup.py: {checkout_path}: nothing to ship (is this a vlbench checkout or sdist?)")
            for path in files:
                dest = target / shipped_as if source.is_file() else target / shipped_as / path.name
                self.mkpath(str(dest.parent))
                self.copy_file(str(path), str(dest), preserve_mode=False)
                copied += 1
        info = json.dumps({"git_sha": _git_sha(), "files": copied}, indent=2) + "\n"
        (target / pf.BUILD_INFO).write_text(info, encoding="utf-8")


setup(cmdclass={"build_py": BuildPyWithProjectFiles})
