"""Connection hygiene over raw sockets (antaca_api/hardening.py): aiohttp's own refusals answer
JSON without echoing the request or logging it, the timeouts cut idle and slow clients, every
response has its security headers, and TLS is 1.2+ with modern suites (openssl s_client)."""

from __future__ import annotations

import asyncio
import base64
import logging
import shutil
import socket
import subprocess

import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from antaca_api import hardening, jwe
from antaca_api.app import create_app
from antaca_api.hardening import HardenedAppRunner
from tests.api_harness import bearer, listening_socket

MARKER = "Zq7secretmarkerXk"  # stands for a token: must never come back, nor reach a log


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def exchange(port: int, raw: bytes, wait_seconds: float = 5.0) -> bytes:
    """Send raw bytes, read until the server closes (or the wait ends)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    chunks = []
    try:
        async with asyncio.timeout(wait_seconds):
            while chunk := await reader.read(65536):
                chunks.append(chunk)
    except TimeoutError:
        pass
    writer.close()
    return b"".join(chunks)


def parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


MALFORMED = {
    "bad method": (f"G{MARKER}(T / HTTP/1.1\r\nHost: x\r\n\r\n".encode(), "BAD_METHOD"),
    "request line too long": (f"GET /{MARKER * 800} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
                              "LINE_TOO_LONG"),
    "header too long": (f"GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                        f"{MARKER * 800}\r\n\r\n".encode(), "LINE_TOO_LONG"),
    "malformed header": (f"GET /health HTTP/1.1\r\nHost: x\r\nAuthorization Bearer "
                         f"{MARKER}\r\n\r\n".encode(), "MALFORMED_HTTP"),
    "not http": (f"\x16\x03\x01{MARKER}\r\n\r\n".encode(), None),
    "bad version": (f"GET /health HTTP/9.{MARKER}\r\nHost: x\r\n\r\n".encode(), None),
    "bad content length": (f"POST /admin/sessions HTTP/1.1\r\nHost: x\r\nContent-Length: "
                           f"{MARKER}\r\n\r\n".encode(), None),
}


@pytest.mark.parametrize("name", list(MALFORMED))
async def test_protocol_errors_answer_json_and_echo_and_log_nothing(api, caplog, name):
    raw, code = MALFORMED[name]
    caplog.set_level(logging.DEBUG)
    answer = await exchange(port_of(api.http), raw)
    status, headers, body = parse(answer)
    assert 400 <= status < 500, answer[:200]
    assert headers["Content-Type"].startswith("application/json")
    error = __import__("json").loads(body)
    assert set(error) == {"code", "message", "requestId"}  # observability: every error body
    if code is not None:
        assert error["code"] == code
    assert MARKER.encode() not in answer
    assert headers["Server"] == "antaca" and headers["X-Content-Type-Options"] == "nosniff"
    logged = "\n".join(record.getMessage() + str(record.exc_info or "") for record in caplog.records)
    assert MARKER not in logged and "Traceback" not in caplog.text


async def test_every_response_has_its_security_headers_and_no_version_banner(api):
    async with api.client().get(f"{api.http}/health") as r:
        assert r.headers["Server"] == "antaca"
        assert r.headers["X-Frame-Options"] == "DENY"
        assert r.headers["Content-Security-Policy"] == "frame-ancestors 'none'"
        assert r.headers["Referrer-Policy"] == "no-referrer"
        assert "Strict-Transport-Security" not in r.headers  # only over TLS
    async with api.client().get(f"{api.https}/no/such/route") as r:
        assert r.status == 404
        assert r.headers["Strict-Transport-Security"].startswith("max-age=")
        assert r.headers["X-Content-Type-Options"] == "nosniff"


@pytest.fixture
async def short_timeouts(api, monkeypatch):
    """The application on its own listener with timeouts of a fraction of a second."""
    monkeypatch.setattr(hardening, "header_timeout_seconds", 0.5)
    monkeypatch.setattr(hardening, "body_timeout_seconds", 0.5)
    runner = HardenedAppRunner(create_app(api.services), access_log=None, keepalive_timeout=0.5)
    await runner.setup()
    sock = listening_socket()
    await web.SockSite(runner, sock).start()
    try:
        yield sock.getsockname()[1]
    finally:
        await runner.cleanup()


async def closed_within(port: int, raw: bytes, seconds: float) -> tuple[bytes, float]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    answer = await exchange(port, raw, wait_seconds=seconds)
    return answer, loop.time() - started


async def test_an_idle_connection_is_closed(short_timeouts):
    answer, took = await closed_within(short_timeouts, b"", 5)
    assert answer == b"" and took < 3


async def test_headers_that_never_end_are_cut(short_timeouts):
    answer, took = await closed_within(
        short_timeouts, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ", 5)
    assert answer == b"" and took < 3


async def test_a_body_that_never_ends_answers_408(short_timeouts):
    answer, took = await closed_within(
        short_timeouts, b"POST /admin/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: "
        b"application/json\r\nContent-Length: 100\r\n\r\n{\"email\":", 5)
    status, _, body = parse(answer)
    assert (status, __import__("json").loads(body)["code"]) == (408, "REQUEST_TIMEOUT")
    assert took < 4


async def test_a_keep_alive_connection_is_closed_once_idle(short_timeouts):
    answer, took = await closed_within(
        short_timeouts, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", 5)
    assert answer.startswith(b"HTTP/1.1 ") and took < 3


async def test_an_encrypted_body_on_a_route_without_one_is_refused_before_decryption(
        api, monkeypatch):
    decrypted = []
    real_decrypt = jwe.decrypt_envelope
    monkeypatch.setattr(jwe, "decrypt_envelope",
                        lambda *args: decrypted.append(1) or real_decrypt(*args))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    token = await api.admin_token()
    headers = {**bearer(token), "Encrypted-Request": "true", "Content-Type": "application/json",
               "Public-Key": base64.b64encode(public_pem).decode()}
    async with api.client().delete(f"{api.http}/admin/sessions/current", headers=headers,
                                   data=b'{"payload": "a.b.c.d.e"}') as r:
        assert r.status == 400
        assert (await r.json())["code"] == "VALIDATION_ERROR"  # not CANT_DECRYPT_PAYLOAD
    assert decrypted == []


def s_client(port: int, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-brief",
                           *options], input=b"", capture_output=True, timeout=20)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_tls_is_1_2_or_later_with_modern_suites_only(api):
    port = port_of(api.https)
    results = await asyncio.gather(*(asyncio.to_thread(s_client, port, *options) for options in (
        ("-tls1_3",), ("-tls1_2",), ("-tls1_1",), ("-tls1",),
        ("-tls1_2", "-cipher", "AES128-SHA"), ("-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA"),
        ("-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"))))
    assert [result.returncode == 0 for result in results] == [
        True, True, False, False, False, False, True], [r.stderr[-300:] for r in results]
    assert b"TLSv1.3" in results[0].stderr + results[0].stdout


def test_the_socket_helper_is_a_listening_socket():
    sock = listening_socket()
    assert sock.type == socket.SOCK_STREAM
    sock.close()
