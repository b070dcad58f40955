"""The authorization engine: micro-batches of authorizations decided and written together, each
answered within its network's deadline.

Requests queue (bounded); a writer takes up to `batch_size_max` of them and, in one transaction,
loads what they need (`_load`), decides them with the pure core (`decision.decide`), writes the
plan (card counters, authorization rows, every ledger hold through one `Ledger.write_new`),
commits, and only then answers each caller.

Every request has a stand-in time (its deadline less a reserve). A request still queued or being
decided then is answered by stand-in (`_stand_in`): 91 at once, or, where its program approves in
stand-in, through the stand-in lane, a separate small transaction with a time limit. A batch whose
request was stood in while it was being decided rolls back and is decided again without it, so a
late commit never holds money for a payment answered declined. Once a batch is sealed (just before
its commit) its answers wait for the commit, whatever the clock says.

REMOTE programs (antaca_auth/remote.py): a batch whose decision passes a REMOTE card's payment
that has no partner answer yet takes it out (state REMOTE), rolls back and is decided again
without it; the partner is asked on a task of the payment's own (`_consult`), outside any
transaction, and the payment is queued again with the answer, or handed to the stand-in lane
when there is no usable answer. The cost, a batch decided twice when it meets a new REMOTE
payment, falls on the batches that carry one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import enum
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TypeVar
from zoneinfo import ZoneInfo

import asyncpg
import msgspec

from antaca_auth import controls as controls_store
from antaca_auth import events, velocity
from antaca_auth import fees as pricing
from antaca_auth.accounts import AccountKind, NewAccount
from antaca_auth.activity import card_activity
from antaca_auth.authorization import (
    DUPLICATE_TRANSMISSION,
    AuthorizationRequest,
    CardFacts,
    ClearPinRefused,
    TxType,
)
from antaca_auth.card_events import record_engine_locks
from antaca_auth.cardkeys import CardKeys
from antaca_auth.cardstate import CardState
from antaca_auth.control_rules import (
    NOTHING_SPENT,
    Control,
    ControlSet,
    CounterKey,
    Spent,
    control_set,
    period_starts,
)
from antaca_auth.decision import (
    NETWORK_ADVICE,
    AuthorizationResult,
    Plan,
    Planned,
    Policy,
    Snapshot,
    StoredAnswer,
    answer,
    decide,
    decide_inquiry,
    duplicate_transmission,
    inquiry_answer,
    plan_advice,
    request_digest,
    settle,
    stand_in_decline,
    taken_back,
    velocity_declined,
)
from antaca_auth.followups import message_lock_key
from antaca_auth.ids import new_id
from antaca_auth.invariants import require
from antaca_auth.ledger import Ledger, utc_now
from antaca_auth.observer import NO_ENGINE_OBSERVER, EngineObserver
from antaca_auth.pinblock import ZoneKey
from antaca_auth.rates import rates_in_force
from antaca_auth.remote import (
    RemoteOutcome,
    RemotePartner,
    RemoteQuestion,
    RemoteVerdict,
    call_budget,
    mask_pan,
)
from antaca_auth.settlement import advice_receivable_account, settlement_account
from antaca_auth.thresholds import check_crossings
from antaca_auth.transfers import ResultCode
from antaca_auth.zonekeys import load_zone_keys

__all__ = ["AuthorizationEngine", "AuthorizationResult", "EngineSettings", "OutcomeUnknown"]

log = logging.getLogger(__name__)
_OK = ResultCode.OK

CARDS = """
    SELECT c.pan_fingerprint, c.id, c.state, c.lock_reason, c.expiry, c.cvc_counter, c.pin_salt,
           c.pin_verification, c.pin_failures, c.verification_failures, c.verification_window_start,
           c.stand_in_day, c.stand_in_amount, p.currency AS program_currency, p.funding_model,
           p.stand_in_mode, p.stand_in_limit, p.ecommerce_without_cvc2,
           b.id AS balance_id, b.state AS balance_state, ua.id AS user_account,
           pa.account_id AS deposit_account, c.program_id, fs.id AS fee_schedule_id,
           pa.low_balance_threshold IS NOT NULL AND NOT pa.below_threshold AS deposit_alert_armed,
           CASE WHEN ua.debits_must_not_exceed_credits
                THEN credit_normal_available(ua.credits_posted, ua.debits_posted, ua.debits_pending)
                END AS user_available,
           CASE WHEN da.debits_must_not_exceed_credits
                THEN credit_normal_available(da.credits_posted, da.debits_posted, da.debits_pending)
                END AS deposit_available,
           p.time_zone, p.controls_version AS program_controls,
           b.controls_version AS balance_controls, c.controls_version AS card_controls,
           p.remote_deadline_ms
    FROM cards c
    JOIN card_programs p ON p.id = c.program_id
    JOIN balances b ON b.id = c.balance_id AND b.partner_id = c.partner_id  -- co-located
    -- A REMOTE program's payments are held on its partner's REMOTE account (antaca_auth/remote.py).
    JOIN accounts ua ON ua.id = coalesce(p.remote_account_id, b.account_id)
    LEFT JOIN partner_accounts pa
           ON pa.partner_id = c.partner_id AND pa.currency = p.currency AND pa.kind = 'partner_deposit'
    LEFT JOIN accounts da ON da.id = pa.account_id
    LEFT JOIN LATERAL (
        SELECT id FROM fee_schedules WHERE program_id = c.program_id AND effective_from <= $2
        ORDER BY effective_from DESC LIMIT 1) fs ON true
    WHERE c.pan_fingerprint = ANY($1::text[])"""

# Cards whose counters a batch's plan changes (wrong PINs, card testing, stand-in allowance) are read
# again locked, in id order and in one statement (`_lock_cards`), so that no count is lost to a
# concurrent batch and batches never wait on each other in a cycle. Other cards are only read: a
# batch waiting on another's card locks until its commit would chain batches one behind the other
# (with 1,024 payments in flight over 10,000 cards, nearly every batch shares a card with another).
CARDS_LOCKED = CARDS + """
    ORDER BY c.id
    FOR UPDATE OF c"""

EXISTING = """
    SELECT a.message_id, a.id, a.decision, a.response_code, a.reason, a.approved_amount, a.action_code,
           coalesce(a.available_after,
                    CASE WHEN a.type = 'REFUND'
                         THEN credit_normal_available(t.cr_credits_posted, t.cr_debits_posted,
                                                      t.cr_debits_pending)
                         ELSE credit_normal_available(t.dr_credits_posted, t.dr_debits_posted,
                                                      t.dr_debits_pending) END)
               AS available_after,
           a.billing_amount, a.transaction_fee + a.conversion_fee AS fee, a.stand_in,
           a.request_digest, a.control_id, a.control_version,
           -- As decision.answer: the currency of an answer that gives an available amount.
           CASE WHEN t.id IS NULL AND a.available_after IS NULL THEN NULL
                ELSE coalesce(t.currency, (SELECT p.currency FROM cards c
                                           JOIN card_programs p ON p.id = c.program_id
                                           WHERE c.id = a.card_id)) END AS balance_currency
    FROM unnest($2::text[]) AS m (message_id)
    CROSS JOIN LATERAL (
        SELECT * FROM authorizations a WHERE a.network_id = $1 AND a.message_id = m.message_id LIMIT 1) a
    LEFT JOIN transfers t ON t.id = a.answer_hold_id"""
# LATERAL with LIMIT: one index probe per message whatever the statistics say (a plain join, planned
# from stale row counts, hashed the network's whole history: 19 ms instead of 0.5 at 47k rows).

SCHEDULES = "SELECT id, schedule FROM fee_schedules WHERE id = ANY($1::uuid[])"

AUTHORIZATION_COLUMNS = (
    "id", "network_id", "message_id", "card_id", "balance_id", "type", "amount", "currency", "mcc", "merchant_id",
    "merchant_name", "merchant_country", "terminal_id", "decision", "response_code", "action_code", "reason",
    "approved_amount", "deposit_hold_id", "user_hold_id", "created_at", "billing_amount",
    "fx_rate", "fee_schedule_id", "transaction_fee", "conversion_fee", "fee_hold_id", "answer_hold_id",
    "stand_in", "request_digest",
    "control_id", "control_version", "velocity_periods", "velocity_day",
    "remote_outcome", "remote_requested_amount", "remote_reason",
)

# The rows written as approved that the ledger then declined (few: a batch's funds declines).
DECLINE = """
    UPDATE authorizations a
    SET decision = 'DECLINED', response_code = v.response_code, reason = v.reason, action_code = v.action_code,
        approved_amount = 0, billing_amount = NULL, fx_rate = NULL, transaction_fee = 0, conversion_fee = 0,
        deposit_hold_id = NULL, user_hold_id = NULL, fee_hold_id = NULL, answer_hold_id = NULL,
        velocity_periods = NULL, velocity_day = NULL
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS v (id, response_code, reason, action_code)
    WHERE a.id = v.id"""

# The batch's card counters (wrong PINs, card-testing failures, stand-in allowance used today) and
# the locks they take (6: PIN tries exceeded, 7: suspected fraud) on cards that are still ACTIVE.
CARD_COUNTERS = """
    UPDATE cards c
    SET pin_failures = v.pin_failures, verification_failures = v.verification_failures,
        verification_window_start = v.window_start, stand_in_day = $7, stand_in_amount = v.stand_in_amount,
        state = CASE WHEN v.lock_reason IS NULL THEN c.state ELSE 'LOCKED' END,
        lock_reason = coalesce(v.lock_reason, c.lock_reason),
        state_before_lock = CASE WHEN v.lock_reason IS NULL THEN c.state_before_lock ELSE c.state END,
        updated_at = CASE WHEN v.lock_reason IS NULL THEN c.updated_at ELSE now() END
    FROM unnest($1::uuid[], $2::int[], $3::int[], $4::timestamptz[], $5::bigint[], $6::smallint[])
         AS v (id, pin_failures, verification_failures, window_start, stand_in_amount, lock_reason)
    WHERE c.id = v.id AND (v.lock_reason IS NULL OR c.state = 'ACTIVE')"""

# Stand-in declines of requests no batch decided, recorded after they were answered. The card is
# found by fingerprint here (no batch read it); a message id already stored keeps its first answer.
STAND_IN_RECORDS = """
    INSERT INTO authorizations (id, network_id, message_id, card_id, balance_id, type, amount, currency,
                                mcc, merchant_id, merchant_name, merchant_country, terminal_id, decision,
                                response_code, reason, approved_amount, created_at, stand_in, request_digest)
    SELECT v.id, v.network_id, v.message_id, c.id, c.balance_id, v.type, v.amount, v.currency, v.mcc,
           v.merchant_id, v.merchant_name, v.merchant_country, v.terminal_id, 'DECLINED', v.response_code,
           v.reason, 0, v.created_at, true, v.digest
    FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[],
                $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[],
                $15::timestamptz[], $16::bytea[])
         AS v (id, network_id, message_id, fingerprint, type, amount, currency, mcc, merchant_id,
               merchant_name, merchant_country, terminal_id, response_code, reason, created_at, digest)
    LEFT JOIN cards c ON c.pan_fingerprint = v.fingerprint
    ON CONFLICT (network_id, message_id) DO NOTHING"""

# An advice's row after the COPY that stores every authorization: marked as the network's decision,
# with its shortfall and the last hold on the user's balance (None when every hold went on the
# receivable), whose balance-after columns answer a replay's available amount.
MARK_ADVICE = """
    UPDATE authorizations
    SET network_advice = true, reason = $2, advice_shortfall = $3, answer_hold_id = $4,
        available_after = $5
    WHERE id = $1"""

# An advice that approves a message Antaca had declined (or stood in for with 91): the same row,
# approved, the code it had kept in declined_before. MARK_ADVICE then marks it.
SUPERSEDE_DECLINE = """
    UPDATE authorizations
    SET decision = 'APPROVED', response_code = '00', action_code = NULL,
        declined_before = response_code,
        approved_amount = $2, billing_amount = $3, fx_rate = $4, fee_schedule_id = $5,
        transaction_fee = $6, conversion_fee = $7, deposit_hold_id = $8, user_hold_id = $9,
        fee_hold_id = $10, card_id = $11, balance_id = $12, available_after = NULL, stand_in = false
    WHERE id = $1 AND decision = 'DECLINED'"""

MESSAGE_LOCK = "SELECT pg_advisory_xact_lock($1)"

RETRIES_MAX = 20  # a batch's attempts after deadlocks, serialization failures or key clashes
RECORD_BATCH_MAX = 4096  # stand-in declines recorded per statement
RECORDS_PENDING_MAX = 65_536  # stand-in declines awaiting their record; past it they are logged only
STOOD_IN_REMEMBERED_MAX = 4 * RECORDS_PENDING_MAX  # unrecorded stand-ins answered again from memory
RECORD_RETRY_SECONDS = 0.5
STAND_IN_LANE_BATCH_MAX = 64
STAND_IN_LANE_BUDGET_MIN_SECONDS = 0.02  # less time than this left: decline rather than try

# Test only (tests/integration/test_crash.py), never set in production: ANTACA_TEST_FAULT_PAUSE, e.g.
# "before_commit:0.2,after_commit:0.2", makes every transaction of the engine wait that many
# seconds between its ledger write and COMMIT, and between COMMIT and its answers, so that a crash
# lands in those two windows on every run rather than by luck. Unset: one falsy check per commit.
FAULT_PAUSE_ENV = "ANTACA_TEST_FAULT_PAUSE"


def _fault_pauses(setting: str) -> dict[str, float]:
    pauses = {name: float(seconds) for name, _, seconds in
              (part.partition(":") for part in setting.split(",") if part)}
    if not pauses.keys() <= {"before_commit", "after_commit"}:  # a typo must not test nothing
        raise ValueError(f"{FAULT_PAUSE_ENV}: before_commit:S, after_commit:S, not {setting!r}")
    return pauses


_FAULT_PAUSES = _fault_pauses(os.environ.get(FAULT_PAUSE_ENV, ""))
STAND_IN_RULES_MAX = 100_000  # cards remembered as approving in stand-in
SHUTDOWN_POLL_SECONDS = 0.01
# Reference data every batch of the realistic mix reads (PIN blocks on 20 % of payments, another
# currency on 10 %): kept this long, a round trip less each per batch. The endpoints that change
# them empty the cache of their own process at once; another process sees a change this late.
ZONE_KEYS_CACHED_SECONDS = 5.0
RATES_CACHED_SECONDS = 1.0
# Spending controls cached by scope (program, balance, card) with the scope's controls version:
# reloaded when the version read with the card moved; past this many scopes the oldest go.
CONTROL_SCOPES_CACHED_MAX = 100_000
# Velocity counters as this process's committed batches left them: read again only when missing,
# when a decision declines on them, or when a written counter passes a limit.
COUNTERS_CACHED_MAX = 1_000_000


class OutcomeUnknown(Exception):
    """The database failed while committing a batch, and could not be asked since whether it did:
    the request gets no answer (the network's own time-out and reversal then apply)."""


class Batching(enum.StrEnum):
    """How queued requests become batches."""

    # One batch former with at most `pipeline_depth` batches in flight: the next batch is formed
    # once the previous one has reached its ledger write (where it waits for the hot accounts'
    # locks) and a slot is free, from everything queued by then. Batches grow with the load, and
    # one batch prepares (reads, decisions, rows) while the one before holds the locks and commits.
    PIPELINED = "pipelined"
    # The earlier design, kept to measure against: `writers` loops, each taking what is queued
    # (waiting up to `batch_wait_seconds` for more); under load they split the queue into small
    # batches that queue on the hot accounts' locks.
    WRITERS = "writers"


@dataclass(frozen=True)
class EngineSettings:
    """The engine's tuning (the service's settings fill it from the environment)."""

    batch_size_max: int = 512
    batching: str = Batching.PIPELINED
    pipeline_depth: int = 2  # batches in flight (PIPELINED)
    batch_wait_seconds: float = 0.001  # WRITERS: a lone request waits at most this long for company
    writers: int = 4  # WRITERS: batch loops
    hold_seconds: int = 7 * 86400
    deadline_seconds: float = 1.5  # when the caller names none (a network's own setting wins)
    stand_in_reserve_seconds: float = 0.25  # before the deadline: stop deciding, stand in
    commit_reserve_seconds: float = 0.05  # a batch stands in what is this close at its commit
    queue_size_max: int = 8192  # queued requests; past it new ones are stood in at once
    stand_in_lane_size_max: int = 256
    shutdown_grace_seconds: float = 5.0  # how long stop() lets the queue drain
    card_testing_failures_max: int = 5
    card_testing_window_seconds: int = 86400

    @property
    def connections(self) -> int:
        """The connections the engine holds at most: its batches, the stand-in lane, the recorder."""
        batches = self.pipeline_depth if self.batching == Batching.PIPELINED else self.writers
        return batches + 2

    def __post_init__(self) -> None:
        if self.batching not in tuple(Batching) or not 1 <= self.pipeline_depth <= 16:
            raise ValueError("engine settings out of range: batching")
        if not (1 <= self.batch_size_max <= 4096 and 1 <= self.writers <= 64 and self.queue_size_max >= 1
                and 0 < self.stand_in_reserve_seconds and 0 <= self.commit_reserve_seconds
                and self.deadline_seconds > 0 and self.card_testing_failures_max >= 1):
            raise ValueError("engine settings out of range")


class _State(enum.Enum):
    QUEUED = "queued"
    DECIDING = "deciding"  # in a batch that has not reached its commit
    LANE = "lane"  # handed to the stand-in lane
    SEALED = "sealed"  # its batch is committing: the answer waits for the commit
    REMOTE = "remote"  # out of the batches, its REMOTE program's partner being asked
    DONE = "done"


@dataclass(slots=True, eq=False)
class _Pending:
    network_id: uuid.UUID
    request: AuthorizationRequest
    fingerprint: str
    digest: bytes
    future: asyncio.Future
    stand_in_at: float  # loop time: stand in if not sealed by then
    deadline_at: float
    seal_by: float  # a batch sealed later than this stands the request in rather than wait
    authorization_id: uuid.UUID  # its row's and its answer's, whoever decides it
    state: _State = _State.QUEUED
    timer: asyncio.TimerHandle | None = None
    remote: RemoteVerdict | None = None  # a REMOTE program's partner's answer, once asked
    requested_amount: int | None = None  # the network's amount, where the partner approved less


@dataclass(slots=True, eq=False)
class _Message:
    """An advice or a balance inquiry: decided on its own, outside the batches."""

    network_id: uuid.UUID
    request: AuthorizationRequest
    fingerprint: str
    digest: bytes
    authorization_id: uuid.UUID


class _Abandoned(Exception):
    """A request of the batch was stood in while the batch was deciding: roll back, decide again."""


class _CommitFailed(Exception):
    """COMMIT raised: the batch may or may not be in the database."""


class _CountersMoved(_Abandoned):
    """A velocity counter, written, passes an ACTIVE limit: a concurrent batch counted payments
    since this batch read it. Rolled back and decided again on the counters as committed."""


class _OutOfTime(Exception):
    """The stand-in lane's transaction ran past its budget."""


_T = TypeVar("_T")
_RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError, asyncpg.UniqueViolationError)


