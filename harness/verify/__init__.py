"""``vlbench verify``: does this setup reproduce the published numbers (``references``,
``compare``, ``report``), and are its numbers unchanged by batch size, chunk size and
precision (``invariance``)."""

from __future__ import annotations

from pathlib import Path


def verify_results(results: Path) -> int:
    """Print every record's verdict against the reference table; 1 when one is not reproduced."""
    from harness.gate.check import load_records
    from harness.verify.compare import MISSED, verdicts
    from harness.verify.references import load
    from harness.verify.report import format_report

    references = load()
    found, alone = verdicts(load_records(Path(results)), references)
    print(f"verify: records in {results} against {len(references)} published references")
    print(format_report(found, alone))
    return 1 if any(v.status == MISSED for v in found) else 0
