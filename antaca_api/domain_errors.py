"""The product's failures as its domain reports them: a code and a message, no HTTP.

Domain modules (customers, balances, cards, corporations, partners, programs, fees...) raise these;
antaca_api/errors.py maps each class to its HTTP status in one table, at the boundary. Messages
never carry card data, secrets or tokens.
"""

from __future__ import annotations


class DomainError(Exception):
    code = "INVALID_REQUEST"
    message = "the request is not valid"

    def __init__(self, message: str | None = None) -> None:
        if message is not None:
            self.message = message
        super().__init__(self.message)


class ValidationFailed(DomainError):
    code, message = "VALIDATION_ERROR", "the request does not match the schema"


class InvalidCredentials(DomainError):
    code, message = "INVALID_CREDENTIALS", "the credentials are not valid"


class Forbidden(DomainError):
    code, message = "FORBIDDEN", "your role does not allow this operation"


class NotFound(DomainError):
    """Unknown ids and other tenants' ids look the same: 404."""

    code, message = "NOT_FOUND", "no such resource"


# --- domain rules ----------------------------------------------------------------------------
class Conflict(DomainError):
    code, message = "CONFLICT", "the request conflicts with the current state"


class CustomerExists(Conflict):
    code, message = "CUSTOMER_EXISTS", "a customer with this external id already exists"


class CustomerNotVerified(Conflict):
    code, message = "CUSTOMER_NOT_VERIFIED", "the customer must be VERIFIED (KYC) first"


class KycAlreadyDecided(Conflict):
    code, message = "KYC_ALREADY_DECIDED", "the customer's KYC is already decided"


class CorporationNotApproved(Conflict):
    code, message = "CORPORATION_NOT_APPROVED", "the corporation must be APPROVED (KYB) first"


class EmployeeExists(Conflict):
    code, message = "EMPLOYEE_EXISTS", "the corporation already has an employee with this e-mail"


class BalanceNotActive(Conflict):
    code, message = "BALANCE_NOT_ACTIVE", "the balance is blocked or closed"


class BalanceNotEmpty(Conflict):
    code, message = "BALANCE_NOT_EMPTY", "only a balance at zero, with no holds, can be closed"


class InvalidStateTransition(Conflict):
    code, message = "INVALID_STATE_TRANSITION", "that state change is not allowed"


class IdempotencyConflict(Conflict):
    code, message = "IDEMPOTENCY_CONFLICT", "this reference was already used for a different request"


class IdempotencyKeyReused(Conflict):
    code, message = ("IDEMPOTENCY_KEY_REUSED",
                     "this Idempotency-Key was used for a different request")


class IdempotencyKeyInProgress(Conflict):
    code, message = ("IDEMPOTENCY_KEY_IN_PROGRESS",
                     "a request with this Idempotency-Key is still running; retry later")


class InsufficientFunds(Conflict):
    code, message = "INSUFFICIENT_FUNDS", "the funding balance cannot cover this amount"


class PartnerSuspended(DomainError):
    code, message = "PARTNER_SUSPENDED", "the partner is suspended"


class NetworkSuspended(DomainError):
    code, message = "NETWORK_SUSPENDED", "the card network is suspended"


class InvalidPairingCode(DomainError):
    code, message = "INVALID_PAIRING_CODE", "the pairing code is unknown, used or expired"


class AdminExists(Conflict):
    code, message = "ADMIN_EXISTS", "an administrator with this e-mail already exists"


class InvalidCsr(DomainError):
    code, message = "INVALID_CSR", "the certificate signing request is not a valid PEM CSR"


class UnsupportedCurrency(DomainError):
    code, message = "UNSUPPORTED_CURRENCY", "the currency is not a known ISO 4217 code"


class InvalidAmount(DomainError):
    code, message = "INVALID_AMOUNT", "the amount must be a positive integer number of minor units"


class DocumentRejected(DomainError):
    code, message = "DOCUMENT_REJECTED", "the document must be a PDF, PNG or JPEG within the size limit"


