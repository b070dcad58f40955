"""The service: /health over real HTTP, and `antaca serve` on its own embedded database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

from tests.api_harness import free_port


async def test_health_reports_database_ok(api):
    async with api.client().get(f"{api.http}/health") as response:
        assert response.status == 200
        assert await response.json() == {"status": "ok", "database": "ok"}


async def test_health_reports_unreachable_database(api):
    await api.services.pool.close()  # the database is gone as far as the service can tell
    async with api.client().get(f"{api.http}/health") as response:
        assert response.status == 503
        assert (await response.json())["code"] == "DATABASE_UNAVAILABLE"


def test_serve_starts_embedded_database_and_answers_health(tmp_path):
    """What `make run` does, minus the install: no ANTACA_DATABASE_URL, embedded PostgreSQL."""
    port, tls_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "ANTACA_DATABASE_URL"}
    env.update(ANTACA_PORT=str(port), ANTACA_TLS_PORT=str(tls_port), ANTACA_PGDATA=str(tmp_path / "pgdata"),
               ANTACA_ISO8583_PORT=str(free_port()),
               ANTACA_KEY_DIR=str(tmp_path / "keys"))
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
    assert (tmp_path / "keys" / "ca.pem").exists() and (tmp_path / "keys" / "jwe-key.pem").exists()
    assert "listening on" in output and "created a development CA" in output
