"""The dashboard's figures from the rows the domain reads: pure functions, tested without a
database (tests/unit/test_panel_rules.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from antaca_api.panel.charts import Bar

decline_reasons_shown_max = 20
chart_hours = 24


@dataclass(frozen=True)
class Outcomes:
    approved: int  # answered by the engine
    declined: int
    stand_in: int  # answered by stand-in (approved or declined), the deadline having passed
    decline_reasons: list[tuple[str, int]]  # most frequent first

    @property
    def total(self) -> int:
        return self.approved + self.declined + self.stand_in

    @property
    def approval_rate_percent(self) -> int | None:
        """Approved (stand-in approvals included) out of all, rounded down; None without any."""
        return None if self.total == 0 else 100 * self.approved // self.total


def outcomes(rows: Iterable[Mapping]) -> Outcomes:
    """Count (decision, stand_in, reason, count) rows by outcome, and the declines by reason."""
    approved = declined = stand_in = 0
    reasons: dict[str, int] = {}
    for row in rows:
        count = int(row["count"])
        if row["stand_in"]:
            stand_in += count
        elif row["decision"] == "APPROVED":
            approved += count
        else:
            declined += count
        if row["decision"] == "DECLINED":
            reasons[row["reason"]] = reasons.get(row["reason"], 0) + count
    ranked = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
    return Outcomes(approved, declined, stand_in, ranked[:decline_reasons_shown_max])


def start_of_day(now: datetime) -> datetime:
    """Midnight of `now`'s day, in its own time zone (the service's clock is UTC)."""
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def hourly_bars(rows: Iterable[Mapping], now: datetime) -> list[Bar]:
    """One bar per hour of the last chart_hours (hours without authorizations are zero), each
    split into its approved part; every sixth hour labelled."""
    by_hour = {row["hour"]: row for row in rows}
    first = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=chart_hours - 1)
    bars = []
    for index in range(chart_hours):
        hour = first + timedelta(hours=index)
        row = by_hour.get(hour)
        label = hour.strftime("%H:00") if index % 6 == 0 else ""
        bars.append(Bar(label, int(row["count"]) if row else 0, int(row["approved"]) if row else 0))
    return bars
