"""The HTTP side of remote authorization: Antaca asks a REMOTE program's partner at its remoteUrl
(antaca_auth/remote.py holds the question, the reading of the answer and the engine's protocol).

A call is a POST of the `RemoteQuestion` as JSON, signed as a Standard Webhooks message with the
program's advice endpoint's secret(s) (`webhook-id` is the authorization's id), over HTTPS with
the system's trust store, connecting only to addresses the webhook resolver allows (the
development setting `ANTACA_WEBHOOK_ALLOW_PRIVATE_TARGETS=1` allows loopback and http). Each
partner has at most `REMOTE_CALLS_IN_FLIGHT_MAX` calls in flight (its programs together); a call
waiting for a slot past its budget is BUSY. Every failure is a verdict, never an exception: the engine applies the
program's stand-in rule.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import aiohttp
import msgspec

from antaca_api import webhooks
from antaca_api.domain_errors import WebhookTargetRefused
from antaca_api.services import Services
from antaca_api.webhook_targets import CheckingResolver, check_form
from antaca_auth.remote import (
    REMOTE_ANSWER_BYTES_MAX,
    RemoteOutcome,
    RemoteQuestion,
    RemoteVerdict,
    read_answer,
)

log = logging.getLogger(__name__)

REMOTE_CALLS_IN_FLIGHT_MAX = 64  # per partner: one slow partner keeps at most this many waiting
REMOTE_CONNECTIONS_MAX = 1024  # across every partner
REMOTE_TARGET_CACHED_SECONDS = 5.0  # a program's URL and secrets, read again after this
USER_AGENT = "Antaca-Remote-Authorization/1"


class RemotePartners:
    """The engine's `RemotePartner`: one client session, a bounded slot pool per program."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._session: aiohttp.ClientSession | None = None
        self._session_allows_private = False
        self._slots: dict[uuid.UUID, asyncio.Semaphore] = {}
        self._targets: dict[uuid.UUID, tuple[float, webhooks.RemoteTarget | None]] = {}

    @property
    def allow_private(self) -> bool:
        return self.services.settings.webhook_allow_private_targets

    def _client(self) -> aiohttp.ClientSession:
        if self._session is not None and self._session_allows_private != self.allow_private:
            asyncio.get_running_loop().create_task(self._session.close())  # the setting changed
            self._session = None
        if self._session is None or self._session.closed:
            self._session_allows_private = self.allow_private
            connector = aiohttp.TCPConnector(
                resolver=CheckingResolver(allow_private=self.allow_private),
                limit=REMOTE_CONNECTIONS_MAX)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _target(self, program_id: uuid.UUID) -> webhooks.RemoteTarget | None:
        now = time.monotonic()
        cached = self._targets.get(program_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = await webhooks.remote_target(self.services.pool, self.services.card_keys,
                                             program_id)
        self._targets[program_id] = (now + REMOTE_TARGET_CACHED_SECONDS, found)
        return found

    async def ask(self, question: RemoteQuestion, budget_seconds: float) -> RemoteVerdict:
        sent = False
        try:
            async with asyncio.timeout(budget_seconds):
                target = await self._target(question.program_id)
                if target is None:
                    return RemoteVerdict(RemoteOutcome.ERROR, reason="not a REMOTE program")
                slots = self._slots.get(target.partner_id)
                if slots is None:
                    slots = self._slots[target.partner_id] = asyncio.Semaphore(
                        REMOTE_CALLS_IN_FLIGHT_MAX)
                async with slots:
                    sent = True
                    return await self._post(question, target.url, target.secrets)
        except TimeoutError:
            if not sent:
                return RemoteVerdict(RemoteOutcome.BUSY, reason="calls in flight at their bound")
            return RemoteVerdict(RemoteOutcome.TIMEOUT,
                                 reason=f"no answer within {budget_seconds * 1000:.0f} ms")

    async def _post(self, question: RemoteQuestion, url: str,
                    secrets: list[bytes]) -> RemoteVerdict:
        try:
            check_form(url, allow_private=self.allow_private)
        except WebhookTargetRefused as exc:
            return RemoteVerdict(RemoteOutcome.ERROR, reason=f"refused target: {exc.message}")
        body = msgspec.json.encode(question)
        message_id, timestamp = str(question.authorization_id), int(time.time())
        headers = {
            "Content-Type": "application/json", "User-Agent": USER_AGENT,
            "webhook-id": message_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": webhooks.signature_header(secrets, message_id, timestamp, body),
        }
        try:
            async with self._client().post(url, data=body, headers=headers,
                                           allow_redirects=False) as response:
                if not 200 <= response.status < 300:
                    return RemoteVerdict(RemoteOutcome.ERROR, reason=f"HTTP {response.status}")
                answer = await response.content.read(REMOTE_ANSWER_BYTES_MAX + 1)
        except WebhookTargetRefused as exc:
            return RemoteVerdict(RemoteOutcome.ERROR, reason=f"refused target: {exc.message}")
        except ValueError:  # aiohttp.InvalidURL included; the URL is not repeated
            return RemoteVerdict(RemoteOutcome.ERROR, reason="the remote URL is not usable")
        except aiohttp.ClientError as exc:
            return RemoteVerdict(RemoteOutcome.ERROR, reason=f"connection error: "
                                                             f"{type(exc).__name__}")
        return read_answer(answer, question.amount)
