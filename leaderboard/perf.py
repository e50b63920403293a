"""The page's "throughput ratios" section: the latest ``vlbench check --throughput-ratios``
(``<results>/.perf-check/latest.json``), one row per bench: its median ratio against the
bare reference, the floor, the verdict, and the spread of the interleaved pairs."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any


def read(results_dir: str | Path) -> dict | None:
    from harness.gate.perf.gate import read_result

    return read_result(Path(results_dir))


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: Any, fmt: str = ".3f") -> str:
    return format(value, fmt) if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def section(check: dict | None) -> str:
    """HTML for the section, or "" when no check has been recorded."""
    if not check:
        return ""
    rows = []
    for b in check.get("benches", []):
        if not isinstance(b, dict):
            continue
        m = b.get("measurement") or {}
        pairs = m.get("ratios") or []
        spread = f"{min(pairs):.3f}..{max(pairs):.3f} ({len(pairs)} pairs)" if pairs else "-"
        status = str(b.get("status", "?"))
        rows.append(f'<tr class="perf-{_esc(status)}"><td>{_esc(b.get("name"))}</td><td>{_num(b.get("ratio"))}</td>'
                    f'<td>{_num(b.get("floor"))}</td><td>{_esc(status.upper())}</td><td>{_esc(spread)}</td>'
                    f'<td>{_num(m.get("harness_s"))}</td><td>{_num(m.get("bare_s"))}</td>'
                    f'<td>{_esc(b.get("reason") or "")}</td></tr>')
    mach = check.get("machine") or {}
    verdict = "passed" if check.get("passed") else "FAILED"
    meta = (f"latest check {_esc(check.get('created_at'))}: {verdict}; {_esc(mach.get('cpu'))}, "
            f"{_esc(mach.get('cores'))} cores, load {_num(mach.get('loadavg_1m'), '.1f')}, torch {_esc(mach.get('torch'))};"
            f" floors {_esc(check.get('floors_file'))}")
    return ('<section id="throughput-ratios"><h2>Throughput ratios</h2>'
            '<p class="meta">Each hot path against a bare reference on the same data, interleaved in one process: '
            'ratio = bare seconds / harness seconds (median of pairs; 1.0 = as fast as the bare loop). '
            f'{meta}</p><table class="perf"><thead><tr><th>bench</th><th>ratio</th><th>floor</th><th>status</th>'
            '<th>pairs</th><th>harness s</th><th>bare s</th><th>note</th></tr></thead><tbody>'
            + "".join(rows) + "</tbody></table></section>")
