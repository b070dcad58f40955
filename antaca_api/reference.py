"""What the interactive reference adds to the generated OpenAPI document, and its pages.

`enrich` runs over the document antaca_api/openapi.py generated from the routes: the document's
description (channels, mutual TLS, JWE, idempotency, pagination), an example for every request
and response body built from its msgspec schema (`example_of`), and the Idempotency-Key header
on the routes declared `idempotent`. The reference itself is Swagger UI from the
`swagger-ui-bundle-v2` package, served by the service (antaca_api/routes/docs.py) under a strict
Content-Security-Policy: nothing is loaded from anywhere else.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import swagger_ui_bundle

from antaca_api import errors, idempotency, pages
from antaca_api.domain_errors import Conflict, Forbidden, NotFound, ValidationFailed
from antaca_api.routing import Route

example_depth_max = 16  # nested schemas an example follows before it stops

DESCRIPTION = f"""\
Antaca's API for partners (card issuing programs), administrators, the partners' apps and card
networks. Amounts are integer minor units with an ISO 4217 currency. A short guide:
[/docs/guide](/docs/guide).

**Channels.** `/secure` and `/lifecycle` are the partner's, over **mutual TLS** only: the TLS
listener asks for a client certificate issued by Antaca's CA to the partner (an administrator
issues it from the partner's CSR, `POST /admin/partners/{{partnerId}}/certificates`); the
certificate is the partner's identity, no token is sent. `/network` is the card networks', over
mutual TLS the same way. `/admin` takes an administrator's bearer token
(`POST /admin/sessions`), `/customers` a partner app's session token.

**JWE.** Card data (PAN, CVC2, PIN) only travels encrypted, in JWE compact form (RSA-OAEP-256 and
A256GCM). Fetch Antaca's public key from `GET /public-key`; send your RSA public key, PEM and
base64, in `Public-Key`. With `Encrypted-Request: true` the body is `{{"payload": "<JWE>"}}`
encrypted to Antaca's key and the answer is encrypted to yours; with `Encrypt-Response: true` a
plain request gets an encrypted answer. Routes marked *JWE required* refuse anything else (400
ENCRYPTION_REQUIRED). The schemas below are the plaintext inside the envelope.

**Idempotency.** POSTs that create something or move money accept `{idempotency.HEADER}` (1 to
{idempotency.key_length_max} printable ASCII characters, per partner or administrator): a retry with
the same key and request gets the first answer again with `{idempotency.REPLAYED_HEADER}: true` for
{idempotency.response_retention_hours} hours; the same key with another request is 409
IDEMPOTENCY_KEY_REUSED, and while the first is still running 409 IDEMPOTENCY_KEY_IN_PROGRESS.

**Lists** are paged: `limit` (1 to {pages.page_size_max}, default {pages.page_size_default}) and
`cursor`, the opaque `nextCursor` of the previous page; `hasMore` says whether one follows.

