"""`search`: query an index by text or by example. Thin: parse options, call Engine, print."""

from __future__ import annotations

import json
from pathlib import Path

import click

from indexer.cli import ResoundGroup, db_option, index_option
from search.engine import Engine, Hit


@click.group(cls=ResoundGroup)
def main() -> None:
    """Search indexed audio by description or by example."""


def _print_hits(hits: list[Hit], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps([h.to_json() for h in hits], indent=2))
        return
    if not hits:
        click.echo("no results")
    for h in hits:
        click.echo(f"{h.rank:>3}  {h.score:6.3f}  {h.start:7.2f}-{h.end:<7.2f}  {h.path}")


def _common(f):  # type: ignore[no-untyped-def]
    for option in reversed([
        index_option,
        click.option("-k", "k", default=10, show_default=True, type=click.IntRange(1), help="Number of results."),
        click.option("--model", default=None, help="Model to embed the query with (default: the index's own)."),
        click.option("--device", default="cpu", show_default=True),
        db_option,
        click.option("--json", "as_json", is_flag=True, help="Print a JSON array of hits."),
    ]):
        f = option(f)
    return f


@main.command()
@click.argument("text")
@_common
def query(text: str, index_path: Path, k: int, model: str | None, device: str, db_url: str | None, as_json: bool) -> None:
    """Find the segments that best match a text description."""
    engine = Engine(index_path, model=model, device=device, db_url=db_url)
    try:
        _print_hits(engine.query(text, k), as_json)
    finally:
        engine.close()


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_common
def similar(file: Path, index_path: Path, k: int, model: str | None, device: str, db_url: str | None, as_json: bool) -> None:
    """Find the segments that sound most like FILE."""
    engine = Engine(index_path, model=model, device=device, db_url=db_url)
    try:
        _print_hits(engine.similar(file, k), as_json)
    finally:
        engine.close()


if __name__ == "__main__":
    main()
