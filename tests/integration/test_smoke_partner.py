async def test_partner_registers_customer_over_mtls(api):
    partner_id, client = await api.partner()
    body = {"externalId": "u1", "firstName": "Ada", "lastName": "Lovelace", "email": "ada@example.com",
            "phone": "+48123456789", "birthDate": "1990-12-10",
            "address": {"line1": "Main 1", "city": "Warsaw", "postalCode": "00-001", "country": "PL"},
            "country": "PL"}
    async with client.post(f"{api.https}/secure/customers", json=body) as r:
        assert r.status == 201, await r.text()
        customer = await r.json()
    assert customer["kycStatus"] == "NOT_VERIFIED"
    async with api.client().post(f"{api.https}/secure/customers", json=body) as r:
        assert r.status == 401, await r.text()
