"""MkDocs hook: the reference pages that are generated, at every build, from the code they describe.

- `reference/indexer.md`, `reference/search.md`: the `--help` of every command and subcommand of the two
  command lines, as click prints it (walked from `indexer.cli.main` and `search.cli.main`).
- `reference/api.md` and `reference/openapi.json`: the HTTP API from the OpenAPI document that
  `search serve` serves at `/api/openapi.json` (the FastAPI app is built, never started).

Nothing generated is committed, so nothing can drift: a changed option or route is in the next build, and
a command that cannot be rendered fails the build (`mkdocs build --strict` in tests/test_docs.py).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click

REPO = Path(__file__).resolve().parents[2]
HELP_WIDTH = 100  # columns of the rendered --help: fixed, so the pages do not depend on the builder's terminal


# -- command lines ---------------------------------------------------------------------------------
def walk_commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command under `group`, depth first in click's listing order, with its path of names."""
    ctx = click.Context(group, info_name=path[-1] if path else None)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        yield path + (name,), command
        if isinstance(command, click.Group):
            yield from walk_commands(command, path + (name,))


def command_help(root: click.Group, prog: str, path: tuple[str, ...]) -> str:
    """`prog path... --help` as click prints it, at HELP_WIDTH columns."""
    ctx = click.Context(root, info_name=prog, terminal_width=HELP_WIDTH, max_content_width=HELP_WIDTH)
    command: click.Command = root
    for name in path:
        assert isinstance(command, click.Group)
        sub = command.get_command(ctx, name)
        assert sub is not None, f"{prog} {' '.join(path)}: no such command"
        command = sub
        ctx = click.Context(command, info_name=name, parent=ctx, terminal_width=HELP_WIDTH, max_content_width=HELP_WIDTH)
    return command.get_help(ctx)


def anchor(prog: str, path: tuple[str, ...]) -> str:
    """The page anchor of a command's section (`indexer-models-download`)."""
    return "-".join((prog, *path))


def cli_page(root: click.Group, prog: str, intro: str) -> str:
    """One markdown page: a table of the commands, then each command's --help under its own heading."""
    commands = list(walk_commands(root))
    # The help is 100 columns of preformatted text: the page gives it the width of the table of contents.
    lines = ["---", "hide:", "  - toc", "---", "", f"# `{prog}` command reference", "", intro, "",
             (f"Generated at every build of this site from the commands' own `--help` (click's text, "
              f"{HELP_WIDTH} columns): what you read here is what `{prog} ... --help` prints."), "",
             "| command | what it does |", "|---|---|"]
    for path, command in commands:
        summary = command.get_short_help_str(limit=200).replace("|", "\\|")
        lines.append(f"| [`{prog} {' '.join(path)}`](#{anchor(prog, path)}) | {summary} |")
    lines += ["", f"## `{prog}` {{#{prog}}}", "", "```text", command_help(root, prog, ()), "```", ""]
    for path, _ in commands:
        level = "#" * min(2 + len(path) - 1, 4)
        lines += [f"#{level} `{prog} {' '.join(path)}` {{#{anchor(prog, path)}}}", "",
                  "```text", command_help(root, prog, path), "```", ""]
    return "\n".join(lines)


# -- HTTP API --------------------------------------------------------------------------------------
def openapi_document() -> dict[str, Any]:
    """The document `search serve` serves at /api/openapi.json, for an audio-visual index.

    The app is built around a stand-in engine that carries only what the routes' signatures read (the
    index's modalities); no index, model or server is opened. An audio-only index serves the same document
    with `audio` as the only modality.
    """
    from search.engine import Engine
    from search.service import ServiceConfig, create_app

    class SchemaOnlyEngine(Engine):
        def __init__(self) -> None:  # deliberately opens nothing
            self.index = SimpleNamespace(catalog=None, path=Path("index"))
            self.encoder = SimpleNamespace(restrict=None)  # an audio-visual encoder's mark: all modalities

    return create_app(SchemaOnlyEngine(), ServiceConfig()).openapi()


