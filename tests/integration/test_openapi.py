"""The OpenAPI document: valid, complete, honest about channels, roles and JWE; served with a docs page."""

from __future__ import annotations

import json

import msgspec
from openapi_spec_validator import validate

from antaca_api.domain_errors import NotFound
from antaca_api.openapi import cached_document, openapi_document
from antaca_api.routes import load_all
from antaca_api.routes.docs import render
from antaca_api.routing import ROUTES, Channel, Encryption, Route


def document() -> dict:
    load_all()
    return json.loads(cached_document())


def test_document_is_valid_openapi_and_lists_every_route():
    doc = document()
    validate(doc)
    assert {(r.path, r.method.lower()) for r in ROUTES} == {
        (path, method) for path, ops in doc["paths"].items() for method in ops}
    operation_ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(operation_ids) == len(set(operation_ids))


def test_every_reference_resolves():
    doc = document()
    refs = set()

    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                refs.add(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    assert refs
    for ref in refs:
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[-1] in doc["components"]["schemas"]


def test_channels_roles_and_jwe_are_declared():
    doc = document()
    for r in ROUTES:
        op = doc["paths"][r.path][r.method.lower()]
        assert op["x-antaca-channel"] == r.channel
        if r.channel is Channel.PARTNER:
            assert op["security"] == [{"partnerCertificate": []}]
        if r.channel is Channel.PUBLIC or not r.authenticated:
            assert op["security"] == []
        if r.encryption is Encryption.REQUIRED:
            assert op["x-antaca-jwe"] == "required" and "JWE required" in op["description"]
        if r.channel is Channel.ADMIN and r.authenticated:
            assert set(op["x-antaca-roles"]) == {str(role) for role in r.roles}
    full_data = doc["paths"]["/customers/me/cards/{cardId}"]["get"]
    assert full_data["x-antaca-jwe"] == "required"
    create_partner = doc["paths"]["/admin/partners"]["post"]
    assert create_partner["x-antaca-roles"] == ["ADMIN"]
    assert "requestBody" in create_partner
    assert doc["components"]["schemas"]["NewCustomer"]["properties"]["email"]["pattern"]


def test_security_schemes_match_the_channels():
    doc = document()
    schemes = doc["components"]["securitySchemes"]
    expected = {Channel.PARTNER: ("mutualTLS", None), Channel.NETWORK: ("mutualTLS", None),
                Channel.CUSTOMER: ("http", "bearer"), Channel.ADMIN: ("http", "bearer")}
    for r in ROUTES:
        op = doc["paths"][r.path][r.method.lower()]
        if r.channel is Channel.PUBLIC or not r.authenticated:
            continue
        [requirement] = op["security"]
        [name] = requirement
        assert (schemes[name]["type"], schemes[name].get("scheme")) == expected[r.channel], r.path
        # 403: a suspended partner or network (and its customers); an administrator's role, scope
        # or reset password
        assert {"401", "403"} <= set(op["responses"]), r.path


def test_responses_parameters_and_bodies_follow_the_declarations():
    doc = document()
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    assert doc["components"]["schemas"]["ErrorBody"]["required"] == ["code", "message"]
    for r in ROUTES:
        op = doc["paths"][r.path][r.method.lower()]
        success = [status for status in op["responses"] if status.startswith("2")]
        if r.response is None:
            assert success == [str(r.status if r.status != 200 else 204)], r.path
            assert "content" not in op["responses"][success[0]]
        else:
            assert success == [str(r.status)], r.path
            [(media_type, content)] = op["responses"][success[0]]["content"].items()
            assert media_type == r.media_type
            assert content["schema"] == _success_schema(r), r.path
        errors = [status for status in op["responses"] if not status.startswith("2")]
        for status in errors:
            assert op["responses"][status]["content"]["application/json"]["schema"] == error_ref, (r.path, status)
        assert {"400", "413"} <= set(errors), r.path
        may_not_find = "{" in r.path or r.errors is None or NotFound in r.errors
        assert ("404" in errors) == may_not_find, r.path
        if r.authenticated and r.channel is not Channel.PUBLIC:
            assert "401" in errors, r.path
        params = {(p["in"], p["name"]): p for p in op["parameters"]}
        for name in (part[1:-1] for part in r.path.split("/") if part.startswith("{")):
            param = params[("path", name)]
            assert param["required"] and param["schema"].get("format") == ("uuid" if name.endswith("Id") else None)
        jwe_headers = {("header", h) for h in ("Public-Key", "Encrypted-Request", "Encrypt-Response")}
        if r.channel is not Channel.PUBLIC:
            assert jwe_headers <= set(params) and not any(params[h]["required"] for h in jwe_headers), r.path
        paginated = r.page_size_max is not None
        # Or a list with an opaque cursor that names its own query parameters.
        paginated |= any(p["name"] == "cursor" for p in getattr(r.response, "query_parameters", []))
        assert (("query", "cursor") in params) == paginated, r.path
        if r.page_size_max is not None and ("query", "limit") in params:
            assert params[("query", "limit")]["schema"]["maximum"] <= r.page_size_max, r.path
        content = op.get("requestBody", {}).get("content", {})
        if r.multipart:
            form = content["multipart/form-data"]["schema"]
            assert form["properties"]["file"] == {"type": "string", "format": "binary"}
            assert set(form["required"]) == {"kind", "file"}
        elif r.body is not None:
            assert content["application/json"]["schema"] == {"$ref": f"#/components/schemas/{r.body.__name__}"}
        else:
            assert not content, r.path


def _success_schema(r: Route) -> dict:
    if not (isinstance(r.response, type) and issubclass(r.response, msgspec.Struct)):
        return msgspec.json.schema(r.response)
    plain = {"$ref": f"#/components/schemas/{r.response.__name__}"}
    envelope = {"$ref": "#/components/schemas/Envelope", "x-antaca-plaintext": plain}
    return envelope if r.encryption is not Encryption.OPTIONAL else {"anyOf": [plain, envelope]}


def test_sign_in_routes_document_401_and_the_documents_200():
    doc = document()
    for path in ("/admin/sessions", "/customers/sessions", "/customers/devices/pair"):
        responses = doc["paths"][path]["post"]["responses"]
        assert "401" in responses and "201" in responses, path
    assert set(doc["paths"]["/openapi.json"]["get"]["responses"]) == {
        "200", "400", "413", "415", "503"}
    assert "application/json" in doc["paths"]["/openapi.json"]["get"]["responses"]["200"]["content"]
    card_data = doc["paths"]["/customers/me/cards/{cardId}"]["get"]["responses"]
    assert "CARD_DATA_UNAVAILABLE" in card_data["409"]["description"]
    assert "Retry-After" in card_data["503"]["headers"]


def test_every_paginated_response_belongs_to_a_route_declaring_its_page_bound():
    load_all()
    for r in ROUTES:
        fields = getattr(r.response, "__struct_fields__", ())
        assert ("next_cursor" in fields) == (r.page_size_max is not None), r.path


def test_docs_page_escapes_everything():
    async def handler(ctx, body):
        return None

    hostile = Route("GET", "/x/{a<b>Id}", handler, Channel.ADMIN, "<script>alert(1)</script> & co",
                    tags=("<b>tag</b>",))
    page = render(openapi_document([hostile]))
    assert "<script>alert" not in page and "<b>tag" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in page and "&lt;b&gt;tag&lt;/b&gt;" in page


def test_generation_is_deterministic():
    load_all()
    assert openapi_document(ROUTES) == openapi_document(ROUTES)


async def test_document_and_docs_page_are_served(api):
    async with api.client().get(f"{api.http}/openapi.json") as r:
        assert r.status == 200 and r.content_type == "application/json"
        served = await r.json()
    assert served == document()
    # The plain list of routes; the interactive /docs: tests/integration/test_reference.py
    async with api.client().get(f"{api.http}/docs/routes") as r:
        assert r.status == 200 and r.content_type == "text/html"
        page = await r.text()
    for path in served["paths"]:
        assert path in page
    assert "<script" not in page and "http://" not in page.replace("http://127", "")
