"""Seed data and cases of the SOQL conformance corpus (tests/testing/test_soql_corpus.py).

The expected answers are written by hand from Salesforce's documented SOQL semantics (SOQL and
SOSL Reference: "Date Formats and Date Literals in WHERE", "Comparison Operators", "Query
Multi-Select Picklists", "ORDER BY", "COUNT() and COUNT(fieldName)", "GROUP BY", "HAVING",
"Relationship Queries", "Semi-Joins and Anti-Joins"), never from the emulator's output.

The clock is frozen at ``NOW`` = Wednesday 2024-05-15 12:00 UTC; users are in GMT and weeks
start on Sunday (en_US), so:

    TODAY 05-15   YESTERDAY 05-14   TOMORROW 05-16
    THIS_WEEK [05-12, 05-19)   LAST_WEEK [05-05, 05-12)   NEXT_WEEK [05-19, 05-26)
    THIS_MONTH May   LAST_MONTH April   NEXT_MONTH June
    THIS_QUARTER [04-01, 07-01)   LAST_QUARTER [01-01, 04-01)   NEXT_QUARTER [07-01, 10-01)
    LAST_N_DAYS:n [05-15 - n days, 05-16)  (includes today: LAST_N_DAYS:1 is yesterday+today)
    NEXT_N_DAYS:n [05-16, 05-16 + n days)  (starts tomorrow)
    N_DAYS_AGO:n  [05-15 - n days, +1 day)
    LAST_90_DAYS = LAST_N_DAYS:90 = [2024-02-15, 05-16)   NEXT_90_DAYS [05-16, 08-14)

A literal is a range [start, end): ``=`` in range, ``!=`` outside it, ``<`` before start,
``>`` at/after end, ``<=`` before end, ``>=`` at/after start.

Records are named by keys (``A1`` … accounts, ``C1`` … contacts, ``O1`` … opportunities, ``I1``
… invoices, ``U1``/``U2`` users); ``@KEY`` in a seed value is that record's id, ``{KEY}`` in a
SOQL statement its 18-character id and ``{KEY_15}`` its 15-character id.

Accounts (Owner: U1 Ada Lovelace, U2 Grace Hopper; CreatedDate in UTC)::

    key Name              Industry   Type               Revenue   Emp  Rating City      Owner
    A1  Acme              Banking    Customer - Direct  5000000.0  250 Hot    Paris     U1
    A2  Globex            Technology Prospect           2000000.0  100 Warm   Berlin    U2
    A3  Initech           Technology Customer - Direct   750000.0   40 Cold   paris     U1
    A4  Umbrella          Healthcare Partner            -         5000 Hot    -         U2
    A5  Hooli             -          -                   120000.0    - -      Palo Alto U1
    A6  Stark Industries  Banking    Customer - Channel 9000000.0 1200 Warm   New York  U2
    A7  wayne enterprises Banking    Customer - Direct  3000000.0  800 Cold   Gotham    U1
    A8  Zeta Retail       Retail     Prospect             50000.0   10 Hot    -         U1
    AX  Doomed            Media      (deleted by the fixture before any query)

    key CreatedDate          Parent
    A1  2024-05-15 08:00:00  -
    A2  2024-05-14 23:30:00  A1
    A3  2024-05-12 00:00:00  A1
    A4  2024-05-08 10:00:00  -
    A5  2024-04-20 09:15:00  -
    A6  2024-02-10 12:00:00  -
    A7  2023-11-03 15:45:00  -
    A8  2024-05-15 23:59:59  -
    AX  2024-05-15 10:00:00  -

Contacts (C2 ReportsTo C1)::

    key First Last   Account Birthdate  OptedOut DoNotCall LeadSource    Owner CreatedDate
    C1  Ann   Smith  A1      1990-03-01 false    true      Web           U1    03-01 09:00
    C2  Bob   jones  A1      1985-12-24 true     false     Phone Inquiry U2    03-01 10:00
    C3  Cara  Diaz   A2      -          false    false     Web           U2    03-01 11:30
    C4  -     Evans  A3      2000-02-29 false    true      -             U1    02-29 12:00
    C5  Dan   Brown  A6      1970-01-01 false    false     Other         U1    2023-12-31 23:00
    C6  Eve   Orphan -       -          false    false     -             U2    05-15 11:00

Opportunities::

    key Name          Account Stage          CloseDate   Amount   Prob  Closed Won Owner
    O1  Acme Renewal  A1      Closed Won     2024-05-15   1000.0  100   true   true  U1
    O2  Acme Upsell   A1      Prospecting    2024-05-16   2500.5   10   false  false U1
    O3  Globex Deal   A2      Negotiation    2024-05-14   4000.0   70   false  false U2
    O4  Initech Pilot A3      Closed Lost    2024-04-30   -         0   true   false U1
    O5  Stark Armor   A6      Proposal       2024-06-10  12000.0   50   false  false U2
    O6  Stark Jets    A6      Qualification  2024-05-25    500.0   20   false  false U2
    O7  Bob's Deal    -       Prospecting    2024-07-01    300.0   10   false  false U1

Invoices (custom object Invoice__c; Account__c → Account, child relationship Invoices__r)::

    key Name     Account Amount__c Tags__c          Paid__c Units__c Due__c
    I1  INV-001  A1      100.0     Red;Blue         true    3        2024-05-01
    I2  INV-002  A1      250.0     Blue             false   5        2024-06-01
    I3  INV-003  A2       75.5     Green;Red;Blue   true    1        2024-05-20
    I4  INV-004  -        10.0     Green            false   -        -
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

NOW = dt.datetime(2024, 5, 15, 12, 0, tzinfo=dt.UTC)
V = "/services/data/v62.0"


def _ts(text: str) -> str:
    """``"2024-05-15 08:00:00"`` → the REST API's form ``2024-05-15T08:00:00.000+0000``."""
    return text.replace(" ", "T") + ".000+0000"


# --------------------------------------------------------------------------------------------
# seed data: key → (sObject, seeded values); "@KEY" is the id of record KEY

