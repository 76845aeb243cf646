"""The README stays true to the code it describes."""

from __future__ import annotations

import re
import runpy

from tests.conftest import REPO_ROOT


def test_the_readmes_bench_sections_are_the_scripts():
    text = (REPO_ROOT / "README.md").read_text()
    (listed,) = re.findall(r"bench/run --only zipper\s+# one part: ([a-z |]+)", text)
    sections = runpy.run_path(str(REPO_ROOT / "bench/run"), run_name="bench")["SECTIONS"]
    assert [s.strip() for s in listed.split("|")] == list(sections)


def test_every_link_of_the_readme_and_the_architecture_page_exists():
    for page in ("README.md", "docs/ARCHITECTURE.md"):
        path = REPO_ROOT / page
        for target in re.findall(r"\]\(([^)#:]+)\)", path.read_text()):
            assert (path.parent / target).exists(), f"{page}: {target}"