class AuthorizationEngine:
    """Decides authorizations in micro-batches; `authorize` answers only after its batch committed,
    or by stand-in before its deadline."""

    def __init__(self, pool: asyncpg.Pool, ledger: Ledger, keys: CardKeys,
                 settings: EngineSettings = EngineSettings(), *,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.pool, self.ledger, self.keys, self.settings, self.clock = pool, ledger, keys, settings, clock
        self.policy = Policy(settings.hold_seconds, settings.card_testing_failures_max,
                             timedelta(seconds=settings.card_testing_window_seconds))
        self.queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self.counters: collections.Counter[str] = collections.Counter()  # stand-ins, late answers...
        self.observer: EngineObserver = NO_ENGINE_OBSERVER  # metrics (antaca_auth/observer.py)
        self._lane: asyncio.Queue[_Pending] = asyncio.Queue(settings.stand_in_lane_size_max)
        self._tasks: list[asyncio.Task] = []
        self._settlements: set[str] = set()
        self._schedules: dict[uuid.UUID, pricing.FeeSchedule] = {}  # versions are immutable: cached for good
        self._approving_cards: dict[str, None] = {}  # fingerprints whose program approves in stand-in
        self._stood_in: dict[tuple[uuid.UUID, str], StoredAnswer] = {}  # answered, not yet recorded
        self._in_flight: dict[tuple[uuid.UUID, str], _Pending] = {}  # first copies being decided
        self._records: list[tuple[_Pending, AuthorizationResult, datetime]] = []
        self._records_waiting = asyncio.Event()
        self._zone_keys: dict[uuid.UUID, tuple[float, ZoneKey | None]] = {}  # by network: (until, key)
        self._rates: dict[tuple[str, str], tuple[float, Decimal]] = {}  # (until, rate); none not kept
        self._controls: dict[uuid.UUID, tuple[int, tuple[Control, ...]]] = {}  # (version, controls)
        self._zones: dict[str, ZoneInfo] = {}
        self._counters: dict[CounterKey, Spent] = {}  # velocity counters as committed here
        self._busy = 0  # batches being decided or committed, the lane's included
        # REMOTE programs' partners (antaca_api/remote_partners.py sets it); None: every REMOTE
        # payment gets its program's stand-in rule.
        self.remote: RemotePartner | None = None
        self._consulting: set[asyncio.Task] = set()
        self._closing = False

    @property
    def hold_seconds(self) -> int:
        return self.settings.hold_seconds

    @property
    def running(self) -> bool:
        """Started and not stopping: deciding what arrives."""
        return bool(self._tasks) and not self._closing and not any(t.done() for t in self._tasks)

    async def start(self) -> None:
        # Every currency's settlement account up front: a payment converted into a program's currency
        # books on that currency's account even if no payment ever arrived in it.
        await self._ensure_settlement(set(await self.ledger.currencies()))
        if self.settings.batching == Batching.PIPELINED:
            self._tasks = [asyncio.create_task(self._pipeline())]
        else:
            self._tasks = [asyncio.create_task(self._writer()) for _ in range(self.settings.writers)]
        self._recorder_task = asyncio.create_task(self._recorder())
        self._tasks += [asyncio.create_task(self._lane_runner()), self._recorder_task]

    async def stop(self) -> None:
        """Stop accepting (new requests are stood in), let the queue drain for the grace period, stand
        in what is left, wait for the batches in flight, record the stand-ins, then stop the tasks."""
        self._closing = True
        loop = asyncio.get_running_loop()
        grace_end = loop.time() + self.settings.shutdown_grace_seconds
        while not self.queue.empty() and loop.time() < grace_end:
            await asyncio.sleep(SHUTDOWN_POLL_SECONDS)
        while not self.queue.empty():
            self._stand_in(self.queue.get_nowait(), "shutdown")
        # What is in flight ends by its deadline at the latest (a stand-in or the commit's answer).
        flight_end = loop.time() + self.settings.deadline_seconds + self.settings.shutdown_grace_seconds
        while (self._busy or not self._lane.empty()) and loop.time() < flight_end:
            await asyncio.sleep(SHUTDOWN_POLL_SECONDS)
        deciders = [task for task in self._tasks if task is not self._recorder_task]
        for task in deciders:
            task.cancel()
        await asyncio.gather(*deciders, return_exceptions=True)
        while not self._lane.empty():  # never started: nothing of them was written
            self._decline_by_stand_in(self._lane.get_nowait())
        while self._records and loop.time() < flight_end:
            self._records_waiting.set()
            await asyncio.sleep(SHUTDOWN_POLL_SECONDS)
        self._recorder_task.cancel()
        await asyncio.gather(self._recorder_task, return_exceptions=True)

    def forget_zone_keys(self) -> None:
        """A network's zone PIN key changed: read the keys again."""
        self._zone_keys.clear()

    def forget_rates(self) -> None:
        """An exchange rate was set: read the rates again."""
        self._rates.clear()

    def statistics(self) -> dict[str, int]:
        """Stand-ins by cause, late answers and duplicate transmissions since start (for operators)."""
        return {**self.counters, "queued": self.queue.qsize()}

    async def authorize(self, network_id: uuid.UUID, request: AuthorizationRequest, *,
                        deadline_seconds: float | None = None,
                        arrived_at: float | None = None) -> AuthorizationResult:
        """Decide one payment; answered by `deadline_seconds` after `arrived_at` (loop time)."""
        loop = asyncio.get_running_loop()
        started = loop.time() if arrived_at is None else arrived_at
        try:
            result = await self._authorize(network_id, request, deadline_seconds, started)
        except OutcomeUnknown:
            self.observer.outcome_unknown(network_id)
            raise
        self.observer.answered(network_id, result, loop.time() - started)
        return result

    async def _authorize(self, network_id: uuid.UUID, request: AuthorizationRequest,
                         deadline_seconds: float | None, arrived_at: float) -> AuthorizationResult:
        if request.pin is not None:
            raise ClearPinRefused()
        loop = asyncio.get_running_loop()
        now = loop.time()
        deadline = self.settings.deadline_seconds if deadline_seconds is None else deadline_seconds
        deadline_at = arrived_at + deadline
        # Short deadlines shrink the reserves with them (a quarter and an eighth of the budget at most).
        stand_in_at = deadline_at - min(self.settings.stand_in_reserve_seconds, deadline / 4)
        seal_by = stand_in_at - min(self.settings.commit_reserve_seconds, deadline / 8)
        fingerprint = self.keys.fingerprint(request.pan)
        item = _Pending(network_id, request, fingerprint, request_digest(fingerprint, request),
                        loop.create_future(), stand_in_at, deadline_at, seal_by, new_id())
        key = (network_id, request.message_id)
        earlier = self._stood_in.get(key)
        if earlier is not None:  # a retransmission of a stand-in not yet recorded
            plan = decide([item], _only_answer(item, earlier, self.clock()), self.keys, self.policy)
            self._resolve(item, answer(plan.rows[0]))
            return await item.future
        first = self._in_flight.get(key)
        if first is not None:  # the same message again while its first copy is being decided
            if first.digest != item.digest:
                self._resolve(item, duplicate_transmission(first.authorization_id))
                return await item.future
            return await asyncio.shield(first.future)
        self._in_flight[key] = item
        if self._closing:
            self._stand_in(item, "shutdown")
        elif self.queue.qsize() >= self.settings.queue_size_max:
            self._stand_in(item, "queue_full")
        elif item.stand_in_at <= now:
            self._stand_in(item, "deadline")
        else:
            self.queue.put_nowait(item)
            item.timer = loop.call_at(item.stand_in_at, self._expire, item)
        # Shielded: a caller that goes away (a dropped connection) does not cancel the decision,
        # which other copies of the message may be waiting for.
        return await asyncio.shield(item.future)

    # --- network advices and balance inquiries -------------------------------------------------

    async def book_advice(self, network_id: uuid.UUID,
                          request: AuthorizationRequest) -> AuthorizationResult:
        """Book a network's approved authorization advice (0120) as the network decided
        (`decision.plan_advice`): one transaction, idempotent on the message id (a copy answers the
        first booking; another payment under it, 94). Not batched and without a deadline: the
        network answered its merchant already and only waits for the acknowledgement."""
        if request.pin is not None:
            raise ClearPinRefused()
        fingerprint = self.keys.fingerprint(request.pan)
        item = _Message(network_id, request, fingerprint, request_digest(fingerprint, request),
                        new_id())
        await self._ensure_settlement({request.currency})
        for attempt in range(RETRIES_MAX):
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    return await self._book_advice(conn, item)
            except _RETRYABLE:  # a batch stored the same message meanwhile: replayed next time
                await asyncio.sleep(0.001 * (attempt + 1))
        raise OutcomeUnknown("the advice could not be booked")

    async def _book_advice(self, conn: asyncpg.Connection, item: _Message) -> AuthorizationResult:
        # Copies of one advice wait here for the first's commit, then replay what it booked.
        await conn.execute(MESSAGE_LOCK, message_lock_key(item.network_id, item.request.message_id))
        now = self.clock()
        # The engine's lock order: the card row first, then accounts in id order.
        snapshot = await self._load(conn, [item], now, lock_every_card=True)
        card = snapshot.cards.get(item.fingerprint)
        earlier = snapshot.answers.get((item.network_id, item.request.message_id))
        if card is not None and (earlier is None or earlier.result.decision != "APPROVED"):
            # Not a replay of an approval: it may book, so its accounts are locked and read.
            snapshot = dataclasses.replace(snapshot, cards={
                item.fingerprint: await self._lock_advice_accounts(conn, card)})
        plan = plan_advice(item, snapshot, self.policy)
        row = plan.rows[0]
        if not row.stored or row.decline is not None:
            return answer(row)  # a replay, or an advice that cannot be priced: nothing written
        ids, holds = plan.holds.ids, plan.holds
        if row.supersedes:
            def hold(at: int | None) -> uuid.UUID | None:
                return None if at is None else ids[at]

            superseded = await conn.execute(
                SUPERSEDE_DECLINE, row.id, item.request.amount, row.billing_amount, row.fx_rate,
                card.fee_schedule_id, row.transaction_fee, row.conversion_fee,
                hold(row.deposit_at), hold(row.user_at), hold(row.fee_at), card.card_id,
                card.balance_id)
            # The message lock keeps the decline in place; holds with no row naming them must
            # never be written.
            require(superseded == "UPDATE 1", "an advice superseded no declined row")
            await events.record_authorization_changes(conn, [row.id])  # the decline's stays
        else:
            await self._insert(conn, [row], ids, now)
        # The answer's hold: the last on the user's balance, whose balance-after columns give the
        # available amount (debit side; a refund's credit side), also to a replay.
        if item.request.type is TxType.REFUND:
            answer_at, side = row.user_at, 2
        else:
            on_user = [at for at in (row.user_at, row.fee_at)
                       if at is not None and holds.debits[at] == card.user_account]
            answer_at, side = (on_user[-1] if on_user else None), 1
        # With no hold on the user's balance (all went on the receivable) the available amount is
        # stored with the row, so that a replay answers what the first answer said.
        await conn.execute(MARK_ADVICE, row.id, NETWORK_ADVICE, row.advice_shortfall,
                           None if answer_at is None else ids[answer_at],
                           card.user_available if answer_at is None else None)
        results = await self.ledger.write_new(conn, holds)
        refused = [code for code, _, _ in results if code is not _OK]
        if refused:  # the accounts were read under their locks: a bug, never a decision
            raise RuntimeError(f"advice holds refused by the ledger: {refused}")
        row.available_after = (card.user_available if answer_at is None
                               else results[answer_at][side])
        if row.deposit_at is not None and card.deposit_alert_armed:
            await check_crossings(conn, [card.deposit_account])
        if row.advice_shortfall:
            self.counters["advice_shortfalls"] += 1
            log.warning("network advice held %d on the advice receivable: network %s message %s",
                        row.advice_shortfall, item.network_id, item.request.message_id)
        return answer(row)

    async def _lock_advice_accounts(self, conn: asyncpg.Connection, card: CardFacts) -> CardFacts:
        """Lock every account an advice's holds may touch, in id order, and read the card's
        balances' available amounts under that lock."""
        currency = card.program_currency
        receivable = advice_receivable_account(currency)
        await self.ledger.create_accounts_in(conn, [NewAccount(
            id=receivable, currency=currency, kind=AccountKind.ADVICE_RECEIVABLE,
            owner_ref=f"advice_receivable:{currency}")])
        accounts = {card.user_account, settlement_account(currency), receivable}
        if card.deposit_account is not None:
            accounts.add(card.deposit_account)
        if card.program_id is not None:
            accounts.add(pricing.fee_revenue_account(card.program_id, currency))
        # Read under the lock: whether a hold fits its account stays true until it is written.
        available = await self.ledger.lock_accounts(conn, accounts)
        return msgspec.structs.replace(
            card, user_available=available.get(card.user_account),
            deposit_available=available.get(card.deposit_account))

    async def inquire(self, network_id: uuid.UUID,
                      request: AuthorizationRequest) -> AuthorizationResult:
        """A balance inquiry (`decision.decide_inquiry`): the card checks with their counters,
        then the available amount of the card's balance. Nothing is held or stored but the card's
        counters: a repeated inquiry is checked again."""
        if request.pin is not None:
            raise ClearPinRefused()
        fingerprint = self.keys.fingerprint(request.pan)
        item = _Message(network_id, request, fingerprint, request_digest(fingerprint, request),
                        new_id())
        now = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            # The card locked (its PIN and card-testing counters may change), then the answers'
            # table is not read: an inquiry has no stored answer.
            snapshot = await self._load(conn, [item], now, lock_every_card=True)
            plan = decide_inquiry(item, snapshot, self.keys, self.policy)
            await self._write_cards(conn, plan, now)
        return inquiry_answer(plan.rows[0])

    # --- stand-in ------------------------------------------------------------------------------

    def _expire(self, item: _Pending) -> None:
        if item.state is _State.SEALED:
            self.counters["late_answers"] += 1  # answered when its commit returns
        self._stand_in(item, "deadline")

    def _stand_in(self, item: _Pending, cause: str) -> None:
        """Answer a request the engine cannot decide in time, by its program's stand-in rule."""
        if item.state not in (_State.QUEUED, _State.DECIDING, _State.REMOTE):
            return
        self.counters[f"stand_in_{cause}"] += 1
        log.warning("authorization stand-in (%s): network %s message %s", cause, item.network_id,
                    item.request.message_id)
        loop = asyncio.get_running_loop()
        enough_time = item.deadline_at - loop.time() > STAND_IN_LANE_BUDGET_MIN_SECONDS * 2
        lane_open = not self._closing and not self._lane.full()
        if item.fingerprint in self._approving_cards and enough_time and lane_open:
            item.state = _State.LANE
            self._lane.put_nowait(item)
            return
        self._decline_by_stand_in(item)

    def _decline_by_stand_in(self, item: _Pending) -> None:
        result = stand_in_decline(item.authorization_id)
        key = (item.network_id, item.request.message_id)
        # Remembered before the answer is given: a retransmission is answered the same.
        self._stood_in[key] = StoredAnswer(result, item.digest)
        self._resolve(item, result)
        if len(self._records) >= RECORDS_PENDING_MAX:
            self.counters["stand_in_unrecorded"] += 1
            log.error("stand-in decline not recorded (backlog full): network %s message %s",
                      item.network_id, item.request.message_id)
            if len(self._stood_in) > STOOD_IN_REMEMBERED_MAX:
                del self._stood_in[next(iter(self._stood_in))]
            return
        self._records.append((item, result, self.clock()))
        self._records_waiting.set()

    def _resolve(self, item: _Pending, result: AuthorizationResult) -> None:
        if result.response_code == DUPLICATE_TRANSMISSION.response_code:
            self.counters["duplicate_transmissions"] += 1
            log.warning("duplicate transmission: network %s message %s reused for another payment",
                        item.network_id, item.request.message_id)
        self._done(item)
        if not item.future.done():
            item.future.set_result(result)

    def _fail(self, item: _Pending, error: Exception) -> None:
        self._done(item)
        if not item.future.done():
            item.future.set_exception(error)

    def _done(self, item: _Pending) -> None:
        item.state = _State.DONE
        if item.timer is not None:
            item.timer.cancel()
        key = (item.network_id, item.request.message_id)
        if self._in_flight.get(key) is item:
            del self._in_flight[key]

    # --- batches -------------------------------------------------------------------------------

    async def _writer(self) -> None:
        while True:
            batch = await self._take_batch()
            if not batch:
                continue
            self._busy += 1
            try:
                await self._run(batch)
            finally:
                self._busy -= 1

    async def _pipeline(self) -> None:
        """Form batches one after the other, each once the previous reached the ledger (PIPELINED)."""
        slots = asyncio.Semaphore(self.settings.pipeline_depth)
        previous_at_ledger: asyncio.Event | None = None
        in_flight: set[asyncio.Task] = set()
        try:
            while True:
                await slots.acquire()
                if previous_at_ledger is not None:
                    await previous_at_ledger.wait()
                batch = await self._take_batch(wait_seconds=0)
                if not batch:
                    slots.release()
                    continue
                at_ledger = asyncio.Event()
                task = asyncio.create_task(self._run_in_pipeline(batch, at_ledger, slots))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                previous_at_ledger = at_ledger
        finally:
            for task in in_flight:
                task.cancel()

    async def _run_in_pipeline(self, batch: list[_Pending], at_ledger: asyncio.Event,
                               slots: asyncio.Semaphore) -> None:
        self._busy += 1
        try:
            await self._run(batch, at_ledger)
        finally:
            self._busy -= 1
            at_ledger.set()
            slots.release()

    async def _take_batch(self, wait_seconds: float | None = None) -> list[_Pending]:
        """Up to `batch_size_max` queued requests, waiting at most `wait_seconds` (by default
        `batch_wait_seconds`) for more."""
        loop = asyncio.get_running_loop()
        first = await self.queue.get()
        while first.state is not _State.QUEUED:  # stood in while queued: already answered
            first = await self.queue.get()
        batch = [first]
        wait = self.settings.batch_wait_seconds if wait_seconds is None else wait_seconds
        wait_end = loop.time() + wait
        while len(batch) < self.settings.batch_size_max:
            try:
                item = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = wait_end - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self.queue.get(), remaining)
                except TimeoutError:
                    break
            if item.state is _State.QUEUED:
                batch.append(item)
        # What was stood in while this waited for more is answered already: never decided again.
        batch = [item for item in batch if item.state is _State.QUEUED]
        for item in batch:
            item.state = _State.DECIDING
        return batch

    async def _run(self, batch: list[_Pending], at_ledger: asyncio.Event | None = None) -> None:
        """Decide, write and commit a batch, then answer; again without what was stood in meanwhile."""
        await self._ensure_settlement({item.request.currency for item in batch})  # currencies added since start
        unknown: Exception | None = None
        for attempt in range(RETRIES_MAX):
            live = [item for item in batch if item.state in (_State.DECIDING, _State.SEALED)]
            if not live:
                return
            started = time.monotonic()
            try:
                answers = await self._attempt(live, at_ledger)
            except _Abandoned:
                continue
            except _CommitFailed as exc:  # asked again: a replay finds what did commit
                unknown = exc
                await asyncio.sleep(0.001 * (attempt + 1))
                continue
            except _RETRYABLE:
                await asyncio.sleep(0.001 * (attempt + 1))
                continue
            except asyncio.CancelledError:
                self._give_up(live, OutcomeUnknown())
                raise
            except Exception as exc:  # rolled back: nothing of it is in the ledger
                log.exception("authorization batch of %d failed", len(live))
                self._give_up(live, OutcomeUnknown(str(exc)))
                return
            self.observer.batch_committed(len(live), time.monotonic() - started)
            for item, result in zip(live, answers, strict=True):
                self._resolve(item, result)
            return
        self._give_up([i for i in batch if i.state in (_State.DECIDING, _State.SEALED)],
                      OutcomeUnknown(str(unknown)))

    def _give_up(self, items: Sequence[_Pending], error: Exception, *,
                 undecided: _State = _State.DECIDING) -> None:
        """Requests no attempt decided: stood in where nothing can have committed (state
        `undecided`: a batch's DECIDING, the lane's LANE), unanswered where it may have (SEALED).
        Others were answered already, or moved on (to the lane) while the attempt ran."""
        for item in items:
            if item.state is undecided:  # nothing of it can have committed
                self.counters["stand_in_failure"] += 1
                self._decline_by_stand_in(item)
            elif item.state is _State.SEALED:
                self._fail(item, error)

    async def _attempt(self, live: list[_Pending],
                       at_ledger: asyncio.Event | None) -> list[AuthorizationResult]:
        async with self.pool.acquire() as conn:
            async def write() -> Callable[[], list[AuthorizationResult]]:
                finish = await self._batch(conn, live, at_ledger=at_ledger)
                self._seal(live)
                return finish

            finish = await _committed(conn, write)
        return finish()

    def _seal(self, live: list[_Pending]) -> None:
        """Stand in what is too close to its stand-in time to wait for the commit; if anything of the
        batch was stood in, abandon the attempt (rolled back), else mark every request committing."""
        now = asyncio.get_running_loop().time()
        for item in live:
            if item.state is _State.DECIDING and item.seal_by < now:
                self._stand_in(item, "deadline")
        if any(item.state not in (_State.DECIDING, _State.SEALED) for item in live):
            raise _Abandoned()
        for item in live:
            item.state = _State.SEALED

    async def _batch(self, conn: asyncpg.Connection, live: Sequence[_Pending], *, stand_in: bool = False,
                     at_ledger: asyncio.Event | None = None) -> Callable[[], list[AuthorizationResult]]:
        """Load, decide and write a batch inside the caller's transaction; returns how to answer it
        once committed."""
        now = self.clock()
        snapshot = await self._load(conn, live, now, lock_every_card=stand_in)
        plan = decide(live, snapshot, self.keys, self.policy, stand_in=stand_in)
        if plan.card_updates and not stand_in:
            fresh = await self._lock_cards(conn, plan, snapshot, now)
            if fresh is not None:  # a concurrent batch changed them since the first read
                snapshot = dataclasses.replace(snapshot, cards=fresh)
                plan = decide(live, snapshot, self.keys, self.policy)
        if snapshot.counters and velocity_declined(plan):
            snapshot, plan = await self._verify_velocity(conn, live, snapshot, plan, stand_in)
        if not stand_in:
            asking = [row for row in plan.rows if _asks_partner(row)]
            if asking:  # rolled back: no lock is held while their partners answer
                self._consult_partners(asking)
                raise _Abandoned()
        # Written before the ledger: the hot deposit's lock, taken by the ledger write and held to the
        # commit, then covers only the ledger's own work and the few rows the ledger declines.
        if not stand_in:
            await self._write_cards(conn, plan, now)
        await self._insert(conn, plan.new_rows, plan.holds.ids, now)
        await _record_shadow(conn, plan.new_rows, now)
        if at_ledger is not None:
            at_ledger.set()  # the next batch may form and prepare while this one holds the locks
        if plan.deltas:  # after the previous batch's commit, as the ledger's locks would be
            moved = await velocity.add_checked(conn, plan.deltas, plan.limits)
            if moved:
                for key in moved:
                    self._counters.pop(key, None)
                raise _CountersMoved()
        results = await self.ledger.write_new(conn, plan.holds)
        armed = any(row.card is not None and row.card.deposit_alert_armed and row.deposit_at is not None
                    for row in plan.rows)
        if not armed and not stand_in and all(r[0] is _OK for r in results):
            # Every hold written and no alert to check: nothing more belongs in the transaction, whose
            # commit releases the hot deposit's lock. The answers are worked out once it is committed.
            def answers() -> list[AuthorizationResult]:
                settle(plan, results)
                self._remember_counters(snapshot, plan, {})
                return [answer(row) for row in plan.rows]

            return answers
        declined, touched = settle(plan, results)
        back = taken_back(declined) if plan.deltas else {}
        if back:
            await velocity.add(conn, back)
        if stand_in:  # its cards are locked: the allowance counts only what the ledger held
            await self._write_cards(conn, plan, now)
        if declined:
            await conn.execute(DECLINE, [r.id for r in declined], [r.decline.response_code for r in declined],
                               [r.decline.reason for r in declined], [r.decline.action_code for r in declined])
            await events.correct_declined(conn, [r.id for r in declined])
        if touched:
            await check_crossings(conn, touched)

        def committed() -> list[AuthorizationResult]:
            self._remember_counters(snapshot, plan, back)
            return [answer(row) for row in plan.rows]

        return committed

    async def _verify_velocity(self, conn: asyncpg.Connection, live: Sequence[_Pending],
                               snapshot: Snapshot, plan: Plan,
                               stand_in: bool) -> tuple[Snapshot, Plan]:
        """A velocity decline decided on counters from this process's cache (which misses what
        reversals gave back) stands only on the counters as committed: read them, and decide
        again if any differs. (An approval on a stale count is caught where the counters are
        written: `_CountersMoved`.)"""
        read = await velocity.read(conn, snapshot.counters)
        fresh = {key: read.get(key, NOTHING_SPENT) for key in snapshot.counters}
        self._counters.update(fresh)
        if fresh == snapshot.counters:
            return snapshot, plan
        snapshot = dataclasses.replace(snapshot, counters=fresh)
        return snapshot, decide(live, snapshot, self.keys, self.policy, stand_in=stand_in)

    def _remember_counters(self, snapshot: Snapshot, plan: Plan,
                           back: dict[CounterKey, Spent]) -> None:
        """The counters as this committed batch left them, for the next batches' decisions."""
        cache = self._counters
        cache.update(snapshot.counters)
        cache.update(plan.counters)
        for key, (amount, count) in back.items():
            spent, times = cache[key]
            cache[key] = (spent + amount, times + count)
        while len(cache) > COUNTERS_CACHED_MAX:
            del cache[next(iter(cache))]

    # --- load ----------------------------------------------------------------------------------

    async def _load(self, conn: asyncpg.Connection, live: Sequence[_Pending], now: datetime, *,
                    lock_every_card: bool) -> Snapshot:
        """Everything the batch's decisions read: earlier answers, cards (locked where counters may
        change), fee schedules, rates, card activity for waivers, zone PIN keys."""
        answers = await self._answers(conn, live)
        today = now.astimezone(UTC).date()
        fingerprints = list({item.fingerprint for item in live})
        records = await conn.fetch(CARDS_LOCKED if lock_every_card else CARDS, fingerprints, now)
        cards = {r["pan_fingerprint"]: _card_facts(r, today) for r in records}
        controls = await self._controls_of(conn, cards.values())
        self._remember_stand_in_rules(cards.values())
        await self._load_schedules(conn, {c.fee_schedule_id for c in cards.values()} - {None})
        pairs, need_activity = set(), set()
        for item in live:
            card = cards.get(item.fingerprint)
            if card is None:
                continue
            if item.request.currency != card.program_currency:
                pairs.add((item.request.currency, card.program_currency))
            if pricing.needs_facts(self._schedules.get(card.fee_schedule_id), item.request.type):
                need_activity.add(card.card_id)
        networks_with_pins = {item.network_id for item in live if item.request.pin_block is not None}
        return Snapshot(
            now=now, answers=answers, cards=cards, schedules=self._schedules,
            rates=await self._rates_in_force(conn, pairs, now),
            activity=await card_activity(conn, need_activity,
                                         *pricing.previous_period(pricing.Period.MONTHLY, today)),
            exponents=await self.ledger.currencies(),
            zone_keys=await self._zone_keys_of(conn, networks_with_pins),
            **await self._velocity_of(conn, cards, controls, now))

    async def _controls_of(self, conn: asyncpg.Connection,
                           cards) -> dict[uuid.UUID, tuple[Control, ...]]:
        """The spending controls of the cards' programs, balances and cards (scopes with none are
        absent), from the cache where the version read with the card is the cached one."""
        versions = {}
        for card in cards:
            for scope, version in ((card.program_id, card.program_controls),
                                   (card.balance_id, card.balance_controls),
                                   (card.card_id, card.card_controls)):
                if version:
                    versions[scope] = version
        if not versions:
            return {}
        cache = self._controls
        missing = [scope for scope, version in versions.items()
                   if (cached := cache.get(scope)) is None or cached[0] != version]
        if missing:
            for scope, found in (await controls_store.load(conn, missing)).items():
                cache.pop(scope, None)
                cache[scope] = (versions[scope], found)
            while len(cache) > CONTROL_SCOPES_CACHED_MAX:
                del cache[next(iter(cache))]
        return {scope: found for scope in versions if (found := cache[scope][1])}

    async def _velocity_of(self, conn: asyncpg.Connection, cards: dict[str, CardFacts],
                           controls: dict[uuid.UUID, tuple[Control, ...]], now: datetime) -> dict:
        """Each card's control set, each program time zone's local date and period starts, and
        the counters the velocity controls read."""
        if not controls:
            return {}
        local_days = {zone: now.astimezone(self._zone(zone)).date()
                      for zone in {card.time_zone for card in cards.values()}}
        starts = {zone: period_starts(day) for zone, day in local_days.items()}
        sets: dict[uuid.UUID, ControlSet] = {}
        card_keys: dict[uuid.UUID, list[CounterKey]] = {}
        shared: dict[tuple, ControlSet] = {}  # cards with the same scopes' controls share a set
        keys = set()
        for card in cards.values():
            program, balance, own = (controls.get(card.program_id, ()),
                                     controls.get(card.balance_id, ()),
                                     controls.get(card.card_id, ()))
            if not (program or balance or own):
                continue
            scopes = (id(program), id(balance), id(own))
            found = shared.get(scopes)
            if found is None:
                found = shared[scopes] = control_set(program, balance, own)
            sets[card.card_id] = found
            if found.windows:
                card_keys[card.card_id] = mine = found.keys(card.card_id, card.balance_id,
                                                            starts[card.time_zone])
                keys.update(mine)
        return {"control_sets": sets, "counter_keys": card_keys, "local_days": local_days,
                "counters": await self._counters_of(conn, keys)}

    async def _counters_of(self, conn: asyncpg.Connection,
                           keys: set[CounterKey]) -> dict[CounterKey, Spent]:
        """The counters, from this process's cache where it has them (as its own committed
        batches left them), the others read."""
        cache = self._counters
        found = {key: value for key in keys if (value := cache.get(key)) is not None}
        missing = keys - found.keys()
        if missing:
            read = await velocity.read(conn, missing)
            for key in missing:
                found[key] = read.get(key, NOTHING_SPENT)
        return found

    def _zone(self, name: str) -> ZoneInfo:
        zone = self._zones.get(name)
        if zone is None:
            zone = self._zones[name] = ZoneInfo(name)
        return zone

    async def _rates_in_force(self, conn: asyncpg.Connection, pairs: set[tuple[str, str]],
                              now: datetime) -> dict[tuple[str, str], Decimal]:
        """The rates of `pairs` in force, from the cache where fresh (a pair without one is asked
        for every time: no rate declines, and a rate set since must apply at once)."""
        moment = asyncio.get_running_loop().time()
        rates = {pair: cached[1] for pair in pairs
                 if (cached := self._rates.get(pair)) is not None and cached[0] > moment}
        missing = pairs - rates.keys()
        if missing:
            found = await rates_in_force(conn, missing, now)
            self._rates.update((pair, (moment + RATES_CACHED_SECONDS, rate)) for pair, rate in found.items())
            rates.update(found)
        return rates

    async def _zone_keys_of(self, conn: asyncpg.Connection,
                            networks: set[uuid.UUID]) -> dict[uuid.UUID, ZoneKey]:
        """The zone PIN keys of `networks` (absent: none configured), from the cache where fresh."""
        moment = asyncio.get_running_loop().time()
        missing = {n for n in networks if (cached := self._zone_keys.get(n)) is None or cached[0] <= moment}
        if missing:
            found = await load_zone_keys(conn, self.keys, missing)
            self._zone_keys.update((n, (moment + ZONE_KEYS_CACHED_SECONDS, found.get(n))) for n in missing)
        return {n: key for n in networks if (key := self._zone_keys[n][1]) is not None}

    async def _answers(self, conn: asyncpg.Connection, live: Sequence[_Pending]) -> dict:
        by_network: dict[uuid.UUID, list[str]] = {}
        for item in live:
            by_network.setdefault(item.network_id, []).append(item.request.message_id)
        answers: dict[tuple[uuid.UUID, str], StoredAnswer] = {}
        for network_id, message_ids in by_network.items():
            for r in await conn.fetch(EXISTING, network_id, message_ids):
                result = AuthorizationResult(
                    r["id"], r["decision"], r["response_code"], r["reason"], r["approved_amount"],
                    r["action_code"], r["available_after"], r["billing_amount"], r["fee"],
                    r["stand_in"], r["balance_currency"], r["control_id"], r["control_version"])
                answers[(network_id, r["message_id"])] = StoredAnswer(result, r["request_digest"])
        return answers

    async def _lock_cards(self, conn: asyncpg.Connection, plan: Plan, snapshot: Snapshot,
                          now: datetime) -> dict[str, CardFacts] | None:
        """Lock the cards whose counters the plan changes and read them again: the cards as they are
        now if any of them changed since the batch's first read, else None.

        A card's decisions depend on its own facts only, so deciding again with these fresh facts
        changes counters on no card outside this set: no count is lost to a concurrent batch, and
        batches lock their cards in one ordered statement, never in a cycle."""
        updated = {card.fingerprint for card in snapshot.cards.values() if card.card_id in plan.card_updates}
        today = now.astimezone(UTC).date()
        fresh = {r["pan_fingerprint"]: _card_facts(r, today)
                 for r in await conn.fetch(CARDS_LOCKED, list(updated), now)}
        if all(_counted(fresh[fingerprint]) == _counted(snapshot.cards[fingerprint]) for fingerprint in updated):
            return None
        return {**snapshot.cards, **fresh}

    def _remember_stand_in_rules(self, cards) -> None:
        """Which cards approve in stand-in, for the stand-ins decided without the database."""
        remembered = self._approving_cards
        for card in cards:
            if card.stand_in_approves:
                remembered[card.fingerprint] = None
                if len(remembered) > STAND_IN_RULES_MAX:
                    del remembered[next(iter(remembered))]
            elif remembered:
                remembered.pop(card.fingerprint, None)

    async def _load_schedules(self, conn: asyncpg.Connection, ids: set[uuid.UUID]) -> None:
        missing = [i for i in ids if i not in self._schedules]
        if missing:
            for r in await conn.fetch(SCHEDULES, missing):
                self._schedules[r["id"]] = pricing.decode_schedule(r["schedule"])

    async def _ensure_settlement(self, currencies: set[str]) -> None:
        """Create the settlement accounts of new currencies, committed on their own (idempotent)."""
        missing = currencies - self._settlements
        if not missing:
            return
        known = await self.ledger.currencies()
        missing = {c for c in missing if c in known}
        if missing:
            await self.ledger.create_accounts([
                NewAccount(id=settlement_account(c), currency=c, kind=AccountKind.NETWORK_SETTLEMENT,
                           owner_ref=f"settlement:{c}") for c in sorted(missing)])
            self._settlements |= missing

    # --- write ---------------------------------------------------------------------------------

    async def _write_cards(self, conn: asyncpg.Connection, plan: Plan, now: datetime) -> None:
        updates = plan.card_updates
        if not updates:
            return
        ids = sorted(updates)  # the rows are locked already, in this order
        columns = [updates[i] for i in ids]
        await conn.execute(
            CARD_COUNTERS, ids, [u.pin_failures for u in columns], [u.verification_failures for u in columns],
            [u.verification_window_start for u in columns], [u.stand_in_used for u in columns],
            [u.lock_reason for u in columns], now.astimezone(UTC).date())
        locks = [(card_id, updates[card_id].lock_reason) for card_id in ids if updates[card_id].lock_reason]
        if locks:
            await record_engine_locks(conn, locks)
            for card_id, reason in locks:
                log.warning("card %s locked by the authorization engine (reason %d)", card_id, reason)

    async def _insert(self, conn: asyncpg.Connection, rows: list[Planned], hold_ids: list[uuid.UUID],
                      now: datetime) -> None:
        """Store every authorization of the batch with one binary COPY, as decided before the ledger."""
        records = []
        for row in rows:
            q, d, card = row.incoming.request, row.decline, row.card
            records.append((
                row.id, row.incoming.network_id, q.message_id, card.card_id if card else None,
                card.balance_id if card else None, str(q.type), q.amount, q.currency, q.mcc, q.merchant_id,
                q.merchant_name, q.merchant_country, q.terminal_id, "DECLINED" if d else "APPROVED",
                d.response_code if d else "00", d.action_code if d else None, d.reason if d else "APPROVED",
                0 if d else q.amount, None if row.deposit_at is None else hold_ids[row.deposit_at],
                None if row.user_at is None else hold_ids[row.user_at], now, None if d else row.billing_amount,
                None if d else row.fx_rate, card.fee_schedule_id if card else None,
                0 if d else row.transaction_fee, 0 if d else row.conversion_fee,
                None if row.fee_at is None else hold_ids[row.fee_at],
                None if d else hold_ids[row.user_at if row.fee_at is None else row.fee_at],
                row.stand_in, row.incoming.digest,
                *_control_columns(row), *_remote_columns(row),
            ))
        if records:
            await conn.copy_records_to_table("authorizations", records=records, columns=AUTHORIZATION_COLUMNS)
            # Their events with one statement, before the ledger's locks (antaca_auth/events.py).
            await events.record_authorizations(conn, [row.id for row in rows])

    # --- REMOTE programs: the partner asked between the decision and the write ------------------

    def _consult_partners(self, rows: Sequence[Planned]) -> None:
        """Take the rows' requests out of the batch and ask their partners, each on its own task
        (a slow partner delays only its own payments)."""
        for row in rows:
            item, card, request = row.incoming, row.card, row.incoming.request
            item.state = _State.REMOTE
            question = RemoteQuestion(
                authorization_id=item.authorization_id, message_id=request.message_id,
                program_id=card.program_id, card_id=card.card_id, balance_id=card.balance_id,
                masked_pan=mask_pan(request.pan), type=str(request.type), amount=request.amount,
                currency=request.currency, billing_amount=row.billing_amount,
                billing_currency=card.program_currency,
                fee=row.transaction_fee + row.conversion_fee, mcc=request.mcc,
                merchant_id=request.merchant_id, merchant_name=request.merchant_name,
                merchant_country=request.merchant_country, terminal_id=request.terminal_id)
            task = asyncio.create_task(self._consult(item, question, card.remote_deadline_ms))
            self._consulting.add(task)
            task.add_done_callback(self._consulting.discard)

    async def _consult(self, item: _Pending, question: RemoteQuestion, deadline_ms: int) -> None:
        """Ask the partner, then queue the request again with its answer; without a usable answer
        the stand-in lane applies the program's stand-in rule (the outcome recorded on the row)."""
        loop = asyncio.get_running_loop()
        self._busy += 1
        try:
            budget = call_budget(deadline_ms, item.stand_in_at - loop.time())
            if self.remote is None or budget <= 0:
                verdict = RemoteVerdict(RemoteOutcome.TIMEOUT, reason="no time to ask the partner")
            else:
                try:
                    verdict = await self.remote.ask(question, budget)
                except Exception:  # a bug of the client: the partner was not heard
                    log.exception("remote authorization call failed")
                    verdict = RemoteVerdict(RemoteOutcome.ERROR, reason="internal error")
        finally:
            self._busy -= 1
        self.counters[f"remote_{verdict.outcome.lower()}"] += 1
        if item.state is not _State.REMOTE:  # stood in by its deadline meanwhile
            self.counters["remote_late"] += 1
            return
        item.remote = verdict
        if verdict.unavailable:
            enough_time = item.deadline_at - loop.time() > STAND_IN_LANE_BUDGET_MIN_SECONDS * 2
            if enough_time and not self._closing and not self._lane.full():
                item.state = _State.LANE  # decided with its program's stand-in rule
                self._lane.put_nowait(item)
            else:
                self._decline_by_stand_in(item)
            return
        if verdict.amount is not None and verdict.amount < item.request.amount:
            item.requested_amount = item.request.amount
            item.request = msgspec.structs.replace(item.request, amount=verdict.amount)
        item.state = _State.QUEUED
        if self._closing:  # the queue may be drained already: answered now
            self._stand_in(item, "shutdown")
            return
        self.queue.put_nowait(item)

    # --- the stand-in lane and the stand-in records --------------------------------------------

    async def _lane_runner(self) -> None:
        while True:
            batch = [await self._lane.get()]
            while len(batch) < STAND_IN_LANE_BATCH_MAX and not self._lane.empty():
                batch.append(self._lane.get_nowait())
            self._busy += 1
            try:
                await self._run_lane(batch)
            finally:
                self._busy -= 1

    async def _run_lane(self, batch: list[_Pending]) -> None:
        """Stand-in approvals where the program allows them: the usual checks, then the card's daily
        stand-in allowance, in one transaction that must finish before the earliest deadline."""
        loop = asyncio.get_running_loop()
        budget_end = min(item.deadline_at for item in batch) - STAND_IN_LANE_BUDGET_MIN_SECONDS
        budget = budget_end - loop.time()
        if budget <= STAND_IN_LANE_BUDGET_MIN_SECONDS:
            for item in batch:
                self._decline_by_stand_in(item)
            return
        try:
            try:
                answers = await self._lane_attempt(batch, budget, budget_end)
            except asyncpg.UniqueViolationError:  # another process stored one of these messages:
                answers = await self._lane_attempt(batch, budget, budget_end)  # replay its answer
        except _CommitFailed as exc:
            self._give_up(batch, OutcomeUnknown(str(exc)), undecided=_State.LANE)
            return
        except asyncio.CancelledError:
            self._give_up(batch, OutcomeUnknown(), undecided=_State.LANE)
            raise
        except Exception as exc:  # rolled back (a time limit, a lock wait, the database): nothing held
            log.warning("stand-in lane of %d failed: %s", len(batch), type(exc).__name__)
            self._give_up(batch, OutcomeUnknown(str(exc)), undecided=_State.LANE)
            return
        for item, result in zip(batch, answers, strict=True):
            self._resolve(item, result)

    async def _lane_attempt(self, batch: list[_Pending], budget: float,
                            budget_end: float) -> list[AuthorizationResult]:
        loop = asyncio.get_running_loop()
        async with self.pool.acquire(timeout=budget) as conn:
            async def write() -> Callable[[], list[AuthorizationResult]]:
                milliseconds = max(1, int((budget_end - loop.time()) * 1000))
                await conn.execute(f"SET LOCAL statement_timeout = {milliseconds};"
                                   f"SET LOCAL lock_timeout = {milliseconds}")
                finish = await self._batch(conn, batch, stand_in=True)
                if loop.time() > budget_end:
                    raise _OutOfTime()
                for item in batch:
                    item.state = _State.SEALED
                return finish

            finish = await _committed(conn, write)
        return finish()

    async def _recorder(self) -> None:
        """Record the stand-in declines that no batch wrote, in large statements."""
        while True:
            await self._records_waiting.wait()
            self._records_waiting.clear()
            while self._records:
                chunk = self._records[:RECORD_BATCH_MAX]
                try:
                    await self._record(chunk)
                except Exception as exc:  # kept: answered stand-ins stay replayable from memory meanwhile
                    log.warning("stand-in records not written yet (%s); retrying", type(exc).__name__)
                    await asyncio.sleep(RECORD_RETRY_SECONDS)
                    continue
                del self._records[:len(chunk)]
                for item, _, _ in chunk:
                    self._stood_in.pop((item.network_id, item.request.message_id), None)

    async def _record(self, chunk: list[tuple[_Pending, AuthorizationResult, datetime]]) -> None:
        requests = [item.request for item, _, _ in chunk]
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                STAND_IN_RECORDS, [result.authorization_id for _, result, _ in chunk],
                [item.network_id for item, _, _ in chunk], [q.message_id for q in requests],
                [item.fingerprint for item, _, _ in chunk], [str(q.type) for q in requests],
                [q.amount for q in requests], [q.currency for q in requests], [q.mcc for q in requests],
                [q.merchant_id for q in requests], [q.merchant_name for q in requests],
                [q.merchant_country for q in requests], [q.terminal_id for q in requests],
                [result.response_code for _, result, _ in chunk], [result.reason for _, result, _ in chunk],
                [at for _, _, at in chunk], [item.digest for item, _, _ in chunk])
            await events.record_authorizations(conn, [result.authorization_id
                                                      for _, result, _ in chunk])


