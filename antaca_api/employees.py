"""Employees of corporations: the holders that corporate cards name (repository).

An employee record is the corporation's: a name, an e-mail (one record per e-mail within a
corporation, whatever its letter case) and an optional phone. A corporate card is issued to one
of them (antaca_api/cards.py checks the employee is the card's corporation's).
"""

from __future__ import annotations

import uuid

import asyncpg

from antaca_api import pages
from antaca_api.domain_errors import EmployeeExists, NotFound

EMPLOYEE_COLUMNS = "id, corporation_id, name, email, phone, created_at, seq"
INSERT_EMPLOYEE = f"""
    INSERT INTO corporation_employees (id, corporation_id, name, email, phone)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (corporation_id, lower(email)) DO NOTHING
    RETURNING {EMPLOYEE_COLUMNS}"""
CORPORATION_EMPLOYEES = f"""
    SELECT {EMPLOYEE_COLUMNS} FROM corporation_employees
    WHERE corporation_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"""
EMPLOYEE_PAGES = pages.Keyset("employees", tuple[int])  # (seq,)
EMPLOYEE_OF_CORPORATION = f"""
    SELECT {EMPLOYEE_COLUMNS} FROM corporation_employees WHERE id = $1 AND corporation_id = $2"""
EMPLOYEES_BY_ID = f"SELECT {EMPLOYEE_COLUMNS} FROM corporation_employees WHERE id = ANY($1::uuid[])"


async def add_employee(conn: asyncpg.Connection, corporation_id: uuid.UUID, *, name: str,
                       email: str, phone: str | None) -> asyncpg.Record:
    """Record an employee of a corporation the caller has checked; EmployeeExists for an e-mail
    the corporation already has."""
    row = await conn.fetchrow(INSERT_EMPLOYEE, uuid.uuid4(), corporation_id, name, email, phone)
    if row is None:
        raise EmployeeExists()
    return row


async def corporation_employees(conn: asyncpg.Connection, corporation_id: uuid.UUID,
                                page: pages.PageRequest) -> list[asyncpg.Record]:
    """A page of a corporation's employees (EMPLOYEE_PAGES), oldest first."""
    return await conn.fetch(CORPORATION_EMPLOYEES, corporation_id, page.after_key(0), page.fetch)


async def employee_of(conn: asyncpg.Connection, corporation_id: uuid.UUID,
                      employee_id: uuid.UUID) -> asyncpg.Record:
    """The corporation's employee; another corporation's, or an unknown one, is NOT_FOUND."""
    row = await conn.fetchrow(EMPLOYEE_OF_CORPORATION, employee_id, corporation_id)
    if row is None:
        raise NotFound("no such employee")
    return row


async def employees_by_id(conn: asyncpg.Connection,
                          employee_ids: list[uuid.UUID]) -> dict[uuid.UUID, asyncpg.Record]:
    """The employees named by cards the caller has already checked it may see, by id."""
    ids = [employee_id for employee_id in set(employee_ids) if employee_id is not None]
    if not ids:
        return {}
    return {row["id"]: row for row in await conn.fetch(EMPLOYEES_BY_ID, ids)}
