"""The administration panel in a real browser: Debian's headless Chromium driven by Selenium
against the real service and PostgreSQL. Skipped with the reason when chromium or
chromium-driver is missing (`.ci/run` installs them). Screenshots of each page go to a temporary
folder (ANTACA_PANEL_SCREENSHOTS to choose it), never into the repository."""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
import uuid
from pathlib import Path

import pytest

from antaca_api.routing import Role
from tests.api_harness import ADMIN_PASSWORD, bearer, register_customer
from tests.integration.test_authorizations import Payments
from tests.integration.test_panel import new_admin
from tests.integration.test_reference import _chromium_driver

SCREENSHOTS = Path(os.environ.get("ANTACA_PANEL_SCREENSHOTS")
                   or tempfile.mkdtemp(prefix="antaca-panel-screenshots-"))


@pytest.fixture(scope="module")
def jwe_key():
    from joserfc.jwk import RSAKey

    return RSAKey.generate_key(2048)


class Browser:
    """One headless Chromium at 1280x800; every Selenium call runs in a thread so that the
    service keeps answering on the event loop."""

    def __init__(self, api) -> None:
        self.api = api
        self.driver = None

    async def start(self) -> Browser:
        driver, reason = await asyncio.to_thread(_chromium_driver)
        if driver is None:
            pytest.skip(reason)
        self.driver = driver
        await self.run(driver.set_window_size, 1280, 800)
        return self

    async def run(self, func, *args):
        return await asyncio.to_thread(func, *args)

    async def open(self, path: str) -> None:
        await self.run(self.driver.get, f"{self.api.http}{path}")

    async def text(self, css: str) -> str:
        """The text of the element, once the page has one (a submitted form's answer loads)."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as expected
        from selenium.webdriver.support.ui import WebDriverWait

        def read():
            wait = WebDriverWait(self.driver, 10)
            return wait.until(expected.presence_of_element_located((By.CSS_SELECTOR, css))).text
        return await self.run(read)

    async def until_text(self, css: str, wanted: str) -> None:
        """Wait (a submitted form's answer loading) until the element reads `wanted`."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as expected
        from selenium.webdriver.support.ui import WebDriverWait

        def wait():
            WebDriverWait(self.driver, 10).until(
                expected.text_to_be_present_in_element((By.CSS_SELECTOR, css), wanted))
        await self.run(wait)

    async def exists(self, css: str) -> bool:
        from selenium.webdriver.common.by import By
        return bool(await self.run(self.driver.find_elements, By.CSS_SELECTOR, css))

    async def type(self, css: str, value: str) -> None:
        from selenium.webdriver.common.by import By

        def typing():
            element = self.driver.find_element(By.CSS_SELECTOR, css)
            element.clear()
            element.send_keys(value)
        await self.run(typing)

    async def click(self, css: str) -> None:
        from selenium.webdriver.common.by import By
        await self.run(lambda: self.driver.find_element(By.CSS_SELECTOR, css).click())

    async def select(self, css: str, value: str) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import Select
        await self.run(lambda: Select(self.driver.find_element(By.CSS_SELECTOR, css))
                       .select_by_value(value))

    async def visible(self, css: str) -> bool:
        from selenium.webdriver.common.by import By
        return await self.run(lambda: self.driver.find_element(By.CSS_SELECTOR, css)
                              .is_displayed())

    async def screenshot(self, name: str) -> None:
        await self.run(self.driver.save_screenshot, str(SCREENSHOTS / f"{name}.png"))

    async def sign_in(self, email: str) -> None:
        await self.open("/panel/sign-in")
        await self.type("#email", email)
        await self.type("#password", ADMIN_PASSWORD)
        await self.click("#sign-in")
        await self.until_text("#who", email)

    async def csp_refusals(self) -> list[dict]:
        console = await self.run(self.driver.get_log, "browser")
        return [m for m in console if "Content Security Policy" in m.get("message", "")]

    async def quit(self) -> None:
        if self.driver is not None:
            await self.run(self.driver.quit)


@pytest.fixture
async def browser(api):
    b = Browser(api)
    try:
        yield await b.start()
    finally:
        await b.quit()


async def test_sign_in_and_the_dashboard_figures_are_the_api_summaries(api, jwe_key, browser):
    p = await Payments().setup(api, jwe_key, user_funds=12_345, deposit=50_000)
    await p.authorize(amount=1_000)
    await p.authorize(amount=99_999_999)  # declined: not enough money
    await browser.sign_in(await new_admin(api))
    async with api.client().get(f"{api.http}/admin/summaries", headers=bearer(p.w.admin)) as r:
        (eur,) = [s for s in (await r.json())["items"] if s["currency"] == "EUR"]
    row = "#summaries tr[data-currency='EUR']"
    for field, value in (("users.posted", eur["users"]["posted"]),
                         ("users.available", eur["users"]["available"]),
                         ("partners.deposit.posted", eur["partners"]["deposit"]["posted"]),
                         ("partners.deposit.available", eur["partners"]["deposit"]["available"]),
                         ("wallet.available", eur["wallet"]["available"])):
        assert await browser.text(f"{row} td[data-field='{field}']") == str(value), field
    assert eur["users"]["available"] == 12_345 - 1_000
    assert await browser.text("#approved") == "1" and await browser.text("#declined") == "1"
    assert "INSUFFICIENT" in await browser.text("#decline-reasons")
    assert await browser.exists("svg.chart rect.bar-part")
    await browser.screenshot("dashboard")
    assert await browser.csp_refusals() == []
    # On a phone: nothing wider than the screen but the tables' own scrolling boxes.
    await browser.run(browser.driver.set_window_size, 390, 844)
    for path in ("/panel/", f"/panel/customers/{p.w.cid}", f"/panel/cards/{p.card['cardId']}"):
        await browser.open(path)
        overflow = await browser.run(browser.driver.execute_script,
                                     "return document.documentElement.scrollWidth - "
                                     "document.documentElement.clientWidth")
        assert overflow <= 0, (path, overflow)
    await browser.screenshot("phone-card")


async def test_a_manager_locks_a_card_with_a_reason_and_the_network_is_declined(
        api, jwe_key, browser):
    p = await Payments().setup(api, jwe_key)
    await browser.sign_in(await new_admin(api, Role.MANAGER))
    await browser.open("/panel/cards")
    expiry = p.card["expiry"]  # MM/YY
    await browser.type("#last-four", p.card["pan"][-4:])
    await browser.type("#expiry", expiry)
    await browser.click("#find-by-digits")
    await browser.click("#cards a")
    assert await browser.text("#card-state") == "ACTIVE"
    page = await browser.run(lambda: browser.driver.page_source)
    assert p.card["pan"] not in page  # the masked PAN only
    # Nor the CVC2 as a number of its own (three digits may occur inside an id).
    assert not re.search(rf"\b{p.card['cvc2']}\b", await browser.text("main"))
    # The script served by the panel shows the second confirmation for irreversible reasons only.
    await browser.select("#lock-reason-select", "3")
    assert not await browser.visible("#irreversible-box")
    await browser.select("#lock-reason-select", "2")
    assert await browser.visible("#irreversible-box")
    await browser.select("#lock-reason-select", "3")
    await browser.click("#lock-submit")
    assert "confirm" in await browser.text("#confirm-error")  # nothing changed without it
    await browser.select("#lock-reason-select", "3")
    await browser.click("#lock-confirm")
    await browser.click("#lock-submit")
    await browser.until_text("#card-state", "LOCKED")
    assert "PENDING_QUERY" in await browser.text("#lock-reason")
    assert "LOCKED" in await browser.text("#card-events")
    await browser.screenshot("card")
    answer = await p.authorize()
    assert answer["decision"] == "DECLINED" and answer["responseCode"] != "00"
    assert await browser.csp_refusals() == []


async def test_a_manual_kyc_approval(api, jwe_key, browser):
    admin = await api.admin_token()
    _, partner = await api.partner(admin)
    tag = uuid.uuid4().hex[:8]
    customer = await register_customer(api, partner, firstName="Ada", lastName=f"Byron{tag}")
    await browser.sign_in(await new_admin(api, Role.MANAGER))
    await browser.open("/panel/customers")
    await browser.type("input[name=name]", f"Byron{tag}")
    await browser.click("#search")
    await browser.click("#customers a")
    assert await browser.text("#kyc-status") != "VERIFIED"
    await browser.click("#decision-approve")
    await browser.click("#kyc-confirm")
    await browser.click("#kyc-submit")
    await browser.until_text("#kyc-status", "VERIFIED")
    assert "MANUAL_REVIEW" in await browser.text("#kyc-history")
    await browser.screenshot("customer")
    async with api.client().get(f"{api.http}/admin/customers/{customer['customerId']}",
                                headers=bearer(admin)) as r:
        assert (await r.json())["customer"]["kycStatus"] == "VERIFIED"


async def test_an_admin_previews_and_creates_a_fee_version(api, jwe_key, browser):
    p = await Payments().setup(api, jwe_key, user_funds=0, deposit=0)
    await browser.sign_in(await new_admin(api))
    await browser.open("/panel/programs")
    await browser.click(f"a[href='/panel/programs/{p.w.program['programId']}/fees']")
    await browser.type("#fee-schedule", '{"pos": {"fixed": 25, "percentBp": 150}}')
    await browser.type("#sample-amount", "10000")
    await browser.click("#fee-preview-button")
    await browser.until_text("#fee-preview tr[data-type='POS']", "POS 175 10175")
    await browser.click("#fee-confirm")
    await browser.click("#fee-publish")
    await browser.until_text("#fee-versions", '"fixed":25')
    versions = await browser.text("#fee-versions")
    assert "yes" in versions and "175" not in versions and '"fixed":25' in versions
    await browser.screenshot("fees")
    async with api.client().get(f"{api.http}/admin/programs/{p.w.program['programId']}/fees",
                                headers=bearer(p.w.admin)) as r:
        items = (await r.json())["items"]
    assert items[-1]["schedule"]["pos"] == {"fixed": 25, "percentBp": 150, "minimum": 0,
                                            "maximum": None}


async def test_an_employee_cannot_lock_a_card(api, jwe_key, browser):
    p = await Payments().setup(api, jwe_key, user_funds=0, deposit=0)
    await browser.sign_in(await new_admin(api, Role.EMPLOYEE))
    await browser.open(f"/panel/cards/{p.card['cardId']}")
    assert await browser.text("#card-state") == "ACTIVE"
    assert not await browser.exists("#lock-form")
    # A form made by hand, with the session's own token, is refused by the server all the same.
    await browser.run(browser.driver.execute_script, """
        const form = document.createElement("form");
        form.method = "post"; form.action = arguments[0];
        for (const [name, value] of [["reason", "3"], ["confirm", "yes"],
             ["csrf", document.querySelector("input[name=csrf]").value]]) {
          const input = document.createElement("input");
          input.type = "hidden"; input.name = name; input.value = value; form.appendChild(input);
        }
        document.body.appendChild(form); form.submit();""",
        f"/panel/cards/{p.card['cardId']}/lock")
    await browser.until_text("#error-code", "FORBIDDEN")
    await browser.open(f"/panel/cards/{p.card['cardId']}")
    assert await browser.text("#card-state") == "ACTIVE"


async def test_partner_staff_cannot_open_another_partners_customer(api, jwe_key, browser):
    admin = await api.admin_token()
    own_partner, own_client = await api.partner(admin)
    _, other_client = await api.partner(admin)
    own = await register_customer(api, own_client)
    other = await register_customer(api, other_client)
    await browser.sign_in(await new_admin(api, Role.MANAGER, own_partner))
    await browser.open(f"/panel/customers/{own['customerId']}")
    assert await browser.exists("#kyc-status")
    await browser.open(f"/panel/customers/{other['customerId']}")
    assert await browser.text("#error-code") == "NOT_FOUND"
    assert not await browser.exists("#kyc-status")
