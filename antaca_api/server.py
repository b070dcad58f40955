"""`antaca serve`: migrate, open the pool, run the HTTP and TLS listeners and the background workers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import ssl

import asyncpg
from aiohttp import web

from antaca_api import idempotency, jwe
from antaca_api.app import create_app
from antaca_api.cards import resume_pending, run_key_rotation
from antaca_api.corporations import seal_clear_documents
from antaca_api.credentials import listen
from antaca_api.hardening import HardenedAppRunner
from antaca_api.iso8583.listener import Iso8583Listener
from antaca_api.kyc import DeterministicKycProvider
from antaca_api.metrics import metrics_app
from antaca_api.notifications import run_alert_worker
from antaca_api.partners import seal_clear_secrets
from antaca_api.personalization import run_personalization
from antaca_api.pki import CertificateAuthority
from antaca_api.remote_partners import RemotePartners
from antaca_api.replacement import run_renewal
from antaca_api.services import Services
from antaca_api.settings import Settings, SettingsError
from antaca_api.webhook_delivery import run_webhook_worker
from antaca_auth import periodic
from antaca_auth.cardkeys import CardKeys
from antaca_auth.charges import run_fee_worker
from antaca_auth.database import create_pool
from antaca_auth.engine import AuthorizationEngine, EngineSettings
from antaca_auth.followups import FollowUps
from antaca_auth.ledger import Ledger
from antaca_auth.migrations import migrate
from antaca_auth.sweeper import run_sweeper

log = logging.getLogger(__name__)

# The engine's pool holds the connections its batches, stand-in lane and stand-in records use
# (EngineSettings.connections) and these for the rest of the network channel (reversals, clearings,
# card locks, certificate lookups) and the engine's own small queries.
AUTHORIZATION_SPARE_CONNECTIONS = 2


async def open_authorization_pool(dsn: str, engine: EngineSettings) -> asyncpg.Pool:
    """The authorization engine's own connections: no other channel can take them."""
    size = engine.connections + AUTHORIZATION_SPARE_CONNECTIONS
    return await create_pool(dsn, min_size=size, max_size=size)


def load_keys(settings: Settings) -> tuple[object, CertificateAuthority, CardKeys]:
    """The JWE key, the CA and the card data keys, created on first start (development)."""
    settings.check_production()
    key_dir = settings.key_dir
    key_dir.mkdir(parents=True, exist_ok=True)
    jwe_key = jwe.load_or_create_key(key_dir / "jwe-key.pem")
    if settings.partner_ca_certificate_file is not None:
        ca = CertificateAuthority.load_files(settings.partner_ca_certificate_file,
                                             settings.partner_ca_key_file, key_dir)
    else:
        ca, created = CertificateAuthority.load_or_create(key_dir)
        if created:
            print(f"created a development CA in {key_dir.resolve()} (ca.pem, ca-key.pem)",
                  flush=True)
    if settings.production and ca.is_development:
        raise SettingsError("ANTACA_PARTNER_CA_CERTIFICATE_FILE: the development CA is refused"
                            " with ANTACA_ENVIRONMENT=production")
    if os.environ.get("ANTACA_CARD_KEYS"):  # the keyring itself, e.g. from a secrets manager
        card_keys = CardKeys.from_json(os.environ["ANTACA_CARD_KEYS"])
    else:
        card_keys = CardKeys.load_or_create(settings.card_keys_file or key_dir / "card-keys.json")
    return jwe_key, ca, card_keys


def server_tls(ca: CertificateAuthority, settings: Settings) -> ssl.SSLContext:
    """The TLS listeners' context: the operator's certificate when given, else a generated one."""
    chain = None
    if settings.tls_certificate_file is not None:
        chain = (settings.tls_certificate_file, settings.tls_key_file)
    return ca.server_ssl_context([settings.host, "localhost"], chain)


def iso8583_listener(services: Services, ca: CertificateAuthority,
                     settings: Settings) -> Iso8583Listener | None:
    """The ISO 8583 listener the settings ask for: TLS requiring a client certificate, or plain
    TCP for one named network; None when its port is 0."""
    if settings.iso8583_port == 0:
        return None
    if not settings.iso8583_tls:
        return Iso8583Listener(services, network_id=settings.iso8583_network_id)
    tls = server_tls(ca, settings)
    tls.verify_mode = ssl.CERT_REQUIRED  # only networks connect here
    return Iso8583Listener(services, ssl_context=tls)


