"""The OpenAPI document tells the truth: schemathesis against the served /openapi.json with its
response checks on, every channel with real credentials.

For every operation, valid and invalid requests (schemathesis' positive and negative modes) go to
the running service, and each answer is checked against the document: no server error, a
documented status, the documented content type, the documented headers, a body matching the
documented schema (formats included: date-time is RFC 3339, uuid is a UUID), and invalid input
refused with a 4xx. An encrypted answer is also opened and its plaintext checked against the
schema the document names for it (`x-antaca-plaintext`). Beside it: 405 names the path's methods
in `Allow`, and declared page limits are enforced. Successes random data cannot reach (a CSR,
a pairing code, a password, a card's lock) are sent as a story, each answer validated the same way.

schemathesis is synchronous: it runs in a worker thread while the service serves on the test's
event loop (tests/fuzz_harness.py seeds the ids and credentials, as for test_fuzz.py).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter

import jsonschema_rs
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core import NOT_SET
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from antaca_api.routing import ROUTES, Channel, Encryption, Route
from tests.api_harness import bearer, make_csr
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

# Examples per operation and generation mode: with ~120 operations twice, 6 keeps the file well
# under three minutes on two busy cores (~1 minute idle); test_fuzz.py sends more, for 5xx only.
EXAMPLES_PER_OPERATION = 6
REQUEST_TIMEOUT_SECONDS = 30
# Response checks, all on: schemathesis' own.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, negative_data_rejection]
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def plaintext_problems(document: dict, operation: dict, status: int, body: object,
                       data: Seed) -> list[str]:
    """An encrypted success opened with the caller's key, checked against its named plaintext."""
    if not (isinstance(body, dict) and set(body) == {"payload"}):
        return []
    schema = operation["responses"][str(status)]["content"]["application/json"]["schema"]
    envelope = next((s for s in schema.get("anyOf", [schema]) if "x-antaca-plaintext" in s), None)
    if envelope is None:
        return [f"an encrypted answer the document does not name: {schema}"]
    plaintext = data.jwe.open(body)
    validator = jsonschema_rs.validator_for(
        {**envelope["x-antaca-plaintext"], "components": document["components"]},
        validate_formats=True)
    return [f"decrypted body: {error}" for error in validator.iter_errors(plaintext)]


def conformance(api, data: Seed) -> tuple[list[str], Counter, set[Channel]]:
    """Run schemathesis over every operation: the failures found, the statuses seen and the
    channels that answered a success."""
    document = requests.get(f"{api.http}/openapi.json", timeout=REQUEST_TIMEOUT_SECONDS).json()
    schema = schemathesis.openapi.from_dict(document)
    operations = {(op.path, op.method.upper()): op
                  for op in (result.ok() for result in schema.get_all_operations())}
    failures: list[str] = []
    statuses: Counter = Counter()
    served: set[Channel] = set()
    for route in sorted(ROUTES, key=destructive_last):
        if skipped(route, data):
            continue
        session, base, headers = caller(api, data, route)
        if route.encryption is Encryption.REQUIRED:
            headers = headers | {"Encrypt-Response": "true", "Public-Key": data.jwe_public}
        operation = operations[(route.path, route.method)]
        spec = document["paths"][route.path][route.method.lower()]
        real = path_ids(data, [p["name"] for p in spec["parameters"] if p["in"] == "path"])
        for mode, path_parameters in ((GenerationMode.POSITIVE, real),
                                      (GenerationMode.NEGATIVE, None)):
            strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)
            sent = [0]

            @settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, deadline=None,
                      database=None, suppress_health_check=[HealthCheck.too_slow,
                                                            HealthCheck.filter_too_much])
            @given(case=strategy)
            def run(case):
                generated = case.headers or {}
                if mode is GenerationMode.POSITIVE:
                    # Random JWE headers are never valid (no real key): send only the caller's.
                    generated = {k: v for k, v in generated.items() if k not in JWE_HEADERS}
                case.headers = {**generated, **headers}
                sent[0] += 1
                if mode is GenerationMode.POSITIVE and sent[0] % 2:
                    case.body = steered(case.body, data)  # every other valid body: the seeded ids
                response = case.call(base_url=base, session=session,
                                     timeout=REQUEST_TIMEOUT_SECONDS, verify=session.verify,
                                     cert=session.cert)
                statuses[response.status_code] += 1
                if 200 <= response.status_code < 300:
                    served.add(route.channel)
                label = f"{route.method} {route.path} ({mode.value})"
                try:
                    case.validate_response(response, checks=CHECKS)
                except FailureGroup as group:  # collected, not raised: no shrinking, one report
                    failures.append(f"{label}: {group}")
                content_type = response.headers.get("content-type", [""])[0]  # lowercase keys
                json_answer = content_type.startswith("application/json")
                if 200 <= response.status_code < 300 and json_answer:
                    problems = plaintext_problems(document, spec, response.status_code,
                                                  response.json(), data)
                    failures.extend(f"{label}: {problem}" for problem in problems)

            try:
                run()
            except Unsatisfiable:
                # Nothing about this operation can be made invalid (a GET with no parameters).
                assert mode is GenerationMode.NEGATIVE, route.path
    return failures, statuses, served


