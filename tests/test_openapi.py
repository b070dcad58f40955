"""The OpenAPI document: valid, complete, honest about channels, roles and JWE; served with a docs page."""

from __future__ import annotations

import json

from openapi_spec_validator import validate

from antaca_api.openapi import cached_document, openapi_document
from antaca_api.routes import load_all
from antaca_api.routing import ROUTES, Channel, Encryption


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


def test_generation_is_deterministic():
    load_all()
    assert openapi_document(ROUTES) == openapi_document(ROUTES)


async def test_document_and_docs_page_are_served(api):
    async with api.client().get(f"{api.http}/openapi.json") as r:
        assert r.status == 200 and r.content_type == "application/json"
        served = await r.json()
    assert served == document()
    async with api.client().get(f"{api.http}/docs") as r:
        assert r.status == 200 and r.content_type == "text/html"
        page = await r.text()
    for path in served["paths"]:
        assert path in page
    assert "<script" not in page and "http://" not in page.replace("http://127", "")