async def serve(dsn: str, settings: Settings) -> None:
    """Run until SIGINT or SIGTERM."""
    applied = await migrate(dsn)
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
    jwe_key, ca, card_keys = load_keys(settings)
    pool = await create_pool(dsn)
    authorization_pool = await open_authorization_pool(dsn, settings.engine)
    services = Services(pool=pool, ledger=Ledger(pool), settings=settings, jwe_key=jwe_key, ca=ca,
                        kyc_provider=DeterministicKycProvider(), card_keys=card_keys,
                        authorization_pool=authorization_pool)
    services.engine = AuthorizationEngine(authorization_pool, services.authorization_ledger, card_keys,
                                          settings.engine)
    services.follow_ups = FollowUps(authorization_pool, services.authorization_ledger, card_keys,
                                    hold_seconds=services.engine.hold_seconds,
                                    clearing_tolerance_percent=settings.clearing_tolerance_percent)
    services.engine.remote = RemotePartners(services)  # REMOTE programs' partners
    periodic.observer = services.metrics
    await services.engine.start()
    sealed = await seal_clear_secrets(pool, card_keys)
    if sealed:
        log.info("sealed %d partner webhook secrets stored in clear", sealed)
    resumed = await resume_pending(services)
    if resumed:
        log.info("resumed %d virtual cards left pending", resumed)
    sealed = await seal_clear_documents(pool, card_keys)
    if sealed:
        log.info("encrypted %d KYB documents stored before encryption at rest", sealed)
    workers = [
        asyncio.create_task(run_sweeper(services.ledger, settings.sweep_interval)),
        asyncio.create_task(run_personalization(services, settings.personalization_interval)),
        asyncio.create_task(run_renewal(services, settings.renewal_interval,
                                        settings.renewal_window_days)),
        asyncio.create_task(run_alert_worker(services, settings.alert_interval)),
        asyncio.create_task(run_webhook_worker(services, settings.webhook_interval)),
        asyncio.create_task(run_fee_worker(pool, services.ledger, settings.fee_interval, services.clock)),
        asyncio.create_task(listen(dsn, services.credentials)),
        asyncio.create_task(idempotency.run_sweeper(pool, services.clock)),
        asyncio.create_task(run_key_rotation(services)),
    ]
    # On SIGTERM aiohttp stops listening, then waits this long for the requests in flight: long
    # enough for the engine to answer every queued authorization (by its deadline at the latest).
    shutdown_seconds = settings.engine.deadline_seconds + settings.engine.shutdown_grace_seconds
    runner = HardenedAppRunner(create_app(services), access_log=None, shutdown_timeout=shutdown_seconds)
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.port).start()
    await web.TCPSite(runner, settings.host, settings.tls_port,
                      ssl_context=server_tls(ca, settings)).start()
    metrics_runner = None
    if settings.metrics_port != 0:  # Prometheus scrapes here, bound like the service
        metrics_runner = web.AppRunner(metrics_app(services.metrics), access_log=None)
        await metrics_runner.setup()
        await web.TCPSite(metrics_runner, settings.host, settings.metrics_port).start()
    iso_listener = iso8583_listener(services, ca, settings)
    if iso_listener is not None:
        await iso_listener.start(host=settings.host, port=settings.iso8583_port)
    # What start-up built lives as long as the process: out of the collector's way. A full collection
    # over it (52k objects) paused the event loop 16 ms each time it ran, a spike in every in-flight
    # authorization's latency; frozen, the collector only walks what was made since.
    gc.collect()
    gc.freeze()
    print(f"antaca listening on http://{settings.host}:{settings.port} and "
          f"https://{settings.host}:{settings.tls_port} (CA: {ca.cert_path.resolve()})"
          + (f", ISO 8583 on {settings.host}:{iso_listener.port}" if iso_listener else "")
          + (f", metrics on http://{settings.host}:{settings.metrics_port}/metrics"
             if metrics_runner else "")
          + (", SANDBOX simulation on (/secure/simulate)" if settings.sandbox else ""),
          flush=True)
    print(f"administration panel: http://{settings.host}:{settings.port}/panel/ (the first "
          "administrator: .venv/bin/antaca admin create-user --email you@example.com --role ADMIN)",
          flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for worker in workers:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        # Stop listening and let the requests in flight finish while the engine drains its queue for
        # its grace period and stands in what is left: every accepted authorization gets its answer.
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        await asyncio.gather(runner.cleanup(), services.engine.stop(),
                             *([iso_listener.stop()] if iso_listener is not None else []))
        await asyncio.gather(*services.tasks, return_exceptions=True)
        await services.engine.remote.close()
        await services.background_cpu.close()
        await authorization_pool.close()
        await pool.close()
