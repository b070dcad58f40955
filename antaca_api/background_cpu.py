"""The worker threads that take CPU-heavy request work off the event loop, and their waiting bound.

Why: everything a request does on the event loop delays every other request, a network's
authorizations included. Measured before this existed: eight clients sending wrong administrator
passwords (one scrypt each, 35-150 ms here, antaca_api/passwords.py) raised network authorization
latency to 3.5 s; in bench.auth_bench's auth_under_abuse (eight such clients and four sending JWE
requests, each an RSA decryption of ~1 ms) the network's p99 was 9.1-9.3 s before and 147-476 ms
with this executor, same runs (docs/benchmarks.md, "Isolation").

What runs here: password hashing (administrator sign-in and creation), the RSA work of JWE
(`antaca_api.routing.dispatch`), CSR signing and document digests. Never the network channel's
own work: the authorization path must not wait behind, or be refused by, anything queued here.

How:
- `hashlib.scrypt` and cryptography's RSA release the GIL (measured: a spinning Python thread kept
  its full rate while they ran in another thread), so threads run them beside the event loop;
- each worker thread lowers its own priority to nice 19 (Linux applies `setpriority` to a single
  thread given its thread id): when the machine is busy, the event loop and PostgreSQL get the CPU
  first and this work gets what is left;
- at most `waiting_jobs_max` jobs wait for a worker; beyond that `run` refuses at once with
  `ServiceBusy` (503 SERVICE_BUSY, Retry-After) instead of letting the queue, and every caller's
  wait, grow without bound.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from antaca_api.errors import ServiceBusy

# Two workers on this two-core machine, at most one scrypt (35-150 ms) per core; one worker
# measured no better under abuse (p99 133 and 108 ms against 78 and 91, same minutes).
WORKER_THREADS = 2
# 16 waiting scrypts behind 2 workers is ~0.8 s of waiting: past that a sign-in is better refused.
WAITING_JOBS_MAX = 16
# The lowest priority: heavy work takes the CPU nobody else wants. At nice 0 the same abuse
# measured p99 320-420 ms against 38 ms at 19 (SCHED_IDLE: no better than 19).
WORKER_NICE = 19

Result = TypeVar("Result")


def lower_own_priority(nice: int = WORKER_NICE) -> bool:
    """Give the calling thread the nice value `nice`; whether the platform allowed it.

    Only on Linux, where `setpriority(PRIO_PROCESS, tid)` addresses one thread; elsewhere the
    thread id would name a process (another one, possibly) or the whole process.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (AttributeError, OSError):  # OSError: PermissionError in a sandbox that forbids it
        return False
    return True


class BackgroundCpu:
    """Low-priority threads for CPU-heavy request work, with a waiting bound.

    `await background_cpu.run(func, *args)`: the result, or ServiceBusy at once.
    """

    def __init__(
        self, workers: int = WORKER_THREADS, waiting_jobs_max: int = WAITING_JOBS_MAX
    ) -> None:
        self.workers, self.waiting_jobs_max = workers, waiting_jobs_max
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="background-cpu", initializer=lower_own_priority
        )
        self._jobs = 0  # submitted and not finished: running and waiting
        self._lock = threading.Lock()  # jobs finish on the worker threads

    @property
    def waiting(self) -> int:
        """Jobs queued for a worker now."""
        return max(0, self._jobs - self.workers)

    def admits(self) -> bool:
        """Whether a job submitted now would be accepted."""
        return self._jobs < self.workers + self.waiting_jobs_max

    def check_capacity(self) -> None:
        """Refuse now (ServiceBusy) what would be refused later, before anything has changed."""
        if not self.admits():
            raise ServiceBusy()

    async def run(self, func: Callable[..., Result], *args: Any, refusable: bool = True) -> Result:
        """`func(*args)` on a worker thread; ServiceBusy at once when too many jobs wait.

        `refusable=False` is for work that must not be refused any more (a response to encrypt after
        the handler changed something): its request passed `check_capacity` before the handler ran.
        """
        if refusable:
            self.check_capacity()
        with self._lock:
            self._jobs += 1
        try:
            future = self._executor.submit(func, *args)
        except BaseException:  # shut down
            self._finished(None)
            raise
        future.add_done_callback(self._finished)  # also when cancelled before it started
        return await asyncio.wrap_future(future)

    def _finished(self, _: Future | None) -> None:
        with self._lock:
            self._jobs -= 1

    async def close(self) -> None:
        """Drop what waits, let running jobs end and join the threads, without blocking the loop."""
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
