"""The service: /health over real HTTP, and `antaca serve` on its own embedded database."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from aiohttp.test_utils import TestClient, TestServer

from antaca_api.app import create_app
from antaca_auth.database import create_pool


async def test_health_reports_database_ok(pool):
    async with TestClient(TestServer(create_app(pool))) as client:
        response = await client.get("/health")
        assert response.status == 200
        assert await response.json() == {"status": "ok", "database": "ok"}


async def test_health_reports_unreachable_database(database_url):
    pool = await create_pool(database_url, min_size=1, max_size=1)
    async with TestClient(TestServer(create_app(pool))) as client:
        await pool.close()  # the database is gone as far as the service can tell
        response = await client.get("/health")
        assert response.status == 503
        assert (await response.json())["database"] == "unreachable"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_starts_embedded_database_and_answers_health(tmp_path):
    """What `make run` does, minus the install: no ANTACA_DATABASE_URL, embedded PostgreSQL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "ANTACA_DATABASE_URL"}
    env.update(ANTACA_PORT=str(port), ANTACA_PGDATA=str(tmp_path / "pgdata"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "antaca_api.cli", "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        body = None
        while time.monotonic() < deadline and body is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    assert response.status == 200
                    body = response.read()
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode()
                time.sleep(0.2)
        assert body == b'{"status":"ok","database":"ok"}'
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, output
    assert (tmp_path / "pgdata" / "PG_VERSION").exists()
    assert "listening on" in output
