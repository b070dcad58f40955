"""A fuzz pass over the OpenAPI document with schemathesis: no request, valid or not, gets a 5xx.

schemathesis calls synchronously, so it runs in a worker thread while the `api` fixture's server
keeps serving on the test's event loop. Every channel is driven with real credentials: an admin
token, a partner's client certificate, a customer's session, a network's certificate. Path ids
are real ones for valid requests (so handlers run deep) and random ones for invalid requests.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter, defaultdict

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

from antaca_api.openapi import cached_document
from antaca_api.routing import ROUTES, Encryption
from tests.fuzz_harness import (
    JWE_HEADERS,
    Seed,
    caller,
    destructive_last,
    path_ids,
    seed,
    skipped,
    steered,
)

# Per operation and mode (valid, then invalid input): with every route of the API twice, 12 is
# ~2 minutes on two cores, a third of the suite. Derandomized, so each run sends the same cases and
# a failure reproduces; more examples would find little the mode and steering do not already.
EXAMPLES = 12
def check(response: requests.Response, label: str) -> None:
    assert response.status_code < 500, f"{label}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"code", "message", "requestId"} and body["code"].isupper(), (label, body)


def fuzz(api, data: Seed) -> dict[tuple[str, str, GenerationMode], Counter]:
    """Run schemathesis over every operation; the status codes seen, per operation and mode."""
    document = json.loads(cached_document())
    schema = schemathesis.openapi.from_dict(document)
    operations = {(op.path, op.method.lower()): op for op in (result.ok() for result in schema.get_all_operations())}
    seen: dict[tuple[str, str, GenerationMode], Counter] = defaultdict(Counter)
    for route in sorted(ROUTES, key=destructive_last):
        if skipped(route, data):
            continue
        operation = operations[(route.path, route.method.lower())]
        session, base, headers = caller(api, data, route)
        if route.encryption is Encryption.REQUIRED:
            headers = headers | {"Encrypt-Response": "true", "Public-Key": data.jwe_public}
        names = [p["name"] for p in document["paths"][route.path][route.method.lower()]["parameters"]
                 if p["in"] == "path"]
        real = path_ids(data, names)
        for mode, path_parameters in ((GenerationMode.POSITIVE, real), (GenerationMode.NEGATIVE, None)):
            label = (route.method, route.path, mode)
            strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

            # An operation with nothing to make invalid (a partner GET whose only parameters are the
            # free-string JWE headers) filters every negative input: it ends as Unsatisfiable.
            @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                      suppress_health_check=[HealthCheck.filter_too_much])
            @given(case=strategy)
            def run(case):
                generated = case.headers or {}
                if mode is GenerationMode.POSITIVE:
                    # Random JWE headers are never valid (no real key): send only the caller's own.
                    generated = {k: v for k, v in generated.items() if k not in JWE_HEADERS}
                case.headers = {**generated, **headers}
                if mode is GenerationMode.POSITIVE and isinstance(case.body, dict) and sum(seen[label].values()) % 2:
                    # Every other valid body names the seeded records, so handlers get past "no such id".
                    case.body = steered(case.body, data)
                response = case.call(base_url=base, session=session, timeout=30, verify=session.verify,
                                     cert=session.cert)
                seen[label][response.status_code] += 1
                check(response, f"{route.method} {route.path} ({mode.value})")

            try:
                run()
            except Unsatisfiable:
                # Nothing about this operation can be made invalid (e.g. a GET with no parameters).
                assert mode is GenerationMode.NEGATIVE, route.path
    return seen


async def test_fuzz_every_operation_finds_no_server_error(api):
    data = await seed(api)
    seen = await asyncio.to_thread(fuzz, api, data)
    routes = [r for r in ROUTES if not skipped(r, data)]
    positive = {(m, p): codes for (m, p, mode), codes in seen.items() if mode is GenerationMode.POSITIVE}
    assert set(positive) == {(r.method, r.path) for r in routes}
    # Guard against a fuzz that only ever meets the authentication wall: each channel's
    # credentials must get real work done, and most operations must succeed at least once.
    worked = {key for key, codes in positive.items() if any(200 <= code < 300 for code in codes)}
    assert {r.channel for r in routes if (r.method, r.path) in worked} == {r.channel for r in routes}
    # A route whose request must be a JWE (a PIN, a key) cannot succeed with a random clear body:
    # it is fuzzed for errors all the same, but not counted among those that should succeed.
    jwe_only = {(r.method, r.path) for r in routes if r.encryption is Encryption.REQUEST}
    reachable = set(positive) - jwe_only
    assert len(worked & reachable) >= 0.6 * len(reachable), sorted(reachable - worked)
    negatives = sum(1 for (_, _, mode) in seen if mode is GenerationMode.NEGATIVE)
    assert negatives >= 0.5 * len(positive)


async def test_malformed_bodies_to_every_body_route_are_4xx(api):
    data = await seed(api)
    bodies = [b"not json", b"{", b"[]", b'{"unknown": 1}', b"\xff\xfe", b'{"amount": "1"}', b"null",
              b'{"a": "\\u0000"}', b"x" * (2 * 1024 * 1024)]

    def send_all() -> int:
        sent = 0
        for route in ROUTES:
            if route.body is None and not route.multipart:
                continue
            path = route.path
            for name, value in data.ids.items():
                path = path.replace("{" + name + "}", value)
            session, base, headers = caller(api, data, route)
            for body in bodies:
                for extra in ({}, {"Encrypted-Request": "true", "Public-Key": data.jwe_public}):
                    response = session.request(route.method, f"{base}{path}", data=body,
                                               headers={**headers, **extra, "Content-Type": "application/json"},
                                               timeout=30, verify=session.verify, cert=session.cert)
                    check(response, f"{route.method} {route.path} {body[:20]!r}")
                    assert response.status_code >= 400, (route.path, body[:20], response.text[:200])
                    sent += 1
        return sent

    assert await asyncio.to_thread(send_all) >= 2 * len(bodies) * 20
