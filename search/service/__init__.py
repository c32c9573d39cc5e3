"""`search serve`: an HTTP API (FastAPI) and a web page to search an index and listen to the results.

    from search.service import bind_socket, create_app, run_server
    run_server(create_app("corpus.idx"), bind_socket("127.0.0.1", 8000))

Needs the `serve` extra (fastapi, uvicorn, python-multipart); without it, importing this package raises
MissingDependencyError saying what to install.
"""

from __future__ import annotations

from indexer.errors import MissingDependencyError


def _require_serve_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise MissingDependencyError(
            f"search serve needs the web service packages ({e.name} is missing): pip install \"resound[serve]\""
        ) from e
    try:  # python-multipart parses uploads; renamed python_multipart in 0.0.13
        import python_multipart  # noqa: F401
    except ImportError:
        try:
            import multipart  # noqa: F401
        except ImportError as e:
            raise MissingDependencyError(
                "search serve needs python-multipart for uploads: pip install \"resound[serve]\""
            ) from e


_require_serve_extra()

from search.service.app import SearchService, create_app
from search.service.config import ServiceConfig
from search.service.server import BackgroundServer, BindError, bind_socket, run_server

__all__ = ["BackgroundServer", "BindError", "SearchService", "ServiceConfig", "bind_socket", "create_app", "run_server"]