async def test_every_answer_conforms_to_the_document(api):
    data = await seed(api)
    failures, statuses, served = await asyncio.to_thread(conformance, api, data)
    assert failures == [], "\n\n".join(failures[:20]) + f"\n\n({len(failures)} failures)"
    # Real work was done and real refusals were seen, not only the authentication wall.
    assert sum(n for status, n in statuses.items() if 200 <= status < 300) >= len(ROUTES)
    assert statuses[400] and statuses[404]
    assert served == set(Channel), set(Channel) - served


async def test_the_document_is_served_with_200(api):
    async with api.client().get(f"{api.http}/openapi.json") as r:
        assert r.status == 200 and r.content_type == "application/json"
        document = await r.json()
    assert "200" in document["paths"]["/openapi.json"]["get"]["responses"]
    assert "200" in document["paths"]["/docs"]["get"]["responses"]
    assert set(document["paths"]["/docs"]["get"]["responses"]["200"]["content"]) == {"text/html"}


SAMPLE_ID = "8d0f3b9e-2f44-4c55-9f7a-0c7f1e3a1b2c"


def _methods_matching(url_path: str) -> set[str]:
    """The methods of every declared route whose template matches this concrete path."""
    return {r.method for r in ROUTES
            if re.fullmatch(re.sub(r"{[^}]+}", "[^/]+", r.path), url_path)}


async def test_an_undeclared_method_answers_405_with_allow(api):
    admin = await api.admin_token()
    client = api.client()
    checked = 0
    # The sandbox's simulation routes do not exist outside the sandbox (this service's case).
    served = {r.path for r in ROUTES if not r.sandbox or api.services.settings.sandbox}
    for path in sorted(served):
        url_path = re.sub(r"{[^}]+}", SAMPLE_ID, path)  # routing comes before any id is read
        declared = _methods_matching(url_path)
        method = next((m for m in HTTP_METHODS if m not in declared), None)
        if method is None:
            continue
        async with client.request(method, api.http + url_path, headers=bearer(admin)) as r:
            assert r.status == 405, (method, path, r.status)
            body = await r.json()
            assert body["code"] == "METHOD_NOT_ALLOWED", body
            allow = {m.strip() for m in r.headers["Allow"].split(",")}
            assert allow == declared, (path, allow)
        checked += 1
    assert checked >= 0.9 * len(served)


async def test_declared_page_limits_are_enforced(api):
    admin = await api.admin_token()
    _, partner = await api.partner(admin)
    paginated = [r for r in ROUTES if r.page_size_max is not None]
    assert {"/secure/customers", "/admin/audit-log"} <= {r.path for r in paginated}
    for route in paginated:
        if "{" in route.path or route.channel not in (Channel.ADMIN, Channel.PARTNER):
            continue  # id routes: the same Context.page_size, checked here on the others
        session, base, headers = _plain_caller(api, route, admin, partner)
        for limit, expected in ((route.page_size_max, 200), (route.page_size_max + 1, 400),
                                (0, 400)):
            async with session.get(f"{base}{route.path}", params={"limit": str(limit)},
                                   headers=headers) as r:
                assert r.status == expected, (route.path, limit, await r.text())


def _plain_caller(api, route: Route, admin: str, partner):
    if route.channel is Channel.PARTNER:
        return partner, api.https, {}
    return api.client(), api.http, bearer(admin)


def test_every_paginated_route_declares_its_bound_in_the_document():
    from antaca_api.openapi import cached_document

    document = json.loads(cached_document())
    for route in ROUTES:
        parameters = {p["name"]: p for p in document["paths"][route.path][route.method.lower()]
                      ["parameters"] if p["in"] == "query"}
        if route.page_size_max is None:
            assert "limit" not in parameters, route.path
        else:
            assert parameters["limit"]["schema"]["maximum"] == route.page_size_max, route.path


