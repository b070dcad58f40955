"""The statuses an operation documents follow from its route's data alone (antaca_api/openapi.py):
channel, authentication, roles, ids in the path, body, JWE rule, declared errors, page bound."""

from __future__ import annotations

import msgspec

from antaca_api.domain_errors import InvalidCredentials, ProcessorFailure
from antaca_api.openapi import openapi_document
from antaca_api.routing import ADMIN_ONLY, Channel, Encryption, Route
from antaca_api.schema import Body


class Thing(Body):
    name: str


async def handler(ctx, body):
    return None


def operation(**declaration) -> dict:
    method = declaration.pop("method", "GET")
    path = declaration.pop("path", "/admin/things")
    channel = declaration.pop("channel", Channel.ADMIN)
    route = Route(method, path, handler, channel, "a thing", **declaration)
    return openapi_document([route])["paths"][path][method.lower()]


def statuses(**declaration) -> set[str]:
    return set(operation(**declaration)["responses"])


def test_a_public_read_answers_its_success_bad_requests_size_and_busy():
    assert statuses(path="/things", channel=Channel.PUBLIC, response=Thing) == {
        "200", "400", "404", "413", "415", "503"}
    assert statuses(path="/things", channel=Channel.PUBLIC, response=Thing, errors=()) == {
        "200", "400", "413", "415", "503"}


def test_authentication_roles_and_suspension_by_channel():
    admin = operation(response=Thing, roles=ADMIN_ONLY)["responses"]
    assert {"401", "403"} <= set(admin)
    assert {"FORBIDDEN", "PASSWORD_CHANGE_REQUIRED"} <= set(
        admin["403"]["description"].split(": ", 1)[1].split(", "))
    for channel, path in ((Channel.PARTNER, "/secure/things"), (Channel.CUSTOMER, "/customers/x"),
                          (Channel.NETWORK, "/network/things")):
        assert {"401", "403"} <= statuses(path=path, channel=channel, response=Thing), channel
    assert "401" not in statuses(response=Thing, authenticated=False)


def test_the_network_channel_is_never_busy():
    assert "503" not in statuses(path="/network/things", channel=Channel.NETWORK, response=Thing)


def test_ids_bodies_and_changes():
    read = statuses(path="/admin/things/{thingId}", response=Thing, errors=())
    assert "404" in read and "409" not in read
    write = statuses(method="POST", body=Thing, response=Thing, status=201)
    assert {"201", "404", "409", "415"} <= write and "200" not in write
    assert "204" in statuses(method="DELETE")


def test_declared_errors_replace_the_usual_ones():
    sign_in = operation(method="POST", body=Thing, response=Thing, status=201,
                        authenticated=False, errors=(InvalidCredentials,))
    assert set(sign_in["responses"]) == {"201", "400", "401", "413", "415", "503"}
    assert "INVALID_CREDENTIALS" in sign_in["responses"]["401"]["description"]
    issuing = statuses(method="POST", body=Thing, response=Thing, errors=(ProcessorFailure,))
    assert "502" in issuing and "409" not in issuing


def test_required_jwe_answers_an_envelope_and_says_encryption_is_required():
    op = operation(response=Thing, encryption=Encryption.REQUIRED)
    assert "ENCRYPTION_REQUIRED" in op["responses"]["400"]["description"]
    schema = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/Envelope",
                      "x-antaca-plaintext": {"$ref": "#/components/schemas/Thing"}}
    optional = operation(response=Thing)["responses"]["200"]["content"]["application/json"]
    assert optional["schema"]["anyOf"][0] == {"$ref": "#/components/schemas/Thing"}


def test_every_error_is_the_error_body_and_busy_says_when_to_retry():
    op = operation(method="POST", path="/admin/things/{thingId}", body=Thing, response=Thing)
    for status, answer in op["responses"].items():
        if not status.startswith("2"):
            assert answer["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorBody"}, status
    assert "Retry-After" in op["responses"]["503"]["headers"]


def test_a_page_bound_is_the_limit_maximum_and_other_media_types_are_named():
    op = operation(response=Thing, page_size_max=500)
    [limit] = [p for p in op["parameters"] if p["name"] == "limit"]
    assert limit["schema"]["maximum"] == 500 and limit["schema"]["minimum"] == 1
    page = operation(path="/things", channel=Channel.PUBLIC, response=str, media_type="text/html")
    assert page["responses"]["200"]["content"]["text/html"]["schema"] == msgspec.json.schema(str)
