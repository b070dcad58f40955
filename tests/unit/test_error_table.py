"""docs/api.md's error table lists every code the service can answer, with its status, and no other:
the domain errors' statuses (DOMAIN_ERROR_STATUS), the HTTP layer's ApiErrors, and the error
middleware's HTTP_ERROR. A new error fails here until its row is written."""

from __future__ import annotations

import re
from pathlib import Path

from antaca_api import errors
from antaca_api.domain_errors import DomainError

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
ROW = re.compile(r"^\| (\d{3}|4xx) \| `([A-Z_]+)` \| .+ \|$")


def documented() -> set[tuple[str, str]]:
    """(status, code) of every row between the table's markers."""
    text = API_DOC.read_text()
    table = text[text.index("<!-- error-table:start -->"):text.index("<!-- error-table:end -->")]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "`" in line]
    parsed = [ROW.match(line) for line in rows]
    assert all(parsed), [line for line, match in zip(rows, parsed, strict=True) if not match]
    found = [(match.group(1), match.group(2)) for match in parsed]
    assert len(found) == len(set(found)), "a row is written twice"
    return set(found)


def subclasses(base: type) -> list[type]:
    found = []
    for cls in base.__subclasses__():
        found += [cls, *subclasses(cls)]
    return found


def answerable() -> set[tuple[str, str]]:
    """(status, code) of everything the service can answer."""
    codes = {(str(status), error.code) for error, status in errors.DOMAIN_ERROR_STATUS.items()}
    codes |= {(str(error.status), error.code) for error in subclasses(errors.ApiError)}
    codes.add(("4xx", errors.HTTP_ERROR_CODE))  # the middleware's answer to other HTTP errors
    return codes


def test_every_answerable_code_has_its_row_with_its_status():
    missing = answerable() - documented()
    assert missing == set(), f"add these (status, code) rows to docs/api.md: {sorted(missing)}"


def test_every_row_is_a_code_the_service_answers():
    stale = documented() - answerable()
    assert stale == set(), f"docs/api.md lists codes the service never answers: {sorted(stale)}"


def test_every_domain_error_has_a_status():
    # The table above is only complete if the status table is (the middleware would 500 otherwise).
    assert set(subclasses(DomainError)) <= set(errors.DOMAIN_ERROR_STATUS)
