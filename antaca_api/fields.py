"""Constrained field types shared by request bodies (they also shape the OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from antaca_api.countries import ALPHA_2
from antaca_auth.accounts import AMOUNT_MINOR_UNITS_MAX

Name = Annotated[str, Meta(min_length=1, max_length=100)]
Text = Annotated[str, Meta(min_length=1, max_length=200)]
Email = Annotated[str, Meta(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)]
Phone = Annotated[str, Meta(pattern=r"^\+?[0-9]{6,15}$")]
# One of the officially assigned ISO 3166-1 alpha-2 codes (antaca_api/countries.py), not just any
# two capital letters.
Country = Annotated[Literal[ALPHA_2], Meta(description="ISO 3166-1 alpha-2")]
Currency = Annotated[str, Meta(pattern=r"^[A-Z]{3}$", description="ISO 4217 alpha-3")]
ExternalId = Annotated[str, Meta(min_length=1, max_length=64)]
Reference = Annotated[str, Meta(min_length=1, max_length=64, description="idempotency reference")]
# Minor units of the currency; the ledger's bigint bound.
Amount = Annotated[int, Meta(gt=0, le=AMOUNT_MINOR_UNITS_MAX, description="integer minor units")]
