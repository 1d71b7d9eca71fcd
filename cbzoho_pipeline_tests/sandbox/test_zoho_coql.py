"""Contract tests of the sandbox's COQL endpoint (POST /crm/v8/coql), over real HTTP.

Why these tests exist: the sync reads Zoho through COQL (immediately consistent, and the way past
100,000 records), so a query the sandbox answers must mean what it means in Zoho, and a query Zoho
rejects (no WHERE, three criteria without brackets, LIMIT over 2,000, multi-line fields in criteria)
must be rejected here too. The cases are a table: one query, the rows it must return. Credits by LIMIT
are checked against the documented 1/2/3 tiers.
"""

from __future__ import annotations

import pytest

from cbzoho_pipeline_tests.sandbox.zoho_http import ZohoHttp

ACME, GLOBEX = "4150868000000100001", "4150868000000100002"
ADA, CHARLES, GRACE, NOBODY = ("4150868000000200001", "4150868000000200002", "4150868000000200003",
                               "4150868000000200004")
PIPE = "Standard (Standard)"


@pytest.fixture
def zoho(sandbox):
    users = sandbox.control("GET", "zoho/sandbox/settings")["users"]
    sales = next(u["id"] for u in users if u["email"] == "sales@acme.example")
    sandbox.load(zoho={"sandbox": {
        "Accounts": [{"id": ACME, "Account_Name": "Acme Corp"}, {"id": GLOBEX, "Account_Name": "Globex"}],
        "Contacts": [
            {"id": ADA, "First_Name": "Ada", "Last_Name": "Lovelace", "Email": "ada@example.com",
             "Account_Name": {"id": ACME}, "Created_Time": "2024-01-01T00:00:00+05:30",
             "Modified_Time": "2024-03-01T12:00:00+05:30", "Description": "first programmer"},
            {"id": CHARLES, "First_Name": "Charles", "Last_Name": "Babbage", "Email": "charles@example.org",
             "Account_Name": {"id": ACME}, "Created_Time": "2024-01-02T00:00:00+05:30",
             "Modified_Time": "2024-03-02T12:00:00+05:30", "Owner": {"id": sales}},
            {"id": GRACE, "First_Name": "Grace", "Last_Name": "Hopper", "Email": "grace@navy.example",
             "Account_Name": {"id": GLOBEX}, "Created_Time": "2024-01-03T00:00:00+05:30",
             "Modified_Time": "2024-03-03T12:00:00+05:30"},
            {"id": NOBODY, "Last_Name": "O'Brien", "Created_Time": "2024-01-04T00:00:00+05:30",
             "Modified_Time": "2024-03-04T12:00:00+05:30"},
        ],
        "Deals": [
            {"Deal_Name": "Acme - Pro", "Stage": "Closed Won", "Pipeline": PIPE, "Amount": 99.0,
             "Closing_Date": "2024-02-01", "Account_Name": {"id": ACME}, "Contact_Name": {"id": ADA}},
            {"Deal_Name": "Globex - Basic", "Stage": "Qualification", "Pipeline": PIPE, "Amount": 29.0,
             "Closing_Date": "2024-05-01", "Account_Name": {"id": GLOBEX}, "Contact_Name": {"id": GRACE}},
            {"Deal_Name": "Acme - Enterprise", "Stage": "Closed Lost", "Pipeline": PIPE, "Amount": 499.0,
             "Closing_Date": "2024-03-15", "Account_Name": {"id": ACME}},
        ],
    }})
    return ZohoHttp(sandbox)


def names(response, key="Last_Name"):
    assert response.status_code == 200, response.text
    return [row[key] for row in response.json()["data"]]