# --- cards -----------------------------------------------------------------------------------
class ProgramRequired(DomainError):
    code, message = "PROGRAM_REQUIRED", "name the card program: the partner has none or several for this currency"


class ProgramCurrencyMismatch(Conflict):
    code, message = "PROGRAM_CURRENCY_MISMATCH", "the card program's currency differs from the balance's"


class InvalidProgram(DomainError):
    code, message = "INVALID_PROGRAM", "the card program is not valid"


class ProcessorFailure(DomainError):
    code, message = "PROCESSOR_ERROR", "the issuing processor could not complete the operation"


class CardDataUnavailable(Conflict):
    code, message = "CARD_DATA_UNAVAILABLE", "the card has no usable card data in its current state"


class VirtualCardOnly(Conflict):
    code, message = "VIRTUAL_CARD_ONLY", "this operation is for virtual cards"


class InvalidPin(DomainError):
    code, message = "INVALID_PIN", "the PIN must have 4 to 12 digits and not be trivial"


class InvalidLockReason(DomainError):
    code, message = "INVALID_LOCK_REASON", "unknown lock reason"


class CardNotInactive(Conflict):
    code, message = "CARD_NOT_INACTIVE", "only an INACTIVE card can be activated"


class CardLockIrreversible(Conflict):
    code, message = "CARD_LOCK_IRREVERSIBLE", "the card is locked for a reason that cannot be undone"


class CardNotLocked(Conflict):
    code, message = "CARD_NOT_LOCKED", "the card is not locked"


class CardNotLockable(Conflict):
    code, message = "CARD_NOT_LOCKABLE", "the card cannot be locked in its current state"


class CardRemoved(Conflict):
    code, message = "CARD_REMOVED", "the card is removed"


class CardStateConflict(Conflict):
    code, message = "CARD_STATE_CONFLICT", "the card's state does not allow this"


class CardNotReplaceable(Conflict):
    code, message = "CARD_NOT_REPLACEABLE", "the card cannot be replaced in its current state"


class CardAlreadyReplaced(Conflict):
    code, message = "CARD_ALREADY_REPLACED", "the card is already replaced"


class PhysicalCardOnly(Conflict):
    code, message = "PHYSICAL_CARD_ONLY", "this operation is for physical cards"


# The card state machine's refusals (antaca_auth.cardstate codes), each with its own class.
CARD_TRANSITION_ERRORS: dict[str, type[DomainError]] = {
    "CARD_NOT_INACTIVE": CardNotInactive,
    "CARD_LOCK_IRREVERSIBLE": CardLockIrreversible,
    "CARD_NOT_LOCKED": CardNotLocked,
    "CARD_NOT_LOCKABLE": CardNotLockable,
    "CARD_REMOVED": CardRemoved,
    "INVALID_LOCK_REASON": InvalidLockReason,
    "CARD_NOT_PENDING": CardStateConflict,
    "CARD_NOT_ORDERED": CardStateConflict,
    "CARD_NOT_REPLACEABLE": CardNotReplaceable,
    "CARD_ALREADY_REPLACED": CardAlreadyReplaced,
}


class KybClosed(Conflict):
    code, message = "KYB_CLOSED", "the corporation's KYB is decided; documents can no longer change"


class NetworkExists(Conflict):
    code, message = "NETWORK_EXISTS", "a network with this name already exists"


class InvalidZoneKey(DomainError):
    code, message = "INVALID_ZONE_KEY", "the zone PIN key is malformed or weak"


class CheckValueMismatch(DomainError):
    code, message = "CHECK_VALUE_MISMATCH", "the check value does not match the key"


class FollowUpRefused(Conflict):
    code, message = "FOLLOW_UP_REFUSED", "the authorization's hold cannot take this reversal or clearing"


# --- partners' money and fees ----------------------------------------------------------------
class PartnerBalanceExists(Conflict):
    code, message = "PARTNER_BALANCE_EXISTS", "the partner already has a balance of this kind in this currency"


