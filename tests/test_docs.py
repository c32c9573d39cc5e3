"""The documentation site builds clean, and its reference covers every command, option and route (issue 24).

One strict build of the real site (mkdocs.yml at the top, the hook that generates the references) serves
every check here; a second build of a copy with one broken link shows that strict mode stops on it.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from indexer.cli import main as indexer_cli
from search.cli import main as search_cli

# Not skipped when missing: the test command installs the dev extra, which brings the docs extra.
try:
    import material  # noqa: F401
    import mkdocs  # noqa: F401
except ImportError as e:  # pragma: no cover
    raise ImportError(f"{e}: the documentation tests need the docs extra (pip install -e '.[docs]')") from e

REPO = Path(__file__).resolve().parents[1]


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
                           "--site-dir", str(site)], capture_output=True, text=True, cwd=config.parent, env=env,
                          check=False)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = mkdocs_build(REPO / "mkdocs.yml", out)
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    return out


def page_text(site: Path, page: str) -> str:
    """The visible text of a built page (tags dropped, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]+>", "", (site / page / "index.html").read_text()))


def sections_by_id(page_html: str) -> dict[str, str]:
    """Heading id -> the HTML from that heading to the next heading with an id."""
    parts = re.split(r'<h[1-6] id="([^"]+)"', page_html)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def walk(group: click.Group, path: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    for name, command in group.commands.items():
        if command.hidden:
            continue
        yield path + (name,), command
        if isinstance(command, click.Group):
            yield from walk(command, path + (name,))


def every_command() -> list[tuple[str, tuple[str, ...], click.Command]]:
    return [(prog, path, command) for prog, root in (("indexer", indexer_cli), ("search", search_cli))
            for path, command in walk(root)]


# -- the build -------------------------------------------------------------------------------------
def test_site_builds_strict_with_every_page_and_the_included_files(site: Path) -> None:
    for page in ("index.html", "install/index.html", "tour/index.html", "starter-model-card/index.html",
                 "benchmarks/index.html", "reference/indexer/index.html", "reference/search/index.html",
                 "reference/api/index.html", "reference/openapi.json"):
        assert (site / page).is_file(), page
    # The README's Set-up commands and the model card are included from where they live, not copied.
    readme = (REPO / "README.md").read_text()
    setup = re.findall(r"^```bash\n(.*?)\n```$", readme.split("\n## Set-up\n", 1)[1].split("\n## ", 1)[0],
                       flags=re.MULTILINE | re.DOTALL)
    install = page_text(site, "install")
    assert len(setup) == 2 and all(command in install for command in setup)
    card = (REPO / "indexer" / "starter" / "weights" / "MODEL_CARD.md").read_text()
    card_page = page_text(site, "starter-model-card")
    assert "Model card: starter" in card_page
    for heading in re.findall(r"^## (.+)$", card, flags=re.MULTILINE):
        assert heading.replace("`", "") in card_page, heading
    assert "deep resonant organ in a cathedral" in page_text(site, "tour")


def test_a_broken_link_or_a_missing_page_fails_the_build(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(REPO / "docs", copy / "docs")
    shutil.copy(REPO / "mkdocs.yml", copy / "mkdocs.yml")
    for included in ("README.md", "indexer/starter/weights/MODEL_CARD.md"):  # the snippets' sources
        (copy / included).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / included, copy / included)
    with (copy / "docs" / "usage.md").open("a") as usage:
        usage.write("\nSee [the tuning page](tuning.md).\n")
    (copy / "docs" / "orphan.md").write_text("# Not in the navigation\n")
    result = mkdocs_build(copy / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    assert "tuning.md" in result.stderr and "orphan.md" in result.stderr, result.stderr


# -- the command lines -----------------------------------------------------------------------------
def test_the_reference_shows_every_command_and_every_option(site: Path) -> None:
    commands = every_command()
    assert len(commands) >= 20  # both trees were walked, subcommands included
    for prog in ("indexer", "search"):
        sections = sections_by_id((site / "reference" / prog / "index.html").read_text())
        for command_prog, path, command in commands:
            if command_prog != prog:
                continue
            anchor = "-".join((prog, *path))
            assert anchor in sections, f"{prog} {' '.join(path)}: no section in the reference"
            text = html.unescape(re.sub(r"<[^>]+>", "", sections[anchor]))
            assert f"Usage: {prog} {' '.join(path)}" in text
            for param in command.params:
                if isinstance(param, click.Option):
                    for opt in (*param.opts, *param.secondary_opts):
                        assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text), \
                            f"{prog} {' '.join(path)}: {opt} is not in its reference section"


def test_every_command_is_explained_on_a_written_page(site: Path) -> None:
    """Beyond the generated reference: each command is named in the prose of some page."""
    written = " ".join(page_text(site, str(p.parent.relative_to(site))) for p in site.rglob("index.html")
                       if "reference" not in p.parts and p.parent != site) + page_text(site, ".")
    unexplained = [f"{prog} {' '.join(path)}" for prog, path, _ in every_command()
                   if f"{prog} {' '.join(path)}" not in written]
    assert unexplained == []


# -- the HTTP API ----------------------------------------------------------------------------------
def test_the_api_reference_is_the_served_openapi_document(site: Path) -> None:
    sys.path.insert(0, str(REPO / "docs" / "hooks"))
    try:
        import generate
    finally:
        sys.path.remove(str(REPO / "docs" / "hooks"))
    served = generate.openapi_document()
    assert json.loads((site / "reference" / "openapi.json").read_text()) == served
    sections = sections_by_id((site / "reference" / "api" / "index.html").read_text())
    for path, item in served["paths"].items():
        for method, operation in item.items():
            section = sections[operation["operationId"].lower()]
            assert f"{method.upper()} {path}" in html.unescape(re.sub(r"<[^>]+>", "", section))
            for parameter in operation.get("parameters", []):
                assert f"<code>{parameter['name']}</code>" in section, (path, parameter["name"])
    assert {"/api/query", "/api/similar", "/api/classify", "/api/duplicates"} <= set(served["paths"])


# -- the front page --------------------------------------------------------------------------------
def test_the_readme_is_a_front_page_whose_links_resolve() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [t for t in targets if not re.match(r"[a-z]+://", t)]
    assert "docs/index.md" in local and "docs/install.md" in local
    missing = [t for t in local if not (REPO / t).exists()]
    assert missing == []