def _schema_type(schema: dict[str, Any], components: dict[str, Any]) -> str:
    """A short human form of a JSON schema: `integer`, `array of Hit`, `"audio" | "visual"`."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#schema-{name.lower()})"
    if "enum" in schema:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " or ".join(_schema_type(s, components) for s in schema[key])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {_schema_type(schema.get('items', {}), components)}"
    if schema.get("format"):
        return f"{kind} ({schema['format']})"
    return str(kind)


def _constraints(schema: dict[str, Any]) -> str:
    parts = []
    for key, word in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<"),
                      ("minLength", "length >="), ("maxLength", "length <="), ("minItems", "items >="),
                      ("maxItems", "items <="), ("pattern", "pattern")):
        if key in schema:
            parts.append(f"{word} `{schema[key]}`")
    if "default" in schema:
        parts.append(f"default `{json.dumps(schema['default'])}`")
    return ", ".join(parts)


def _cell(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def _properties_table(schema: dict[str, Any], components: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", []))
    lines = ["| field | type | required | constraints | description |", "|---|---|---|---|---|"]
    for name, prop in schema.get("properties", {}).items():
        lines.append(f"| `{name}` | {_schema_type(prop, components)} | {'yes' if name in required else ''} | "
                     f"{_constraints(prop)} | {_cell(prop.get('description') or prop.get('title'))} |")
    return lines


def _first_sentence(operation: dict[str, Any]) -> str:
    """The first sentence of an operation's description (its docstring), else FastAPI's summary."""
    description = " ".join((operation.get("description") or "").split())
    return description.split(". ", 1)[0].rstrip(".") if description else operation.get("summary", "")


def api_page(doc: dict[str, Any]) -> str:
    """The API reference: each operation's parameters, body and answers, then the schemas."""
    components = doc.get("components", {}).get("schemas", {})
    info = doc["info"]
    lines = ["# HTTP API reference", "",
             f"{_cell(info.get('summary'))} (OpenAPI {doc['openapi']}, API version {info['version']}.)", "",
             ("Generated at every build of this site from the OpenAPI document that `search serve` serves at "
              "`/api/openapi.json`, for an audio-visual index (an audio-only index admits only `\"audio\"` "
              "where a modality is asked for). The document itself: [openapi.json](openapi.json). What the "
              "service does with these answers, and its limits, is on [the search service](../service.md)."),
             "", "| method | path | what it does |", "|---|---|---|"]
    operations = [(path, method, op) for path, item in doc["paths"].items() for method, op in item.items()]
    for path, method, op in operations:
        lines.append(f"| `{method.upper()}` | [`{path}`](#{op['operationId'].lower()}) | {_cell(_first_sentence(op))} |")
    for path, method, op in operations:
        lines += ["", f"## `{method.upper()} {path}` {{#{op['operationId'].lower()}}}", ""]
        if op.get("description"):
            lines += [op["description"].strip(), ""]
        params = op.get("parameters", [])
        if params:
            lines += ["| parameter | in | type | required | constraints | description |", "|---|---|---|---|---|---|"]
            for p in params:
                schema = p.get("schema", {})
                lines.append(f"| `{p['name']}` | {p['in']} | {_schema_type(schema, components)} | "
                             f"{'yes' if p.get('required') else ''} | {_constraints(schema)} | "
                             f"{_cell(p.get('description') or schema.get('description'))} |")
            lines.append("")
        body = op.get("requestBody")
        if body:
            for media_type, content in body.get("content", {}).items():
                schema = content.get("schema", {})
                if "$ref" in schema:
                    schema = components[schema["$ref"].rsplit("/", 1)[-1]]
                lines += [f"Request body (`{media_type}`{', required' if body.get('required') else ''}):", ""]
                lines += _properties_table(schema, components) + [""]
        lines += ["| status | answer | body |", "|---|---|---|"]
        for status, response in op.get("responses", {}).items():
            kinds = [f"`{media}`: {_schema_type(c.get('schema', {}), components)}"
                     for media, c in response.get("content", {}).items()]
            lines.append(f"| {status} | {_cell(response.get('description'))} | {'; '.join(kinds)} |")
    lines += ["", "## Schemas", ""]
    for name, schema in sorted(components.items()):
        lines += [f"### {name} {{#schema-{name.lower()}}}", ""]
        if schema.get("description"):
            lines += [_cell(schema["description"]), ""]
        if "properties" in schema:
            lines += _properties_table(schema, components)
        else:
            lines.append(f"Type: {_schema_type(schema, components)}")
        lines.append("")
    return "\n".join(lines)


# -- the hook --------------------------------------------------------------------------------------
INDEXER_INTRO = ("`indexer` builds and keeps indexes: it walks a corpus, embeds its windows and writes the FAISS "
                 "files and the catalog. How to use it: [usage](../usage.md), [watch](../watch.md), "
                 "[Ray](../ray.md), [models](../models.md).")
SEARCH_INTRO = ("`search` answers from an index: by description, by example, zero-shot labels, duplicates, and "
                "the HTTP service. How to use it: [usage](../usage.md), [filters](../filters.md), "
                "[classification](../classification.md), [the service](../service.md).")


def generated_pages() -> dict[str, str]:
    """Site path -> content of every generated page and file."""
    if str(REPO) not in sys.path:  # the checkout being documented, whatever is installed
        sys.path.insert(0, str(REPO))
    from indexer.cli import main as indexer_cli
    from search.cli import main as search_cli

    doc = openapi_document()
    return {
        "reference/indexer.md": cli_page(indexer_cli, "indexer", INDEXER_INTRO),
        "reference/search.md": cli_page(search_cli, "search", SEARCH_INTRO),
        "reference/api.md": api_page(doc),
        "reference/openapi.json": json.dumps(doc, indent=2) + "\n",
    }


def on_files(files: Any, config: Any) -> Any:
    """MkDocs event: add the generated pages to the site's files before navigation is built."""
    from mkdocs.structure.files import File

    for src_uri, content in generated_pages().items():
        files.append(File.generated(config, src_uri, content=content))
    return files
