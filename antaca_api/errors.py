"""Failures at the HTTP boundary, and the one place every failure meets its HTTP status.

The HTTP layer's own failures (request shape, authentication, JWE, overload) are `ApiError`s with
a status. The product's failures are `DomainError`s (antaca_api/domain_errors.py), raised by the
domain modules without any HTTP; `DOMAIN_ERROR_STATUS` below gives each its status. The error
middleware (`antaca_api.app`) answers both as `{"code": "UPPER_SNAKE", "message": "..."}`.
Messages never carry card data, secrets or tokens.
"""

from __future__ import annotations

import msgspec

from antaca_api.domain_errors import (
    AccountLocked,
    AdminExists,
    AppPinLocked,
    AppPinNotSet,
    BalanceNotActive,
    BalanceNotEmpty,
    CardAlreadyReplaced,
    CardDataUnavailable,
    CardLockIrreversible,
    CardNotInactive,
    CardNotLockable,
    CardNotLocked,
    CardNotReplaceable,
    CardRemoved,
    CardStateConflict,
    CheckValueMismatch,
    Conflict,
    ControlLooserThanPartner,
    ControlNotShadow,
    CorporationNotApproved,
    CustomerExists,
    CustomerNotVerified,
    DocumentRejected,
    DomainError,
    EffectiveDateInPast,
    EmployeeExists,
    FollowUpRefused,
    Forbidden,
    IdempotencyConflict,
    IdempotencyKeyInProgress,
    IdempotencyKeyReused,
    InsufficientFunds,
    InsufficientPartnerCredit,
    InvalidAmount,
    InvalidAppPin,
    InvalidControl,
    InvalidCredentials,
    InvalidCsr,
    InvalidCursor,
    InvalidFeeSchedule,
    InvalidIban,
    InvalidLockReason,
    InvalidPairingCode,
    InvalidPin,
    InvalidProgram,
    InvalidStateTransition,
    InvalidTimeZone,
    InvalidZoneKey,
    KybClosed,
    KycAlreadyDecided,
    NetworkExists,
    NetworkSuspended,
    NoProgramInCurrency,
    NotFound,
    OwnAdministratorAccount,
    PartnerBalanceExists,
    PartnerBalancePending,
    PartnerCreditMissing,
    PartnerSuspended,
    PasswordChangeRequired,
    PhysicalCardOnly,
    ProcessorFailure,
    ProgramCurrencyMismatch,
    ProgramRequired,
    RateLimited,
    RateUnavailable,
    StepUpRequired,
    UnsupportedCurrency,
    ValidationFailed,
    VirtualCardOnly,
    WebhookEndpointLimit,
    WebhookTargetRefused,
)


class ErrorBody(msgspec.Struct):
    """What every failure answers: `{"code", "message", "requestId"}` (the error middleware sends
    it; the request id is also the response's `X-Request-Id`, to quote to the operator)."""

    code: str
    message: str
    request_id: str | None = msgspec.field(default=None, name="requestId")


class ApiError(Exception):
    status = 400
    code = "BAD_REQUEST"
    message = "the request is not valid"
    retry_after_seconds: int | None = None  # sent as Retry-After when set

    def __init__(self, message: str | None = None) -> None:
        if message is not None:
            self.message = message
        super().__init__(self.message)


# --- request shape ---------------------------------------------------------------------------
class MalformedJson(ApiError):
    code, message = "MALFORMED_JSON", "the body is not valid JSON"


class PayloadTooLarge(ApiError):
    status, code, message = 413, "PAYLOAD_TOO_LARGE", "the body is larger than this service accepts"


class RequestTimeout(ApiError):
    """The body did not arrive in time (antaca_api/hardening.py, body_timeout_seconds)."""

    status, code, message = 408, "REQUEST_TIMEOUT", "the request body did not arrive in time"


class RouteNotFound(ApiError):
    status, code, message = 404, "NOT_FOUND", "no such endpoint"


class MethodNotAllowed(ApiError):
    status, code, message = 405, "METHOD_NOT_ALLOWED", "this endpoint does not accept that method"


class UnsupportedMediaType(ApiError):
    status, code, message = 415, "UNSUPPORTED_MEDIA_TYPE", "this endpoint expects another content type"


# --- authentication and authorization --------------------------------------------------------
class Unauthenticated(ApiError):
    status, code, message = 401, "UNAUTHENTICATED", "authentication is required"


class SessionExpired(ApiError):
    status, code, message = 401, "SESSION_EXPIRED", "the session has expired; authenticate again"


class CertificateRequired(ApiError):
    status, code, message = 401, "CERTIFICATE_REQUIRED", "this channel requires a valid partner client certificate"


# --- JWE (the product's exact codes) ---------------------------------------------------------
class EncryptionRequired(ApiError):
    code, message = "ENCRYPTION_REQUIRED", "this endpoint requires an encrypted request or response"


