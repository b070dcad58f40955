"""Service settings from the environment."""

from __future__ import annotations

import dataclasses
import enum
import os
import uuid
from pathlib import Path

import msgspec

from antaca_auth.engine import EngineSettings
from antaca_auth.renewal import RENEWAL_WINDOW_DAYS_DEFAULT

ENGINE_PREFIX = "ANTACA_AUTHORIZATION_"  # e.g. ANTACA_AUTHORIZATION_QUEUE_SIZE_MAX=8192


def engine_settings_from_env(env: dict[str, str]) -> EngineSettings:
    """The authorization engine's tuning: each field from `ANTACA_AUTHORIZATION_<FIELD>`."""
    default = EngineSettings()
    values = {}
    for field in dataclasses.fields(EngineSettings):
        raw = env.get(ENGINE_PREFIX + field.name.upper())
        if raw is not None:
            values[field.name] = type(getattr(default, field.name))(raw)
    return EngineSettings(**values)


class Environment(enum.StrEnum):
    """Where the service runs (`ANTACA_ENVIRONMENT`): production refuses development settings."""

    DEVELOPMENT = "development"
    PRODUCTION = "production"


class SettingsRefused(ValueError):
    """Settings that must not run together (a development setting in production)."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 8080  # plain HTTP: public, customer and admin channels
    tls_port: int = 8443  # TLS with optional client certificates: every channel, partners' included
    key_dir: Path = Path(".antaca") / "keys"  # CA, server certificate, JWE key (never committed)
    sweep_interval: float = 1.0  # seconds between expiry sweeps of pending transfers
    personalization_interval: float = 5.0  # seconds between passes over physical card orders
    # Card renewal (antaca_api/replacement.py): cards expiring within the window are renewed.
    renewal_window_days: int = RENEWAL_WINDOW_DAYS_DEFAULT
    renewal_interval: float = 3600.0  # seconds between passes of the renewal job
    card_keys_file: Path | None = None  # card data keys (JSON); default <key_dir>/card-keys.json
    session_ttl: int = 600  # customer session lifetime, seconds (the product's 10 minutes)
    admin_session_ttl: int = 3600
    pairing_code_ttl: int = 600
    max_body_bytes: int = 1024 * 1024
    max_document_bytes: int = 5 * 1024 * 1024
    # Low-balance alerts (antaca_api/notifications.py). No SMTP host: e-mail attempts fail and are retried.
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "alerts@antaca.local"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    fee_interval: float = 60.0  # seconds between recurring-fee runs and unpaid-fee collection sweeps
    alert_interval: float = 1.0  # seconds between passes of the alert worker
    alert_backoff_base: float = 1.0  # seconds before the first retry; doubles per failure, capped at an hour
    alert_max_attempts: int = 10  # a delivery is FAILED after this many attempts
    # Partner webhooks (antaca_api/webhook_delivery.py). Allowing private targets (loopback,
    # private networks, plain http) is for development and tests only, never production.
    webhook_interval: float = 1.0  # seconds between passes of the webhook worker
    webhook_backoff_base: float = 10.0  # seconds before the first retry; doubles, with jitter
    webhook_allow_private_targets: bool = False
    engine: EngineSettings = EngineSettings()  # the authorization engine (antaca_auth/engine.py)
    clearing_tolerance_percent: int = 20  # a clearing may exceed its hold by this much (tips, fuel)
    # ISO 8583 listener (docs/iso8583.md); port 0: not started. TLS with the network's client
    # certificate, or plain TCP for the one network named (behind a private link).
    iso8583_port: int = 8583
    iso8583_tls: bool = True
    iso8583_network_id: uuid.UUID | None = None
    # A partner's own new deposit or credit balance waits for an administrator's approval.
    partner_balance_approval: bool = False
    environment: Environment = Environment.DEVELOPMENT
    # Sandbox simulation routes for partners (antaca_api/sandbox.py, docs/partners.md): off by
    # default, refused in production.
    sandbox: bool = False

    def __post_init__(self) -> None:
        if self.sandbox and self.environment is Environment.PRODUCTION:
            raise SettingsRefused("ANTACA_SANDBOX=1 is refused with ANTACA_ENVIRONMENT=production")

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        default = cls()
        return cls(
            host=env.get("ANTACA_HOST", default.host),
            port=int(env.get("ANTACA_PORT", default.port)),
            tls_port=int(env.get("ANTACA_TLS_PORT", default.tls_port)),
            key_dir=Path(env.get("ANTACA_KEY_DIR", str(default.key_dir))),
            sweep_interval=float(env.get("ANTACA_SWEEP_INTERVAL", default.sweep_interval)),
            personalization_interval=float(env.get("ANTACA_PERSONALIZATION_INTERVAL",
                                                   default.personalization_interval)),
            renewal_window_days=int(env.get("ANTACA_CARD_RENEWAL_WINDOW_DAYS",
                                            default.renewal_window_days)),
            renewal_interval=float(env.get("ANTACA_CARD_RENEWAL_INTERVAL",
                                           default.renewal_interval)),
            card_keys_file=Path(env["ANTACA_CARD_KEYS_FILE"]) if env.get("ANTACA_CARD_KEYS_FILE") else None,
            session_ttl=int(env.get("ANTACA_SESSION_TTL", default.session_ttl)),
            admin_session_ttl=int(env.get("ANTACA_ADMIN_SESSION_TTL", default.admin_session_ttl)),
            pairing_code_ttl=int(env.get("ANTACA_PAIRING_CODE_TTL", default.pairing_code_ttl)),
            max_body_bytes=int(env.get("ANTACA_MAX_BODY_BYTES", default.max_body_bytes)),
            max_document_bytes=int(env.get("ANTACA_MAX_DOCUMENT_BYTES", default.max_document_bytes)),
            smtp_host=env.get("ANTACA_SMTP_HOST") or None,
            smtp_port=int(env.get("ANTACA_SMTP_PORT", default.smtp_port)),
            smtp_from=env.get("ANTACA_SMTP_FROM", default.smtp_from),
            smtp_username=env.get("ANTACA_SMTP_USERNAME") or None,
            smtp_password=env.get("ANTACA_SMTP_PASSWORD") or None,
            smtp_starttls=env.get("ANTACA_SMTP_STARTTLS", "").strip().lower() in ("1", "true", "yes", "on"),
            fee_interval=float(env.get("ANTACA_FEE_INTERVAL", default.fee_interval)),
            alert_interval=float(env.get("ANTACA_ALERT_INTERVAL", default.alert_interval)),
            alert_backoff_base=float(env.get("ANTACA_ALERT_BACKOFF_BASE", default.alert_backoff_base)),
            alert_max_attempts=int(env.get("ANTACA_ALERT_MAX_ATTEMPTS", default.alert_max_attempts)),
            webhook_interval=float(env.get("ANTACA_WEBHOOK_INTERVAL", default.webhook_interval)),
            webhook_backoff_base=float(env.get("ANTACA_WEBHOOK_BACKOFF_BASE",
                                               default.webhook_backoff_base)),
            webhook_allow_private_targets=_flag(env.get("ANTACA_WEBHOOK_ALLOW_PRIVATE_TARGETS"),
                                                default.webhook_allow_private_targets),
            engine=engine_settings_from_env(env),
            clearing_tolerance_percent=int(env.get("ANTACA_CLEARING_TOLERANCE_PERCENT",
                                                   default.clearing_tolerance_percent)),
            iso8583_port=int(env.get("ANTACA_ISO8583_PORT", default.iso8583_port)),
            iso8583_tls=_flag(env.get("ANTACA_ISO8583_TLS"), default.iso8583_tls),
            iso8583_network_id=(uuid.UUID(env["ANTACA_ISO8583_NETWORK_ID"])
                                if env.get("ANTACA_ISO8583_NETWORK_ID") else None),
            partner_balance_approval=_flag(env.get("ANTACA_PARTNER_BALANCE_APPROVAL"),
                                           default.partner_balance_approval),
            environment=_environment(env.get("ANTACA_ENVIRONMENT")),
            sandbox=_flag(env.get("ANTACA_SANDBOX"), default.sandbox),
        )


def _environment(raw: str | None) -> Environment:
    if raw is None or not raw.strip():
        return Environment.DEVELOPMENT
    try:
        return Environment(raw.strip().lower())
    except ValueError:
        choices = ", ".join(e.value for e in Environment)
        raise SettingsRefused(f"ANTACA_ENVIRONMENT must be one of {choices}") from None


def _flag(raw: str | None, default: bool) -> bool:
    if raw is None or not raw.strip():
        return default
    return raw.strip().lower() in ("1", "true", "yes", "on")
