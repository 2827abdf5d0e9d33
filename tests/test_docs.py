"""The documentation: README.md's links resolve, every page under docs/ is in mkdocs.yml's nav (and every nav entry is
a page), every recipe key is documented in docs/recipes.md, and the site builds with ``mkdocs build --strict`` (no
broken internal link or anchor; the slower tier)."""

import dataclasses
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)


def prose(text: str) -> str:
    """`text` without fenced code blocks and inline code, where brackets and parentheses are code, not links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def links(text: str):
    """The targets of the Markdown links `[text](target)` in `text`'s prose."""
    return LINK.findall(prose(text))


def is_external(target: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I))  # http:, https:, mailto:, ...


def slug(heading: str) -> str:
    """The anchor Python-Markdown's toc extension (mkdocs' default) gives a heading."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(path: Path):
    return {slug(h) for h in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8")))}


def nav_pages(nav):
    """Every page path in an mkdocs `nav` (strings, or titles mapped to strings or nested lists)."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in nav_pages(value)]
    raise AssertionError(f"unexpected nav entry {nav!r}")


def mkdocs_nav():
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    return [page for page in nav_pages(config["nav"]) if not is_external(page)]


def test_every_relative_link_in_the_readme_points_to_a_file_of_the_repository():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    targets = [t for t in links(readme) if not is_external(t) and not t.startswith("#")]
    assert targets, "README.md has no relative links: it should link to the guides under docs/"
    broken = []
    for target in targets:
        path, _, anchor = target.partition("#")
        file = (REPO / path).resolve()
        if not file.is_file():
            broken.append(f"{target}: no file {path}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: {path} has no heading with the anchor #{anchor}")
    assert broken == []


def test_the_readme_links_every_guide():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    linked = {t.partition("#")[0] for t in links(readme)}
    missing = [page for page in mkdocs_nav() if f"docs/{page}" not in linked]
    assert missing == []


def test_the_readme_keeps_the_test_command_that_ci_runs():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    commands = [line.strip() for line in readme.splitlines()[:20] if line.startswith("    pip install")]
    assert len(commands) == 2, "README.md opens with two commands: the quickstart and the tests"
    assert commands[1] in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def test_every_page_under_docs_is_in_the_nav_and_every_nav_entry_is_a_page():
    nav = mkdocs_nav()
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    assert pages, "docs/ holds no pages"
    assert sorted(set(pages) - set(nav)) == [], "pages under docs/ missing from mkdocs.yml's nav"
    assert sorted(set(nav) - set(pages)) == [], "nav entries of mkdocs.yml without a page under docs/"
    assert len(nav) == len(set(nav)), "a page appears twice in the nav"


def test_every_recipe_key_is_documented_in_the_recipes_guide():
    from svp_hf import config

    keys = {
        f.name
        for value in vars(config).values()
        if isinstance(value, type) and dataclasses.is_dataclass(value) and value.__name__.endswith("Arguments")
        for f in dataclasses.fields(value)
    }
    assert {"dataset_name", "proxy", "fraction", "target", "budgets"} <= keys
    recipes = (DOCS / "recipes.md").read_text(encoding="utf-8")
    assert sorted(k for k in keys if f"`{k}`" not in recipes) == []


@pytest.mark.slow
def test_the_documentation_site_builds_with_no_broken_link_or_anchor(tmp_path):
    pytest.importorskip("mkdocs")
    site = tmp_path / "site"
    command = [
        sys.executable,
        "-m",
        "mkdocs",
        "build",
        "--strict",
        "--config-file",
        str(REPO / "mkdocs.yml"),
        "-d",
        str(site),
    ]
    built = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    assert (site / "index.html").is_file()
    missing = [
        page for page in mkdocs_nav() if page != "index.md" and not (site / Path(page).stem / "index.html").is_file()
    ]
    assert missing == []