SEED: dict[str, tuple[str, dict[str, Any]]] = {
    "U1": (
        "User",
        {
            "Username": "ada@corpus.test",
            "FirstName": "Ada",
            "LastName": "Lovelace",
            "Email": "ada@corpus.test",
            "Title": "Countess",
        },
    ),
    "U2": (
        "User",
        {
            "Username": "grace@corpus.test",
            "FirstName": "Grace",
            "LastName": "Hopper",
            "Email": "grace@corpus.test",
            "ManagerId": "@U1",
        },
    ),
    "A1": (
        "Account",
        {
            "Name": "Acme",
            "Industry": "Banking",
            "Type": "Customer - Direct",
            "AnnualRevenue": 5000000.0,
            "NumberOfEmployees": 250,
            "Rating": "Hot",
            "BillingCity": "Paris",
            "OwnerId": "@U1",
            "CreatedDate": _ts("2024-05-15 08:00:00"),
        },
    ),
    "A2": (
        "Account",
        {
            "Name": "Globex",
            "Industry": "Technology",
            "Type": "Prospect",
            "AnnualRevenue": 2000000.0,
            "NumberOfEmployees": 100,
            "Rating": "Warm",
            "BillingCity": "Berlin",
            "OwnerId": "@U2",
            "CreatedDate": _ts("2024-05-14 23:30:00"),
            "ParentId": "@A1",
        },
    ),
    "A3": (
        "Account",
        {
            "Name": "Initech",
            "Industry": "Technology",
            "Type": "Customer - Direct",
            "AnnualRevenue": 750000.0,
            "NumberOfEmployees": 40,
            "Rating": "Cold",
            "BillingCity": "paris",
            "OwnerId": "@U1",
            "CreatedDate": _ts("2024-05-12 00:00:00"),
            "ParentId": "@A1",
        },
    ),
    "A4": (
        "Account",
        {
            "Name": "Umbrella",
            "Industry": "Healthcare",
            "Type": "Partner",
            "NumberOfEmployees": 5000,
            "Rating": "Hot",
            "OwnerId": "@U2",
            "CreatedDate": _ts("2024-05-08 10:00:00"),
        },
    ),
    "A5": (
        "Account",
        {
            "Name": "Hooli",
            "AnnualRevenue": 120000.0,
            "BillingCity": "Palo Alto",
            "OwnerId": "@U1",
            "CreatedDate": _ts("2024-04-20 09:15:00"),
        },
    ),
    "A6": (
        "Account",
        {
            "Name": "Stark Industries",
            "Industry": "Banking",
            "Type": "Customer - Channel",
            "AnnualRevenue": 9000000.0,
            "NumberOfEmployees": 1200,
            "Rating": "Warm",
            "BillingCity": "New York",
            "OwnerId": "@U2",
            "CreatedDate": _ts("2024-02-10 12:00:00"),
        },
    ),
    "A7": (
        "Account",
        {
            "Name": "wayne enterprises",
            "Industry": "Banking",
            "Type": "Customer - Direct",
            "AnnualRevenue": 3000000.0,
            "NumberOfEmployees": 800,
            "Rating": "Cold",
            "BillingCity": "Gotham",
            "OwnerId": "@U1",
            "CreatedDate": _ts("2023-11-03 15:45:00"),
        },
    ),
    "A8": (
        "Account",
        {
            "Name": "Zeta Retail",
            "Industry": "Retail",
            "Type": "Prospect",
            "AnnualRevenue": 50000.0,
            "NumberOfEmployees": 10,
            "Rating": "Hot",
            "OwnerId": "@U1",
            "CreatedDate": _ts("2024-05-15 23:59:59"),
        },
    ),
    "AX": (
        "Account",
        {
            "Name": "Doomed",
            "Industry": "Media",
            "OwnerId": "@U1",
            "CreatedDate": _ts("2024-05-15 10:00:00"),
        },
    ),
    "C1": (
        "Contact",
        {
            "FirstName": "Ann",
            "LastName": "Smith",
            "AccountId": "@A1",
            "Title": "CEO",
            "Email": "ann@acme.test",
            "Birthdate": "1990-03-01",
            "HasOptedOutOfEmail": False,
            "DoNotCall": True,
            "LeadSource": "Web",
            "OwnerId": "@U1",
            "CreatedDate": _ts("2024-03-01 09:00:00"),
        },
    ),
    "C2": (
        "Contact",
        {
            "FirstName": "Bob",
            "LastName": "jones",
            "AccountId": "@A1",
            "Email": "bob@acme.test",
            "Birthdate": "1985-12-24",
            "HasOptedOutOfEmail": True,
            "DoNotCall": False,
            "LeadSource": "Phone Inquiry",
            "OwnerId": "@U2",
            "CreatedDate": _ts("2024-03-01 10:00:00"),
            "ReportsToId": "@C1",
        },
    ),
    "C3": (
        "Contact",
        {
            "FirstName": "Cara",
            "LastName": "Diaz",
            "AccountId": "@A2",
            "Email": "cara@globex.test",
            "HasOptedOutOfEmail": False,
            "DoNotCall": False,
            "LeadSource": "Web",
            "OwnerId": "@U2",
            "CreatedDate": _ts("2024-03-01 11:30:00"),
        },
    ),
    "C4": (
        "Contact",
        {
            "LastName": "Evans",
            "AccountId": "@A3",
            "Birthdate": "2000-02-29",
            "HasOptedOutOfEmail": False,
            "DoNotCall": True,
            "OwnerId": "@U1",
            "CreatedDate": _ts("2024-02-29 12:00:00"),
        },
    ),
    "C5": (
        "Contact",
        {
            "FirstName": "Dan",
            "LastName": "Brown",
            "AccountId": "@A6",
            "Email": "dan@stark.test",
            "Birthdate": "1970-01-01",
            "HasOptedOutOfEmail": False,
            "DoNotCall": False,
            "LeadSource": "Other",
            "OwnerId": "@U1",
            "CreatedDate": _ts("2023-12-31 23:00:00"),
        },
    ),
    "C6": (
        "Contact",
        {
            "FirstName": "Eve",
            "LastName": "Orphan",
            "HasOptedOutOfEmail": False,
            "DoNotCall": False,
            "OwnerId": "@U2",
            "CreatedDate": _ts("2024-05-15 11:00:00"),
        },
    ),
    "O1": (
        "Opportunity",
        {
            "Name": "Acme Renewal",
            "AccountId": "@A1",
            "StageName": "Closed Won",
            "CloseDate": "2024-05-15",
            "Amount": 1000.0,
            "Probability": 100.0,
            "Type": "Existing Business",
            "OwnerId": "@U1",
            "CreatedDate": _ts("2024-01-10 00:00:00"),
        },
    ),
    "O2": (
        "Opportunity",
        {
            "Name": "Acme Upsell",
            "AccountId": "@A1",
            "StageName": "Prospecting",
            "CloseDate": "2024-05-16",
            "Amount": 2500.5,
            "Probability": 10.0,
            "Type": "New Business",
            "OwnerId": "@U1",
            "CreatedDate": _ts("2024-01-10 00:00:00"),
        },
    ),
    "O3": (
        "Opportunity",
        {
            "Name": "Globex Deal",
            "AccountId": "@A2",
            "StageName": "Negotiation",
            "CloseDate": "2024-05-14",
            "Amount": 4000.0,
            "Probability": 70.0,
            "Type": "New Business",
            "OwnerId": "@U2",
            "CreatedDate": _ts("2024-01-10 00:00:00"),
        },
    ),
    "O4": (
        "Opportunity",
        {
            "Name": "Initech Pilot",
            "AccountId": "@A3",
            "StageName": "Closed Lost",
            "CloseDate": "2024-04-30",
            "Probability": 0.0,
            "OwnerId": "@U1",
            "CreatedDate": _ts("2024-01-10 00:00:00"),
        },
    ),
    "O5": (
        "Opportunity",
        {
            "Name": "Stark Armor",
            "AccountId": "@A6",
            "StageName": "Proposal",
            "CloseDate": "2024-06-10",
            "Amount": 12000.0,
            "Probability": 50.0,
            "Type": "New Business",
            "OwnerId": "@U2",
            "CreatedDate": _ts("2024-01-10 00:00:00"),
        },
    ),
    "O6": (
        "Opportunity",
        {
            "Name": "Stark Jets",
            "AccountId": "@A6",
            "StageName": "Qualification",
            "CloseDate": "2024-05-25",
            "Amount": 500.0,
            "Probability": 20.0,
            "Type": "Existing Business",
            "OwnerId": "@U2",
            "CreatedDate": _ts("2024-01-10 00:00:00"),
        },
    ),
    "O7": (
        "Opportunity",
        {
            "Name": "Bob's Deal",
            "StageName": "Prospecting",
            "CloseDate": "2024-07-01",
            "Amount": 300.0,
            "Probability": 10.0,
            "OwnerId": "@U1",
            "CreatedDate": _ts("2024-01-10 00:00:00"),
        },
    ),
    "I1": (
        "Invoice__c",
        {
            "Name": "INV-001",
            "Account__c": "@A1",
            "Amount__c": 100.0,
            "Tags__c": "Red;Blue",
            "Paid__c": True,
            "Units__c": 3,
            "Due__c": "2024-05-01",
            "OwnerId": "@U1",
            "CreatedDate": _ts("2024-05-01 00:00:00"),
        },
    ),
    "I2": (
        "Invoice__c",
        {
            "Name": "INV-002",
            "Account__c": "@A1",
            "Amount__c": 250.0,
            "Tags__c": "Blue",
            "Paid__c": False,
            "Units__c": 5,
            "Due__c": "2024-06-01",
            "OwnerId": "@U1",
            "CreatedDate": _ts("2024-05-01 00:00:00"),
        },
    ),
    "I3": (
        "Invoice__c",
        {
            "Name": "INV-003",
            "Account__c": "@A2",
            "Amount__c": 75.5,
            "Tags__c": "Green;Red;Blue",
            "Paid__c": True,
            "Units__c": 1,
            "Due__c": "2024-05-20",
            "OwnerId": "@U1",
            "CreatedDate": _ts("2024-05-01 00:00:00"),
        },
    ),
    "I4": (
        "Invoice__c",
        {
            "Name": "INV-004",
            "Amount__c": 10.0,
            "Tags__c": "Green",
            "Paid__c": False,
            "OwnerId": "@U1",
            "CreatedDate": _ts("2024-05-01 00:00:00"),
        },
    ),
}

#: Values Salesforce computes (Name of people, IsClosed/IsWon of opportunities).
DERIVED: dict[str, dict[str, Any]] = {
    "U1": {"Name": "Ada Lovelace"},
    "U2": {"Name": "Grace Hopper"},
    "C1": {"Name": "Ann Smith"},
    "C2": {"Name": "Bob jones"},
    "C3": {"Name": "Cara Diaz"},
    "C4": {"Name": "Evans"},
    "C5": {"Name": "Dan Brown"},
    "C6": {"Name": "Eve Orphan"},
    "O1": {"IsClosed": True, "IsWon": True},
    "O2": {"IsClosed": False, "IsWon": False},
    "O3": {"IsClosed": False, "IsWon": False},
    "O4": {"IsClosed": True, "IsWon": False},
    "O5": {"IsClosed": False, "IsWon": False},
    "O6": {"IsClosed": False, "IsWon": False},
    "O7": {"IsClosed": False, "IsWon": False},
}

#: Records the fixture deletes (HTTP DELETE) before any query.
DELETED = ("AX",)

#: (sObject, relationship name) → (lookup field, parent sObject).
RELATIONSHIPS: dict[tuple[str, str], tuple[str, str]] = {
    ("Account", "Owner"): ("OwnerId", "User"),
    ("Account", "Parent"): ("ParentId", "Account"),
    ("Contact", "Account"): ("AccountId", "Account"),
    ("Contact", "Owner"): ("OwnerId", "User"),
    ("Contact", "ReportsTo"): ("ReportsToId", "Contact"),
    ("Opportunity", "Account"): ("AccountId", "Account"),
    ("Opportunity", "Owner"): ("OwnerId", "User"),
    ("Invoice__c", "Account__r"): ("Account__c", "Account"),
    ("Invoice__c", "Owner"): ("OwnerId", "User"),
    ("User", "Manager"): ("ManagerId", "User"),
}


# --------------------------------------------------------------------------------------------
# building expected answers


class World:
    """Ids of the seeded records, and projection of their hand-written values."""

    def __init__(self, ids: dict[str, str]) -> None:
        self.ids = ids
        self.keys = {record_id: key for key, record_id in ids.items()}
        self.placeholders = {**ids, **{f"{k}_15": v[:15] for k, v in ids.items()}}

    def sobject(self, key: str) -> str:
        return SEED[key][0]

    def value(self, key: str, name: str) -> Any:
        if name == "Id":
            return self.ids[key]
        if name == "IsDeleted":
            return key in DELETED
        if name in DERIVED.get(key, {}):
            return DERIVED[key][name]
        raw = SEED[key][1].get(name)
        if isinstance(raw, str) and raw.startswith("@"):
            return self.ids[raw[1:]]
        return raw

    def attributes(self, key: str) -> dict[str, str]:
        sobject = self.sobject(key)
        return {"type": sobject, "url": f"{V}/sobjects/{sobject}/{self.ids[key]}"}

    def project(self, key: str, items: tuple[Any, ...]) -> dict[str, Any]:
        """The record ``key`` as a query returns it when ``items`` are selected."""
        record: dict[str, Any] = {"attributes": self.attributes(key)}
        for item in items:
            if isinstance(item, Sub):
                record[item.relationship] = item.build(self)
            else:
                self._put(record, key, item.split("."))
        return record

    def _put(self, record: dict[str, Any], key: str, path: list[str]) -> None:
        if len(path) == 1:
            record[path[0]] = self.value(key, path[0])
            return
        relationship = path[0]
        lookup, _parent = RELATIONSHIPS[(self.sobject(key), relationship)]
        parent_id = self.value(key, lookup)
        if parent_id is None:
            record.setdefault(relationship, None)
            return
        parent_key = self.keys[parent_id]
        nested = record.get(relationship)
        if nested is None:
            nested = record[relationship] = {"attributes": self.attributes(parent_key)}
        self._put(nested, parent_key, path[1:])