CONTACT_CASES = [
    ("Last_Name = 'Lovelace'", ["Lovelace"]),
    ("Email = 'ADA@Example.COM'", ["Lovelace"]),  # text comparison ignores case
    ("Last_Name != 'Lovelace'", ["Babbage", "Hopper", "O'Brien"]),
    ("Email like '%example.org'", ["Babbage"]),
    ("Email like 'gr%'", ["Hopper"]),
    ("Email like '%exam%'", ["Lovelace", "Babbage", "Hopper"]),
    ("Email not like '%example%'", []),
    ("Last_Name in ('Hopper', 'Lovelace', 'Nobody')", ["Lovelace", "Hopper"]),
    ("Last_Name not in ('Hopper', 'Lovelace')", ["Babbage", "O'Brien"]),
    ("Email is null", ["O'Brien"]),
    ("First_Name is not null", ["Lovelace", "Babbage", "Hopper"]),
    ("Last_Name = 'O''Brien'", ["O'Brien"]),
    ("(Last_Name = 'Lovelace' or Last_Name = 'Hopper')", ["Lovelace", "Hopper"]),
    ("((Email like '%example%' and Account_Name.Account_Name = 'Acme Corp') or Last_Name = 'O''Brien')",
     ["Lovelace", "Babbage", "O'Brien"]),
    ("(Last_Name = 'Hopper' or (Last_Name = 'Babbage' and First_Name = 'Charles'))", ["Babbage", "Hopper"]),
    (f"id > {CHARLES}", ["Hopper", "O'Brien"]),
    (f"id >= '{CHARLES}'", ["Babbage", "Hopper", "O'Brien"]),
    (f"id in ('{ADA}', '{GRACE}')", ["Lovelace", "Hopper"]),
    (f"Account_Name = '{GLOBEX}'", ["Hopper"]),
    (f"Account_Name.id = '{ACME}'", ["Lovelace", "Babbage"]),
    ("Account_Name is null", ["O'Brien"]),
    ("Owner.email = 'sales@acme.example'", ["Babbage"]),
    # 2024-03-02T06:30:00Z is 12:00 at +05:30
    ("Modified_Time > '2024-03-02T06:30:00+00:00'", ["Hopper", "O'Brien"]),
    ("Modified_Time >= '2024-03-02T12:00:00+05:30'", ["Babbage", "Hopper", "O'Brien"]),
    ("Created_Time between '2024-01-02T00:00:00+05:30' and '2024-01-03T00:00:00+05:30'", ["Babbage", "Hopper"]),
]


@pytest.mark.parametrize("where, expected", CONTACT_CASES, ids=[c[0] for c in CONTACT_CASES])
def test_contact_criteria(zoho, where, expected):
    response = zoho.coql(f"select Last_Name from Contacts where {where}")
    if not expected:
        assert response.status_code == 204 and response.content == b""
    else:
        assert names(response) == expected


DEAL_CASES = [
    ("Amount > 50", ["Acme - Pro", "Acme - Enterprise"]),
    ("Amount between 20 and 100", ["Acme - Pro", "Globex - Basic"]),
    ("Closing_Date >= '2024-03-01'", ["Globex - Basic", "Acme - Enterprise"]),
    ("Stage = 'Closed Won'", ["Acme - Pro"]),
    ("Contact_Name.Account_Name.Account_Name = 'Globex'", ["Globex - Basic"]),
    ("Contact_Name is null", ["Acme - Enterprise"]),
]


@pytest.mark.parametrize("where, expected", DEAL_CASES, ids=[c[0] for c in DEAL_CASES])
def test_deal_criteria(zoho, where, expected):
    assert names(zoho.coql(f"select Deal_Name from Deals where {where}"), "Deal_Name") == expected


def test_row_shape(zoho):
    response = zoho.coql("select Last_Name, Account_Name, Account_Name.Account_name, Owner, Modified_Time "
                         f"from Contacts where id = {ADA}")
    assert response.json() == {"data": [{
        "Last_Name": "Lovelace", "Account_Name": {"id": ACME}, "Account_Name.Account_name": "Acme Corp",
        "Owner": {"id": response.json()["data"][0]["Owner"]["id"]},
        "Modified_Time": "2024-03-01T12:00:00+05:30", "id": ADA}], "info": {"count": 1, "more_records": False}}
    assert response.json()["data"][0]["Owner"]["id"].isdigit()