**Errors** are `{{"code", "message"}}` with the status listed on each route."""

IDEMPOTENCY_PARAMETER = {
    "name": idempotency.HEADER, "in": "header", "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": idempotency.key_length_max},
    "description": f"Run this request once: retries with the same key and request get the first "
                   f"answer again ({idempotency.REPLAYED_HEADER}: true) for "
                   f"{idempotency.response_retention_hours} hours.",
}

REPLAYED_RESPONSE_HEADER = {
    idempotency.REPLAYED_HEADER: {
        "description": "true when this is the stored answer of an earlier request with the same "
                       "Idempotency-Key",
        "schema": {"type": "string", "enum": ["true"]}}}

IDEMPOTENCY_CONFLICT = ("IDEMPOTENCY_KEY_REUSED (the key was used for another request) or "
                        "IDEMPOTENCY_KEY_IN_PROGRESS (the same request is still running)")

# Example strings for constrained fields: the first one the field's pattern and lengths accept.
STRING_CANDIDATES = (
    "EUR", "PL", "5355220000000001", "4821", "2912", "12/29", "535522", "+48123456789",
    "2026-01-31", "PL61109010140000071219812874", "KRS0000123", "00-001", "ORDER-2026-0001",
    "A1B2C3D4E5F6A7B8", "0123456789ABCDEF0123456789ABCDEF", "ada@example.com",
    "https://partner.example.com/webhooks",
)
# Plain strings named like these get a realistic example (when their constraints admit it).
NAMED_STRINGS = {
    "pan": "5355220000000001", "maskedPan": "535522******0001", "expiry": "12/29", "cvc2": "123",
    "currency": "EUR", "country": "PL", "email": "ada@example.com", "phone": "+48123456789",
    "reference": "ORDER-2026-0001", "name": "Acme Cards", "nameOnCard": "ADA LOVELACE",
    "holderName": "Ada Lovelace", "firstName": "Ada", "lastName": "Lovelace", "city": "Warsaw",
    "line1": "Main 1", "postalCode": "00-001", "merchantName": "Shop", "mcc": "5411",
    "posEntryMode": "071",
    "code": "NOT_FOUND", "message": "no such resource",
}
FORMATS = {
    "uuid": "6f1c1a52-3a4e-4d8b-9d35-2c1f4b7e9a10",
    "date-time": "2026-01-31T12:00:00Z",
    "date": "1990-12-10",
    "email": "ada@example.com",
    "uri": "https://partner.example.com/webhooks",
}


def _string(schema: dict, name: str) -> str:
    if "format" in schema and schema["format"] in FORMATS:
        return FORMATS[schema["format"]]
    low, high = schema.get("minLength", 0), schema.get("maxLength", 64)
    pattern = schema.get("pattern")
    named = NAMED_STRINGS.get(name)
    if named is not None and low <= len(named) <= high and (
            pattern is None or re.search(pattern, named)):
        return named
    if pattern is not None:
        for candidate in STRING_CANDIDATES:
            if low <= len(candidate) <= high and re.search(pattern, candidate):
                return candidate
    text = (name or "text").replace("_", " ")
    return (text * (low // max(len(text), 1) + 1))[:max(low, min(len(text), high))]


def example_of(schema: dict, components: dict, name: str = "", depth: int = 0) -> Any:
    """A value that fits `schema` (a msgspec JSON schema, `$ref`s into `components`)."""
    if depth > example_depth_max:
        return None
    if "$ref" in schema:
        target = components.get(schema["$ref"].rsplit("/", 1)[-1], {})
        return example_of(target, components, name, depth + 1)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return example_of(options[0], components, name, depth)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema and schema["default"] is not None:
        return schema["default"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        return {key: example_of(value, components, key, depth + 1)
                for key, value in schema.get("properties", {}).items()}
    if kind == "array":
        return [example_of(schema.get("items", {}), components, name, depth + 1)]
    if kind == "integer":
        low, high = schema.get("minimum", 0), schema.get("maximum", 1_000_000)
        return max(low, min(high, 1000))
    if kind == "number":
        return schema.get("minimum", 1)
    if kind == "boolean":
        return False
    if kind == "string":
        return _string(schema, name)
    return None


# The example error body of each status: a real code and message of that status.
ERROR_EXAMPLES = {
    str(status): {"code": error.code, "message": error.message} for status, error in (
        (400, ValidationFailed), (401, errors.Unauthenticated), (403, Forbidden), (404, NotFound),
        (409, Conflict), (413, errors.PayloadTooLarge), (503, errors.ServiceBusy))}


def _add_examples(document: dict) -> None:
    """An example beside every body schema that has none yet."""
    components = document["components"]["schemas"]
    for operations in document["paths"].values():
        for operation in operations.values():
            bodies = [(None, operation.get("requestBody", {}).get("content", {}))]
            bodies += [(status, response.get("content", {}))
                       for status, response in operation["responses"].items()]
            for status, content in bodies:
                for media in content.values():
                    if "schema" not in media or "example" in media:
                        continue
                    error = ERROR_EXAMPLES.get(status)
                    media["example"] = (dict(error) if error is not None
                                        else example_of(media["schema"], components))


def _add_idempotency(document: dict, routes: Sequence[Route]) -> None:
    for r in routes:
        if not r.idempotent:
            continue
        operation = document["paths"][r.path][r.method.lower()]
        operation["parameters"] = [*operation["parameters"], IDEMPOTENCY_PARAMETER]
        operation["x-antaca-idempotent"] = True
        for status, response in operation["responses"].items():
            if status.startswith("2"):
                response["headers"] = REPLAYED_RESPONSE_HEADER
        conflict = operation["responses"].get("409")
        if conflict is not None and IDEMPOTENCY_CONFLICT not in conflict["description"]:
            conflict["description"] += "; " + IDEMPOTENCY_CONFLICT
        operation["description"] += f" Idempotent with {idempotency.HEADER}."


def enrich(document: dict, routes: Sequence[Route]) -> dict:
    """The generated document with its description, examples and idempotency headers."""
    document["info"]["description"] = DESCRIPTION
    _add_idempotency(document, routes)
    _add_examples(document)
    return document


# --- the reference's pages ------------------------------------------------------------------

SWAGGER_UI = Path(swagger_ui_bundle.swagger_ui_path)
# The package's files the page loads, by the name they are served under /docs/assets/.
ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "application/javascript",
    "favicon-32x32.png": "image/png",
}

# Nothing from elsewhere; Swagger UI's React sets style attributes, hence 'unsafe-inline' for
# styles only. No inline script: the start-up code is /docs/assets/antaca-reference.js.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'")

START_SCRIPT = """window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    defaultModelsExpandDepth: 1,
    defaultModelExpandDepth: 3,
    displayRequestDuration: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  });
});
"""

INDEX = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Antaca API reference</title>
<link rel="icon" href="/docs/assets/favicon-32x32.png">
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
<link rel="stylesheet" href="/docs/assets/antaca-reference.css">
</head><body>
<nav class="antaca-nav"><strong>Antaca API reference</strong> ·
<a href="/docs/guide">Guide</a> · <a href="/docs/routes">All routes</a> ·
<a href="/openapi.json">openapi.json</a></nav>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/antaca-reference.js"></script>
</body></html>
"""

