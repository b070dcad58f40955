"""Rate limits, lockouts and Argon2id over the real HTTP channels (antaca_api/rate_limits.py,
antaca_api/passwords.py)."""

from __future__ import annotations

import uuid

import pytest

from antaca_api import rate_limits
from antaca_api.admins import Role, create_admin_user
from antaca_api.passwords import ARGON2_PREFIX, hash_scrypt
from antaca_api.routes import load_all
from antaca_api.routing import ROUTES
from tests.api_harness import pair_device, register_customer
from tests.integration.test_cards import World

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def jwe_key():
    from joserfc.jwk import RSAKey

    return RSAKey.generate_key(2048)


async def sign_in(api, email: str, password: str) -> tuple[int, dict, dict]:
    async with api.client().post(f"{api.http}/admin/sessions",
                                 json={"email": email, "password": password}) as r:
        return r.status, await r.json(), dict(r.headers)


async def new_admin(api) -> str:
    email = f"locked-{uuid.uuid4().hex[:8]}@antaca.test"
    async with api.services.pool.acquire() as conn:
        await create_admin_user(conn, email, PASSWORD, Role.ADMIN)
    return email


async def test_wrong_passwords_lock_the_account_and_the_lockout_is_audited(api):
    email = await new_admin(api)
    policy = rate_limits.ADMIN_SIGN_IN
    for _ in range(policy.failures_max):
        status, body, _ = await sign_in(api, email, "wrong password!")
        assert (status, body["code"]) == (401, "INVALID_CREDENTIALS")
    # Locked: the right password is refused too, with how long to wait.
    status, body, headers = await sign_in(api, email, PASSWORD)
    assert (status, body["code"]) == (429, "ACCOUNT_LOCKED")
    assert 0 < int(headers["Retry-After"]) <= policy.lock_seconds
    assert set(body) == {"code", "message", "requestId"}
    rows = await rate_limits.lockouts(api.services.pool, f"admin:{email}", 10)
    assert [(row["policy"], row["caller"]) for row in rows] == [(policy.name, "127.0.0.1")]
    assert rows[0]["locked_until"] > rows[0]["created_at"]
    # Another account from the same caller still signs in: the lock is the account's.
    other = await new_admin(api)
    status, _, _ = await sign_in(api, other, PASSWORD)
    assert status == 201
    # The lock ends: the right password works again (time moved past the lock).
    state = api.services.rate_limits.states[policy.name]
    state.locked_until[f"admin:{email}"] = 0.0
    status, _, _ = await sign_in(api, email, PASSWORD)
    assert status == 201


async def test_an_unknown_email_locks_like_a_known_one(api):
    email = f"nobody-{uuid.uuid4().hex[:8]}@antaca.test"
    for _ in range(rate_limits.ADMIN_SIGN_IN.failures_max):
        status, _, _ = await sign_in(api, email, "wrong password!")
        assert status == 401
    status, body, _ = await sign_in(api, email, "wrong password!")
    assert (status, body["code"]) == (429, "ACCOUNT_LOCKED")  # no way to tell who exists


async def test_too_many_sign_ins_per_account_answer_429_with_retry_after(api):
    email = await new_admin(api)
    policy = rate_limits.ADMIN_SIGN_IN
    for _ in range(policy.account_attempts_max):
        status, _, _ = await sign_in(api, email, PASSWORD)  # right ones: no lockout
        assert status == 201
    status, body, headers = await sign_in(api, email, PASSWORD)
    assert (status, body["code"]) == (429, "RATE_LIMITED")
    assert 1 <= int(headers["Retry-After"]) <= policy.window_seconds


async def test_too_many_attempts_per_caller_answer_429(api):
    policy = rate_limits.ADMIN_SIGN_IN
    statuses = []
    for index in range(policy.caller_attempts_max + 1):
        status, _, headers = await sign_in(api, f"spray-{index}@antaca.test", "wrong password!")
        statuses.append(status)
    assert statuses[:-1] == [401] * policy.caller_attempts_max
    assert statuses[-1] == 429 and int(headers["Retry-After"]) >= 1