class InvalidPublicKey(ApiError):
    code, message = "INVALID_PUBLIC_KEY", "the Public-Key header is missing or is not a base64 RSA public key PEM"


class InvalidPayload(ApiError):
    code, message = "INVALID_PAYLOAD", "the body must be {\"payload\": \"<compact JWE>\"}"


class CantDecryptPayload(ApiError):
    code, message = "CANT_DECRYPT_PAYLOAD", "the payload cannot be decrypted with this service's key"


class InternalError(ApiError):
    """A failure nobody expected: a bug. Only the route is logged, never the body."""

    status, code, message = 500, "INTERNAL_ERROR", "an internal error occurred"


# Another HTTP error aiohttp raised (none is known to reach a client: 404, 405, 413 and 415 have
# their own codes); answered with aiohttp's status and reason.
HTTP_ERROR_CODE = "HTTP_ERROR"


class DatabaseUnavailable(ApiError):
    status, code, message = 503, "DATABASE_UNAVAILABLE", "the database does not answer"


class NotReady(ApiError):
    status, code, message = 503, "NOT_READY", "the service is not ready"


class ServiceBusy(ApiError):
    """Too much CPU-heavy work (password hashing, JWE) already waits (antaca_api.background_cpu)."""

    status, code, message = 503, "SERVICE_BUSY", "the service is busy; retry later"
    retry_after_seconds = 1  # about what the waiting jobs take to clear (16 scrypts on 2 threads)


class ClearPinRefused(ApiError):
    code = "CLEAR_PIN_REFUSED"
    message = ("a PIN never travels in clear: send it as pinBlock, an ISO 9564 PIN block (format 0 or 4) "
               "under the network's zone PIN key")


class AuthorizationOutcomeUnknown(ApiError):
    status, code = 503, "AUTHORIZATION_OUTCOME_UNKNOWN"
    message = "the issuer could not confirm whether this authorization was recorded; treat it as unanswered"


# Every domain error's HTTP status: the one place a domain failure meets HTTP (a test checks that
# no DomainError subclass is missing).
DOMAIN_ERROR_STATUS: dict[type[DomainError], int] = {
    ValidationFailed: 400,
    InvalidCredentials: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    CustomerExists: 409,
    CustomerNotVerified: 409,
    KycAlreadyDecided: 409,
    CorporationNotApproved: 409,
    EmployeeExists: 409,
    BalanceNotActive: 409,
    BalanceNotEmpty: 409,
    InvalidStateTransition: 409,
    IdempotencyConflict: 409,
    IdempotencyKeyReused: 409,
    IdempotencyKeyInProgress: 409,
    InsufficientFunds: 409,
    PartnerSuspended: 403,
    NetworkSuspended: 403,
    InvalidPairingCode: 401,
    AdminExists: 409,
    InvalidCsr: 400,
    UnsupportedCurrency: 400,
    InvalidAmount: 400,
    DocumentRejected: 400,
    ProgramRequired: 400,
    ProgramCurrencyMismatch: 409,
    InvalidProgram: 400,
    ProcessorFailure: 502,
    CardDataUnavailable: 409,
    VirtualCardOnly: 409,
    InvalidPin: 400,
    InvalidLockReason: 400,
    CardNotInactive: 409,
    CardLockIrreversible: 409,
    CardNotLocked: 409,
    CardNotLockable: 409,
    CardRemoved: 409,
    CardStateConflict: 409,
    CardNotReplaceable: 409,
    CardAlreadyReplaced: 409,
    PhysicalCardOnly: 409,
    KybClosed: 409,
    NetworkExists: 409,
    InvalidZoneKey: 400,
    CheckValueMismatch: 400,
    FollowUpRefused: 409,
    PartnerBalanceExists: 409,
    PartnerCreditMissing: 409,
    InsufficientPartnerCredit: 409,
    InvalidFeeSchedule: 400,
    EffectiveDateInPast: 400,
    InvalidIban: 400,
    InvalidControl: 400,
    ControlLooserThanPartner: 409,
    ControlNotShadow: 409,
    InvalidTimeZone: 400,
    PartnerBalancePending: 409,
    NoProgramInCurrency: 409,
    PasswordChangeRequired: 403,
    OwnAdministratorAccount: 409,
    StepUpRequired: 403,
    AppPinNotSet: 409,
    InvalidAppPin: 403,
    AppPinLocked: 423,
    RateUnavailable: 409,
    WebhookTargetRefused: 400,
    WebhookEndpointLimit: 409,
    InvalidCursor: 400,
    RateLimited: 429,
    AccountLocked: 429,
}


def status_of(error: DomainError) -> int:
    """The HTTP status a domain error is answered with."""
    return DOMAIN_ERROR_STATUS[type(error)]


def status_of_class(error_class: type[DomainError] | type[ApiError]) -> int:
    """The status of a domain error class (the table) or an HTTP layer error class (its own)."""
    if issubclass(error_class, DomainError):
        return DOMAIN_ERROR_STATUS[error_class]
    return error_class.status
