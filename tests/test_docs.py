"""The README stays a user guide: short, every relative link resolves, every command it names exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from dopplerdiff.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_README_LINES = 250
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]


def _prose(text: str) -> str:
    """Markdown without fenced code blocks and with inline code blanked: links inside code are not links."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "code", text)


def links(path: Path) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", _prose(path.read_text(encoding="utf-8")))


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.M | re.S)
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, flags=re.M):
        base = slug(heading)
        n = seen.get(base, 0)
        out.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return out


def broken_links(path: Path) -> list[str]:
    bad = []
    for link in links(path):
        if re.match(r"[a-z]+:", link):  # http:, https:, mailto:
            continue
        target, _, anchor = link.partition("#")
        dest = (path.parent / target).resolve() if target else path
        if not dest.exists():
            bad.append(f"{link} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{link} (no such heading)")
    return bad


def cli_table_commands(text: str) -> list[str]:
    """First-column commands of the README's command table: `dopplerdiff edit transfer` -> 'edit transfer'."""
    section = text.split("## Command line", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `dopplerdiff ([a-z][a-z-]*(?: [a-z][a-z-]*)*)`", section, flags=re.M)


def app_commands() -> set[str]:
    """Every leaf command of the typer app, sub-commands as 'group command'."""
    def walk(cmd, prefix: str) -> set[str]:
        subs = getattr(cmd, "commands", None)
        if not subs:
            return {prefix}
        return {name for key, sub in subs.items() for name in walk(sub, f"{prefix} {key}".strip())}

    return walk(typer.main.get_command(app), "")


def test_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines; move details to docs/*.md"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(path):
    assert broken_links(path) == []


def test_broken_links_are_found(tmp_path):
    (tmp_path / "there.md").write_text("# A heading\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text("[ok](there.md#a-heading) [gone](missing.png) [bad](there.md#nope) "
                    "[web](https://example.org) `[code](not-a-link)`\n", encoding="utf-8")
    assert broken_links(page) == ["missing.png (no such file)", "there.md#nope (no such heading)"]


def test_cli_table_names_every_command_and_only_real_ones():
    named = cli_table_commands(README.read_text(encoding="utf-8"))
    assert named, "README has no command table under '## Command line'"
    real = app_commands()
    assert sorted(set(named) - real) == [], "README names commands the CLI does not have"
    assert sorted(real - set(named)) == [], "commands missing from the README's command table"


def test_named_test_files_exist():
    """Docs that point at a test file (`tests/<package>/test_x.py`) name one that is there."""
    named = {m for path in DOCS for m in re.findall(r"\btests/[\w/]+\.py", path.read_text(encoding="utf-8"))}
    assert named, "no doc names a test file: the pattern no longer matches"
    assert sorted(p for p in named if not (ROOT / p).is_file()) == []