@dataclass(frozen=True)
class Sub:
    """A child subquery's expected value: the children ``keys`` (in order) projected."""

    relationship: str
    keys: tuple[str, ...]
    fields: tuple[Any, ...]

    def build(self, world: World) -> dict[str, Any] | None:
        if not self.keys:
            return None
        records = [world.project(k, self.fields) for k in self.keys]
        return {"totalSize": len(records), "done": True, "records": records}


def sub(relationship: str, keys: str, *fields: Any) -> Sub:
    """``sub("Contacts", "C2 C1", "LastName")``: the children C2, C1 with LastName."""
    return Sub(relationship, tuple(keys.split()), fields)


Expect = Callable[[World], dict[str, Any]]


def rows(keys: str, *fields: Any) -> Expect:
    """The records ``keys`` (space-separated, in order) with ``fields`` selected."""

    def build(world: World) -> dict[str, Any]:
        records = [world.project(k, fields) for k in keys.split()]
        return {"totalSize": len(records), "done": True, "records": records}

    return build


def nest(relationship: str, parents: str, *child_fields: Any) -> Expect:
    """Parents with Name and one child subquery: ``"A1:C2,C1 A5:"`` (A5 has no children)."""

    def build(world: World) -> dict[str, Any]:
        records = []
        for pair in parents.split():
            parent, _, children = pair.partition(":")
            child = sub(relationship, children.replace(",", " "), *child_fields)
            records.append(world.project(parent, ("Name", child)))
        return {"totalSize": len(records), "done": True, "records": records}

    return build


def empty() -> Expect:
    return lambda world: {"totalSize": 0, "done": True, "records": []}


def count(n: int) -> Expect:
    """The answer of ``SELECT COUNT() …``: the count in totalSize, no records."""
    return lambda world: {"totalSize": n, "done": True, "records": []}


def aggs(*records: dict[str, Any]) -> Expect:
    """AggregateResult records; a value ``"@KEY"`` is that record's id."""

    def build(world: World) -> dict[str, Any]:
        built = [
            {
                "attributes": {"type": "AggregateResult"},
                **{
                    name: (
                        world.ids[value[1:]]
                        if isinstance(value, str) and value.startswith("@")
                        else value
                    )
                    for name, value in record.items()
                },
            }
            for record in records
        ]
        return {"totalSize": len(built), "done": True, "records": built}

    return build


def agg(**values: Any) -> dict[str, Any]:
    return values


@dataclass(frozen=True)
class Case:
    """One corpus statement: its expected body, or the errorCode of its 400 answer."""

    id: str
    soql: str
    expect: Expect | str
    endpoint: str = "query"
    ordered: bool | None = None  # None: ordered when the outer query has ORDER BY
    notes: str = field(default="", compare=False)


MALFORMED = "MALFORMED_QUERY"
INVALID_FIELD = "INVALID_FIELD"
INVALID_TYPE = "INVALID_TYPE"
UNSUPPORTED = "EMULATOR_UNSUPPORTED"

ALL_BY_NAME = "A1 A2 A5 A3 A6 A4 A7 A8"  # Acme Globex Hooli Initech Stark Umbrella wayne Zeta


def _acc(keys: str) -> Expect:
    """Accounts ``keys`` (already in Name order) with Name selected."""
    return rows(keys, "Name")


def _opp(keys: str) -> Expect:
    return rows(keys, "Name")


def _con(keys: str) -> Expect:
    return rows(keys, "LastName")


def _acc_where(where: str) -> str:
    return f"SELECT Name FROM Account WHERE {where} ORDER BY Name"


def _opp_where(where: str) -> str:
    return f"SELECT Name FROM Opportunity WHERE {where} ORDER BY Name"


def _con_where(where: str) -> str:
    return f"SELECT LastName FROM Contact WHERE {where} ORDER BY LastName"


def _inv_where(where: str) -> str:
    return f"SELECT Name FROM Invoice__c WHERE {where} ORDER BY Name"


