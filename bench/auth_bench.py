"""Authorization throughput and latency under a realistic mix of payments.

    python -m bench.auth_bench [--seconds N] [--only http_hot,auth_under_abuse]
        [--mix realistic|approve] [--batching pipelined|writers] [--cards 10000]

The traffic (bench.traffic): `--mix realistic` (the default) has ~5 % payments declined for funds,
~1 % wrong CVC2s or PINs aimed at 1 % of the cards (locked by card testing, then declined as
locked), 20 % POS payments with a PIN block, 10 % in USD converted at the admin's rate, and a fee
schedule on every program; `--mix approve` is the earlier all-approve e-commerce traffic. Every
scenario counts its answers: `approved_share`, `declined_share`, `stand_in_share` and `declines`
by reason. `--batching` chooses the engine's design (antaca_auth.engine.Batching) for the engine
and HTTP scenarios: `pipelined` (the default) or `writers` (the earlier design: 4 writers, 2 ms
wait). `--cards` cards per database (10,000).

Scenarios (each gets its share of N seconds, SCENARIO_WEIGHTS; `--only` runs some of them):
- naive_hot: the same engine with one payment per transaction (`writers` batching, batches of
  one, NAIVE_WRITERS writers), so that engine_vs_naive measures batching and nothing else;
- engine_hot: in-process engine calls, one DEPOSIT-model program whose deposit account takes
  every authorization, spread over the cards;
- engine_hot_controls: engine_hot with a realistic set of spending controls on its program
  (CONTROLS_SET: a block list of 50 MCCs, a merchant country block list, a daily amount limit per
  card high enough to decline nothing), run right after engine_hot on the same database so that
  the two compare (issue 18: at most 10 % slower);
- engine_spread: the same over 100 programs (100 partners, 100 deposit accounts);
- http_hot, http_spread: end to end over HTTPS (mutual TLS) to `antaca serve` running in its
  own process, from a client process (bench.http_load);
- auth_under_abuse: http_hot's load in an open loop at half its closed-loop rate while other
  clients (bench.abuse_load, their own process) flood administrator sign-in with wrong passwords
  and send JWE requests: {"p99_ms", "p50_ms", "stand_in_share", "abuse_requests_per_s",
  "abuse_refused_share", "approved_share", "declined_share"}. Nothing else the service does may
  push an authorization past its deadline;
- pg_floor: PostgreSQL alone doing the engine's database work (bench.pg_floor) from three
  connections on its own fresh database: `pg_floor_per_s`, and `engine_vs_floor` (engine_hot's
  closed-loop throughput over it).
In every scenario the throughput comes from a closed loop and the latency from an open loop at 80%
of that throughput (bench.stats.closed_then_open): closed-loop latency at saturation only restates
the number of callers. engine_hot and http_hot then measure the latency curve (`latency_curve`):
open loops at 25, 50, 70 and 90 % of their closed-loop throughput, three runs each after a
warm-up, {"offered_per_s", "p50_ms", "p99_ms", "stand_in_share", "p99_ms_runs"} per point.
Durable PostgreSQL (synchronous_commit=on). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import uvloop

from antaca_auth import controls
from antaca_auth.cardkeys import CardKeys
from antaca_auth.control_rules import Level
from antaca_auth.database import create_pool
from antaca_auth.engine import AuthorizationEngine, Batching, EngineSettings
from antaca_auth.keyfiles import write_private
from antaca_auth.ledger import Ledger
from bench.cards import N_CARDS, create_network, prepare_traffic, setup  # setup: tests use it too
from bench.database import bench_database
from bench.pg_floor import floor
from bench.stats import (
    CpuMeter,
    Outcome,
    closed_then_open,
    freeze_heap,
    latency_curve,
    postmaster_pid,
)
from bench.traffic import Mix, Traffic

N_PROGRAMS = 100
CALLERS = 1024  # concurrent in-process callers (a network sends many at once)
# naive_hot's writers, each committing one payment at a time. Tried once each, closed loop with
# twice as many callers, realistic mix, embedded durable PostgreSQL, 20 s each, same minutes
# (2026-11-28): 8 writers 438/s, 16 434/s, 32 249/s; again on a quiet machine: 396, 395, 394/s.
# The number does not matter: each payment costs the whole fixed CPU of an engine batch (~1.1 ms
# of Python and ~2.7 ms of PostgreSQL), which fills the two cores. 8: the fewest connections.
NAIVE_WRITERS = 8
NAIVE_CALLERS = 2 * NAIVE_WRITERS  # one payment waiting for each writer as it commits
# auth_under_abuse: the issue measured eight wrong-password clients; JWE clients come on top.
SIGN_IN_ABUSERS = 8
JWE_ABUSERS = 4
ABUSED_RATE_SHARE = 0.5  # of http_hot's closed-loop rate: a busy network, not a saturated server

# The engine designs --batching chooses. `writers` is the design before pipelining, as it was
# benchmarked: 4 writers, each waiting up to 2 ms for company.
BATCHING_SETTINGS = {
    Batching.PIPELINED: EngineSettings(batch_size_max=512),
    Batching.WRITERS: EngineSettings(batching=Batching.WRITERS, batch_size_max=512, writers=4,
                                     batch_wait_seconds=0.002),
}
NAIVE_SETTINGS = EngineSettings(batching=Batching.WRITERS, batch_size_max=1, writers=NAIVE_WRITERS)

# Each scenario's share of --seconds, relative (the HTTP ones run their closed and open loops in
# half the share of the in-process ones). The latency curve of CURVE_SCENARIOS takes CURVE_WEIGHT
# more: 13 slots (a warm-up, then 4 points x 3 runs).
SCENARIO_WEIGHTS = {"naive_hot": 1.0, "engine_hot": 1.0, "engine_hot_controls": 1.0, "http_hot": 0.5, "auth_under_abuse": 1.0,
                    "pg_floor": 0.5, "engine_spread": 1.0, "http_spread": 0.5}
CURVE_SCENARIOS = ("engine_hot", "http_hot")
CURVE_WEIGHT = 3.0
HOT_SCENARIOS = ("naive_hot", "engine_hot", "engine_hot_controls", "http_hot", "auth_under_abuse")
# engine_hot_controls' controls, on the program: 50 blocked MCCs (gambling, dating, crypto,
# adult, weapons... as issuers block them; the traffic's 5411 is not among them), blocked merchant
# countries, and a daily amount per card that the traffic never reaches.
BLOCKED_MCCS = ["4829", "5933", "5944", "5960", "5962", "5964", "5965", "5966", "5967", "5968",
                "5969", "5993", "6010", "6011", "6012", "6050", "6051", "6211", "6300", "6381",
                "6399", "6529", "6530", "6534", "6540", "7011", "7012", "7273", "7276", "7277",
                "7297", "7298", "7321", "7322", "7361", "7631", "7800", "7801", "7802", "7841",
                "7994", "7995", "7996", "7997", "7998", "7999", "8398", "8651", "8661", "9223"]
BLOCKED_COUNTRIES = ["BY", "CU", "IR", "KP", "RU", "SY", "VE", "MM", "AF", "SD"]
DAILY_LIMIT_MINOR_UNITS = 10**12
CONTROLS_SET = (("MCC_BLOCK", {"mccs": BLOCKED_MCCS}),
                ("COUNTRY_BLOCK", {"countries": BLOCKED_COUNTRIES}),
                ("VELOCITY",
                 {"period": "DAY", "per": "CARD", "amountMax": DAILY_LIMIT_MINOR_UNITS}))
SPREAD_SCENARIOS = ("engine_spread", "http_spread")


@dataclass(frozen=True)
class Options:
    mix: Mix = Mix.REALISTIC
    batching: Batching = Batching.PIPELINED
    cards: int = N_CARDS


def weight(scenario: str) -> float:
    return SCENARIO_WEIGHTS[scenario] + (CURVE_WEIGHT if scenario in CURVE_SCENARIOS else 0.0)


def engine_environment(settings: EngineSettings) -> dict[str, str]:
    """The `ANTACA_AUTHORIZATION_<FIELD>` variables that give `antaca serve` these settings."""
    from antaca_api.settings import ENGINE_PREFIX

    default = EngineSettings()
    return {ENGINE_PREFIX + f.name.upper(): str(getattr(settings, f.name))
            for f in dataclasses.fields(EngineSettings)
            if getattr(settings, f.name) != getattr(default, f.name)}


# --metrics: the engines report to the service's Prometheus metrics, as `antaca serve` wires them.
OBSERVED_BY_METRICS = False


@contextlib.asynccontextmanager
async def running_engine(dsn: str, keys: CardKeys,
                         settings: EngineSettings) -> AsyncIterator[AuthorizationEngine]:
    """An engine with its own pool, as large as its settings need (as `antaca serve` sizes it)."""
    pool = await create_pool(dsn, min_size=settings.connections, max_size=settings.connections)
    engine = AuthorizationEngine(pool, Ledger(pool), keys, settings)
    if OBSERVED_BY_METRICS:  # the service's Prometheus observer (docs/benchmarks.md, "Metrics")
        from antaca_api.metrics import Metrics

        engine.observer = Metrics()
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()
        await pool.close()


async def in_process(dsn: str, keys: CardKeys, traffic: Traffic, name: str,
                     settings: EngineSettings, callers: int, seconds: float,
                     curve_seconds: float = 0.0) -> dict:
    """The engine called in this process by `callers` callers, and the CPU each authorization
    cost this process (callers and engine) and PostgreSQL."""
    async with running_engine(dsn, keys, settings) as engine:
        async with engine.pool.acquire() as conn:
            network = await create_network(conn, keys, traffic, f"bench-{name}")
            server = await postmaster_pid(conn)
        freeze_heap()
        with CpuMeter(server) as cpu:
            async def via_engine() -> Outcome:
                cpu.ops += 1
                result = await engine.authorize(network, traffic.payment())
                return Outcome(result.reason, result.stand_in)

            figures = await closed_then_open(via_engine, seconds, callers)
        print(name, json.dumps(figures), flush=True)
        # Where the CPU goes, over the closed and open loops (the curve's small batches cost more).
        print(f"{name} cpu per authorization", json.dumps(cpu.per_op_us()), flush=True)
        if curve_seconds > 0:
            figures["latency_curve"] = await latency_curve(via_engine, figures["auths_per_s"],
                                                           curve_seconds)
            print(f"{name} latency_curve", json.dumps(figures["latency_curve"]), flush=True)
    return figures


@contextlib.asynccontextmanager
async def serving(dsn: str, pool, keys: CardKeys, traffic: Traffic,
                  settings: EngineSettings) -> AsyncIterator[Served]:
    """`antaca serve` on this database in a child process with these engine settings, and a
    network certificate to load it."""
    from antaca_api.pki import CertificateAuthority, issue_client_certificate
    from tests.api_harness import free_port, make_csr

    work = Path(tempfile.mkdtemp(prefix="antaca-http-bench-"))
    write_private(work / "card-keys.json", keys.to_json().encode())
    ca, _ = CertificateAuthority.load_or_create(work)
    csr, key_pem = make_csr()
    async with pool.acquire() as conn, conn.transaction():
        network = await create_network(conn, keys, traffic, f"http-{uuid.uuid4().hex}")
        issued = await issue_client_certificate(conn, ca, csr, "network", network)
    (work / "net.crt").write_text(issued.pem)
    (work / "net.key").write_bytes(key_pem)
    (work / "traffic.json").write_text(traffic.to_json())
    port, tls_port, iso8583_port = free_port(), free_port(), free_port()
    env = dict(os.environ, ANTACA_DATABASE_URL=dsn, ANTACA_KEY_DIR=str(work),
               ANTACA_PORT=str(port), ANTACA_TLS_PORT=str(tls_port),
               ANTACA_ISO8583_PORT=str(iso8583_port), ANTACA_METRICS_PORT="0",
               **engine_environment(settings))
    server = subprocess.Popen([sys.executable, "-m", "antaca_api.cli", "serve"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                    break
            except OSError:
                await asyncio.sleep(0.1)
        yield Served(work, ca.cert_path, f"http://127.0.0.1:{port}",
                     f"https://127.0.0.1:{tls_port}", iso8583_port)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


@dataclass(frozen=True)
class Served:
    work: Path
    ca_path: Path
    http: str
    https: str
    iso8583_port: int = 0  # the ISO 8583 listener (TLS with the network's certificate)

    async def load(self, seconds: float, *options: str) -> dict:
        """Network authorizations from a client process (bench.http_load) with these options."""
        client = await self.connected_load(seconds, *options)
        out, _ = await client.communicate()
        return json.loads(out.decode().strip().splitlines()[-1])

    async def connected_load(self, seconds: float, *options: str) -> asyncio.subprocess.Process:
        """The client process, started; with `--on-go`, connected and waiting for a stdin line."""
        w = self.work
        client = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.http_load", f"{self.https}/network/authorizations",
            str(w / "net.crt"), str(w / "net.key"), str(self.ca_path), str(w / "traffic.json"),
            str(seconds), *options, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        if "--on-go" in options:
            assert (await client.stdout.readline()).strip() == b"connected"
        return client


async def over_http(dsn: str, pool, keys: CardKeys, traffic: Traffic, settings: EngineSettings,
                    seconds: float, curve_seconds: float = 0.0) -> dict:
    """Serve on this database in a child process and load it from another one."""
    async with serving(dsn, pool, keys, traffic, settings) as served:
        return await served.load(seconds, "--curve-seconds", str(curve_seconds))


async def under_abuse(dsn: str, pool, keys: CardKeys, traffic: Traffic, settings: EngineSettings,
                      seconds: float) -> dict:
    """http_hot's load at half its closed-loop rate while abusive clients flood the heavy paths.

    A third of the time each: the closed loop sets the rate; the open loop at ABUSED_RATE_SHARE of
    it runs alone (the reference, printed); then again while bench.abuse_load's clients, in their
    own process, sign in with wrong passwords and send JWE requests.
    """
    from antaca_api.admins import create_admin_user
    from antaca_api.routing import Role

    email = f"abused-{uuid.uuid4().hex[:8]}@bench.example"
    async with pool.acquire() as conn:
        await create_admin_user(conn, email, uuid.uuid4().hex, Role.ADMIN)
    async with serving(dsn, pool, keys, traffic, settings) as served:
        closed = await served.load(seconds / 3, "--closed")
        rate = str(closed["auths_per_s"] * ABUSED_RATE_SHARE)
        alone = await served.load(seconds / 3, "--rate", rate)
        # The load's connections are open before the abuse starts (a swamped server would
        # otherwise still be in their TLS handshakes when the abuse ends), and its schedule
        # starts once the abusers run.
        client = await served.connected_load(seconds / 3, "--rate", rate, "--on-go")
        abusers = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.abuse_load", served.http, email, str(SIGN_IN_ABUSERS),
            str(JWE_ABUSERS), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        assert (await abusers.stdout.readline()).strip() == b"ready"
        client.stdin.write(b"go\n")
        await client.stdin.drain()
        answers = asyncio.create_task(client.stdout.read())
        try:
            # The abuse lasts as long as the load's schedule, not as long as a swamped server
            # takes to work through the backlog it left.
            await asyncio.wait({answers}, timeout=seconds / 3)
        finally:
            abusers.stdin.close()
            out = await abusers.stdout.read()
            await abusers.wait()
        load = json.loads((await answers).decode().strip().splitlines()[-1])
        await client.wait()
    abuse = json.loads(out.decode().strip().splitlines()[-1])
    print("auth_under_abuse closed loop", json.dumps(closed), "open loop alone", json.dumps(alone),
          "open loop under abuse", json.dumps(load), "abuse", json.dumps(abuse), flush=True)
    return {"p99_ms": load["p99_ms"], "p50_ms": load["p50_ms"],
            "stand_in_share": load["stand_in_share"],
            "abuse_requests_per_s": abuse["abuse_requests_per_s"],
            "abuse_refused_share": abuse["abuse_refused_share"],
            "approved_share": load["approved_share"], "declined_share": load["declined_share"]}


@contextlib.asynccontextmanager
async def spending_controls(pool, card: dict) -> AsyncIterator[None]:
    """CONTROLS_SET on the card's program while the block runs (PRODUCT level: the partner's)."""
    made = []
    async with pool.acquire() as conn, conn.transaction():
        for kind, rule in CONTROLS_SET:
            control_id = uuid.uuid4()
            await controls.insert(conn, control_id, Level.PRODUCT, card["program"],
                                  card["partner"], None, "PARTNER", "ACTIVE", kind, rule)
            made.append(control_id)
    try:
        yield
    finally:
        async with pool.acquire() as conn, conn.transaction():
            for control_id in made:
                await controls.delete(conn, control_id)


async def on_database(dsn: str, keys: CardKeys, programs: int, scenarios: list[str], share: float,
                      options: Options) -> dict:
    """The scenarios that share one database (its cards and traffic), in order, each given
    `share` times its weight in seconds."""
    pool = await create_pool(dsn, min_size=4, max_size=32)
    try:
        ledger = Ledger(pool)
        cards = await setup(pool, ledger, keys, programs, options.cards)
        traffic = await prepare_traffic(pool, ledger, keys, cards, options.mix)
        settings = BATCHING_SETTINGS[options.batching]
        figures: dict = {}
        for name in scenarios:
            seconds = share * SCENARIO_WEIGHTS[name]
            curve_seconds = share * CURVE_WEIGHT if name in CURVE_SCENARIOS else 0.0
            if name == "naive_hot":
                result = await in_process(dsn, keys, traffic, name, NAIVE_SETTINGS, NAIVE_CALLERS,
                                          seconds)
            elif name == "engine_hot_controls":
                async with spending_controls(pool, cards[0]):
                    result = await in_process(dsn, keys, traffic, name, settings, CALLERS,
                                              seconds)
            elif name.startswith("engine_"):
                result = await in_process(dsn, keys, traffic, name, settings, CALLERS, seconds,
                                          curve_seconds)
            elif name.startswith("http_"):
                result = await over_http(dsn, pool, keys, traffic, settings, seconds, curve_seconds)
                print(name, json.dumps(result), flush=True)
            else:
                result = await under_abuse(dsn, pool, keys, traffic, settings, seconds)
                print(name, json.dumps(result), flush=True)
            if "latency_curve" in result:
                figures.setdefault("latency_curve", {})[name] = result.pop("latency_curve")
            figures[name] = result
        return figures
    finally:
        await pool.close()


async def main(seconds: float, only: set[str], options: Options = Options(),
               database: Callable[[], contextlib.AbstractAsyncContextManager[str]] = bench_database
               ) -> dict:
    """Every scenario of `only`, on fresh databases from `database` (one per group: hot, the
    PostgreSQL floor, spread); the figures, the curves and the ratios."""
    keys = CardKeys.generate()
    figures: dict = {"mix": str(options.mix), "batching": str(options.batching)}
    curves: dict = {}
    share = seconds / sum(weight(name) for name in only)
    for scenarios, programs in ((HOT_SCENARIOS, 1), (SPREAD_SCENARIOS, N_PROGRAMS)):
        wanted = [name for name in scenarios if name in only]
        if wanted:
            async with database() as dsn:
                found = await on_database(dsn, keys, programs, wanted, share, options)
            curves.update(found.pop("latency_curve", {}))
            figures.update(found)
        if programs == 1 and "pg_floor" in only:  # between the two, close in time to engine_hot
            async with database() as dsn:
                floor_figures = await floor(dsn, share * weight("pg_floor"),
                                            runs=("three_connections",), cards=options.cards,
                                            fees=options.mix is Mix.REALISTIC)
            print("pg_floor", json.dumps(floor_figures), flush=True)
            figures["pg_floor_per_s"] = floor_figures["three_connections"]["auths_per_s"]
    if curves:
        figures["latency_curve"] = curves
    if "engine_hot" in figures and "naive_hot" in figures:
        figures["engine_vs_naive"] = round(figures["engine_hot"]["auths_per_s"]
                                           / figures["naive_hot"]["auths_per_s"], 1)
    if "engine_hot" in figures and "pg_floor_per_s" in figures:
        figures["engine_vs_floor"] = round(figures["engine_hot"]["auths_per_s"]
                                           / figures["pg_floor_per_s"], 2)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="total measuring time (default 60)")
    parser.add_argument("--only", default=",".join(SCENARIO_WEIGHTS),
                        help="comma-separated scenarios to run (default: all): "
                             + ", ".join(SCENARIO_WEIGHTS))
    parser.add_argument("--mix", choices=list(Mix), default=Mix.REALISTIC,
                        help="realistic (default): declines, PINs, fees, FX; approve: all approve")
    parser.add_argument("--batching", choices=list(Batching), default=Batching.PIPELINED,
                        help="the engine's design (default pipelined; writers: the earlier one)")
    parser.add_argument("--cards", type=int, default=N_CARDS, help=f"cards (default {N_CARDS})")
    parser.add_argument("--metrics", action="store_true",
                        help="engines report to Prometheus metrics (as the service wires them)")
    args = parser.parse_args()
    OBSERVED_BY_METRICS = args.metrics
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    if not only or only - set(SCENARIO_WEIGHTS):
        parser.error(f"--only takes some of: {', '.join(SCENARIO_WEIGHTS)}")
    options = Options(Mix(args.mix), Batching(args.batching), args.cards)
    print(json.dumps(uvloop.run(main(args.seconds, only, options))))
