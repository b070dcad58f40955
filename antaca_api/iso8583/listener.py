"""The ISO 8583 listener: long-lived TCP (or TLS) connections from a card network, each message
decoded, handed to one domain function (the engine or the follow-ups) and answered.

Frames are a 2-byte big-endian length and the message. Requests on one connection run
concurrently (up to `IN_FLIGHT_PER_CONNECTION_MAX`) and are answered as they are decided, out of
order: the network matches answers by the STAN (DE11) and RRN (DE37) they echo. A message that
does not decode is answered DE39 30; only a broken frame (a length above `MESSAGE_BYTES_MAX`)
closes the connection. No log line holds a message's bytes or card data.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import itertools
import logging
import ssl
import uuid
from datetime import UTC, datetime

import iso8583

from antaca_api.channels import NETWORK_CERTIFICATE
from antaca_api.iso8583 import messages
from antaca_api.iso8583.messages import FormatError, Unsupported
from antaca_api.iso8583.spec import LENGTH_PREFIX_BYTES, MESSAGE_BYTES_MAX, MESSAGE_BYTES_MIN, SPEC
from antaca_auth import followups
from antaca_auth.authorization import ClearPinRefused
from antaca_auth.engine import OutcomeUnknown

log = logging.getLogger(__name__)

IN_FLIGHT_PER_CONNECTION_MAX = 512  # messages being decided on one connection; then reading waits
ECHO_AFTER_IDLE_SECONDS = 30.0  # no message for this long: Antaca sends an echo (0800, DE70 301)
IDLE_SECONDS_MAX = 120.0  # no message for this long: the connection is closed
HANDSHAKE_SECONDS_MAX = 10.0  # TLS handshake
FRAME_SECONDS_MAX = 10.0  # a frame's bytes after its length prefix (a slow sender is cut)
STAN_MODULUS = 1_000_000  # DE11 is six digits

# Plain TCP, for a network named in the settings (behind a private link that does its own TLS):
# the same columns as the certificate lookup, through the same cache (a change to the network
# empties it). No certificate, so no expiry: NULL, not 'infinity', which asyncpg decodes to a
# naive datetime that cannot be compared with an aware one (every plain connection failed).
NETWORK_BY_ID = """
    SELECT n.id AS network_id, NULL::timestamptz AS revoked_at,
           NULL::timestamptz AS not_after, n.status, n.authorization_deadline_ms
    FROM networks n WHERE n.id = $1::text::uuid"""

AUTHORIZATIONS = frozenset({"0100", "0101"})
FINANCIAL_REQUESTS = frozenset({"0200", "0201"})
AUTHORIZATION_ADVICES = frozenset({"0120", "0121"})
FINANCIAL_ADVICES = frozenset({"0220", "0221"})
REVERSALS = frozenset({"0400", "0401", "0420", "0421"})
NETWORK_MANAGEMENT = frozenset({"0800", "0801"})
ECHO_ANSWER = "0810"  # the network's answer to Antaca's own echo: nothing to do


class _Refused(Exception):
    """The connection's certificate (or network) is no longer valid: close the connection."""


class _Connection:
    """One network connection: its writer, its in-flight bound and its requests in flight."""

    def __init__(self, writer: asyncio.StreamWriter, lookup: tuple[str, str]) -> None:
        self.writer = writer
        self.lookup = lookup  # (query, key) finding the network's row in the credential cache
        self.slots = asyncio.Semaphore(IN_FLIGHT_PER_CONNECTION_MAX)
        self.in_flight: set[asyncio.Task] = set()
        self.signed_on = False

    def send(self, fields: dict) -> None:
        try:
            raw, _ = iso8583.encode(fields, SPEC)
        except iso8583.EncodeError as exc:  # a field of ours out of its format: never the data
            log.error("ISO 8583 answer %s not encodable: field %s", fields.get("t"), exc.field)
            raw, _ = iso8583.encode({"t": fields["t"], "39": messages.SYSTEM_MALFUNCTION}, SPEC)
        if not self.writer.is_closing():
            self.writer.write(len(raw).to_bytes(LENGTH_PREFIX_BYTES, "big") + raw)


