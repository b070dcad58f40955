"""Step-up on the customer channel: the application PIN and the short-lived proof it buys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from msgspec import Meta

from antaca_api import step_up
from antaca_api.routing import Channel, Context, Encryption, route
from antaca_api.schema import Body

AppPin = Annotated[str, Meta(min_length=4, max_length=12)]


class NewAppPin(Body):
    pin: AppPin
    current_pin: AppPin | None = None  # required to change an application PIN already set


class StepUp(Body):
    pin: AppPin


class StepUpProof(Body):
    step_up_token: str  # send it as the Step-Up-Token header
    expires_at: datetime
    header: str = step_up.STEP_UP_HEADER


@route("PUT", "/customers/me/app-pin", channel=Channel.CUSTOMER, body=NewAppPin,
       encryption=Encryption.REQUEST, tags=("step-up",),
       summary="Set (or, with the current one, change) the application PIN that confirms sensitive "
               "requests")
async def set_app_pin(ctx: Context, body: NewAppPin) -> None:
    await step_up.set_app_pin(ctx.services, ctx.customer.customer_id, body.pin, body.current_pin)


@route("POST", "/customers/me/step-up", channel=Channel.CUSTOMER, body=StepUp, response=StepUpProof,
       status=201, encryption=Encryption.REQUEST, tags=("step-up",),
       summary="Confirm with the application PIN: a step-up proof for full card data, CVV "
               "reset and PIN set, valid 5 minutes")
async def confirm(ctx: Context, body: StepUp) -> StepUpProof:
    proof = await step_up.step_up(ctx.services, ctx.customer.customer_id,
                                  ctx.customer.installation_id, body.pin)
    return StepUpProof(step_up_token=proof.token, expires_at=proof.expires_at)
