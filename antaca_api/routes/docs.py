"""The OpenAPI document, the interactive reference over it (Swagger UI, served here), a guide,
and a plain page of every route (self-contained: nothing from elsewhere)."""

from __future__ import annotations

import html
import json
from typing import Any

from aiohttp import web

from antaca_api import reference
from antaca_api.openapi import cached_document
from antaca_api.routing import Channel, Context, route

STYLE = """body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:72rem;color:#222}
h1{font-size:1.6rem}h2{margin-top:2rem;border-bottom:1px solid #ddd}
.op{border:1px solid #e3e3e3;border-radius:6px;margin:.5rem 0;padding:.5rem .8rem}
.m{display:inline-block;min-width:4.5rem;font-weight:700}.get{color:#0a6}.post{color:#06c}.put{color:#a60}
.patch{color:#a60}.delete{color:#c22}code{background:#f4f4f4;padding:0 .2rem}.meta{color:#666;font-size:.9rem}"""


@route("GET", "/openapi.json", channel=Channel.PUBLIC, summary="The OpenAPI 3.1 document",
       tags=("docs",), response=dict[str, Any], errors=())
async def openapi_json(ctx: Context, _: None) -> web.Response:
    return web.Response(body=cached_document(), content_type="application/json")


def _schema_name(content: dict | None) -> str:
    if not content:
        return ""
    schema = next(iter(content.values())).get("schema", {})
    schema = schema.get("anyOf", [schema])[0]  # the plain type first, then its JWE envelope
    name = schema.get("$ref", "").rsplit("/", 1)[-1] or schema.get("type", "")
    plaintext = schema.get("x-antaca-plaintext")
    return f"{name} of {_schema_name({'': {'schema': plaintext}})}" if plaintext else name


def render(document: dict) -> str:
    """The docs page: operations grouped by tag, with channel, roles, JWE rule and schemas."""
    by_tag: dict[str, list[tuple[str, str, dict]]] = {}
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            by_tag.setdefault(op["tags"][0], []).append((method, path, op))
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(document['info']['title'])}</title>"
             f"<style>{STYLE}</style></head><body><h1>{e(document['info']['title'])}</h1>"
             f"<p>{e(document['info']['description'])}</p><p>Machine-readable: <a href='/openapi.json'>"
             "/openapi.json</a></p>"]
    for tag in sorted(by_tag):
        parts.append(f"<h2>{e(tag)}</h2>")
        for method, path, op in sorted(by_tag[tag], key=lambda x: (x[1], x[0])):
            request = _schema_name(op.get("requestBody", {}).get("content"))
            success = next((s for s in op["responses"] if s.startswith("2")), "")
            response = _schema_name(op["responses"].get(success, {}).get("content"))
            roles = ", ".join(op.get("x-antaca-roles", []))
            meta = [f"channel: {op['x-antaca-channel']}", f"JWE: {op['x-antaca-jwe']}"]
            if roles:
                meta.append(f"roles: {roles}")
            if request:
                meta.append(f"request: {request}")
            meta.append(f"{success}: {response or 'no content'}")
            parts.append(f"<div class='op'><span class='m {e(method)}'>{e(method.upper())}</span> <code>{e(path)}</code>"
                         f" — {e(op['summary'])}<div class='meta'>{e(' · '.join(meta))}</div></div>")
    parts.append("</body></html>")
    return "".join(parts)


@route("GET", "/docs/routes", channel=Channel.PUBLIC, tags=("docs",), response=str,
       media_type="text/html", errors=(), summary="Every route on one page, without script (HTML)")
async def routes_page(ctx: Context, _: None) -> web.Response:
    return _html(render(json.loads(cached_document())))


def _html(text: str) -> web.Response:
    return web.Response(text=text, content_type="text/html", headers={
        "Content-Security-Policy": reference.CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff"})


@route("GET", "/docs", channel=Channel.PUBLIC, tags=("docs",), response=str,
       media_type="text/html", errors=(),
       summary="The interactive API reference (Swagger UI over /openapi.json, served here)")
async def docs_page(ctx: Context, _: None) -> web.Response:
    return _html(reference.INDEX)


@route("GET", "/docs/guide", channel=Channel.PUBLIC, tags=("docs",), response=str,
       media_type="text/html", errors=(),
       summary="A short hand-written guide for partners (HTML)")
async def guide_page(ctx: Context, _: None) -> web.Response:
    return _html(reference.GUIDE)


def _asset_route(name: str, content_type: str, body: bytes) -> None:
    async def asset(ctx: Context, _: None) -> web.Response:
        return web.Response(body=body, content_type=content_type, headers={
            "Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})

    route("GET", f"/docs/assets/{name}", channel=Channel.PUBLIC, tags=("docs",), response=str,
          media_type=content_type, errors=(),
          summary=f"A file of the reference page ({name})")(asset)


# The Swagger UI package's files, read once at start-up; then the reference's own two.
for _name, _type in reference.ASSETS.items():
    _asset_route(_name, _type, (reference.SWAGGER_UI / _name).read_bytes())
_asset_route("antaca-reference.js", "application/javascript", reference.START_SCRIPT.encode())
_asset_route("antaca-reference.css", "text/css", reference.STYLE.encode())
