"""The README and docs/: short, their links and named files real, the CI command where .ci/run looks."""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")  # [text](target): relative targets only below
CODE_PATH = re.compile(r"`((?:ttt|configs|experiments|tests|docs)/[\w./-]+?)`")
IN_RUN_DIR = ("configs/launch-",)  # paths of a run directory that look like the checkout's


def test_readme_is_at_most_150_lines():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_and_named_paths_exist(page):
    text = page.read_text()
    links = [t for t in LINK.findall(text) if "://" not in t]
    missing = [t for t in links if not (page.parent / t).exists()]
    # a path in backticks names a file or folder of the checkout (placeholders like <name> aside)
    missing += [p for p in CODE_PATH.findall(text) if "<" not in p and "*" not in p and not p.startswith(IN_RUN_DIR) and not (ROOT / p.rstrip("/")).exists()]
    assert not missing, f"{page.relative_to(ROOT)} names what does not exist: {missing}"


def test_ci_finds_the_readme_test_command():
    awk = "/<!-- test-command -->/{found=1; next} found && /^```bash/{getline; print; exit}"
    command = subprocess.run(["awk", awk, str(ROOT / "README.md")], capture_output=True, text=True, check=True).stdout
    assert "python -m pytest" in command and "chromium" in command, command
