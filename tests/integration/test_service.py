"""The service: /health over real HTTP, and `antaca serve` on its own embedded database."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request

import asyncpg

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
    port, tls_port, metrics_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "ANTACA_DATABASE_URL"}
    env.update(ANTACA_PORT=str(port), ANTACA_TLS_PORT=str(tls_port), ANTACA_PGDATA=str(tmp_path / "pgdata"),
               ANTACA_ISO8583_PORT=str(free_port()), ANTACA_METRICS_PORT=str(metrics_port),
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
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=5) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        assert 'antaca_http_requests_total{method="GET",route="/health",status="200"}' in metrics
        assert "antaca_database_pool_connections_max" in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, output
    assert (tmp_path / "pgdata" / "PG_VERSION").exists()
    assert (tmp_path / "keys" / "ca.pem").exists() and (tmp_path / "keys" / "jwe-key.pem").exists()
    assert "listening on" in output and "created a development CA" in output


def _antaca(*args: str, **variables: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **variables}
    return subprocess.run([sys.executable, "-m", "antaca_api.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_bad_setting_stops_the_start_with_one_line_naming_it():
    done = _antaca("serve", ANTACA_METRICS_PORT="ninety")
    assert done.returncode == 2
    assert done.stderr.strip() == "antaca: ANTACA_METRICS_PORT: not a whole number: 'ninety'"
    assert "Traceback" not in done.stderr + done.stdout
    done = _antaca("serve", ANTACA_ENVIRONMENT="production")
    assert done.returncode == 2 and "ANTACA_PARTNER_CA_CERTIFICATE_FILE" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_config_prints_the_effective_settings_with_secrets_masked():
    done = _antaca("config", ANTACA_SMTP_PASSWORD="hunter2", ANTACA_PORT="8181")
    assert done.returncode == 0, done.stderr
    assert "port = 8181" in done.stdout.splitlines()
    assert "smtp_password = ********" in done.stdout and "hunter2" not in done.stdout


def test_migrate_status_and_dry_run(database_url):
    done = _antaca("migrate", "--status", ANTACA_DATABASE_URL=database_url)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("0001_ledger  applied ") and "PENDING" not in done.stdout
    done = _antaca("migrate", "--dry-run", ANTACA_DATABASE_URL=database_url)
    assert (done.returncode, done.stdout.strip()) == (0, "database is up to date")


def test_serve_refuses_a_database_ahead_of_its_migrations(database_url, tmp_path):
    async def newer_release_migrated() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("INSERT INTO schema_migrations (version, name, checksum)"
                               " VALUES (9999, '9999_from_a_newer_release', 'x')")
        finally:
            await conn.close()

    asyncio.run(newer_release_migrated())
    done = _antaca("serve", ANTACA_DATABASE_URL=database_url, ANTACA_PORT=str(free_port()),
                   ANTACA_TLS_PORT=str(free_port()), ANTACA_METRICS_PORT=str(free_port()),
                   ANTACA_ISO8583_PORT="0", ANTACA_KEY_DIR=str(tmp_path / "keys"))
    assert done.returncode == 1
    assert done.stderr.strip() == ("antaca: database has migrations this code does not know:"
                                   " [9999]")
