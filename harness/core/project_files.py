"""Files of the project that vlbench reads at run time but that live outside the package in a
checkout: the datasets manifest (``datasets_manifest.yaml``) and the suites
(``benchmarks/suites/*.yaml``).

The checkout's copies are the one source of truth. A built wheel (``pip install .``,
``pip wheel``, ``python -m build``) carries copies that ``setup.py`` makes at build time under
``harness/_project/`` (see ``SHIPPED``); an editable install or a ``PYTHONPATH`` checkout has no
such folder and reads the checkout's files where they are.
"""

from __future__ import annotations

import json
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # harness/
CHECKOUT_DIR = PACKAGE_DIR.parent
SHIPPED_DIR = PACKAGE_DIR / "_project"  # written by setup.py into the wheel, never into a checkout

# checkout path (relative to the repository root) -> path under SHIPPED_DIR, and which files of
# it a wheel carries. setup.py reads this table, so the build and the lookup cannot drift apart.
SHIPPED = {
    "datasets_manifest.yaml": ("datasets_manifest.yaml", ["datasets_manifest.yaml"]),
    "benchmarks/suites": ("suites", ["*.yaml", "*.yml"]),
}
BUILD_INFO = "build_info.json"  # {"git_sha": ...} of the checkout the wheel was built from


def installed_from_wheel() -> bool:
    return SHIPPED_DIR.is_dir()


def project_path(checkout_path: str) -> Path:
    """Where ``checkout_path`` (a key of ``SHIPPED``) is for this install.

    >>> project_path("datasets_manifest.yaml").name
    'datasets_manifest.yaml'
    """
    shipped_as, _ = SHIPPED[checkout_path]
    return SHIPPED_DIR / shipped_as if installed_from_wheel() else CHECKOUT_DIR / checkout_path


def build_info() -> dict:
    """What ``setup.py`` recorded about the build (``{}`` in a checkout or when unreadable)."""
    try:
        return json.loads((SHIPPED_DIR / BUILD_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