class Iso8583Listener:
    """Accepts network connections and answers their messages with the service's engine."""

    def __init__(self, services, *, ssl_context: ssl.SSLContext | None = None,
                 network_id: uuid.UUID | None = None) -> None:
        if ssl_context is None and network_id is None:
            raise ValueError("plain TCP needs its network (ANTACA_ISO8583_NETWORK_ID)")
        self.services, self.ssl_context, self.network_id = services, ssl_context, network_id
        self.counters: collections.Counter[str] = collections.Counter()
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task] = set()
        self._readers: set[asyncio.Task] = set()
        self._stan = itertools.count(1)

    async def start(self, *, host: str | None = None, port: int | None = None, sock=None) -> None:
        handshake = HANDSHAKE_SECONDS_MAX if self.ssl_context is not None else None
        self._server = await asyncio.start_server(
            self._accept, host=host, port=port, sock=sock, ssl=self.ssl_context,
            ssl_handshake_timeout=handshake)

    @property
    def port(self) -> int:
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop accepting and reading; answer what is in flight (the engine answers every request
        by its deadline), then close the connections."""
        if self._server is not None:
            self._server.close()
        for reader in list(self._readers):
            reader.cancel()
        await asyncio.gather(*list(self._connections), return_exceptions=True)

    def statistics(self) -> dict[str, int]:
        return dict(self.counters)

    # --- connections -------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._connections.add(task)
        connection = None
        try:
            lookup = self._lookup_key(writer)
            if lookup is None:
                self.counters["connections_refused"] += 1
                return
            connection = _Connection(writer, lookup)
            await self._network(connection)  # refuses an unknown or revoked certificate at once
            self.counters["connections"] += 1
            reading = asyncio.create_task(self._read(reader, connection))
            self._readers.add(reading)
            try:
                await reading
            finally:
                self._readers.discard(reading)
        except _Refused:
            self.counters["connections_refused"] += 1
        except asyncio.CancelledError:  # the listener is stopping: answer what is in flight
            pass
        except Exception:  # a connection's failure never takes the listener with it
            log.exception("ISO 8583 connection failed")
        finally:
            if connection is not None and connection.in_flight:
                await asyncio.gather(*list(connection.in_flight), return_exceptions=True)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self._connections.discard(task)

    def _lookup_key(self, writer: asyncio.StreamWriter) -> tuple[str, str] | None:
        if self.ssl_context is None:
            return NETWORK_BY_ID, str(self.network_id)
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der is None:
            return None
        return NETWORK_CERTIFICATE, hashlib.sha256(der).hexdigest()

    async def _network(self, connection: _Connection):
        """The network's row (its id, its deadline), valid now; read per message through the
        credential cache, so a revocation or a new deadline applies at once."""
        query, key = connection.lookup
        row = await self.services.credentials.lookup(self.services.authorization_pool, query, key)
        not_after = row["not_after"] if row is not None else None
        if (row is None or row["revoked_at"] is not None or row["status"] != "ACTIVE"
                or (not_after is not None and not_after <= datetime.now(UTC))):
            raise _Refused()
        return row

    async def _read(self, reader: asyncio.StreamReader, connection: _Connection) -> None:
        """Read frames until the peer closes, the framing breaks, or the line stays idle."""
        loop = asyncio.get_running_loop()
        last_message_at = loop.time()
        while True:
            await connection.slots.acquire()
            try:
                prefix = await asyncio.wait_for(reader.readexactly(LENGTH_PREFIX_BYTES),
                                                ECHO_AFTER_IDLE_SECONDS)
            except TimeoutError:
                connection.slots.release()
                if loop.time() - last_message_at >= IDLE_SECONDS_MAX:
                    self.counters["idle_closed"] += 1
                    return
                self._echo(connection)
                continue
            except (asyncio.IncompleteReadError, ConnectionError):
                connection.slots.release()
                return
            length = int.from_bytes(prefix, "big")
            if length > MESSAGE_BYTES_MAX:
                connection.slots.release()
                self.counters["framing_broken"] += 1
                log.warning("ISO 8583 frame of %d bytes announced (at most %d): connection closed",
                            length, MESSAGE_BYTES_MAX)
                return
            try:
                frame = await asyncio.wait_for(reader.readexactly(length), FRAME_SECONDS_MAX)
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                connection.slots.release()
                return
            arrived_at = last_message_at = loop.time()
            if length == 0:  # a keep-alive some networks send: nothing to answer
                connection.slots.release()
                continue
            task = asyncio.create_task(self._answer(connection, frame, arrived_at))
            connection.in_flight.add(task)
            task.add_done_callback(lambda done: (connection.in_flight.discard(done),
                                                 connection.slots.release()))

    def _echo(self, connection: _Connection) -> None:
        now = datetime.now(UTC)
        connection.send({"t": "0800", "7": now.strftime("%m%d%H%M%S"),
                         "11": str(next(self._stan) % STAN_MODULUS).zfill(6), "70": messages.ECHO})
        self.counters["echoes_sent"] += 1

    # --- messages ----------------------------------------------------------------------------

    async def _answer(self, connection: _Connection, frame: bytes, arrived_at: float) -> None:
        """Decode, decide, answer one message; every failure becomes a typed answer."""
        fields: dict = {}
        mti = ""
        try:
            if len(frame) < MESSAGE_BYTES_MIN:
                raise FormatError("0")
            try:
                fields, _ = iso8583.decode(frame, SPEC)
            except iso8583.DecodeError as exc:
                fields = exc.doc_dec
                raise FormatError(exc.field) from None
            mti = fields["t"]
            answer = await self._dispatch(connection, mti, fields, arrived_at)
        except FormatError as exc:
            self.counters["format_errors"] += 1
            log.warning("ISO 8583 message %s malformed: DE%s", fields.get("t", "?"), exc.field)
            answer = self._reject(fields, messages.FORMAT_ERROR)
        except Unsupported as exc:
            answer = messages.answer(fields, messages.response_mti(mti), exc.code)
        except _Refused:
            connection.writer.close()
            return
        except OutcomeUnknown:  # the engine cannot tell whether it committed: no answer
            self.counters["outcome_unknown"] += 1
            return
        except Exception:
            self.counters["failures"] += 1
            log.exception("ISO 8583 message %s failed", mti)
            answer = self._reject(fields, messages.SYSTEM_MALFUNCTION)
        if answer is not None:
            connection.send(answer)

    def _reject(self, fields: dict, code: str) -> dict:
        mti = fields.get("t")
        readable = mti is not None and len(mti) == 4 and mti.isdigit()
        response = messages.response_mti(mti) if readable else messages.REJECT_MTI
        return messages.answer(fields, response, code)

    async def _dispatch(self, connection: _Connection, mti: str, fields: dict,
                        arrived_at: float) -> dict | None:
        response = messages.response_mti(mti)
        if mti in NETWORK_MANAGEMENT:
            return self._network_management(connection, fields)
        if mti == ECHO_ANSWER:
            return None
        network = await self._network(connection)
        network_id = network["network_id"]
        if mti in AUTHORIZATIONS or mti in FINANCIAL_REQUESTS:
            return await self._authorize(network, mti, fields, arrived_at)
        if mti in AUTHORIZATION_ADVICES:
            return await self._advice(network, fields)
        if mti in FINANCIAL_ADVICES:
            return await self._follow_up(fields, response, self._clearing(network_id, fields))
        if mti in REVERSALS:
            reversal = messages.reversal(fields)
            return await self._follow_up(fields, response, self.services.follow_ups.reverse(
                network_id, reversal.message_id, reversal.original_message_id, reversal.amount))
        self.counters["unknown_mti"] += 1
        code = messages.INVALID_TRANSACTION
        return messages.answer(fields, response, code)

    def _network_management(self, connection: _Connection, fields: dict) -> dict:
        code = messages.numeric(fields, "70", 3)
        if code == messages.SIGN_ON:
            connection.signed_on = True
        elif code == messages.SIGN_OFF:
            connection.signed_on = False
        elif code != messages.ECHO:
            return messages.answer(fields, "0810", messages.INVALID_TRANSACTION) | {"70": code}
        return messages.answer(fields, "0810", messages.APPROVED) | {"70": code}

    async def _authorize(self, network, mti: str, fields: dict, arrived_at: float) -> dict | None:
        """0100 and 0200: the engine's decision; a 0200 approved is then captured in full."""
        request = messages.authorization_request(fields)
        if messages.is_balance_inquiry(fields):
            result = await self.services.engine.inquire(network["network_id"], request)
            return messages.inquiry_answer(fields, messages.response_mti(mti), result)
        deadline_seconds = network["authorization_deadline_ms"] / 1000
        try:
            result = await self.services.engine.authorize(
                network["network_id"], request, deadline_seconds=deadline_seconds,
                arrived_at=arrived_at)
        except ClearPinRefused:  # not reachable from ISO fields (DE52 is a block); kept typed
            raise FormatError("52") from None
        if asyncio.get_running_loop().time() > arrived_at + deadline_seconds:
            self.counters["late_answers_dropped"] += 1  # the network has stood in already
            log.warning("ISO 8583 answer past the deadline not sent: network %s message %s",
                        network["network_id"], request.message_id)
            return None
        answer = messages.authorization_answer(fields, messages.response_mti(mti), result)
        if mti in FINANCIAL_REQUESTS and result.decision == "APPROVED" and request.type != "REFUND":
            # Answered first, captured right after: the capture must not push the answer past its
            # deadline, and the approval's hold is what the capture posts (replayed if repeated).
            self.services.spawn(self._capture(network["network_id"], request.message_id,
                                              result.approved_amount))
        return answer

    async def _capture(self, network_id: uuid.UUID, message_id: str, amount: int) -> None:
        try:
            await self.services.follow_ups.clear(
                network_id, message_id + messages.FOLLOW_UP_CAPTURE_SUFFIX, message_id, amount)
        except Exception:
            self.counters["capture_failures"] += 1
            log.exception("ISO 8583 capture of a 0200 failed: network %s message %s", network_id,
                          message_id)

    async def _advice(self, network, fields: dict) -> dict:
        """0120: the network stood in. Approved by it: booked as it decided, whatever Antaca's own
        checks would say (`AuthorizationEngine.book_advice`); declined by it: nothing to book."""
        network_decision = fields.get("39")
        if network_decision == messages.APPROVED:
            if messages.is_balance_inquiry(fields):
                raise Unsupported(messages.INVALID_TRANSACTION)  # an inquiry has nothing to book
            request = messages.authorization_request(fields)
            result = await self.services.engine.book_advice(network["network_id"], request)
            if result.decision != "APPROVED":  # an unknown card, a currency without a rate
                self.counters["advices_not_booked"] += 1
                log.warning("ISO 8583 advice approved by the network, not bookable (%s):"
                            " network %s message %s", result.reason, network["network_id"],
                            request.message_id)
        return messages.answer(fields, "0130", messages.APPROVED)

    def _clearing(self, network_id: uuid.UUID, fields: dict):
        """0220: the clearing of the authorization DE90 names, or without DE90 a force post."""
        message_id = messages.message_identity(fields)
        amount = messages.amount(fields)
        if fields.get("90") is not None:
            return self.services.follow_ups.clear(network_id, message_id,
                                                  messages.original_identity(fields), amount)
        pan = messages.numeric(fields, "2")
        return self.services.follow_ups.force_post(network_id, message_id, pan, amount,
                                                   messages.currency(fields))

    async def _follow_up(self, fields: dict, response: str, call) -> dict:
        try:
            await call
        except followups.AuthorizationNotFound:
            return messages.answer(fields, response, messages.ORIGINAL_NOT_FOUND)
        except followups.FollowUpRefused:
            return messages.answer(fields, response, messages.INVALID_TRANSACTION)
        return messages.answer(fields, response, messages.APPROVED)