def test_order_limit_and_offset(zoho):
    base = "select Last_Name from Contacts where id is not null"
    assert names(zoho.coql(base)) == ["Lovelace", "Babbage", "Hopper", "O'Brien"]  # default: id ascending
    assert names(zoho.coql(base + " order by Last_Name desc")) == ["O'Brien", "Lovelace", "Hopper", "Babbage"]
    assert names(zoho.coql(base + " order by id desc limit 2")) == ["O'Brien", "Hopper"]
    assert names(zoho.coql(base + " order by Email asc, Last_Name desc")) == \
        ["O'Brien", "Lovelace", "Babbage", "Hopper"]  # nulls first when ascending
    page = zoho.coql(base + " order by Last_Name limit 1, 2")
    assert names(page) == ["Hopper", "Lovelace"] and page.json()["info"] == {"count": 2, "more_records": True}
    last = zoho.coql(base + " order by Last_Name limit 2 offset 2")
    assert names(last) == ["Lovelace", "O'Brien"] and last.json()["info"]["more_records"] is False
    assert zoho.coql(base + " limit 10 offset 4").status_code == 204


ERROR_CASES = [
    ("select Last_Name from Contacts", "SYNTAX_ERROR"),
    ("select Last_Name from Contacts where Last_Name = 'a' and Email = 'b' and First_Name = 'c'", "SYNTAX_ERROR"),
    ("select Last_Name from Contacts where Last_Name = 'a' and Email = 'b' or First_Name = 'c'", "SYNTAX_ERROR"),
    ("select Last_Name from Contacts where Last_Name = 'unterminated", "SYNTAX_ERROR"),
    ("select Last_Name Contacts where id is not null", "SYNTAX_ERROR"),
    ("select from Contacts where id is not null", "SYNTAX_ERROR"),
    ("delete from Contacts where id is not null", "SYNTAX_ERROR"),
    ("select Last_Name from Contacts where (Last_Name = 'a'", "SYNTAX_ERROR"),
    ("select Nope from Contacts where id is not null", "INVALID_QUERY"),
    ("select Last_Name from Leads where id is not null", "INVALID_QUERY"),
    ("select Last_Name from Contacts where Description like '%x%'", "INVALID_QUERY"),
    ("select Last_Name from Contacts where Last_Name > 'a'", "INVALID_QUERY"),
    ("select Last_Name from Contacts where Modified_Time > 'yesterday'", "INVALID_QUERY"),
    ("select Last_Name from Contacts where Account_Name.Nope = 'x'", "INVALID_QUERY"),
    ("select Deal_Name from Deals where Amount like '%1%'", "INVALID_QUERY"),
    ("select Last_Name from Contacts where id is not null limit 2001", "LIMIT_EXCEEDED"),
    ("select Last_Name from Contacts where id is not null limit 2000 offset 98001", "LIMIT_EXCEEDED"),
    ("select Last_Name from Contacts where Last_Name in (" + ",".join(f"'{i}'" for i in range(51)) + ")",
     "LIMIT_EXCEEDED"),
    ("select Last_Name from Contacts where id is not null order by Last_Name, last_name", "DUPLICATE_DATA"),
    ("select Last_Name, Last_Name from Contacts where id is not null", "DUPLICATE_DATA"),
]


@pytest.mark.parametrize("query, code", ERROR_CASES, ids=[c[0][:70] for c in ERROR_CASES])
def test_rejected_queries(zoho, query, code):
    response = zoho.coql(query)
    assert response.status_code == 400
    assert response.json()["code"] == code and response.json()["status"] == "error"


def nested(count):
    """A WHERE with `count` criteria, bracketed pairwise as Zoho requires."""
    expr = "id is not null"
    for _ in range(count - 1):
        expr = f"({expr} and id is not null)"
    return expr


def test_criteria_limit_is_25(zoho):
    assert zoho.coql(f"select Last_Name from Contacts where {nested(25)}").status_code == 200
    too_many = zoho.coql(f"select Last_Name from Contacts where {nested(26)}")
    assert too_many.status_code == 400 and too_many.json()["code"] == "LIMIT_EXCEEDED"


def test_missing_query_is_rejected(zoho):
    assert zoho.post("coql", json={}).status_code == 400
    assert zoho.post("coql", json={"select_query": "  "}).status_code == 400


@pytest.mark.parametrize("limit, credits", [(1, 1), (200, 1), (201, 2), (1000, 2), (1001, 3), (2000, 3)])
def test_credits_by_limit(sandbox, zoho, limit, credits):
    zoho.login()
    before = zoho.credits()
    zoho.coql(f"select Last_Name from Contacts where id is not null limit {limit}")
    assert zoho.credits() - before == credits