CASES: list[Case] = [
    # ---------------------------------------------------------------- COUNT()
    Case("count_all", "SELECT COUNT() FROM Account", count(8)),
    Case("count_lowercase", "select count() from account", count(8)),
    Case("count_where", "SELECT COUNT() FROM Account WHERE Industry = 'Banking'", count(3)),
    Case("count_where_none", "SELECT COUNT() FROM Account WHERE Name = 'Nobody'", count(0)),
    Case("count_limit", "SELECT COUNT() FROM Account LIMIT 5", count(5)),
    Case("count_limit_above", "SELECT COUNT() FROM Account LIMIT 100", count(8)),
    Case(
        "count_where_limit",
        "SELECT COUNT() FROM Account WHERE Industry = 'Banking' LIMIT 2",
        count(2),
    ),
    Case(
        "count_relationship_where",
        "SELECT COUNT() FROM Contact WHERE Account.Industry = 'Banking'",
        count(3),
    ),
    Case(
        "count_date_literal",
        "SELECT COUNT() FROM Account WHERE CreatedDate = THIS_MONTH",
        count(5),
    ),
    Case("count_custom_object", "SELECT COUNT() FROM Invoice__c WHERE Paid__c = true", count(2)),
    # ---------------------------------------------------------------- date literals, datetime
    Case("created_today", "SELECT Id FROM Account WHERE CreatedDate = TODAY", rows("A1 A8", "Id")),
    Case("created_yesterday", _acc_where("CreatedDate = YESTERDAY"), _acc("A2")),
    Case("created_tomorrow", _acc_where("CreatedDate = TOMORROW"), empty()),
    Case("created_gt_yesterday", _acc_where("CreatedDate > YESTERDAY"), _acc("A1 A8")),
    Case("created_lt_yesterday", _acc_where("CreatedDate < YESTERDAY"), _acc("A5 A3 A6 A4 A7")),
    Case(
        "created_le_yesterday", _acc_where("CreatedDate <= YESTERDAY"), _acc("A2 A5 A3 A6 A4 A7")
    ),
    Case("created_ge_yesterday", _acc_where("CreatedDate >= YESTERDAY"), _acc("A1 A2 A8")),
    Case("created_ne_today", _acc_where("CreatedDate != TODAY"), _acc("A2 A5 A3 A6 A4 A7")),
    Case("created_lt_today", _acc_where("CreatedDate < TODAY"), _acc("A2 A5 A3 A6 A4 A7")),
    Case("created_gt_today", _acc_where("CreatedDate > TODAY"), empty()),
    Case("created_last_n_days_2", _acc_where("CreatedDate = LAST_N_DAYS:2"), _acc("A1 A2 A8")),
    Case("created_last_n_days_3", _acc_where("CreatedDate = LAST_N_DAYS:3"), _acc("A1 A2 A3 A8")),
    Case(
        "created_last_n_days_7",
        _acc_where("CreatedDate = LAST_N_DAYS:7"),
        _acc("A1 A2 A3 A4 A8"),
    ),
    Case("created_lt_last_n_days_30", _acc_where("CreatedDate < LAST_N_DAYS:30"), _acc("A6 A7")),
    Case("created_n_days_ago_1", _acc_where("CreatedDate = N_DAYS_AGO:1"), _acc("A2")),
    Case("created_n_days_ago_3", _acc_where("CreatedDate = N_DAYS_AGO:3"), _acc("A3")),
    Case("created_n_days_ago_7", _acc_where("CreatedDate = N_DAYS_AGO:7"), _acc("A4")),
    Case("created_this_week", _acc_where("CreatedDate = THIS_WEEK"), _acc("A1 A2 A3 A8")),
    Case("created_last_week", _acc_where("CreatedDate = LAST_WEEK"), _acc("A4")),
    Case("created_lt_this_week", _acc_where("CreatedDate < THIS_WEEK"), _acc("A5 A6 A4 A7")),
    Case("created_this_month", _acc_where("CreatedDate = THIS_MONTH"), _acc("A1 A2 A3 A4 A8")),
    Case("created_last_month", _acc_where("CreatedDate = LAST_MONTH"), _acc("A5")),
    Case("created_gt_last_month", _acc_where("CreatedDate > LAST_MONTH"), _acc("A1 A2 A3 A4 A8")),
    Case("created_next_month", _acc_where("CreatedDate = NEXT_MONTH"), empty()),
    Case(
        "created_this_quarter",
        _acc_where("CreatedDate = THIS_QUARTER"),
        _acc("A1 A2 A5 A3 A4 A8"),
    ),
    Case("created_last_quarter", _acc_where("CreatedDate = LAST_QUARTER"), _acc("A6")),
    Case("created_this_year", _acc_where("CreatedDate = THIS_YEAR"), _acc("A1 A2 A5 A3 A6 A4 A8")),
    Case("created_last_year", _acc_where("CreatedDate = LAST_YEAR"), _acc("A7")),
    Case("created_lt_this_year", _acc_where("CreatedDate < THIS_YEAR"), _acc("A7")),
    Case(
        "created_last_90_days",
        _acc_where("CreatedDate = LAST_90_DAYS"),
        _acc("A1 A2 A5 A3 A4 A8"),
    ),
    Case(
        "created_last_n_days_90",
        _acc_where("CreatedDate = LAST_N_DAYS:90"),
        _acc("A1 A2 A5 A3 A4 A8"),
    ),
    Case(
        "created_this_month_and_not_today",
        _acc_where("CreatedDate = THIS_MONTH AND CreatedDate != TODAY"),
        _acc("A2 A3 A4"),
    ),
    Case("datetime_eq_z", _acc_where("CreatedDate = 2024-05-15T08:00:00Z"), _acc("A1")),
    Case(
        "datetime_eq_plus_offset",
        _acc_where("CreatedDate = 2024-05-15T09:00:00+01:00"),
        _acc("A1"),
    ),
    Case(
        "datetime_eq_minus_offset",
        _acc_where("CreatedDate = 2024-05-14T18:30:00-05:00"),
        _acc("A2"),
    ),
    Case("datetime_gt", _acc_where("CreatedDate > 2024-05-15T08:00:00Z"), _acc("A8")),
    Case("datetime_ge", _acc_where("CreatedDate >= 2024-05-15T08:00:00Z"), _acc("A1 A8")),
    Case("datetime_lt", _acc_where("CreatedDate < 2024-02-10T12:00:00Z"), _acc("A7")),
    Case("datetime_le", _acc_where("CreatedDate <= 2024-02-10T12:00:00Z"), _acc("A6 A7")),
    Case(
        "datetime_ne",
        _acc_where("CreatedDate != 2024-05-15T08:00:00Z"),
        _acc("A2 A5 A3 A6 A4 A7 A8"),
    ),
    Case(
        "datetime_between",
        _acc_where("CreatedDate >= 2024-05-01T00:00:00Z AND CreatedDate < 2024-05-13T00:00:00Z"),
        _acc("A3 A4"),
    ),
    Case(
        "datetime_offset_crosses_midnight",
        _acc_where("CreatedDate > 2024-05-15T01:00:00+02:00 AND CreatedDate < TOMORROW"),
        _acc("A1 A2 A8"),
    ),
    Case("contact_created_eq", _con_where("CreatedDate = 2024-03-01T10:00:00Z"), _con("C2")),
    Case(
        "contact_created_lt_offset",
        _con_where("CreatedDate < 2024-03-01T10:30:00+01:00"),
        _con("C5 C4 C1"),
    ),
    Case("contact_created_today", _con_where("CreatedDate = TODAY"), _con("C6")),
    Case("contact_created_last_year", _con_where("CreatedDate = LAST_YEAR"), _con("C5")),
    # ---------------------------------------------------------------- date literals, date
    Case("close_today", _opp_where("CloseDate = TODAY"), _opp("O1")),
    Case("close_yesterday", _opp_where("CloseDate = YESTERDAY"), _opp("O3")),
    Case("close_tomorrow", _opp_where("CloseDate = TOMORROW"), _opp("O2")),
    Case("close_lt_today", _opp_where("CloseDate < TODAY"), _opp("O3 O4")),
    Case("close_gt_today", _opp_where("CloseDate > TODAY"), _opp("O2 O7 O5 O6")),
    Case("close_le_today", _opp_where("CloseDate <= TODAY"), _opp("O1 O3 O4")),
    Case("close_ge_today", _opp_where("CloseDate >= TODAY"), _opp("O1 O2 O7 O5 O6")),
    Case("close_ne_today", _opp_where("CloseDate != TODAY"), _opp("O2 O7 O3 O4 O5 O6")),
    Case("close_next_n_days_1", _opp_where("CloseDate = NEXT_N_DAYS:1"), _opp("O2")),
    Case("close_next_n_days_10", _opp_where("CloseDate = NEXT_N_DAYS:10"), _opp("O2 O6")),
    Case("close_next_n_days_30", _opp_where("CloseDate = NEXT_N_DAYS:30"), _opp("O2 O5 O6")),
    Case("close_last_n_days_1", _opp_where("CloseDate = LAST_N_DAYS:1"), _opp("O1 O3")),
    Case("close_n_days_ago_1", _opp_where("CloseDate = N_DAYS_AGO:1"), _opp("O3")),
    Case("close_this_week", _opp_where("CloseDate = THIS_WEEK"), _opp("O1 O2 O3")),
    Case("close_next_week", _opp_where("CloseDate = NEXT_WEEK"), _opp("O6")),
    Case("close_this_month", _opp_where("CloseDate = THIS_MONTH"), _opp("O1 O2 O3 O6")),
    Case("close_last_month", _opp_where("CloseDate = LAST_MONTH"), _opp("O4")),
    Case("close_next_month", _opp_where("CloseDate = NEXT_MONTH"), _opp("O5")),
    Case("close_gt_this_month", _opp_where("CloseDate > THIS_MONTH"), _opp("O7 O5")),
    Case("close_le_this_month", _opp_where("CloseDate <= THIS_MONTH"), _opp("O1 O2 O3 O4 O6")),
    Case("close_this_quarter", _opp_where("CloseDate = THIS_QUARTER"), _opp("O1 O2 O3 O4 O5 O6")),
    Case("close_next_quarter", _opp_where("CloseDate = NEXT_QUARTER"), _opp("O7")),
    Case("close_next_90_days", _opp_where("CloseDate = NEXT_90_DAYS"), _opp("O2 O7 O5 O6")),
    Case("close_this_year", _opp_where("CloseDate = THIS_YEAR"), _opp("O1 O2 O7 O3 O4 O5 O6")),
    Case("close_eq_date", _opp_where("CloseDate = 2024-05-15"), _opp("O1")),
    Case("close_gt_date", _opp_where("CloseDate > 2024-05-25"), _opp("O7 O5")),
    Case("close_le_date", _opp_where("CloseDate <= 2024-05-14"), _opp("O3 O4")),
    Case(
        "close_between_dates",
        _opp_where("CloseDate >= 2024-05-01 AND CloseDate <= 2024-05-31"),
        _opp("O1 O2 O3 O6"),
    ),
    Case("birthdate_eq", _con_where("Birthdate = 2000-02-29"), _con("C4")),
    Case("birthdate_lt_excludes_null", _con_where("Birthdate < 1990-01-01"), _con("C5 C2")),
    Case(
        "birthdate_ne_includes_null",
        _con_where("Birthdate != 1990-03-01"),
        _con("C5 C3 C4 C2 C6"),
    ),
    Case("birthdate_null", _con_where("Birthdate = null"), _con("C3 C6")),
    Case("custom_date_this_month", _inv_where("Due__c = THIS_MONTH"), rows("I1 I3", "Name")),
    Case("custom_date_next_month", _inv_where("Due__c = NEXT_MONTH"), rows("I2", "Name")),
    # ---------------------------------------------------------------- type mismatches
    Case(
        "mismatch_date_for_datetime",
        "SELECT Id FROM Account WHERE CreatedDate = 2024-01-01",
        INVALID_FIELD,
    ),
    Case(
        "mismatch_datetime_for_date",
        "SELECT Id FROM Opportunity WHERE CloseDate = 2024-05-15T00:00:00Z",
        INVALID_FIELD,
    ),
    Case(
        "mismatch_string_for_int",
        "SELECT Id FROM Account WHERE NumberOfEmployees = 'abc'",
        INVALID_FIELD,
    ),
    Case("mismatch_number_for_string", "SELECT Id FROM Account WHERE Name = 5", INVALID_FIELD),
    Case(
        "mismatch_string_for_boolean",
        "SELECT Id FROM Contact WHERE HasOptedOutOfEmail = 'true'",
        INVALID_FIELD,
    ),
    Case(
        "mismatch_quoted_datetime",
        "SELECT Id FROM Account WHERE CreatedDate = '2024-05-15T08:00:00Z'",
        INVALID_FIELD,
    ),
    Case(
        "mismatch_quoted_date",
        "SELECT Id FROM Opportunity WHERE CloseDate = '2024-05-15'",
        INVALID_FIELD,
    ),
    Case(
        "mismatch_date_literal_for_int",
        "SELECT Id FROM Account WHERE NumberOfEmployees = TODAY",
        INVALID_FIELD,
    ),
    # ---------------------------------------------------------------- plain fields and values
    Case(
        "types_account",
        "SELECT Name, AnnualRevenue, NumberOfEmployees, CreatedDate, IsDeleted, OwnerId "
        "FROM Account WHERE Name = 'Acme'",
        rows(
            "A1",
            "Name",
            "AnnualRevenue",
            "NumberOfEmployees",
            "CreatedDate",
            "IsDeleted",
            "OwnerId",
        ),
    ),
    Case(
        "types_opportunity",
        "SELECT Name, Amount, Probability, CloseDate, IsClosed, IsWon, AccountId "
        "FROM Opportunity WHERE Name = 'Acme Renewal'",
        rows("O1", "Name", "Amount", "Probability", "CloseDate", "IsClosed", "IsWon", "AccountId"),
    ),
    Case(
        "unset_fields_are_null",
        "SELECT Name, Industry, Type, NumberOfEmployees, Rating FROM Account WHERE Name = 'Hooli'",
        rows("A5", "Name", "Industry", "Type", "NumberOfEmployees", "Rating"),
    ),
    Case(
        "derived_contact_name",
        "SELECT Name, FirstName, LastName FROM Contact WHERE LastName = 'Evans'",
        rows("C4", "Name", "FirstName", "LastName"),
    ),
    Case(
        "custom_object_fields",
        "SELECT Name, Amount__c, Tags__c, Paid__c, Units__c, Due__c, Account__c "
        "FROM Invoice__c ORDER BY Name",
        rows(
            "I1 I2 I3 I4",
            "Name",
            "Amount__c",
            "Tags__c",
            "Paid__c",
            "Units__c",
            "Due__c",
            "Account__c",
        ),
    ),
    Case(
        "names_case_insensitive",
        "select name, industry from account where NAME = 'acme'",
        rows("A1", "Name", "Industry"),
    ),
    Case(
        "id_15_characters",
        "SELECT Id, Name FROM Account WHERE Id = '{A1_15}'",
        rows("A1", "Id", "Name"),
    ),
    Case(
        "id_in_list",
        "SELECT Name FROM Account WHERE Id IN ('{A1}', '{A3}') ORDER BY Name",
        _acc("A1 A3"),
    ),
    Case("reference_eq", _con_where("AccountId = '{A1}'"), _con("C2 C1")),
    Case("reference_null", _con_where("AccountId = null"), _con("C6")),
    # ---------------------------------------------------------------- relationships
    Case(
        "owner_name",
        "SELECT Owner.Name FROM Account",
        rows("A1 A2 A3 A4 A5 A6 A7 A8", "Owner.Name"),
    ),
    Case(
        "parent_name_null",
        "SELECT Name, Parent.Name FROM Account ORDER BY Name",
        rows(ALL_BY_NAME, "Name", "Parent.Name"),
    ),
    Case(
        "parent_owner_two_levels",
        "SELECT Name, Parent.Owner.Name FROM Account WHERE ParentId != null ORDER BY Name",
        rows("A2 A3", "Name", "Parent.Owner.Name"),
    ),
    Case(
        "contact_account_owner_name",
        "SELECT LastName, Account.Owner.Name FROM Contact ORDER BY LastName",
        rows("C5 C3 C4 C2 C6 C1", "LastName", "Account.Owner.Name"),
    ),
    Case(
        "relationship_fields_merge",
        "SELECT Account.Name, LastName, Account.Industry FROM Contact WHERE AccountId != null "
        "ORDER BY LastName",
        rows("C5 C3 C4 C2 C1", "Account.Name", "LastName", "Account.Industry"),
    ),
    Case(
        "relationship_id",
        "SELECT Id, AccountId, Account.Id FROM Contact WHERE LastName = 'Smith'",
        rows("C1", "Id", "AccountId", "Account.Id"),
    ),
    Case(
        "relationship_where",
        _con_where("Account.Industry = 'Banking'"),
        _con("C5 C2 C1"),
    ),
    Case(
        "relationship_where_two_levels",
        _con_where("Account.Owner.Name = 'Grace Hopper'"),
        _con("C5 C3"),
    ),
    Case(
        "relationship_where_case_insensitive",
        _acc_where("Owner.Name = 'grace hopper'"),
        _acc("A2 A6 A4"),
    ),
    Case(
        "relationship_order_by",
        "SELECT LastName, Account.Name FROM Contact ORDER BY Account.Name, LastName",
        rows("C6 C2 C1 C3 C4 C5", "LastName", "Account.Name"),
    ),
    Case(
        "relationship_order_by_desc_nulls_last",
        "SELECT Name FROM Opportunity ORDER BY Account.Name DESC NULLS LAST, Name",
        _opp("O5 O6 O4 O3 O1 O2 O7"),
    ),
    Case(
        "custom_parent_relationship",
        "SELECT Name, Account__r.Name FROM Invoice__c ORDER BY Name",
        rows("I1 I2 I3 I4", "Name", "Account__r.Name"),
    ),
    Case(
        "custom_relationship_where",
        _inv_where("Account__r.Industry = 'Technology'"),
        rows("I3", "Name"),
    ),
    Case(
        "user_manager",
        "SELECT Name, Manager.Name FROM User WHERE Username LIKE '%@corpus.test' ORDER BY Name",
        rows("U1 U2", "Name", "Manager.Name"),
    ),
    Case(
        "opportunity_account_where_boolean",
        "SELECT Name, Account.Name FROM Opportunity WHERE IsWon = true",
        rows("O1", "Name", "Account.Name"),
    ),
    Case(
        "contact_reports_to",
        "SELECT LastName, ReportsTo.LastName FROM Contact WHERE ReportsToId != null",
        rows("C2", "LastName", "ReportsTo.LastName"),
    ),
    # ---------------------------------------------------------------- child subqueries
    Case(
        "children_contacts",
        "SELECT Name, (SELECT LastName FROM Contacts ORDER BY LastName) FROM Account "
        "ORDER BY Name",
        nest(
            "Contacts",
            "A1:C2,C1 A2:C3 A5: A3:C4 A6:C5 A4: A7: A8:",
            "LastName",
        ),
    ),
    Case(
        "children_where",
        "SELECT Name, (SELECT Name FROM Opportunities WHERE IsClosed = false ORDER BY Name) "
        "FROM Account WHERE Industry = 'Banking' ORDER BY Name",
        nest("Opportunities", "A1:O2 A6:O5,O6 A7:", "Name"),
    ),
    Case(
        "children_two_subqueries",
        "SELECT Name, (SELECT LastName FROM Contacts ORDER BY LastName), "
        "(SELECT Name, Amount FROM Opportunities ORDER BY Amount DESC) "
        "FROM Account WHERE Name = 'Acme'",
        rows(
            "A1",
            "Name",
            sub("Contacts", "C2 C1", "LastName"),
            sub("Opportunities", "O2 O1", "Name", "Amount"),
        ),
    ),
    Case(
        "children_limit",
        "SELECT Name, (SELECT LastName FROM Contacts ORDER BY LastName DESC LIMIT 1) "
        "FROM Account WHERE Name = 'Acme'",
        rows("A1", "Name", sub("Contacts", "C1", "LastName")),
    ),
    Case(
        "children_custom_relationship",
        "SELECT Name, (SELECT Name, Amount__c FROM Invoices__r ORDER BY Name) FROM Account "
        "WHERE Name IN ('Acme', 'Globex') ORDER BY Name",
        nest("Invoices__r", "A1:I1,I2 A2:I3", "Name", "Amount__c"),
    ),
    Case(
        "children_self_relationship",
        "SELECT Name, (SELECT Name FROM ChildAccounts ORDER BY Name) FROM Account "
        "WHERE Name = 'Acme'",
        rows("A1", "Name", sub("ChildAccounts", "A2 A3", "Name")),
    ),
    Case(
        "children_with_parent_field",
        "SELECT Name, (SELECT LastName, Owner.Name FROM Contacts ORDER BY LastName) "
        "FROM Account WHERE Name = 'Acme'",
        rows("A1", "Name", sub("Contacts", "C2 C1", "LastName", "Owner.Name")),
    ),
    Case(
        "children_and_semi_join",
        "SELECT Name, (SELECT LastName FROM Contacts WHERE DoNotCall = true ORDER BY LastName) "
        "FROM Account WHERE Id IN (SELECT AccountId FROM Contact) ORDER BY Name",
        nest("Contacts", "A1:C1 A2: A3:C4 A6:", "LastName"),
    ),
    Case(
        "children_unknown_relationship",
        "SELECT Name, (SELECT Id FROM Widgets) FROM Account",
        INVALID_TYPE,
    ),
    Case(
        "children_unknown_field",
        "SELECT Name, (SELECT Bogus FROM Contacts) FROM Account",
        INVALID_FIELD,
    ),
    # ---------------------------------------------------------------- unknown names
    Case("unknown_field_select", "SELECT Id, Bogus__c FROM Account", INVALID_FIELD),
    Case("misspelled_field_where", "SELECT Id FROM Account WHERE Nmae = 'Acme'", INVALID_FIELD),
    Case("unknown_field_order_by", "SELECT Id FROM Account ORDER BY Bogus", INVALID_FIELD),
    Case("unknown_field_group_by", "SELECT COUNT(Id) FROM Account GROUP BY Bogus", INVALID_FIELD),
    Case("unknown_field_aggregate", "SELECT SUM(Bogus) FROM Account", INVALID_FIELD),
    Case("field_of_other_object", "SELECT LastName FROM Account", INVALID_FIELD),
    Case("unknown_object", "SELECT Id FROM Widget", INVALID_TYPE),
    Case("unknown_custom_object", "SELECT Id FROM Bogus__c", INVALID_TYPE),
    Case(
        "unknown_object_semi_join",
        "SELECT Id FROM Contact WHERE AccountId IN (SELECT Id FROM Widget)",
        INVALID_TYPE,
    ),
    Case("unknown_parent_relationship", "SELECT Foo.Name FROM Contact", INVALID_FIELD),
    Case("unknown_parent_field", "SELECT Account.Bogus FROM Contact", INVALID_FIELD),
    Case("field_used_as_relationship", "SELECT AccountId.Name FROM Contact", INVALID_FIELD),
    Case(
        "unknown_relationship_where",
        "SELECT Id FROM Contact WHERE Foo.Name = 'x'",
        INVALID_FIELD,
    ),
    Case(
        "unknown_relationship_order_by",
        "SELECT Id FROM Contact ORDER BY Account.Bogus",
        INVALID_FIELD,
    ),
    # ---------------------------------------------------------------- WHERE logic
    Case(
        "and",
        _acc_where("Industry = 'Banking' AND NumberOfEmployees > 500"),
        _acc("A6 A7"),
    ),
    Case("or", _acc_where("Industry = 'Healthcare' OR Industry = 'Retail'"), _acc("A4 A8")),
    Case(
        "parentheses_or_and",
        _acc_where("(Industry = 'Technology' OR Industry = 'Healthcare') AND Rating = 'Hot'"),
        _acc("A4"),
    ),
    Case(
        "or_parentheses_and",
        _acc_where("Industry = 'Technology' OR (Industry = 'Banking' AND Rating = 'Hot')"),
        _acc("A1 A2 A3"),
    ),
    Case(
        "nested_parentheses",
        _acc_where("Rating = 'Hot' AND (NumberOfEmployees < 100 OR AnnualRevenue > 4000000)"),
        _acc("A1 A8"),
    ),
    Case("not_parentheses", _acc_where("NOT (Industry = 'Banking')"), _acc("A2 A5 A3 A4 A8")),
    Case(
        "not_or_and",
        _acc_where("NOT (Industry = 'Banking' OR Industry = 'Technology') AND Rating = 'Hot'"),
        _acc("A4 A8"),
    ),
    Case("not_like", _acc_where("NOT Name LIKE 'S%'"), _acc("A1 A2 A5 A3 A4 A7 A8")),
    Case(
        "and_or_without_parentheses",
        "SELECT Id FROM Account WHERE Name = 'Acme' AND Industry = 'Banking' OR Rating = 'Hot'",
        MALFORMED,
    ),
    Case("in", _acc_where("Industry IN ('Banking', 'retail')"), _acc("A1 A6 A7 A8")),
    Case(
        "not_in_includes_null",
        _acc_where("Industry NOT IN ('Banking', 'Technology')"),
        _acc("A5 A4 A8"),
    ),
    Case("like_prefix_case_insensitive", _acc_where("Name LIKE 'a%'"), _acc("A1")),
    Case("like_suffix", _acc_where("Name LIKE '%TECH'"), _acc("A3")),
    Case("like_underscore", _acc_where("Name LIKE 'Glob_x'"), _acc("A2")),
    Case("like_contains", _acc_where("Name LIKE '%In%'"), _acc("A3 A6")),
    Case("like_skips_null", _acc_where("BillingCity LIKE 'p%'"), _acc("A1 A5 A3")),
    Case("like_escaped_quote", _opp_where("Name LIKE '%\\'s%'"), _opp("O7")),
    Case("eq_escaped_quote", _opp_where("Name = 'Bob\\'s Deal'"), _opp("O7")),
    Case("eq_null", _acc_where("Industry = null"), _acc("A5")),
    Case("ne_null", _acc_where("Industry != null"), _acc("A1 A2 A3 A6 A4 A7 A8")),
    Case(
        "ne_value_includes_null",
        _acc_where("Industry != 'Banking'"),
        _acc("A2 A5 A3 A4 A8"),
    ),
    Case("or_null", _acc_where("Industry = 'Retail' OR Industry = null"), _acc("A5 A8")),
    Case("string_eq_case_insensitive", _acc_where("BillingCity = 'PARIS'"), _acc("A1 A3")),
    Case("string_gt_case_insensitive", _acc_where("Name > 'h'"), _acc("A5 A3 A6 A4 A7 A8")),
    Case("string_lt", _acc_where("Name < 'Hooli'"), _acc("A1 A2")),
    Case("boolean_true", _con_where("HasOptedOutOfEmail = true"), _con("C2")),
    Case("boolean_false_uppercase", _con_where("DoNotCall = FALSE"), _con("C5 C3 C2 C6")),
    Case("boolean_custom", _inv_where("Paid__c = true"), rows("I1 I3", "Name")),
    Case("number_gt", _acc_where("NumberOfEmployees > 100"), _acc("A1 A6 A4 A7")),
    Case("number_ge", _acc_where("NumberOfEmployees >= 100"), _acc("A1 A2 A6 A4 A7")),
    Case("number_lt_excludes_null", _acc_where("AnnualRevenue < 1000000"), _acc("A5 A3 A8")),
    Case("number_eq_decimal", _acc_where("AnnualRevenue = 750000.00"), _acc("A3")),
    Case(
        "number_ne_includes_null",
        _acc_where("NumberOfEmployees != 40"),
        _acc("A1 A2 A5 A6 A4 A7 A8"),
    ),
    Case("number_range", _opp_where("Amount >= 500 AND Amount <= 2500.5"), _opp("O1 O2 O6")),
    Case("percent_gt", _opp_where("Probability > 50"), _opp("O1 O3")),
    Case("number_negative", _opp_where("Probability > -1 AND Amount = null"), _opp("O4")),
    # ---------------------------------------------------------------- multi-select picklists
    Case("includes_one", _inv_where("Tags__c INCLUDES ('Red')"), rows("I1 I3", "Name")),
    Case("includes_and", _inv_where("Tags__c INCLUDES ('Red;Blue')"), rows("I1 I3", "Name")),
    Case("includes_and_2", _inv_where("Tags__c INCLUDES ('Red;Green')"), rows("I3", "Name")),
    Case(
        "includes_or",
        _inv_where("Tags__c INCLUDES ('Green', 'Blue;Red')"),
        rows("I1 I3 I4", "Name"),
    ),
    Case("excludes_one", _inv_where("Tags__c EXCLUDES ('Red')"), rows("I2 I4", "Name")),
    Case("excludes_and", _inv_where("Tags__c EXCLUDES ('Blue;Red')"), rows("I2 I4", "Name")),
    Case("excludes_or", _inv_where("Tags__c EXCLUDES ('Green', 'Red')"), rows("I2", "Name")),
    Case("multipicklist_eq", _inv_where("Tags__c = 'Blue'"), rows("I2", "Name")),
    Case("multipicklist_eq_two", _inv_where("Tags__c = 'Red;Blue'"), rows("I1", "Name")),
    # ---------------------------------------------------------------- semi-joins, anti-joins
    Case(
        "semi_join",
        _acc_where("Id IN (SELECT AccountId FROM Contact)"),
        _acc("A1 A2 A3 A6"),
    ),
    Case(
        "anti_join",
        _acc_where("Id NOT IN (SELECT AccountId FROM Contact WHERE AccountId != null)"),
        _acc("A5 A4 A7 A8"),
    ),
    Case(
        "semi_join_filtered",
        _acc_where("Id IN (SELECT AccountId FROM Opportunity WHERE StageName = 'Closed Won')"),
        _acc("A1"),
    ),
    Case(
        "semi_join_on_reference",
        _con_where("AccountId IN (SELECT Id FROM Account WHERE Industry = 'Technology')"),
        _con("C3 C4"),
    ),
    Case(
        "anti_join_on_reference",
        _opp_where(
            "AccountId != null AND AccountId NOT IN "
            "(SELECT Id FROM Account WHERE Industry = 'Banking')"
        ),
        _opp("O3 O4"),
    ),
    Case(
        "semi_join_and_condition",
        _acc_where("Industry = 'Technology' AND Id IN (SELECT AccountId FROM Opportunity)"),
        _acc("A2 A3"),
    ),
    # ---------------------------------------------------------------- ORDER BY, LIMIT, OFFSET
    Case("order_name", "SELECT Name FROM Account ORDER BY Name", _acc(ALL_BY_NAME)),
    Case(
        "order_name_desc",
        "SELECT Name FROM Account ORDER BY Name DESC",
        _acc(" ".join(reversed(ALL_BY_NAME.split()))),
    ),
    Case(
        "order_nulls_first_by_default",
        "SELECT Name, Industry FROM Account ORDER BY Industry, Name",
        rows("A5 A1 A6 A7 A4 A8 A2 A3", "Name", "Industry"),
    ),
    Case(
        "order_desc_nulls_last_by_default",
        "SELECT Name, Industry FROM Account ORDER BY Industry DESC, Name",
        rows("A2 A3 A8 A4 A1 A6 A7 A5", "Name", "Industry"),
        notes="Nulls sort as the lowest value (the brief's rule); the ORDER BY page only says "
        "'By default, null values are sorted first'.",
    ),
    Case(
        "order_asc_nulls_last",
        "SELECT Name FROM Account ORDER BY Industry ASC NULLS LAST, Name",
        _acc("A1 A6 A7 A4 A8 A2 A3 A5"),
    ),
    Case(
        "order_desc_nulls_first",
        "SELECT Name FROM Account ORDER BY Industry DESC NULLS FIRST, Name",
        _acc("A5 A2 A3 A8 A4 A1 A6 A7"),
    ),
    Case(
        "order_several_keys",
        "SELECT Name FROM Account ORDER BY Owner.Name DESC, NumberOfEmployees DESC",
        _acc("A4 A6 A2 A7 A1 A3 A8 A5"),
    ),
    Case(
        "order_currency_nulls_first",
        "SELECT Name, AnnualRevenue FROM Account ORDER BY AnnualRevenue",
        rows("A4 A8 A5 A3 A2 A7 A1 A6", "Name", "AnnualRevenue"),
    ),
    Case(
        "order_date_desc",
        "SELECT Name, CloseDate FROM Opportunity ORDER BY CloseDate DESC",
        rows("O7 O5 O6 O2 O1 O3 O4", "Name", "CloseDate"),
    ),
    Case(
        "order_datetime_desc_limit",
        "SELECT Name FROM Account ORDER BY CreatedDate DESC LIMIT 3",
        _acc("A8 A1 A2"),
    ),
    Case(
        "order_picklist_by_definition_order",
        "SELECT Name, Rating FROM Account ORDER BY Rating, Name",
        rows("A5 A1 A4 A8 A2 A6 A3 A7", "Name", "Rating"),
        notes="ORDER BY: picklist sorting is defined by the picklist sort order set up for "
        "the field (Rating: Hot, Warm, Cold), not alphabetically.",
    ),
    Case("limit", "SELECT Name FROM Account ORDER BY Name LIMIT 3", _acc("A1 A2 A5")),
    Case("limit_offset", "SELECT Name FROM Account ORDER BY Name LIMIT 2 OFFSET 2", _acc("A5 A3")),
    Case("offset", "SELECT Name FROM Account ORDER BY Name OFFSET 6", _acc("A7 A8")),
    Case("offset_past_end", "SELECT Name FROM Account ORDER BY Name OFFSET 20", empty()),
    Case(
        "where_order_limit",
        "SELECT Name FROM Account WHERE Industry != null ORDER BY NumberOfEmployees DESC LIMIT 2",
        _acc("A4 A6"),
    ),
    # ---------------------------------------------------------------- aggregates
    Case("count_id", "SELECT COUNT(Id) FROM Account", aggs(agg(expr0=8))),
    Case("count_field_non_null", "SELECT COUNT(Industry) FROM Account", aggs(agg(expr0=7))),
    Case("count_distinct", "SELECT COUNT_DISTINCT(Industry) FROM Account", aggs(agg(expr0=4))),
    Case(
        "count_distinct_reference",
        "SELECT COUNT_DISTINCT(AccountId) FROM Contact",
        aggs(agg(expr0=4)),
    ),
    Case(
        "two_counts",
        "SELECT COUNT(Id), COUNT(CampaignId) FROM Opportunity",
        aggs(agg(expr0=7, expr1=0)),
    ),
    Case("sum_currency", "SELECT SUM(AnnualRevenue) FROM Account", aggs(agg(expr0=19920000.0))),
    Case("sum_int", "SELECT SUM(NumberOfEmployees) FROM Account", aggs(agg(expr0=7400))),
    Case(
        "min_max_int",
        "SELECT MIN(NumberOfEmployees), MAX(NumberOfEmployees) FROM Account",
        aggs(agg(expr0=10, expr1=5000)),
    ),
    Case(
        "avg_int_where",
        "SELECT AVG(NumberOfEmployees) FROM Account WHERE Industry = 'Technology'",
        aggs(agg(expr0=70.0)),
    ),
    Case(
        "avg_int_all",
        "SELECT AVG(NumberOfEmployees) FROM Account",
        aggs(agg(expr0=7400 / 7)),
    ),
    Case(
        "aggregates_aliased",
        "SELECT SUM(Amount) total, AVG(Amount) average, MIN(Amount) lo, MAX(Amount) hi "
        "FROM Opportunity WHERE AccountId = '{A6}'",
        aggs(agg(total=12500.0, average=6250.0, lo=500.0, hi=12000.0)),
    ),
    Case(
        "aggregates_mixed_aliases",
        "SELECT COUNT(Id), SUM(Amount) total, MAX(Amount) FROM Opportunity",
        aggs(agg(expr0=7, total=20300.5, expr1=12000.0)),
    ),
    Case(
        "min_max_date",
        "SELECT MIN(CloseDate), MAX(CloseDate) FROM Opportunity",
        aggs(agg(expr0="2024-04-30", expr1="2024-07-01")),
    ),
    Case(
        "max_datetime",
        "SELECT MAX(CreatedDate) FROM Account",
        aggs(agg(expr0="2024-05-15T23:59:59.000+0000")),
    ),
    Case(
        "min_max_string_case_insensitive",
        "SELECT MIN(Name), MAX(Name) FROM Account",
        aggs(agg(expr0="Acme", expr1="Zeta Retail")),
    ),
    Case(
        "aggregate_no_rows",
        "SELECT COUNT(Id), SUM(Amount) FROM Opportunity WHERE Name = 'Nothing'",
        aggs(agg(expr0=0, expr1=None)),
    ),
    Case(
        "aggregate_relationship_where",
        "SELECT COUNT(Id) FROM Contact WHERE Account.Industry = 'Banking'",
        aggs(agg(expr0=3)),
    ),
    Case(
        "aggregate_custom_fields",
        "SELECT SUM(Amount__c), SUM(Units__c) FROM Invoice__c WHERE Paid__c = true",
        aggs(agg(expr0=175.5, expr1=4)),
    ),
    Case(
        "group_by_alias",
        "SELECT Industry, COUNT(Id) cnt FROM Account GROUP BY Industry",
        aggs(
            agg(Industry=None, cnt=1),
            agg(Industry="Banking", cnt=3),
            agg(Industry="Healthcare", cnt=1),
            agg(Industry="Retail", cnt=1),
            agg(Industry="Technology", cnt=2),
        ),
    ),
    Case(
        "group_by_order_by",
        "SELECT Industry, COUNT(Id) cnt FROM Account GROUP BY Industry ORDER BY Industry",
        aggs(
            agg(Industry=None, cnt=1),
            agg(Industry="Banking", cnt=3),
            agg(Industry="Healthcare", cnt=1),
            agg(Industry="Retail", cnt=1),
            agg(Industry="Technology", cnt=2),
        ),
    ),
    Case(
        "group_by_having",
        "SELECT Industry, COUNT(Id) FROM Account GROUP BY Industry HAVING COUNT(Id) > 1 "
        "ORDER BY Industry",
        aggs(agg(Industry="Banking", expr0=3), agg(Industry="Technology", expr0=2)),
    ),
    Case(
        "group_by_order_by_aggregate",
        "SELECT Industry, COUNT(Id) FROM Account GROUP BY Industry "
        "ORDER BY COUNT(Id) DESC, Industry LIMIT 2",
        aggs(agg(Industry="Banking", expr0=3), agg(Industry="Technology", expr0=2)),
    ),
    Case(
        "group_by_relationship",
        "SELECT Owner.Name, COUNT(Id) FROM Account GROUP BY Owner.Name ORDER BY Owner.Name",
        aggs(agg(Name="Ada Lovelace", expr0=5), agg(Name="Grace Hopper", expr0=3)),
    ),
    Case(
        "group_by_relationship_with_null",
        "SELECT Account.Name, COUNT(Id) FROM Contact GROUP BY Account.Name ORDER BY Account.Name",
        aggs(
            agg(Name=None, expr0=1),
            agg(Name="Acme", expr0=2),
            agg(Name="Globex", expr0=1),
            agg(Name="Initech", expr0=1),
            agg(Name="Stark Industries", expr0=1),
        ),
    ),
    Case(
        "group_by_sum_order_desc",
        "SELECT AccountId, SUM(Amount) total FROM Opportunity GROUP BY AccountId "
        "ORDER BY SUM(Amount) DESC",
        aggs(
            agg(AccountId="@A6", total=12500.0),
            agg(AccountId="@A2", total=4000.0),
            agg(AccountId="@A1", total=3500.5),
            agg(AccountId=None, total=300.0),
            agg(AccountId="@A3", total=None),
        ),
    ),
    Case(
        "having_sum",
        "SELECT AccountId, SUM(Amount) FROM Opportunity GROUP BY AccountId "
        "HAVING SUM(Amount) > 3600 ORDER BY SUM(Amount)",
        aggs(agg(AccountId="@A2", expr0=4000.0), agg(AccountId="@A6", expr0=12500.0)),
    ),
    Case(
        "having_grouped_field",
        "SELECT Industry, COUNT(Id) FROM Account GROUP BY Industry "
        "HAVING COUNT(Id) >= 1 AND Industry IN ('Banking', 'Retail') ORDER BY Industry",
        aggs(agg(Industry="Banking", expr0=3), agg(Industry="Retail", expr0=1)),
    ),
    Case(
        "group_by_two_fields",
        "SELECT Industry, Type, COUNT(Id) FROM Account WHERE Industry != null "
        "GROUP BY Industry, Type",
        aggs(
            agg(Industry="Banking", Type="Customer - Direct", expr0=2),
            agg(Industry="Banking", Type="Customer - Channel", expr0=1),
            agg(Industry="Technology", Type="Prospect", expr0=1),
            agg(Industry="Technology", Type="Customer - Direct", expr0=1),
            agg(Industry="Healthcare", Type="Partner", expr0=1),
            agg(Industry="Retail", Type="Prospect", expr0=1),
        ),
    ),
    Case(
        "group_by_sum_int_avg_currency",
        "SELECT Owner.Name, SUM(NumberOfEmployees) emp, AVG(AnnualRevenue) rev FROM Account "
        "GROUP BY Owner.Name ORDER BY Owner.Name",
        aggs(
            agg(Name="Ada Lovelace", emp=1100, rev=1784000.0),
            agg(Name="Grace Hopper", emp=6300, rev=5500000.0),
        ),
    ),
    Case(
        "group_by_without_aggregate",
        "SELECT Industry FROM Account GROUP BY Industry ORDER BY Industry",
        aggs(
            agg(Industry=None),
            agg(Industry="Banking"),
            agg(Industry="Healthcare"),
            agg(Industry="Retail"),
            agg(Industry="Technology"),
        ),
    ),
    Case(
        "group_by_boolean",
        "SELECT IsClosed, COUNT(Id) FROM Opportunity GROUP BY IsClosed",
        aggs(agg(IsClosed=False, expr0=5), agg(IsClosed=True, expr0=2)),
    ),
    Case(
        "group_by_date",
        "SELECT CloseDate, COUNT(Id) FROM Opportunity WHERE CloseDate = THIS_MONTH "
        "GROUP BY CloseDate ORDER BY CloseDate",
        aggs(
            agg(CloseDate="2024-05-14", expr0=1),
            agg(CloseDate="2024-05-15", expr0=1),
            agg(CloseDate="2024-05-16", expr0=1),
            agg(CloseDate="2024-05-25", expr0=1),
        ),
    ),
    Case(
        "group_by_field_alias",
        "SELECT Industry ind, COUNT(Id) FROM Account WHERE Industry = 'Banking' GROUP BY Industry",
        aggs(agg(ind="Banking", expr0=3)),
    ),
    Case(
        "group_by_count_distinct",
        "SELECT Owner.Name, COUNT_DISTINCT(Industry) FROM Account GROUP BY Owner.Name "
        "ORDER BY Owner.Name",
        aggs(agg(Name="Ada Lovelace", expr0=3), agg(Name="Grace Hopper", expr0=3)),
    ),
    Case(
        "ungrouped_field_with_group_by",
        "SELECT Name, COUNT(Id) FROM Account GROUP BY Industry",
        MALFORMED,
    ),
    Case("ungrouped_field_without_group_by", "SELECT Name, COUNT(Id) FROM Account", MALFORMED),
    Case("count_star_not_alone", "SELECT Id, COUNT() FROM Account", MALFORMED),
    Case(
        "count_star_order_by",
        "SELECT COUNT() FROM Account ORDER BY Name",
        MALFORMED,
        notes="COUNT() and COUNT(fieldName): You can't use COUNT() with an ORDER BY clause.",
    ),
    Case(
        "count_star_group_by",
        "SELECT COUNT() FROM Account GROUP BY Industry",
        MALFORMED,
        notes="COUNT() and COUNT(fieldName): You can't use COUNT() with a GROUP BY clause "
        "(API 19.0 and later); use COUNT(fieldName).",
    ),
    # ---------------------------------------------------------------- FOR / WITH clauses
    Case(
        "for_update",
        "SELECT Id, Name FROM Account WHERE Name = 'Acme' FOR UPDATE",
        rows("A1", "Id", "Name"),
    ),
    Case(
        "for_view",
        "SELECT Name FROM Account ORDER BY Name LIMIT 2 FOR VIEW",
        _acc("A1 A2"),
    ),
    Case(
        "for_reference",
        "SELECT Name FROM Account ORDER BY Name LIMIT 2 FOR REFERENCE",
        _acc("A1 A2"),
    ),
    Case(
        "with_security_enforced",
        "SELECT Name FROM Account WHERE Industry = 'Banking' WITH SECURITY_ENFORCED ORDER BY Name",
        _acc("A1 A6 A7"),
    ),
    Case(
        "with_user_mode",
        "SELECT Name FROM Account WHERE Industry = 'Technology' WITH USER_MODE ORDER BY Name",
        _acc("A2 A3"),
    ),
    Case(
        "count_with_security_enforced",
        "SELECT COUNT() FROM Account WITH SECURITY_ENFORCED",
        count(8),
    ),
    # ---------------------------------------------------------------- syntax errors
    Case("malformed_no_fields", "SELECT FROM Account", MALFORMED),
    Case("malformed_no_object", "SELECT Id FROM", MALFORMED),
    Case("malformed_trailing_comma", "SELECT Id, FROM Account", MALFORMED),
    Case("malformed_empty_where", "SELECT Id FROM Account WHERE", MALFORMED),
    Case("malformed_missing_value", "SELECT Id FROM Account WHERE Name = ", MALFORMED),
    Case(
        "malformed_unterminated_string",
        "SELECT Id FROM Account WHERE Name = 'unterminated",
        MALFORMED,
    ),
    Case("malformed_limit_not_number", "SELECT Id FROM Account LIMIT abc", MALFORMED),
    Case("malformed_order_without_by", "SELECT Id FROM Account ORDER Name", MALFORMED),
    Case("malformed_empty_in", "SELECT Id FROM Account WHERE Industry IN ()", MALFORMED),
    Case("malformed_keyword", "SELEC Id FROM Account", MALFORMED),
    Case(
        "malformed_unbalanced_parenthesis",
        "SELECT Id FROM Account WHERE (Name = 'Acme'",
        MALFORMED,
    ),
    Case("malformed_double_equals", "SELECT Id FROM Account WHERE Name == 'Acme'", MALFORMED),
    Case("malformed_trailing_tokens", "SELECT Id FROM Account LIMIT 5 extra", MALFORMED),
    Case("malformed_empty_group_by", "SELECT COUNT(Id) FROM Account GROUP BY", MALFORMED),
    # ---------------------------------------------------------------- not emulated
    Case(
        "typeof",
        "SELECT TYPEOF What WHEN Account THEN Phone, NumberOfEmployees "
        "WHEN Opportunity THEN Amount, CloseDate ELSE Name, Email END FROM Event",
        UNSUPPORTED,
    ),
    Case(
        "group_by_rollup",
        "SELECT LeadSource, COUNT(Name) cnt FROM Lead GROUP BY ROLLUP(LeadSource)",
        UNSUPPORTED,
    ),
    Case(
        "group_by_cube",
        "SELECT Type, BillingCountry, GROUPING(Type) grpType, GROUPING(BillingCountry) grpCty, "
        "COUNT(Id) accts FROM Account GROUP BY CUBE(Type, BillingCountry) "
        "ORDER BY GROUPING(Type), GROUPING(BillingCountry)",
        UNSUPPORTED,
    ),
    Case(
        "with_data_category",
        "SELECT Id FROM Account WITH DATA CATEGORY Geography__c AT usa__c",
        UNSUPPORTED,
    ),
    Case("using_scope_mine", "SELECT Name FROM Account USING SCOPE Mine", UNSUPPORTED),
    Case(
        "using_scope_everything",
        "SELECT Name FROM Account USING SCOPE Everything WHERE Industry = 'Banking'",
        UNSUPPORTED,
    ),
    Case("to_label", "SELECT Company, toLabel(Status) FROM Lead", UNSUPPORTED),
    Case("to_label_alone", "SELECT toLabel(Rating) FROM Account", UNSUPPORTED),
    Case("format_alone", "SELECT FORMAT(AnnualRevenue) FROM Account", UNSUPPORTED),
    Case(
        "convert_currency_alone", "SELECT convertCurrency(AnnualRevenue) FROM Account", UNSUPPORTED
    ),
    Case(
        "distance_select",
        "SELECT Name, DISTANCE(BillingAddress, GEOLOCATION(37.775, -122.418), 'mi') dist "
        "FROM Account",
        UNSUPPORTED,
    ),
    Case("to_label_where", "SELECT Id FROM Account WHERE toLabel(Rating) = 'Hot'", UNSUPPORTED),
    Case(
        "format",
        "SELECT Id, LastModifiedDate, FORMAT(LastModifiedDate) formattedDate FROM Account",
        UNSUPPORTED,
    ),
    Case(
        "convert_currency", "SELECT Id, convertCurrency(AnnualRevenue) FROM Account", UNSUPPORTED
    ),
    Case(
        "distance_where",
        "SELECT Id FROM Account "
        "WHERE DISTANCE(BillingAddress, GEOLOCATION(37.775, -122.418), 'mi') < 20",
        UNSUPPORTED,
    ),
    Case(
        "distance_order_by",
        "SELECT Id FROM Account "
        "ORDER BY DISTANCE(BillingAddress, GEOLOCATION(37.775, -122.418), 'km') LIMIT 10",
        UNSUPPORTED,
    ),
    Case(
        "fiscal_this_year",
        "SELECT Id FROM Opportunity WHERE CloseDate = THIS_FISCAL_YEAR",
        UNSUPPORTED,
    ),
    Case(
        "fiscal_last_quarter",
        "SELECT Id FROM Opportunity WHERE CloseDate = LAST_FISCAL_QUARTER",
        UNSUPPORTED,
    ),
    Case(
        "fiscal_next_n_years",
        "SELECT Id FROM Opportunity WHERE CloseDate > NEXT_N_FISCAL_YEARS:3",
        UNSUPPORTED,
    ),
    Case(
        "date_function_group_by",
        "SELECT CALENDAR_YEAR(CreatedDate), SUM(Amount) FROM Opportunity "
        "GROUP BY CALENDAR_YEAR(CreatedDate)",
        UNSUPPORTED,
    ),
    Case(
        "date_function_where",
        "SELECT Id FROM Opportunity WHERE CALENDAR_MONTH(CloseDate) = 5",
        UNSUPPORTED,
    ),
    Case(
        "date_function_day_only",
        "SELECT Id FROM Account WHERE DAY_ONLY(CreatedDate) = 2024-05-15",
        UNSUPPORTED,
    ),
    Case(
        "date_function_convert_timezone",
        "SELECT HOUR_IN_DAY(convertTimezone(CreatedDate)), SUM(Amount) FROM Opportunity "
        "GROUP BY HOUR_IN_DAY(convertTimezone(CreatedDate))",
        UNSUPPORTED,
    ),
    Case("fields_all", "SELECT FIELDS(ALL) FROM Account LIMIT 200", UNSUPPORTED),
    Case("fields_standard", "SELECT FIELDS(STANDARD) FROM Account", UNSUPPORTED),
    Case("fields_custom", "SELECT FIELDS(CUSTOM) FROM Invoice__c LIMIT 200", UNSUPPORTED),
    # ---------------------------------------------------------------- deleted records, queryAll
    Case(
        "query_is_deleted_true",
        "SELECT Id, Name, IsDeleted FROM Account WHERE IsDeleted = true",
        empty(),
    ),
    Case(
        "query_all_is_deleted_true",
        "SELECT Id, Name, IsDeleted FROM Account WHERE IsDeleted = true",
        rows("AX", "Id", "Name", "IsDeleted"),
        endpoint="queryAll",
    ),
    Case("query_deleted_by_name", "SELECT Id FROM Account WHERE Name = 'Doomed'", empty()),
    Case(
        "query_all_count",
        "SELECT COUNT() FROM Account",
        count(9),
        endpoint="queryAll",
    ),
    Case(
        "query_all_today",
        "SELECT Name, IsDeleted FROM Account WHERE CreatedDate = TODAY ORDER BY Name",
        rows("A1 AX A8", "Name", "IsDeleted"),
        endpoint="queryAll",
    ),
    Case(
        "query_all_not_deleted",
        "SELECT Name FROM Account WHERE IsDeleted = false AND Industry = 'Banking' ORDER BY Name",
        _acc("A1 A6 A7"),
        endpoint="queryAll",
    ),
]