async def _committed(conn: asyncpg.Connection, write: Callable[[], Awaitable[_T]]) -> _T:
    """Run `write` in a transaction and commit it. Anything raised before the commit rolled it back;
    a failure of COMMIT itself is `_CommitFailed`: whether it committed is unknown."""
    transaction = conn.transaction()
    await transaction.start()
    try:
        result = await write()
        if _FAULT_PAUSES:  # test only: written, not committed
            await asyncio.sleep(_FAULT_PAUSES.get("before_commit", 0))
    except BaseException:
        with contextlib.suppress(Exception):
            await transaction.rollback()
        raise
    try:
        await transaction.commit()
    except Exception as exc:
        raise _CommitFailed(str(exc)) from exc
    if _FAULT_PAUSES:  # test only: committed, not answered
        await asyncio.sleep(_FAULT_PAUSES.get("after_commit", 0))
    return result


def _only_answer(item: _Pending, stored: StoredAnswer, now: datetime) -> Snapshot:
    """A snapshot holding nothing but one earlier answer (a replay decided without the database)."""
    return Snapshot(now=now, answers={(item.network_id, item.request.message_id): stored},
                    cards={}, schedules={}, rates={}, activity={}, exponents={}, zone_keys={})


def _counted(card: CardFacts) -> tuple:
    """What a card's counters depend on (its available funds change with every batch; these rarely)."""
    return (card.state, card.lock_reason, card.expiry, card.cvc_counter, card.pin_verification,
            card.pin_failures, card.verification_failures, card.verification_window_start,
            card.stand_in_approves, card.stand_in_limit, card.stand_in_used)


