"""What we rely on in Chargebee's data, as pandera schemas: the contract, and the per-row rules.

Two levels, because they fail differently:
- the *contract* (columns we use, their types, ids present and unique): a breach means Chargebee or our
  reading of it changed, so the sync stops before anything is pushed;
- the *row rules* (say, an email Zoho would reject): a bad row is set aside and reported, the others go on,
  and the row is checked again when it changes in Chargebee.

Only attributes the sync uses are in the contract: Chargebee omits empty optional attributes, and the
recorded payloads we must accept lack many of the attributes the API spec marks as required.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import pandas as pd
import pandera.pandas as pa

from cbzoho_pipeline.sync.mapping import valid_email

_TEXT = ("first_name", "last_name", "email", "phone", "company")


def _resource_columns() -> dict[str, pa.Column]:
    """What every Chargebee resource we read carries: a non-empty unique id and its lifecycle stamps."""
    return {
        "id": pa.Column(str, nullable=False, unique=True, checks=pa.Check.str_length(1, 50)),
        "created_at": pa.Column("Int64", nullable=True, required=False),
        "updated_at": pa.Column("Int64", nullable=True, required=False),
        "resource_version": pa.Column("Int64", nullable=True, required=False),
        "deleted": pa.Column("boolean", nullable=True, required=False),
    }


CUSTOMER_CONTRACT = pa.DataFrameSchema(
    {
        **_resource_columns(),
        **{name: pa.Column(str, nullable=True, required=False) for name in _TEXT},
    },
    name="chargebee_customer_contract",
    description="Chargebee customers as the sync reads them: the attributes it uses and their types.",
    strict=False,
    coerce=False,
)

SUBSCRIPTION_CONTRACT = pa.DataFrameSchema(
    {
        **_resource_columns(),
        "customer_id": pa.Column(str, nullable=False),
        "status": pa.Column(str, nullable=False, checks=pa.Check.isin(
            ["future", "in_trial", "active", "non_renewing", "paused", "cancelled", "transferred"])),
        # Required by the API spec, yet absent from recorded PC 1.0 payloads: the site's home currency then.
        "currency_code": pa.Column(str, nullable=True, required=False, checks=pa.Check.str_length(3, 3)),
        "mrr": pa.Column("Int64", nullable=True, required=False),
    },
    name="chargebee_subscription_contract",
    description="Chargebee subscriptions as the sync reads them: the attributes it uses and their types.",
    strict=False,
    coerce=False,
)

CUSTOMER_ROWS = pa.DataFrameSchema(
    {
        "email": pa.Column(
            str, nullable=True, required=False,
            checks=pa.Check(lambda s: s.map(lambda v: v is None or str(v).strip() == "" or valid_email(v)),
                            element_wise=False, name="zoho_accepts_email",
                            error="email is not an address Zoho CRM accepts"),
        ),
    },
    name="chargebee_customer_rows",
    strict=False,
)

SUBSCRIPTION_ROWS = pa.DataFrameSchema(
    {"mrr": pa.Column("Int64", nullable=True, required=False,
                      checks=pa.Check.ge(0, error="mrr is negative"))},
    name="chargebee_subscription_rows",
    strict=False,
)

_INT_COLUMNS = ("created_at", "updated_at", "resource_version", "mrr")


def frame(objects: list[dict[str, Any]], columns: tuple[str, ...]) -> pd.DataFrame:
    """A typed frame of the attributes we validate; absent attributes stay absent (not invented)."""
    present = [c for c in columns if any(c in o for o in objects)] or ["id"]
    data: dict[str, Any] = {}
    for column in present:
        values = [o.get(column) for o in objects]
        if column in _INT_COLUMNS:
            if all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in values):
                data[column] = pd.array(values, dtype="Int64")
            else:
                data[column] = pd.Series(values, dtype=object)  # the contract reports the wrong type
        elif column == "deleted":
            if all(v is None or isinstance(v, bool) for v in values):
                data[column] = pd.array(values, dtype="boolean")
            else:
                data[column] = pd.Series(values, dtype=object)
        else:
            data[column] = pd.Series(values, dtype=object)
    return pd.DataFrame(data)


CUSTOMER_COLUMNS = ("id", *_TEXT, "created_at", "updated_at", "resource_version", "deleted")
SUBSCRIPTION_COLUMNS = ("id", "customer_id", "status", "currency_code", "mrr", "created_at", "updated_at",
                        "resource_version", "deleted")


def contract_problems(stream: str, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Empty when the page honours the contract; otherwise pandera's failure cases as plain rows."""
    schema, columns = _schemas(stream)[0], _columns(stream)
    try:
        schema.validate(frame(objects, columns), lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        problems = []
        for r in cases.head(20).to_dict("records"):
            missing = r.get("check") == "column_in_dataframe"  # pandera names the schema; the case is the column
            problems.append({
                "column": str(r.get("failure_case") if missing else r.get("column")),
                "check": "column missing" if missing else str(r.get("check")),
                "value": "" if missing else str(r.get("failure_case"))[:80],
            })
        return problems
    return []


def row_rejects(stream: str, objects: list[dict[str, Any]]) -> list[tuple[str, int | None, str]]:
    """Rows that break a row rule: (id, resource_version, reason)."""
    if not objects:
        return []
    schema, columns = _schemas(stream)[1], _columns(stream)
    df = frame(objects, columns)
    try:
        schema.validate(df, lazy=True)
    except pa.errors.SchemaErrors as exc:
        out: dict[int, str] = {}
        for case in exc.failure_cases.to_dict("records"):
            index = case.get("index")
            if index is None or pd.isna(index):
                continue
            check = str(case.get("check"))
            reason = {"zoho_accepts_email": "email is not an address Zoho CRM accepts"}.get(check, check)
            out.setdefault(int(index), f"{case.get('column')}: {reason} ({str(case.get('failure_case'))[:60]!r})")
        return [(str(objects[i]["id"]), objects[i].get("resource_version"), reason)
                for i, reason in sorted(out.items())]
    return []


def table_schema(schema: pa.DataFrameSchema) -> dg.TableSchema:
    """The contract as the asset's Columns panel shows it: name, dtype, nullable, unique and each check."""

    def label(check: pa.Check) -> str:
        return str(check.description or check.error or check.name)

    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=str(name),
                type=str(column.dtype),
                description=column.description,
                constraints=dg.TableColumnConstraints(nullable=column.nullable, unique=column.unique,
                                                      other=[label(c) for c in column.checks]),
            )
            for name, column in schema.columns.items()
        ],
        constraints=dg.TableConstraints(other=[label(c) for c in schema.checks]),
    )


def _schemas(stream: str) -> tuple[pa.DataFrameSchema, pa.DataFrameSchema]:
    return (CUSTOMER_CONTRACT, CUSTOMER_ROWS) if stream == "customers" else (SUBSCRIPTION_CONTRACT, SUBSCRIPTION_ROWS)


def _columns(stream: str) -> tuple[str, ...]:
    return CUSTOMER_COLUMNS if stream == "customers" else SUBSCRIPTION_COLUMNS