class PartnerCreditMissing(Conflict):
    code, message = ("PARTNER_CREDIT_BALANCE_MISSING",
                     "the partner's programs in this currency are CREDIT-model but it has no partner credit balance")


class InsufficientPartnerCredit(Conflict):
    code, message = "INSUFFICIENT_PARTNER_CREDIT", "the partner credit balance cannot cover this top-up"


class InvalidFeeSchedule(DomainError):
    code, message = "INVALID_FEE_SCHEDULE", "the fee schedule is not valid"


class EffectiveDateInPast(DomainError):
    code, message = "EFFECTIVE_DATE_IN_PAST", "a change can only apply from now or a later date"


class InvalidIban(DomainError):
    code, message = "INVALID_IBAN", "the IBAN is not valid (format or check digits)"


class InvalidControl(DomainError):
    code, message = "INVALID_CONTROL", "the spending control is not valid"


class ControlLooserThanPartner(Conflict):
    code = "CONTROL_LOOSER_THAN_PARTNER"
    message = "a customer's limit is never looser than the partner's"


class ControlNotShadow(Conflict):
    code, message = "CONTROL_NOT_SHADOW", "only a SHADOW control can be promoted"


class InvalidTimeZone(DomainError):
    code, message = "INVALID_TIME_ZONE", "the time zone is not an IANA time zone name"
# --- partner self-service and customer service (issue 15) --------------------------------------
class PartnerBalancePending(Conflict):
    code, message = ("PARTNER_BALANCE_PENDING",
                     "the partner balance waits for an administrator's approval")


class NoProgramInCurrency(Conflict):
    code, message = "NO_PROGRAM_IN_CURRENCY", "the partner has no card program in this currency"


class PasswordChangeRequired(Forbidden):
    code, message = ("PASSWORD_CHANGE_REQUIRED",
                     "the password was reset: change it (PUT /admin/users/me/password) first")


class OwnAdministratorAccount(Conflict):
    code, message = ("OWN_ADMINISTRATOR_ACCOUNT",
                     "administrators cannot deactivate or change the role of their own account")
# --- step-up and money between users ---------------------------------------------------------
class StepUpRequired(DomainError):
    code, message = ("STEP_UP_REQUIRED",
                     "confirm with the application PIN first (POST /customers/me/step-up) and send "
                     "the proof as the Step-Up-Token header")


class AppPinNotSet(Conflict):
    code, message = "APP_PIN_NOT_SET", "set an application PIN first (PUT /customers/me/app-pin)"


class InvalidAppPin(DomainError):
    code, message = "INVALID_APP_PIN", "the application PIN is wrong"


class AppPinLocked(DomainError):
    code, message = "APP_PIN_LOCKED", "too many wrong application PINs: try again later"


class RateUnavailable(Conflict):
    code, message = "RATE_UNAVAILABLE", "no exchange rate is in force between these currencies"
# --- events and webhooks ---------------------------------------------------------------------
class WebhookTargetRefused(DomainError):
    """An https URL whose host is (or resolves to) a loopback, private, link-local or metadata
    address, or a URL that is not https."""

    code = "WEBHOOK_TARGET_REFUSED"
    message = "the webhook URL must be https and reach a public address"


class WebhookEndpointLimit(Conflict):
    code, message = "WEBHOOK_ENDPOINT_LIMIT", "the partner has as many webhook endpoints as allowed"


class InvalidCursor(DomainError):
    code, message = "INVALID_CURSOR", "the cursor is not one this list gave"


class RateLimited(DomainError):
    """A rate limit of antaca_api/rate_limits.py: the answer says how long to wait."""

    code, message = "RATE_LIMITED", "too many requests; retry after Retry-After seconds"

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__()
        self.retry_after_seconds = retry_after_seconds  # sent as Retry-After


class AccountLocked(RateLimited):
    """Too many failures for one account: refused, right or wrong, until the lock ends."""

    code = "ACCOUNT_LOCKED"
    message = "too many failed attempts: this account is locked; retry after Retry-After seconds"
