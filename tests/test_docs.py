"""The README and the docs/ pages stay true to the command line: every `vlbench ...` command
shown in a code block parses with the real parser, and nothing points outside the repository."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from harness.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# a command line shown with placeholders for choices ("a|b", "[--opt X]", "...") is a synopsis, not a command
SYNOPSIS = re.compile(r"\[|\]|\||\.\.\.|<|>|\{|\}")


def _commands(page: Path) -> list[tuple[int, str]]:
    out, in_code = [], False
    for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip().startswith("```"):
            in_code = not in_code
            continue
        text = line.split("#", 1)[0].strip()
        for prefix in ("vlbench ", ".venv/bin/vlbench ", "venv/bin/vlbench "):
            if in_code and text.startswith(prefix):
                out.append((n, text[len(prefix):]))
    return out


def test_the_pages_show_commands():
    assert sum(len(_commands(p)) for p in PAGES) >= 20 and len(PAGES) >= 8


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_command_shown_parses(page):
    parser = build_parser()
    for n, command in _commands(page):
        if SYNOPSIS.search(command) or "&&" in command:
            continue
        try:
            parser.parse_args(shlex.split(command))
        except SystemExit as exc:
            pytest.fail(f"{page.name}:{n}: `vlbench {command}` does not parse (exit {exc.code})")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_page_points_outside_the_repository(page):
    text = page.read_text(encoding="utf-8")
    assert "../shared" not in text and "DESIGN.md" not in text
    for target in re.findall(r"\]\(((?!https?:)[^)#]+)", text):
        assert (page.parent / target).exists(), f"{page.name}: link to {target} goes nowhere"


def test_the_readme_is_short():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 180