def _card_facts(r: asyncpg.Record, today) -> CardFacts:
    return CardFacts(
        card_id=r["id"], state=CardState(r["state"]), lock_reason=r["lock_reason"], expiry=r["expiry"],
        cvc_counter=r["cvc_counter"], pin_salt=r["pin_salt"], pin_verification=r["pin_verification"],
        pin_failures=r["pin_failures"], program_currency=r["program_currency"],
        funding_model=r["funding_model"], balance_id=r["balance_id"], balance_state=r["balance_state"],
        user_account=r["user_account"], deposit_account=r["deposit_account"], program_id=r["program_id"],
        fee_schedule_id=r["fee_schedule_id"], deposit_alert_armed=bool(r["deposit_alert_armed"]),
        ecommerce_without_cvc2=r["ecommerce_without_cvc2"],
        verification_failures=r["verification_failures"],
        verification_window_start=r["verification_window_start"],
        stand_in_approves=r["stand_in_mode"] == "APPROVE", stand_in_limit=r["stand_in_limit"],
        stand_in_used=r["stand_in_amount"] if r["stand_in_day"] == today else 0,
        fingerprint=r["pan_fingerprint"], user_available=r["user_available"],
        deposit_available=r["deposit_available"], time_zone=r["time_zone"],
        program_controls=r["program_controls"], balance_controls=r["balance_controls"],
        card_controls=r["card_controls"], remote_deadline_ms=r["remote_deadline_ms"])