# --- what random data cannot reach --------------------------------------------------------------
# Successes that need data schemathesis cannot invent (a CSR, a pairing code, a password it chose,
# a card's state): sent here as a story, each answer validated by schemathesis against the document.
SUCCESS_CHECKS = [check for check in CHECKS if check is not negative_data_rejection]
STORY_PASSWORD = "correct horse battery staple story"


class Story:
    def __init__(self, api, data: Seed, schema) -> None:
        self.api, self.data, self.schema = api, data, schema
        self.failures: list[str] = []
        self.succeeded: set[str] = set()

    def send(self, method: str, path: str, channel: Channel, *, body=NOT_SET,
             **path_parameters: str) -> dict:
        """One request through its channel's real caller; its answer validated; the body."""
        route = next(r for r in ROUTES if (r.method, r.path) == (method, path))
        session, base, headers = caller(self.api, self.data, route)
        assert route.channel is channel
        case = self.schema[path][method].Case(
            path_parameters={**{k: self.data.ids[k] for k in re.findall(r"{(\w+)}", path)},
                             **path_parameters}, headers=headers, body=body)
        response = case.call(base_url=base, session=session, timeout=REQUEST_TIMEOUT_SECONDS,
                             verify=session.verify, cert=session.cert)
        try:
            case.validate_response(response, checks=SUCCESS_CHECKS)
        except FailureGroup as group:
            self.failures.append(f"{method} {path}: {group}")
        assert 200 <= response.status_code < 300, (method, path, response.content[:300])
        self.succeeded.add(f"{method} {path}")
        return response.json() if response.content else {}


def story(api, data: Seed) -> Story:
    schema = schemathesis.openapi.from_dict(
        requests.get(f"{api.http}/openapi.json", timeout=REQUEST_TIMEOUT_SECONDS).json())
    run = Story(api, data, schema)
    send, admin, partner = run.send, Channel.ADMIN, Channel.PARTNER
    send("POST", "/admin/users", admin, body={
        "email": "story@antaca.test", "password": STORY_PASSWORD, "role": "EMPLOYEE"})
    send("POST", "/admin/sessions", admin,
         body={"email": "story@antaca.test", "password": STORY_PASSWORD})
    issued = send("POST", "/admin/partners/{partnerId}/certificates", admin,
                  body={"csr": make_csr()[0]})
    send("POST", "/admin/partners/{partnerId}/certificates/{serial}/revoke", admin,
         serial=issued["serial"])
    send("POST", "/admin/networks/{networkId}/certificates", admin, body={"csr": make_csr()[0]})
    send("POST", "/admin/fx-rates", admin, body={"base": "EUR", "quote": "USD", "rate": "1.1"})
    deposit = send("POST", "/admin/partners/{partnerId}/balances", admin,
                   body={"kind": "DEPOSIT", "currency": "USD"})["balanceId"]
    for method, path, body in (
            ("GET", "/admin/partners/{partnerId}/balances/{balanceId}", NOT_SET),
            ("PUT", "/admin/partners/{partnerId}/balances/{balanceId}/threshold",
             {"lowBalanceThreshold": 1000}),
            ("POST", "/admin/partners/{partnerId}/balances/{balanceId}/reload",
             {"amount": 5000, "bankReference": "story-1"})):
        send(method, path, admin, body=body, balanceId=deposit)
    for lock, unlock, channel in (
            ("/secure/customers/{customerId}/cards/{cardId}/lock",
             "/secure/customers/{customerId}/cards/{cardId}/unlock", partner),
            ("/admin/cards/{cardId}/lock", "/admin/cards/{cardId}/unlock", admin),
            ("/customers/me/cards/{cardId}/lock", "/customers/me/cards/{cardId}/unlock",
             Channel.CUSTOMER)):
        send("POST", lock, channel, body={"reason": 3})
        send("POST", unlock, channel)
    code = send("POST", "/secure/customers/{customerId}/devices/pairing-codes", partner)
    paired = send("POST", "/customers/devices/pair", Channel.CUSTOMER,
                  body={"pairingCode": code["pairingCode"], "deviceId": "story-device"})
    send("POST", "/customers/sessions", Channel.CUSTOMER, body={
        "installationId": paired["installationId"],
        "installationSecret": paired["installationSecret"]})
    send("POST", "/network/cards/lock", Channel.NETWORK, body={"pan": data.pan, "reason": 3})
    return run


async def test_successes_random_data_cannot_reach_conform_too(api):
    data = await seed(api)
    run = await asyncio.to_thread(story, api, data)
    assert run.failures == [], "\n\n".join(run.failures)
    assert len(run.succeeded) >= 18, sorted(run.succeeded)
