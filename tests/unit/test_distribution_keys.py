"""The engine's statements carry the distribution key (docs/scaling.md): every join between two
tables distributed by partner equates their partner_id, so that on Citus an authorization's card,
balance and deposit rows are read on one node. Inspects the SQL the engine runs, no database."""

from __future__ import annotations

import re
from pathlib import Path

from antaca_auth import engine

ROOT = Path(__file__).resolve().parents[2]

# Tables distributed by partner_id (docs/scaling.md, "Distribution keys").
DISTRIBUTED_BY_PARTNER = {"cards", "balances", "partner_accounts"}
# Small tables every node holds a copy of: joined freely.
REFERENCE = {"card_programs", "fee_schedules", "fx_rates", "networks", "network_certificates",
             "partners"}
# Hot-path tables that do not carry partner_id yet: their joins are keyed by their own id
# (docs/scaling.md, "What changes before distributing"). Adding partner_id to one of them must
# move it to DISTRIBUTED_BY_PARTNER (the schema test below fails until it does).
PARTNER_ID_PENDING = {"accounts", "transfers", "authorizations"}

JOIN = re.compile(r"JOIN\s+(?:LATERAL\s*\(.*?\)\s*)?(\w+)\s+(\w+)\s+ON\s+(.*?)"
                  r"(?=\n\s*(?:LEFT\s+|CROSS\s+)?JOIN|\n\s*WHERE|\n\s*ORDER|\n\s*ON CONFLICT|$)",
                  re.DOTALL | re.IGNORECASE)
FROM = re.compile(r"\bFROM\s+(\w+)\s+(\w+)\b")


def statements() -> dict[str, str]:
    """The engine's SQL: every module-level string constant that reads or writes a table."""
    return {name: value for name, value in vars(engine).items()
            if name.isupper() and isinstance(value, str)
            and re.search(r"\b(SELECT|UPDATE|INSERT)\b", value)}


def aliases(sql: str) -> dict[str, str]:
    found = {alias: table for table, alias in FROM.findall(sql)}
    found.update({alias: table for table, alias, _ in JOIN.findall(sql)})
    return found


def test_every_join_between_partner_distributed_tables_equates_partner_id():
    missing = []
    checked = 0
    for name, sql in statements().items():
        names = aliases(sql)
        for table, alias, condition in JOIN.findall(sql):
            if table not in DISTRIBUTED_BY_PARTNER:
                continue
            others = {a for a in re.findall(r"\b(\w+)\.\w+", condition) if a != alias}
            distributed = {a for a in others if names.get(a) in DISTRIBUTED_BY_PARTNER}
            for other in distributed:
                checked += 1
                pair = {f"{alias}.partner_id = {other}.partner_id",
                        f"{other}.partner_id = {alias}.partner_id"}
                if not any(p in " ".join(condition.split()) for p in pair):
                    missing.append(f"{name}: {table} {alias} joined to {names[other]} {other}")
    assert missing == []
    assert checked >= 2  # the card lookup joins the balance and the deposit by partner


def test_the_card_lookup_reads_card_balance_and_deposit_of_one_partner():
    sql = " ".join(engine.CARDS.split())
    assert "b.partner_id = c.partner_id" in sql
    assert "pa.partner_id = c.partner_id" in sql


def test_the_tables_the_engine_reads_are_all_classified():
    tables = set()
    for sql in statements().values():
        tables |= set(aliases(sql).values())
        tables |= set(re.findall(r"(?<!FOR )\b(?:UPDATE|INSERT INTO)\s+(\w+)", sql))
    tables.discard("unnest")
    unclassified = tables - DISTRIBUTED_BY_PARTNER - REFERENCE - PARTNER_ID_PENDING
    assert unclassified == set()


def test_pending_tables_are_exactly_the_hot_tables_without_partner_id():
    schema = "\n".join(path.read_text() for path in sorted((ROOT / "sql").glob("*.sql")))
    with_partner = set()
    for table, body in re.findall(r"CREATE TABLE (\w+) \((.*?)\n\);", schema, re.DOTALL):
        if re.search(r"^\s+partner_id\s", body, re.MULTILINE):
            with_partner.add(table)
    for table, column in re.findall(r"ALTER TABLE (\w+)\s+ADD COLUMN (?:IF NOT EXISTS )?(\w+)",
                                    schema):
        if column == "partner_id":
            with_partner.add(table)
    assert DISTRIBUTED_BY_PARTNER <= with_partner
    assert not PARTNER_ID_PENDING & with_partner
