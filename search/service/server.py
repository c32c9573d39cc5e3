"""Running the service: in the foreground (`search serve`), or on a background thread of a Python program
(tests, benchmarks, notebooks) on a free port."""

from __future__ import annotations

import errno
import signal
import socket
import threading
from types import TracebackType
from typing import Callable, Self

from indexer.errors import ResoundError
from search.service.config import is_loopback


class BindError(ResoundError):
    """The service's address cannot be listened on: the port is taken, or not ours to take."""

    def __init__(self, host: str, port: int, reason: str):
        self.host, self.port, self.reason = host, port, reason
        super().__init__(f"port {port} on {host} {reason}")


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); raises BindError with a plain reason when that fails."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers, not live listeners
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as e:
        sock.close()
        reason = {errno.EADDRINUSE: "is already in use", errno.EACCES: "needs privileges to listen on",
                  errno.EADDRNOTAVAIL: "is on an address this machine does not have"}.get(
            e.errno, f"cannot be listened on ({(e.strerror or str(e)).lower()})")
        raise BindError(host, port, reason) from e
    return sock


def run_server(app, sock: socket.socket, log_level: str = "info",  # type: ignore[no-untyped-def]
               on_started: Callable[[], None] | None = None) -> None:
    """Serve `app` on the bound socket `sock` (bind_socket) until interrupted (Ctrl-C); `on_started` runs
    once the server is up."""
    import uvicorn

    class _Server(uvicorn.Server):
        async def startup(self, sockets=None) -> None:  # type: ignore[no-untyped-def]
            await super().startup(sockets)
            if self.started and on_started is not None:
                on_started()

    # uvicorn shuts down gracefully on SIGINT or SIGTERM, then raises the signal again under the handler it
    # found. Python's default for SIGTERM ends the process on the spot, skipping every `finally` (serve.json
    # would stay behind); this handler turns it into an exception, as SIGINT's KeyboardInterrupt is.
    previous = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
    if previous is not None:
        signal.signal(signal.SIGTERM, _terminated)
    try:
        _Server(uvicorn.Config(app, log_level=log_level, server_header=False)).run(sockets=[sock])
    except (KeyboardInterrupt, _Terminated):  # the signal uvicorn shut down on: a normal end
        pass
    finally:
        sock.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class _Terminated(Exception):
    """SIGTERM, raised where the main thread is (see run_server)."""


def _terminated(signum: int, frame: object) -> None:
    raise _Terminated()


class BackgroundServer:
    """Serves an app on a daemon thread; `with BackgroundServer(app) as server: httpx.get(server.url)`.

    The socket is bound before the thread starts, so the port is known and taken, with no race for it.
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):  # type: ignore[no-untyped-def]
        import uvicorn

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = host, self._socket.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, server_header=False,
                                                     timeout_graceful_shutdown=5))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True,
                                        name=f"resound-service-{self.port}")

    @property
    def url(self) -> str:
        """The service's base URL, e.g. http://127.0.0.1:43121"""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        """Start serving; returns once the server accepts connections. Raises RuntimeError if it never does."""
        self._thread.start()
        ready = threading.Event()

        def wait() -> None:
            while not self._server.started and self._thread.is_alive():
                ready.wait(0.02)
            ready.set()

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        waiter.join(timeout)
        if not self._server.started:
            self.stop()
            raise RuntimeError(f"the service did not start on {self.url} within {timeout:g} s")
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread (open requests get a short grace period)."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(10)
        self._socket.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


__all__ = ["BackgroundServer", "BindError", "bind_socket", "is_loopback", "run_server"]
