"""Abusive clients for bench.auth_bench's auth_under_abuse, run as their own process.

    python -m bench.abuse_load BASE_URL ADMIN_EMAIL SIGN_IN_ABUSERS JWE_ABUSERS

Until its standard input closes, it keeps SIGN_IN_ABUSERS clients signing in as ADMIN_EMAIL with
wrong passwords (`POST /admin/sessions`: a scrypt each) and JWE_ABUSERS clients sending encrypted
requests (`POST /customers/devices/pair` with a wrong pairing code, sealed to the key from
`GET /public-key`: an RSA decryption each, before the 401), each client back to back. Prints "ready"
once every client has started, then at the end one JSON object:
{"abuse_requests_per_s", "abuse_refused_share", "answers": {"path status": count}}; refused
is a 503 SERVICE_BUSY.
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
import time

import aiohttp
import uvloop

from tests.api_harness import JweClient


async def main(base: str, admin_email: str, sign_in_abusers: int, jwe_abusers: int) -> dict:
    answers: collections.Counter[tuple[str, int]] = collections.Counter()
    stop = asyncio.Event()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async with session.get(f"{base}/public-key") as r:
            sealer = JweClient((await r.json())["pem"])
        # One sealed body sent again and again: the server decrypts each, the client seals once.
        sealed = sealer.seal({"pairingCode": "WRONGCODE1", "deviceId": "abuser"})
        jwe_headers = {"Encrypted-Request": "true", "Public-Key": sealer.public_header}
        wrong_password = {"email": admin_email, "password": "not the password at all"}

        async def abuser(path: str, body: dict, headers: dict | None) -> None:
            while not stop.is_set():
                async with session.post(f"{base}{path}", json=body, headers=headers) as r:
                    await r.read()
                    answers[(path, r.status)] += 1

        clients = [
            abuser("/admin/sessions", wrong_password, None) for _ in range(sign_in_abusers)
        ] + [abuser("/customers/devices/pair", sealed, jwe_headers) for _ in range(jwe_abusers)]
        tasks = [asyncio.create_task(c) for c in clients]
        started = time.perf_counter()
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until stdin closes
        stop.set()
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    total = sum(answers.values())
    refused = sum(count for (_, status), count in answers.items() if status == 503)
    return {
        "abuse_requests_per_s": round(total / elapsed, 1),
        "abuse_refused_share": round(refused / max(total, 1), 4),
        "answers": {f"{path} {status}": n for (path, status), n in sorted(answers.items())},
    }


if __name__ == "__main__":
    base_url, email, sign_ins, jwes = sys.argv[1:5]
    print(json.dumps(uvloop.run(main(base_url, email, int(sign_ins), int(jwes)))))
