"""Where a webhook may go: `https` to a public address only (no server-side request forgery).

A target is checked when an endpoint is registered (its scheme, and the addresses its host has
then) and again at every delivery, by the resolver the delivery's connections use: the addresses
a connection is made to are the ones checked, so a name that resolves to a public address at
registration and to 127.0.0.1 later (DNS rebinding) is refused at that delivery.

Refused: loopback, private (RFC 1918, unique local), link-local (and so the cloud metadata
address 169.254.169.254), the metadata addresses of other clouds, shared (CGNAT), documentation,
multicast, reserved and unspecified addresses: anything that is not globally routable. The
development setting `ANTACA_WEBHOOK_ALLOW_PRIVATE_TARGETS` allows them and plain `http`, for a
receiver on the same machine (tests, a laptop); never set it in production.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver

from antaca_api.domain_errors import WebhookTargetRefused

URL_LENGTH_MAX = 2048
RESOLVE_TIMEOUT_SECONDS = 5.0

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud instance metadata services outside the link-local range.
METADATA_ADDRESSES = frozenset({
    ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
})


def address_refusal(address: IpAddress) -> str | None:
    """Why a webhook may not be delivered to `address` (None: it may)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES or address == ipaddress.ip_address("169.254.169.254"):
        return "a cloud metadata address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified or address.is_multicast or address.is_reserved:
        return "not a unicast address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "not a public address"
    return None


def check_url(url: str, *, allow_private: bool) -> tuple[str, int]:
    """The URL's (host, port) if its form is allowed; WebhookTargetRefused otherwise."""
    if len(url) > URL_LENGTH_MAX:
        raise WebhookTargetRefused(f"the URL is longer than {URL_LENGTH_MAX} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise WebhookTargetRefused("the URL is not valid") from None
    allowed_schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in allowed_schemes:
        raise WebhookTargetRefused("the URL must be https")
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise WebhookTargetRefused("the URL needs a host and no credentials")
    if parts.fragment:
        raise WebhookTargetRefused("the URL may not have a fragment")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def check_addresses(addresses: list[IpAddress], *, allow_private: bool) -> None:
    if allow_private:
        return
    for address in addresses:
        refusal = address_refusal(address)
        if refusal is not None:
            raise WebhookTargetRefused(f"the webhook host resolves to {refusal}")


def check_form(url: str, *, allow_private: bool) -> tuple[str, int, bool]:
    """(host, port, whether the host is an address) of an allowed URL; an address host is checked
    here (aiohttp connects to an address without asking the resolver)."""
    host, port = check_url(url, allow_private=allow_private)
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return host, port, False
    check_addresses([literal], allow_private=allow_private)
    return host, port, True


async def check_target(url: str, *, allow_private: bool) -> None:
    """Registration's check: the form, then every address the host has now. A name that does not
    resolve yet is accepted (the delivery checks what it resolves to then)."""
    host, port, literal = check_form(url, allow_private=allow_private)
    if literal:
        return
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
            infos = await asyncio.get_running_loop().getaddrinfo(host, port,
                                                                 type=socket.SOCK_STREAM)
    except (OSError, TimeoutError):
        return
    check_addresses([ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos],
                    allow_private=allow_private)


class CheckingResolver(AbstractResolver):
    """aiohttp's resolver, refusing every name that resolves to an address a webhook may not
    reach: the connection is made to the addresses checked here, never re-resolved."""

    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private
        self.inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[dict[str, Any]]:
        found = await self.inner.resolve(host, port, family)
        check_addresses([ipaddress.ip_address(entry["host"]) for entry in found],
                        allow_private=self.allow_private)
        return found

    async def close(self) -> None:
        await self.inner.close()