async def test_customer_sessions_lock_the_installation_after_wrong_secrets(api):
    partner_id, partner = await api.partner()
    customer = await register_customer(api, partner, verified=True)
    pairing = await pair_device(api, partner, customer["customerId"])
    url = f"{api.http}/customers/sessions"
    wrong = {"installationId": pairing["installationId"], "installationSecret": "wrong"}
    for _ in range(rate_limits.CUSTOMER_SESSION.failures_max):
        async with api.client().post(url, json=wrong) as r:
            assert r.status == 401
    right = {**wrong, "installationSecret": pairing["installationSecret"]}
    async with api.client().post(url, json=right) as r:
        assert r.status == 429 and (await r.json())["code"] == "ACCOUNT_LOCKED"
        assert int(r.headers["Retry-After"]) > 0


async def test_wrong_pairing_codes_lock_the_caller(api):
    url = f"{api.http}/customers/devices/pair"
    for index in range(rate_limits.DEVICE_PAIRING.failures_max):
        async with api.client().post(url, json={"pairingCode": f"WRONG{index}",
                                                "deviceId": "d"}) as r:
            assert r.status == 401, await r.text()
    async with api.client().post(url, json={"pairingCode": "ANY", "deviceId": "d"}) as r:
        assert r.status == 429 and (await r.json())["code"] == "ACCOUNT_LOCKED"


async def test_an_scrypt_hash_is_upgraded_to_argon2id_on_the_next_sign_in(api):
    email = f"old-{uuid.uuid4().hex[:8]}@antaca.test"
    old_hash = hash_scrypt(PASSWORD, n=2**14)
    async with api.services.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO admin_users (id, email, password_hash, role) VALUES ($1, $2, $3, 'ADMIN')",
            uuid.uuid4(), email, old_hash)
    status, _, _ = await sign_in(api, email, "not the password")
    assert status == 401
    async with api.services.pool.acquire() as conn:
        stored = await conn.fetchval("SELECT password_hash FROM admin_users WHERE email = $1", email)
    assert stored == old_hash  # a failed sign-in upgrades nothing
    status, _, _ = await sign_in(api, email, PASSWORD)
    assert status == 201
    async with api.services.pool.acquire() as conn:
        stored = await conn.fetchval("SELECT password_hash FROM admin_users WHERE email = $1", email)
    assert stored.startswith(ARGON2_PREFIX + "v=19$m=65536,t=3,p=2$")
    status, _, _ = await sign_in(api, email, PASSWORD)  # and the new hash verifies
    assert status == 201


def test_every_limited_path_is_a_declared_route():
    load_all()
    declared = {(r.method, r.path) for r in ROUTES}
    assert set(rate_limits.POLICIES) <= declared


async def test_wrong_application_pins_end_in_a_lockout_of_the_step_up(api, jwe_key):
    w = await World().setup(api, jwe_key)
    policy = rate_limits.STEP_UP
    codes = [(await w.step_up("9999"))[1]["code"] for _ in range(policy.failures_max)]
    assert codes[0] == "INVALID_APP_PIN" and codes[-1] == "APP_PIN_LOCKED"
    status, body = await w.step_up()
    assert (status, body["code"]) == (429, "ACCOUNT_LOCKED")
    rows = await rate_limits.lockouts(api.services.pool, f"customer:{w.cid}", 10)
    assert [row["policy"] for row in rows] == [policy.name]


async def test_card_data_is_limited_per_customer(api, jwe_key):
    w = await World().setup(api, jwe_key)
    card = await w.virtual()
    status, proof = await w.step_up()
    assert status == 201
    headers = {**w.me, "Step-Up-Token": proof["stepUpToken"]}
    path = f"{api.http}/customers/me/cards/{card['cardId']}"
    # The step-up above counted on its own policy; card data has its own window.
    statuses = [(await w.jwe.request(w.app, "GET", path, headers=headers))[0]
                for _ in range(rate_limits.CARD_DATA.account_attempts_max)]
    assert statuses == [200] * rate_limits.CARD_DATA.account_attempts_max
    async with w.app.get(path, headers={**headers, "Encrypt-Response": "true",
                                        "Public-Key": w.jwe.public_header}) as r:
        assert r.status == 429 and (await r.json())["code"] == "RATE_LIMITED"
        assert 1 <= int(r.headers["Retry-After"]) <= rate_limits.CARD_DATA.window_seconds
