"""The embedded PostgreSQL never outlives the service (antaca_auth/database.py embedded_server):
a service killed with SIGKILL leaves its server running; the next start adopts it and its clean
stop stops it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from antaca_auth.database import USERS_FILE, process_alive

ROOT = Path(__file__).resolve().parents[2]

# A stand-in for `antaca serve` on the embedded server: start it, say so, wait (or leave).
SERVICE = """
import sys, time
from pathlib import Path
from antaca_auth.database import embedded_server
with embedded_server(Path(sys.argv[1])) as dsn:
    print("ready", flush=True)
    if sys.argv[2] == "wait":
        time.sleep(600)
"""


def start(pgdata: Path, mode: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ANTACA_DATABASE_URL", None)
    return subprocess.Popen([sys.executable, "-c", SERVICE, str(pgdata), mode], env=env,
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)


def postmaster_pid(pgdata: Path) -> int | None:
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return None
    return int(pid_file.read_text().split("\n", 1)[0])


def wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not process_alive(pid):
            return True
        time.sleep(0.2)
    return False


def data_directory() -> Path:
    """Under /tmp like the test suite's own clusters: pytest's tmp_path is closed to the
    `pgserver` user PostgreSQL runs as when the tests run as root."""
    return Path(tempfile.mkdtemp(prefix="antaca-pg-stale-")) / "pgdata"


def test_after_a_sigkill_the_next_start_adopts_the_server_and_its_clean_stop_stops_it():
    pgdata = data_directory()
    killed = start(pgdata, "wait")
    assert killed.stdout.readline().strip() == "ready"
    server = postmaster_pid(pgdata)
    assert server is not None and process_alive(server)
    killed.send_signal(signal.SIGKILL)
    killed.wait(10)
    time.sleep(0.5)
    assert process_alive(server)  # the server outlived the killed service...

    clean = start(pgdata, "leave")
    assert clean.stdout.readline().strip() == "ready"
    assert clean.wait(60) == 0
    assert postmaster_pid(pgdata) in (server, None)  # ...was adopted, not a second one started
    assert wait_gone(server, 20), "the adopted server still runs after a clean stop"
    assert (pgdata / USERS_FILE).read_text().strip() == "[]"
    shutil.rmtree(pgdata.parent, ignore_errors=True)


def test_a_clean_stop_stops_the_server():
    pgdata = data_directory()
    service = start(pgdata, "leave")
    assert service.stdout.readline().strip() == "ready"
    assert service.wait(60) == 0
    server_pid_file = pgdata / "postmaster.pid"
    assert not server_pid_file.exists()  # PostgreSQL removes it when it stops
    shutil.rmtree(pgdata.parent, ignore_errors=True)
