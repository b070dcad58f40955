"""Remote authorization (funding model REMOTE): the partner holds its users' balances and approves
or declines each payment that passed Antaca's card checks (docs/partners.md).

The core's part, without HTTP: what the partner is asked (`RemoteQuestion`, no PAN, CVV or PIN),
how its answer is read (`read_answer`, pure), and the `RemotePartner` protocol the engine calls
between its decision and its write, outside any transaction. The HTTP client that implements the
protocol lives in antaca_api/remote_partners.py.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from typing import Protocol

import msgspec

from antaca_auth.authorization import Decline

REMOTE_DEADLINE_MS_DEFAULT = 1_000  # the partner call's own deadline, per program
REMOTE_DEADLINE_MS_MIN, REMOTE_DEADLINE_MS_MAX = 50, 10_000  # as sql/0026 checks
# Left of the authorization's stand-in time once the partner answered: enough to decide and
# commit the batch. A partner call never runs past the stand-in time less this.
REMOTE_WRITE_RESERVE_SECONDS = 0.1
REMOTE_REASON_LENGTH_MAX = 200  # the partner's decline reason, as stored
REMOTE_ANSWER_BYTES_MAX = 4096  # a longer answer is malformed

# The partner declined: its reason is stored with the authorization (remote_reason).
PARTNER_DECLINED = Decline("05", "DECLINED_BY_PARTNER")


class RemoteOutcome(enum.StrEnum):
    APPROVED = "APPROVED"
    PARTIAL = "PARTIAL"  # approved for less than asked
    DECLINED = "DECLINED"
    # No usable answer: the program's stand-in rule applies.
    TIMEOUT = "TIMEOUT"
    ERROR = "ERROR"  # connection refused, a non-2xx status, a refused target
    MALFORMED = "MALFORMED"
    BUSY = "BUSY"  # the program's calls in flight were at their bound until the deadline


UNAVAILABLE = frozenset({RemoteOutcome.TIMEOUT, RemoteOutcome.ERROR, RemoteOutcome.MALFORMED,
                         RemoteOutcome.BUSY})


@dataclass(frozen=True, slots=True)
class RemoteVerdict:
    outcome: RemoteOutcome
    amount: int | None = None  # the approved amount (APPROVED, PARTIAL)
    reason: str | None = None  # the partner's decline reason, or what went wrong

    @property
    def unavailable(self) -> bool:
        return self.outcome in UNAVAILABLE


class RemoteQuestion(msgspec.Struct, frozen=True, rename="camel", kw_only=True):
    """What the partner is asked: the payment, the card by id and masked PAN only."""

    authorization_id: uuid.UUID
    message_id: str
    program_id: uuid.UUID
    card_id: uuid.UUID
    balance_id: uuid.UUID
    masked_pan: str
    type: str
    amount: int
    currency: str
    billing_amount: int  # in the program's currency, before fees
    billing_currency: str
    fee: int  # Antaca's fees on it, in the billing currency
    mcc: str
    merchant_id: str | None
    merchant_name: str | None
    merchant_country: str | None
    terminal_id: str | None


class _Answer(msgspec.Struct, rename="camel", forbid_unknown_fields=False):
    decision: str
    amount: int | None = None
    reason: str | None = None


class RemotePartner(Protocol):
    """Asks a REMOTE program's partner; never raises for the partner's failures (they are
    verdicts), and answers within `budget_seconds`."""

    async def ask(self, question: RemoteQuestion, budget_seconds: float) -> RemoteVerdict: ...


def mask_pan(pan: str) -> str:
    """The first six and last four digits, the rest as `*`."""
    return pan[:6] + "*" * max(len(pan) - 10, 0) + pan[-4:]


def read_answer(body: bytes, requested: int) -> RemoteVerdict:
    """The partner's answer: `{"decision": "APPROVE", "amount"?: n}` (a partial approval when
    0 < n < requested) or `{"decision": "DECLINE", "reason"?: text}`; anything else MALFORMED."""
    if len(body) > REMOTE_ANSWER_BYTES_MAX:
        return RemoteVerdict(RemoteOutcome.MALFORMED, reason="answer too long")
    try:
        answer = msgspec.json.decode(body, type=_Answer)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return RemoteVerdict(RemoteOutcome.MALFORMED, reason="not an answer")
    if answer.decision == "DECLINE":
        reason = (answer.reason or "declined")[:REMOTE_REASON_LENGTH_MAX]
        return RemoteVerdict(RemoteOutcome.DECLINED, reason=reason)
    if answer.decision != "APPROVE":
        return RemoteVerdict(RemoteOutcome.MALFORMED, reason="unknown decision")
    amount = requested if answer.amount is None else answer.amount
    if isinstance(amount, bool) or not 0 < amount <= requested:
        return RemoteVerdict(RemoteOutcome.MALFORMED, reason="approved amount out of range")
    outcome = RemoteOutcome.APPROVED if amount == requested else RemoteOutcome.PARTIAL
    return RemoteVerdict(outcome, amount=amount)


def partner_refusal(verdict: RemoteVerdict | None) -> Decline | None:
    """The decline a partner's verdict makes (None: approved, or no verdict)."""
    if verdict is not None and verdict.outcome is RemoteOutcome.DECLINED:
        return PARTNER_DECLINED
    return None


def call_budget(deadline_ms: int, seconds_to_stand_in: float) -> float:
    """How long the partner call may take: its program's deadline, within what the authorization's
    budget leaves once the batch's write is reserved (0 or less: no time to ask)."""
    return min(deadline_ms / 1000, seconds_to_stand_in - REMOTE_WRITE_RESERVE_SECONDS)
