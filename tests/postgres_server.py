"""The PostgreSQL server the suite's `postgres` tests run against, found or started once per session.

In order:
- `RESOUND_TEST_POSTGRES=URL`: that server (a libpq URL of a superuser, e.g.
  `postgresql://postgres@db.example:5432/postgres`); one that does not answer stops the run with one line.
- `RESOUND_TEST_POSTGRES=private`: a private server, always.
- otherwise the server on 127.0.0.1:5432 when it lets `postgres` in without a password (the developer's
  and CI's usual set-up), else a private server: nothing listens there, or a freshly installed Debian cluster
  asks for a password.

A private server is Debian's `postgresql` package (`initdb` and `postgres` from
/usr/lib/postgresql/<version>/bin) run in a temporary directory: its data directory and unix socket live
there, it listens on 127.0.0.1 on a free port with trust authentication, and durability is switched off
(nothing in it outlives the session). `initdb` refuses to run as root, so as root the server runs as the
`postgres` system user that the package creates. It is stopped and its directory removed when the session
ends, on an interrupt too; were the test process killed outright, the kernel stops it (a parent-death signal
set by util-linux's `setpriv`).
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ENV = "RESOUND_TEST_POSTGRES"
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 5432
SUPERUSER = "postgres"
START_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 3


class PostgresUnavailableError(RuntimeError):
    """No PostgreSQL server can be found or started for the tests; the message says why and what to do."""


@dataclass(frozen=True)
class PostgresServer:
    """A server the suite may create and drop databases on, as the superuser `user`."""

    host: str
    port: int
    user: str = SUPERUSER
    password: str | None = None
    origin: str = "local"  # "local", "named" (RESOUND_TEST_POSTGRES=URL) or "private"

    def url(self, database: str = "postgres", driver: str = "postgresql", password: str | None = None) -> str:
        """A URL of `database` on this server; `password` replaces the server's own in the URL."""
        secret = password if password is not None else self.password
        auth = self.user + (f":{secret}" if secret else "")
        return f"{driver}://{auth}@{self.host}:{self.port}/{database}"


def refusal(url: str) -> str | None:
    """Why a superuser connection to `url` fails (the server's first line), or None when it succeeds."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as e:
        lines = str(e).strip().splitlines()
        return lines[0] if lines else type(e).__name__
    return None


def server_from_url(url: str) -> PostgresServer:
    """The host, port and credentials of a libpq URL (`postgresql://user:password@host:port/db`)."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(url)
    return PostgresServer(host=str(params.get("host") or DEFAULT_HOST), port=int(params.get("port") or DEFAULT_PORT),
                          user=str(params.get("user") or SUPERUSER), password=params.get("password") or None,
                          origin="named")


def redacted(url: str) -> str:
    """`url` without its password, for messages."""
    server = server_from_url(url)
    return server.url() if server.password is None else server.url(password="***")


