"""A PostgreSQL cluster of a test's own, durable (fsync, synchronous_commit, full_page_writes on),
that the test can SIGKILL and start again on the same data directory (crash recovery).

The shared cluster of conftest.py turns durability off for speed, and it serves every other test:
a crash test can neither trust its commits nor kill it. This one runs pgserver's binaries (the
embedded server's, so no system PostgreSQL is needed) as a plain child process, not through
pg_ctl, so that the test holds the postmaster's pid and can kill it and its children.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import asyncpg
import psutil
from pgserver._commands import POSTGRES_BIN_PATH
from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

from tests.api_harness import free_port

# PostgreSQL refuses to run as root; pgserver runs it as this system user then (and so do we).
ROOT_RUN_AS = "pgserver"
DURABLE_SETTINGS = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
READY_SECONDS = 60


class DurableCluster:
    """initdb in `directory`, then start / crash / start again."""

    def __init__(self, directory: Path) -> None:
        self.data = directory / "pgdata"
        self.log = directory / "postgres.log"
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.user = ROOT_RUN_AS if os.geteuid() == 0 else None
        directory.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(mode=0o700)
        if self.user is not None:
            entry = ensure_user_exists(self.user)
            ensure_prefix_permissions(self.data)
            # The binaries and their libraries must be readable by that user (pgserver does this).
            ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
            ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
            os.chown(self.data, entry.pw_uid, entry.pw_gid)
            self.log.touch()
            os.chown(self.log, entry.pw_uid, entry.pw_gid)
        done = subprocess.run([str(POSTGRES_BIN_PATH / "initdb"), "-D", str(self.data),
                               "--auth=trust", "--encoding=utf8", "-U", "postgres"],
                              user=self.user, capture_output=True, text=True)
        assert done.returncode == 0, f"initdb failed:\n{done.stdout}\n{done.stderr}"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    async def start(self) -> None:
        """Start the postmaster (after a crash: recovery runs first) and wait until it answers."""
        settings = [arg for name, value in DURABLE_SETTINGS.items()
                    for arg in ("-c", f"{name}={value}")]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [str(POSTGRES_BIN_PATH / "postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-h", "127.0.0.1", "-k", str(self.data), *settings],
                stdout=log, stderr=log, user=self.user)
        deadline = time.monotonic() + READY_SECONDS
        while True:
            try:
                conn = await asyncpg.connect(self.dsn)
            except (OSError, asyncpg.PostgresError):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"postgres did not start:\n{self.log.read_text()[-3000:]}")
                await asyncio.sleep(0.1)
                continue
            try:
                for name, value in DURABLE_SETTINGS.items():
                    assert await conn.fetchval(f"SHOW {name}") == value, name
            finally:
                await conn.close()
            return

    def freeze(self) -> list[psutil.Process]:
        """Stop the postmaster (SIGSTOP: it forks nothing more) and return it with its children."""
        postmaster = psutil.Process(self.process.pid)
        postmaster.send_signal(signal.SIGSTOP)
        return [postmaster, *postmaster.children(recursive=True)]

    def crash(self, frozen: list[psutil.Process]) -> None:
        """SIGKILL the postmaster and every child: no checkpoint, no shutdown, no WAL flush beyond
        what the commits already did. A backend left alive would keep the shared memory attached
        and refuse the restart, so every one of them is waited for."""
        for process in frozen:
            try:
                process.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        self.process.wait(timeout=30)
        gone, alive = psutil.wait_procs(frozen[1:], timeout=30)
        alive = [p for p in alive if _running(p)]
        assert not alive, f"postgres children survived SIGKILL: {alive}"

    def stop(self) -> None:
        """Fast shutdown (SIGINT), or SIGKILL if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)



def _running(process: psutil.Process) -> bool:
    """Alive and not a zombie (a killed child not yet reaped by init holds no shared memory)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
