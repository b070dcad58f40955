"""Service settings from the environment."""

from __future__ import annotations

import dataclasses
import enum
import os
import urllib.parse
import uuid
from pathlib import Path

import msgspec

from antaca_auth.database import DATABASE_URL_ENV
from antaca_auth.engine import EngineSettings
from antaca_auth.renewal import RENEWAL_WINDOW_DAYS_DEFAULT

ENGINE_PREFIX = "ANTACA_AUTHORIZATION_"  # e.g. ANTACA_AUTHORIZATION_QUEUE_SIZE_MAX=8192


def engine_settings_from_env(env: dict[str, str]) -> EngineSettings:
    """The authorization engine's tuning: each field from `ANTACA_AUTHORIZATION_<FIELD>`."""
    return _Environment(env).engine()


class Environment(enum.StrEnum):
    """Where the service runs (`ANTACA_ENVIRONMENT`): production refuses development settings."""

    DEVELOPMENT = "development"
    PRODUCTION = "production"


class SettingsError(Exception):
    """A setting with a bad value: the message names the variable."""


class SettingsRefused(SettingsError, ValueError):
    """Settings that must not run together (a development setting in production)."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 8080  # plain HTTP: public, customer and admin channels
    metrics_port: int = 9464  # Prometheus scrapes GET /metrics here (0: no metrics listener)
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
    # The operator's own server certificate and partner CA: required in production, where the
    # generated development CA is refused (docs/operations.md).
    tls_certificate_file: Path | None = None  # PEM chain for the TLS listeners; else development
    tls_key_file: Path | None = None  # its private key (mode 0600)
    # The CA that signs partners' and networks' client certificates (antaca_api/pki.py), and its
    # key (mode 0600); else the development CA generated in key_dir.
    partner_ca_certificate_file: Path | None = None
    partner_ca_key_file: Path | None = None

    def __post_init__(self) -> None:
        if self.sandbox and self.environment is Environment.PRODUCTION:
            raise SettingsRefused("ANTACA_SANDBOX=1 is refused with ANTACA_ENVIRONMENT=production")

    @property
    def production(self) -> bool:
        return self.environment is Environment.PRODUCTION

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """The settings from the environment; a bad value raises SettingsError naming its
        variable."""
        env = _Environment(os.environ if environ is None else environ)
        d = cls()
        settings = cls(
            host=env.text("ANTACA_HOST", d.host),
            port=env.port("ANTACA_PORT", d.port),
            tls_port=env.port("ANTACA_TLS_PORT", d.tls_port),
            metrics_port=env.port("ANTACA_METRICS_PORT", d.metrics_port),
            key_dir=env.path("ANTACA_KEY_DIR", d.key_dir),
            sweep_interval=env.seconds("ANTACA_SWEEP_INTERVAL", d.sweep_interval),
            personalization_interval=env.seconds("ANTACA_PERSONALIZATION_INTERVAL",
                                                 d.personalization_interval),
            renewal_window_days=env.integer("ANTACA_CARD_RENEWAL_WINDOW_DAYS",
                                            d.renewal_window_days),
            renewal_interval=env.seconds("ANTACA_CARD_RENEWAL_INTERVAL", d.renewal_interval),
            card_keys_file=env.path("ANTACA_CARD_KEYS_FILE", None),
            session_ttl=env.integer("ANTACA_SESSION_TTL", d.session_ttl),
            admin_session_ttl=env.integer("ANTACA_ADMIN_SESSION_TTL", d.admin_session_ttl),
            pairing_code_ttl=env.integer("ANTACA_PAIRING_CODE_TTL", d.pairing_code_ttl),
            max_body_bytes=env.integer("ANTACA_MAX_BODY_BYTES", d.max_body_bytes),
            max_document_bytes=env.integer("ANTACA_MAX_DOCUMENT_BYTES", d.max_document_bytes),
            smtp_host=env.text("ANTACA_SMTP_HOST", None),
            smtp_port=env.port("ANTACA_SMTP_PORT", d.smtp_port),
            smtp_from=env.text("ANTACA_SMTP_FROM", d.smtp_from),
            smtp_username=env.text("ANTACA_SMTP_USERNAME", None),
            smtp_password=env.text("ANTACA_SMTP_PASSWORD", None),
            smtp_starttls=env.flag("ANTACA_SMTP_STARTTLS", d.smtp_starttls),
            fee_interval=env.seconds("ANTACA_FEE_INTERVAL", d.fee_interval),
            alert_interval=env.seconds("ANTACA_ALERT_INTERVAL", d.alert_interval),
            alert_backoff_base=env.seconds("ANTACA_ALERT_BACKOFF_BASE", d.alert_backoff_base),
            alert_max_attempts=env.integer("ANTACA_ALERT_MAX_ATTEMPTS", d.alert_max_attempts),
            webhook_interval=env.seconds("ANTACA_WEBHOOK_INTERVAL", d.webhook_interval),
            webhook_backoff_base=env.seconds("ANTACA_WEBHOOK_BACKOFF_BASE", d.webhook_backoff_base),
            webhook_allow_private_targets=env.flag("ANTACA_WEBHOOK_ALLOW_PRIVATE_TARGETS",
                                                   d.webhook_allow_private_targets),
            engine=env.engine(),
            clearing_tolerance_percent=env.integer("ANTACA_CLEARING_TOLERANCE_PERCENT",
                                                   d.clearing_tolerance_percent),
            iso8583_port=env.port("ANTACA_ISO8583_PORT", d.iso8583_port),
            iso8583_tls=env.flag("ANTACA_ISO8583_TLS", d.iso8583_tls),
            iso8583_network_id=env.identifier("ANTACA_ISO8583_NETWORK_ID"),
            partner_balance_approval=env.flag("ANTACA_PARTNER_BALANCE_APPROVAL",
                                              d.partner_balance_approval),
            environment=env.environment(),
            sandbox=env.flag("ANTACA_SANDBOX", d.sandbox),
            tls_certificate_file=env.path("ANTACA_TLS_CERTIFICATE_FILE", None),
            tls_key_file=env.path("ANTACA_TLS_KEY_FILE", None),
            partner_ca_certificate_file=env.path("ANTACA_PARTNER_CA_CERTIFICATE_FILE", None),
            partner_ca_key_file=env.path("ANTACA_PARTNER_CA_KEY_FILE", None),
        )
        settings.check()
        return settings

    def check_production(self) -> None:
        """In production, the operator's own certificate and CA (checked when the service starts:
        the other commands need no certificate)."""
        if self.production and self.partner_ca_certificate_file is None:
            raise SettingsRefused("ANTACA_PARTNER_CA_CERTIFICATE_FILE is required when"
                                  " ANTACA_ENVIRONMENT=production (the development CA is refused)")
        if self.production and self.tls_certificate_file is None:
            raise SettingsRefused("ANTACA_TLS_CERTIFICATE_FILE is required when"
                                  " ANTACA_ENVIRONMENT=production (no development certificate)")

    def check(self) -> None:
        """Rules between settings (each value alone was checked as it was read)."""
        if (self.tls_certificate_file is None) != (self.tls_key_file is None):
            raise SettingsError("ANTACA_TLS_CERTIFICATE_FILE and ANTACA_TLS_KEY_FILE go together")
        if (self.partner_ca_certificate_file is None) != (self.partner_ca_key_file is None):
            raise SettingsError("ANTACA_PARTNER_CA_CERTIFICATE_FILE and ANTACA_PARTNER_CA_KEY_FILE"
                                " go together")
        if self.production and self.webhook_allow_private_targets:
            raise SettingsError("ANTACA_WEBHOOK_ALLOW_PRIVATE_TARGETS must not be set when"
                                " ANTACA_ENVIRONMENT=production")
        for variable, path in (("ANTACA_TLS_CERTIFICATE_FILE", self.tls_certificate_file),
                               ("ANTACA_TLS_KEY_FILE", self.tls_key_file),
                               ("ANTACA_PARTNER_CA_CERTIFICATE_FILE",
                                self.partner_ca_certificate_file),
                               ("ANTACA_PARTNER_CA_KEY_FILE", self.partner_ca_key_file)):
            if path is not None and not path.is_file():
                raise SettingsError(f"{variable}: no such file: {path}")


# Settings whose values `antaca config` masks.
SECRET_SETTINGS = frozenset({"smtp_password"})
SECRET_VARIABLES = ("ANTACA_CARD_KEYS", "ANTACA_ADMIN_PASSWORD")


def masked_settings(settings: Settings) -> dict[str, object]:
    """The effective settings by name, secrets shown as `********` (set) or None (not set)."""
    values: dict[str, object] = {}
    for name in settings.__struct_fields__:
        value = getattr(settings, name)
        if name == "engine":
            for field in dataclasses.fields(value):
                values[f"engine.{field.name}"] = getattr(value, field.name)
            continue
        values[name] = "********" if name in SECRET_SETTINGS and value is not None else value
    for variable in SECRET_VARIABLES:
        values[variable] = "********" if os.environ.get(variable) else None
    values[DATABASE_URL_ENV] = masked_url(os.environ.get(DATABASE_URL_ENV))
    return values


def masked_url(url: str | None) -> str | None:
    """A database URL with its password masked; None: the embedded PostgreSQL."""
    if not url:
        return None
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":********@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


class _Environment:
    """Reads ANTACA_* variables, each checked, failing with the variable's name."""

    def __init__(self, environ) -> None:
        self.environ = environ

    def _raw(self, variable: str) -> str | None:
        raw = self.environ.get(variable)
        return None if raw is None or not raw.strip() else raw.strip()

    def text(self, variable: str, default: str | None) -> str | None:
        raw = self._raw(variable)
        return default if raw is None else raw

    def integer(self, variable: str, default: int, minimum: int = 0) -> int:
        raw = self._raw(variable)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{variable}: not a whole number: {raw!r}") from None
        if value < minimum:
            raise SettingsError(f"{variable}: must be at least {minimum}, got {value}")
        return value

    def port(self, variable: str, default: int) -> int:
        value = self.integer(variable, default)
        if value > 65535:
            raise SettingsError(f"{variable}: not a TCP port (0-65535): {value}")
        return value

    def seconds(self, variable: str, default: float) -> float:
        raw = self._raw(variable)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{variable}: not a number of seconds: {raw!r}") from None
        if not 0 < value < float("inf"):
            raise SettingsError(f"{variable}: must be a positive number of seconds, got {raw}")
        return value

    def flag(self, variable: str, default: bool) -> bool:
        raw = self._raw(variable)
        if raw is None:
            return default
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{variable}: not a flag (true/false, yes/no, on/off, 1/0): {raw!r}")

    def path(self, variable: str, default: Path | None) -> Path | None:
        raw = self._raw(variable)
        return default if raw is None else Path(raw)

    def environment(self) -> Environment:
        raw = self._raw("ANTACA_ENVIRONMENT")
        if raw is None:
            return Environment.DEVELOPMENT
        try:
            return Environment(raw.lower())
        except ValueError:
            choices = ", ".join(e.value for e in Environment)
            raise SettingsRefused(f"ANTACA_ENVIRONMENT must be one of {choices}") from None

    def identifier(self, variable: str) -> uuid.UUID | None:
        raw = self._raw(variable)
        if raw is None:
            return None
        try:
            return uuid.UUID(raw)
        except ValueError:
            raise SettingsError(f"{variable}: not a UUID: {raw!r}") from None

    def engine(self) -> EngineSettings:
        """The authorization engine's tuning: each field from `ANTACA_AUTHORIZATION_<FIELD>`."""
        default = EngineSettings()
        values = {}
        for field in dataclasses.fields(EngineSettings):
            variable = ENGINE_PREFIX + field.name.upper()
            current = getattr(default, field.name)
            if isinstance(current, bool):
                values[field.name] = self.flag(variable, current)
            elif isinstance(current, int):
                values[field.name] = self.integer(variable, current)
            elif isinstance(current, float):
                raw = self._raw(variable)
                values[field.name] = current if raw is None else self._number(variable, raw)
            elif self._raw(variable) is not None:
                values[field.name] = self._choice(variable, type(current))
        try:
            return EngineSettings(**values)
        except ValueError as exc:
            raise SettingsError(f"{ENGINE_PREFIX}*: {exc}") from None

    def _number(self, variable: str, raw: str) -> float:
        try:
            return float(raw)
        except ValueError:
            raise SettingsError(f"{variable}: not a number: {raw!r}") from None

    def _choice(self, variable: str, kind: type):
        raw = self._raw(variable)
        try:
            return kind(raw)
        except ValueError:
            raise SettingsError(f"{variable}: not one of the accepted values: {raw!r}") from None