STYLE = """body{margin:0;font-family:system-ui,sans-serif}
.antaca-nav{padding:.8rem 1.5rem;border-bottom:1px solid #ddd;background:#fafafa}
.antaca-nav a{color:#06c}
.guide{max-width:52rem;margin:2rem auto;padding:0 1rem;line-height:1.5;color:#222}
.guide pre{background:#f4f4f4;padding:.8rem;overflow-x:auto}.guide code{background:#f4f4f4}
"""

GUIDE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Antaca API guide</title>
<link rel="stylesheet" href="/docs/assets/antaca-reference.css"></head><body>
<nav class="antaca-nav"><strong>Antaca API guide</strong> · <a href="/docs">Reference</a> ·
<a href="/docs/routes">All routes</a> · <a href="/openapi.json">openapi.json</a></nav>
<main class="guide">
<h1>Integrating Antaca as a partner</h1>
<p>You run card programs on Antaca from your own servers. Everything below is in the
<a href="/docs">reference</a>, route by route, with every body's schema and an example.</p>

<h2>1. Connect with mutual TLS</h2>
<p>Create an EC or RSA key and a certificate signing request; Antaca's administrator issues your
client certificate from it (<code>POST /admin/partners/{partnerId}/certificates</code>). Call
<code>/secure/...</code> and <code>/lifecycle/...</code> on the TLS port with that certificate and
Antaca's CA as your trust anchor. There is no token: the certificate is who you are, and every id
you send must be yours (another partner's id answers 404, like an unknown one).</p>
<pre>curl --cert partner.crt --key partner.key --cacert antaca-ca.pem \\
     https://antaca.example:8443/secure/cards?limit=50</pre>

<h2>2. Card data only through JWE</h2>
<p>Read Antaca's RSA key from <code>GET /public-key</code>. To send a body, encrypt it (JWE
compact, <code>RSA-OAEP-256</code> + <code>A256GCM</code>) and post
<code>{"payload": "&lt;JWE&gt;"}</code> with <code>Encrypted-Request: true</code> and your own
public key, PEM then base64, in <code>Public-Key</code>. The answer comes back as
<code>{"payload": "&lt;JWE&gt;"}</code> encrypted to your key. To read card data without a
body, send <code>Encrypt-Response: true</code>. Issuing cards
and reading PAN, expiry and CVC2 require it.</p>

<h2>3. Customers, balances, cards</h2>
<ol>
<li><code>POST /secure/customers</code>, then its KYC
(<code>PUT /secure/customers/{id}/kyc</code> or <code>POST .../register</code>).</li>
<li><code>POST /secure/customers/{id}/balances</code> opens a balance in a currency;
<code>.../reload</code> tops it up, idempotently per <code>reference</code>.</li>
<li><code>POST /secure/customers/{id}/cards/virtual</code> (JWE) issues a card, ACTIVE at once;
<code>.../cards/physical</code> orders one.</li>
<li>Corporations: <code>/lifecycle/v1/corporations</code>, then
<code>POST /secure/balances</code> and <code>POST /secure/cards/virtual</code> once their KYB is
approved.</li>
</ol>

<h2>4. Retry safely: Idempotency-Key</h2>
<p>Every POST that creates something or moves money takes an <code>Idempotency-Key</code> header.
Send a fresh key (a UUID is fine) with each new operation and the same key with its retries: a
retry gets the first answer again, marked <code>Idempotent-Replayed: true</code>, for 24 hours, and
nothing is created twice. Reusing a key for another request is 409
<code>IDEMPOTENCY_KEY_REUSED</code>; a retry while the first request still runs is 409
<code>IDEMPOTENCY_KEY_IN_PROGRESS</code> (wait and retry). With JWE, retry with the same
<code>Public-Key</code>: the stored answer is encrypted to it. A refused request (4xx) stores
nothing, so it can be corrected and retried under the same key.</p>

<h2>5. Read lists page by page</h2>
<p>Lists answer <code>{"items": [...], "nextCursor": "...", "hasMore": true}</code>. Pass
<code>nextCursor</code> back as <code>cursor</code> until <code>hasMore</code> is false;
<code>limit</code> is 1 to 200. Cursors are opaque: keep them as they are. Items created while you
page appear at the end; none is skipped or repeated.</p>
<pre>GET /secure/transactions?limit=100
GET /secure/transactions?limit=100&amp;cursor=WyJjYXJkLXRyYW5zYWN0aW9ucyIsWzEyXV0</pre>

<h2>6. Errors</h2>
<p>Every refusal is <code>{"code": "UPPER_SNAKE", "message": "..."}</code> with its status: 400 for
a malformed request, 401/403 for authentication and roles, 404 for ids that are not yours, 409 for
a state that does not allow the operation. A refused request changes nothing.</p>
</main></body></html>
"""