def postgres_bin_dir() -> Path:
    """The bin directory of the newest PostgreSQL of Debian's packages that has initdb and postgres."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")
             if (Path(p).parent / "postgres").is_file()]
    if not found:
        raise PostgresUnavailableError(
            "no PostgreSQL binaries in /usr/lib/postgresql/*/bin: install Debian's postgresql package "
            "(apt-get install -y postgresql), or name a server with RESOUND_TEST_POSTGRES=postgresql://...")
    return max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)


def free_port(host: str = DEFAULT_HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class PrivateServer:
    """A throw-away PostgreSQL cluster in a temporary directory, owned by this process."""

    def __init__(self, bin_dir: Path | None = None) -> None:
        self.bin_dir = bin_dir or postgres_bin_dir()
        self.directory = Path(tempfile.mkdtemp(prefix="resound-test-postgres-"))
        self.data = self.directory / "data"
        self.log = self.directory / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.server: PostgresServer | None = None
        # initdb and postgres refuse root: run them as the package's system user, who must own the directory.
        self.run_as = _postgres_account() if os.geteuid() == 0 else None
        if self.run_as is not None:
            os.chown(self.directory, self.run_as.pw_uid, self.run_as.pw_gid)
        atexit.register(self.stop)

    def _run_kwargs(self) -> dict[str, object]:
        if self.run_as is None:
            return {}
        return {"user": self.run_as.pw_uid, "group": self.run_as.pw_gid, "extra_groups": [],
                "env": {**os.environ, "HOME": self.run_as.pw_dir, "USER": self.run_as.pw_name}}

    def start(self) -> PostgresServer:
        """Initialise the cluster and start the server; returns once it accepts connections."""
        initdb = subprocess.run(
            [str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
             "--encoding=UTF8", "--locale=C", "--no-sync"],
            capture_output=True, text=True, check=False, cwd=self.directory, **self._run_kwargs())  # type: ignore[call-overload]
        if initdb.returncode != 0:
            raise PostgresUnavailableError(f"initdb failed in {self.data}: {_last_line(initdb.stderr)}")
        for attempt in range(3):  # another process may take the free port before the server binds it
            port = free_port()
            if self._start_on(port):
                self.server = PostgresServer(DEFAULT_HOST, port, origin="private")
                return self.server
        raise PostgresUnavailableError(f"the private PostgreSQL server did not start: {self._log_tail()}")

    def _start_on(self, port: int) -> bool:
        settings = {
            "listen_addresses": DEFAULT_HOST, "port": str(port), "unix_socket_directories": str(self.directory),
            # A test database outlives nothing: durability only costs time.
            "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
        }
        # setpriv (util-linux, essential on Debian): the kernel sends the server SIGINT (a fast shutdown) when
        # this process dies without stopping it, e.g. a test run killed outright.
        setpriv = shutil.which("setpriv")
        command = [setpriv, "--pdeathsig", "INT"] if setpriv else []
        command += [str(self.bin_dir / "postgres"), "-D", str(self.data)]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        with open(self.log, "ab") as log:
            # Same process group as the tests: a Ctrl-C reaches the server too (a fast shutdown).
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=self.directory,
                                            **self._run_kwargs())  # type: ignore[call-overload]
        url = PostgresServer(DEFAULT_HOST, port).url()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if refusal(url) is None:
                return True
            time.sleep(0.2)
        self._stop_process()
        raise PostgresUnavailableError(f"the private PostgreSQL server did not accept connections within "
                                       f"{START_TIMEOUT_S:.0f} s: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return _last_line(self.log.read_text(errors="replace")) or "(empty server log)"
        except OSError:
            return "(no server log)"

    def _stop_process(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)  # fast shutdown: ends the sessions, then exits
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        """Stop the server and remove its directory (safe to call twice)."""
        self._stop_process()
        shutil.rmtree(self.directory, ignore_errors=True)


def _postgres_account() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SUPERUSER)
    except KeyError:
        raise PostgresUnavailableError(
            "running as root, the private PostgreSQL server needs the 'postgres' system user (initdb refuses "
            "root); Debian's postgresql package creates it (apt-get install -y postgresql)") from None


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def acquire(environ: dict[str, str] | None = None) -> tuple[PostgresServer, PrivateServer | None]:
    """The server for this session and, when one was started, the private server to stop afterwards.

    Raises PostgresUnavailableError when RESOUND_TEST_POSTGRES names a server that does not answer, or when
    a private server is needed and cannot be started.
    """
    environ = dict(os.environ if environ is None else environ)
    choice = environ.get(ENV, "").strip()
    if choice and choice != "private":
        reason = refusal(choice)
        if reason is not None:
            raise PostgresUnavailableError(f"{ENV}={redacted(choice)} does not answer: {reason}")
        return server_from_url(choice), None
    if not choice:
        local = PostgresServer(DEFAULT_HOST, DEFAULT_PORT)
        if refusal(local.url()) is None:
            return local, None
    private = PrivateServer()
    try:
        return private.start(), private
    except BaseException:
        private.stop()
        raise