def _asks_partner(row: Planned) -> bool:
    """A payment of a REMOTE program that passed Antaca's checks and has no partner answer yet
    (a refund is not asked: the partner hears of it by advice)."""
    card = row.card
    return (row.stored and row.decline is None and card is not None
            and card.funding_model == "REMOTE" and getattr(row.incoming, "remote", None) is None
            and row.incoming.request.type is not TxType.REFUND)


def _remote_columns(row: Planned) -> tuple:
    """The partner's answer on the authorization's row (outcome, amount asked, decline reason)."""
    verdict = getattr(row.incoming, "remote", None)
    if verdict is None:
        return (None, None, None)
    requested = getattr(row.incoming, "requested_amount", None) or row.incoming.request.amount
    return (str(verdict.outcome), requested, verdict.reason)


def _control_columns(row: Planned) -> tuple:
    """The deciding control and its version, and the counters an approval went into."""
    control, counted = row.control, row.decline is None and row.velocity
    return (control.id if control else None, control.version if control else None,
            row.velocity_bits if counted else None, row.local_day if counted else None)


async def _record_shadow(conn: asyncpg.Connection, rows: Sequence[Planned], now: datetime) -> None:
    """What the batch's shadow controls would have declined, one row per control and payment."""
    hits = [(control.id, row.id, control.version, decline.response_code, decline.reason,
             row.billing_amount, row.card.program_currency, now)
            for row in rows for control, decline in row.shadow]
    await controls_store.record_shadow_hits(conn, hits)
