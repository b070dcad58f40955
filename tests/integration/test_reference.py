"""The interactive reference: Swagger UI served by the service itself under a strict CSP, every
body's schema with an example, the idempotency header documented, a guide beside it; and a real
browser (Debian's chromium with chromium-driver, through Selenium) opening it and finding a
route's request schema."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest
from jsonschema import Draft202012Validator

from antaca_api import idempotency
from antaca_api.openapi import cached_document
from antaca_api.reference import ASSETS, CONTENT_SECURITY_POLICY
from antaca_api.routes import load_all
from antaca_api.routing import ROUTES


def document() -> dict:
    load_all()
    return json.loads(cached_document())


def test_every_body_has_an_example_that_fits_its_schema():
    doc = document()
    components = doc["components"]["schemas"]
    checked = 0
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            contents = [operation.get("requestBody", {}).get("content", {})]
            contents += [r.get("content", {}) for r in operation["responses"].values()]
            for content in contents:
                for media in content.values():
                    if "schema" not in media:
                        continue
                    assert "example" in media, (method, path)
                    schema = {**media["schema"], "$defs": components}
                    text = json.dumps(schema).replace("#/components/schemas/", "#/$defs/")
                    validator = Draft202012Validator(json.loads(text))
                    errors = list(validator.iter_errors(media["example"]))
                    # Patterns are met from a list of realistic candidates; the other rules always.
                    assert [e for e in errors if e.validator != "pattern"] == [], (method, path)
                    checked += 1
    assert checked > 100


def test_description_says_how_mutual_tls_jwe_and_idempotency_apply():
    doc = document()
    description = doc["info"]["description"]
    for words in ("mutual TLS", "client certificate", "JWE", "Public-Key", "Encrypted-Request",
                  "Idempotency-Key", "IDEMPOTENCY_KEY_REUSED", "nextCursor", "hasMore"):
        assert words in description
    for r in ROUTES:
        operation = doc["paths"][r.path][r.method.lower()]
        names = [p["name"] for p in operation["parameters"]]
        assert (idempotency.HEADER in names) == r.idempotent, r.path
        if r.idempotent:
            success = next(s for s in operation["responses"] if s.startswith("2"))
            assert idempotency.REPLAYED_HEADER in operation["responses"][success]["headers"]


async def test_reference_pages_are_served_from_the_service_alone(api):
    client = api.client()
    async with client.get(f"{api.http}/docs") as r:
        assert r.status == 200 and r.content_type == "text/html"
        assert r.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        page = await r.text()
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY
    assert "http:" not in page and "https:" not in page and "//" not in page
    for name in [*ASSETS, "antaca-reference.js", "antaca-reference.css"]:
        assert f"/docs/assets/{name}" in page or name == "antaca-reference.css"
        async with client.get(f"{api.http}/docs/assets/{name}") as r:
            assert r.status == 200 and len(await r.read()) > 100, name
    async with client.get(f"{api.http}/docs/assets/antaca-reference.js") as r:
        script = await r.text()
    assert '"/openapi.json"' in script and "validatorUrl: null" in script
    async with client.get(f"{api.http}/docs/guide") as r:
        assert r.status == 200 and r.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        guide = await r.text()
    for words in ("mutual TLS", "JWE", "Idempotency-Key", "nextCursor", 'href="/docs"'):
        assert words in guide


def _chromium_driver():
    """A headless Chromium through Selenium, or None with the reason it cannot run here."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        return None, ("chromium and chromium-driver are not installed "
                      "(apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None, "selenium is not installed (the test extra)"
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options), None


def _find_schema_in_browser(url: str) -> tuple[str, list[dict]]:
    """Open the reference at a route's deep link; the text of its expanded operation, and the
    browser's console messages."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as expected
    from selenium.webdriver.support.ui import WebDriverWait

    driver, reason = _chromium_driver()
    if driver is None:
        pytest.skip(reason)
    try:
        driver.get(url)
        wait = WebDriverWait(driver, 30)
        operation = "#operations-cards-post_secure_customers_by_customerId_cards_virtual"
        block = wait.until(expected.presence_of_element_located((By.CSS_SELECTOR, operation)))
        if "is-open" not in block.get_attribute("class"):
            block.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
        wait.until(lambda d: "balanceId" in d.find_element(By.CSS_SELECTOR, operation).text)
        # The schema view of the request body, not only its example.
        section = ".opblock-section-request-body"
        tabs = block.find_elements(By.CSS_SELECTOR,
                                   f"{section} .tab button, {section} [data-name='model']")
        for tab in tabs:
            if "Schema" in tab.text:
                tab.click()
        wait.until(lambda d: "NewVirtualCard" in d.find_element(By.CSS_SELECTOR, operation).text)
        return driver.find_element(By.CSS_SELECTOR, operation).text, driver.get_log("browser")
    finally:
        driver.quit()


async def test_a_browser_opens_the_reference_and_finds_a_route_schema(api):
    url = f"{api.http}/docs#/cards/post_secure_customers_by_customerId_cards_virtual"
    text, console = await asyncio.to_thread(_find_schema_in_browser, url)
    assert "NewVirtualCard" in text and "balanceId" in text and "programId" in text
    assert "Idempotency-Key" in text
    refused = [m for m in console if "Content Security Policy" in m.get("message", "")]
    assert refused == [], refused  # nothing the page needs was blocked, nothing came from elsewhere
