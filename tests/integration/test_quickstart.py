"""The partner quickstart (examples/partner_quickstart.py) against the real service: `antaca serve`
started as a subprocess with the sandbox on, the script run as a partner would run it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.api_harness import free_port

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "partner_quickstart.py"
START_SECONDS = 60  # the service migrates (nothing here: a migrated clone) and starts
SCRIPT_SECONDS = 180


def start_service(env: dict) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "antaca_api.cli", "serve"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{env['ANTACA_PORT']}/health",
                                        timeout=2) as response:
                if response.status == 200:
                    return proc
        except OSError:
            assert proc.poll() is None, proc.stdout.read().decode()
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("the service did not start: " + proc.communicate()[0].decode())


def test_the_quickstart_runs_against_the_service(database_url, tmp_path):
    port, tls_port = free_port(), free_port()
    env = {**os.environ, "ANTACA_DATABASE_URL": database_url, "ANTACA_PORT": str(port),
           "ANTACA_TLS_PORT": str(tls_port), "ANTACA_ISO8583_PORT": "0", "ANTACA_METRICS_PORT": "0",
           "ANTACA_KEY_DIR": str(tmp_path / "keys"), "ANTACA_SANDBOX": "1",
           "ANTACA_WEBHOOK_ALLOW_PRIVATE_TARGETS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("ANTACA_CARD_KEYS", None)
    proc = start_service(env)
    transcript = tmp_path / "walkthrough.md"
    try:
        run = subprocess.run(
            [sys.executable, str(SCRIPT), "--base-url", f"http://127.0.0.1:{port}",
             "--tls-url", f"https://127.0.0.1:{tls_port}", "--transcript", str(transcript),
             "--antaca-command", f"{sys.executable} -m antaca_api.cli"],
            env=env, capture_output=True, text=True, timeout=SCRIPT_SECONDS)
    finally:
        proc.send_signal(signal.SIGTERM)
        service_output = proc.communicate(timeout=30)[0].decode()
    lines = run.stdout.strip().splitlines()
    assert lines, run.stderr
    result = json.loads(lines[-1])
    assert result["ok"] is True, (result, run.stdout, run.stderr, service_output[-3000:])
    assert result["steps"] == 16 and 0 < result["seconds"] < SCRIPT_SECONDS
    assert set(result) == {"ok", "steps", "seconds"}
    text = transcript.read_text()
    assert "POST /secure/simulate/authorizations" in text and '"APPROVED"' in text
    assert "webhook-signature" in text


def test_the_quickstart_imports_nothing_of_antaca():
    source = SCRIPT.read_text()
    assert "antaca_api" not in source.replace("antaca_api.cli", "")
    assert "import antaca" not in source and "from antaca" not in source
