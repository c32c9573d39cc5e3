"""The suite's PostgreSQL (tests/postgres_server.py): a private server starts, serves and leaves nothing
behind; a named server that does not answer stops the run with one line that shows no password.

CI's machine has a trusting server on 127.0.0.1:5432, so without these tests the private server would only
ever run where nothing listens."""

from __future__ import annotations

import os

import pytest

from tests.postgres_server import ENV, PostgresUnavailableError, PrivateServer, acquire, free_port, refusal

pytestmark = pytest.mark.postgres


def test_a_private_server_serves_the_suite_and_leaves_nothing_behind() -> None:
    import psycopg

    private = PrivateServer()
    server = private.start()
    try:
        assert (server.host, server.origin) == ("127.0.0.1", "private")
        with psycopg.connect(server.url(password="ignored-by-trust"), autocommit=True) as conn:
            assert conn.execute("SELECT current_user, current_setting('fsync')").fetchone() == ("postgres", "off")
            conn.execute("CREATE DATABASE resound_private_check")
        # Its socket is in its own directory, not in /var/run/postgresql (which a fresh machine may lack).
        assert any(p.name.startswith(".s.PGSQL.") for p in private.directory.iterdir())
        if os.geteuid() == 0:  # initdb refuses root: the cluster belongs to the postgres system user
            assert private.data.stat().st_uid == private.run_as.pw_uid  # type: ignore[union-attr]
    finally:
        private.stop()
    assert private.process is not None and private.process.poll() is not None
    assert not private.directory.exists()
    assert refusal(server.url()) is not None
    private.stop()  # a second stop (the atexit one) is harmless


def test_a_named_server_that_does_not_answer_stops_the_run_with_one_line() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(PostgresUnavailableError) as raised:
        acquire({ENV: f"postgresql://postgres:s3cret-pw@127.0.0.1:{port}/postgres"})
    message = str(raised.value)
    assert message.startswith(f"{ENV}=postgresql://postgres:***@127.0.0.1:{port}/postgres does not answer: ")
    assert "Connection refused" in message and "s3cret-pw" not in message and "\n" not in message
