"""COQL (Zoho's SQL-like Query API) for the sandbox: a parser and an evaluator over the org's records.

Why this exists: the sync reads Zoho state with COQL (it is the documented way to read right after a
write and to page past 100,000 records by id), so the sandbox must accept exactly the subset of COQL
real Zoho accepts and reject what Zoho rejects: a mandatory WHERE clause; more than two criteria
without pairwise brackets (`A and B and C` is a syntax error, `((A and B) and C)` is fine); at most 25
criteria, 50 select columns, 50 values per IN (the stricter of the published figures, see reference
§11); LIMIT at most 2,000 rows and LIMIT+OFFSET at most 100,000; multi-line fields in criteria; lookups
at most two relations deep. Rows come back with lookups as {"id": ...}, `id` always present and the
default order ascending by id.

What it must never do: change records, look at tokens/credits/HTTP, or evaluate anything but this
grammar (no Python eval). Text comparisons are case-insensitive, as Zoho's database collation is.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cbzoho_sandbox.zoho_records import ApiError, format_time, parse_time
from cbzoho_sandbox.zoho_schema import MODULES, TIME_FIELDS, Field

if TYPE_CHECKING:  # pragma: no cover
    from cbzoho_sandbox.zoho_records import ZohoData

MAX_LIMIT = 2000
DEFAULT_LIMIT = 200
MAX_REACH = 100_000
MAX_CRITERIA = 25
MAX_COLUMNS = 50
MAX_IN_VALUES = 50
MAX_ORDER_BY = 10

KEYWORDS = {"select", "from", "where", "order", "by", "asc", "desc", "limit", "offset", "and", "or",
            "in", "not", "like", "is", "null", "between", "true", "false"}
USER_FIELDS = {"id": "ref", "email": "text", "first_name": "text", "last_name": "text",
               "full_name": "text", "status": "text"}

TOKEN_RE = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>'(?:[^']|'')*')
  | (?P<dstr>"(?:[^"]|"")*")
  | (?P<num>-?\d+(?:\.\d+)?)
  | (?P<ident>[A-Za-z_$][A-Za-z0-9_$]*(?:\.[A-Za-z_$][A-Za-z0-9_$]*)*)
  | (?P<op>>=|<=|!=|<>|=|>|<)
  | (?P<punct>[(),])
""", re.VERBOSE)


@dataclass
class Tok:
    kind: str  # str, num, ident, kw, op, punct, end
    value: Any
    text: str


def syntax_error(clause: str, near: str) -> ApiError:
    return ApiError(400, "SYNTAX_ERROR", f"error occurred in the {clause} clause near '{near}'",
                    {"clause": clause, "near": near})


def invalid_query(reason: str, **details: Any) -> ApiError:
    return ApiError(400, "INVALID_QUERY", "Invalid query formed", {"reason": reason, **details})


def tokenize(text: str) -> list[Tok]:
    out: list[Tok] = []
    pos = 0
    while pos < len(text):
        match = TOKEN_RE.match(text, pos)
        if not match:
            raise syntax_error("select", text[pos:pos + 20])
        pos = match.end()
        kind = match.lastgroup
        raw = match.group(kind)  # type: ignore[arg-type]
        if kind == "ws":
            continue
        if kind == "str":
            out.append(Tok("str", raw[1:-1].replace("''", "'"), raw))
        elif kind == "dstr":
            out.append(Tok("str", raw[1:-1].replace('""', '"'), raw))
        elif kind == "num":
            out.append(Tok("num", float(raw) if "." in raw else int(raw), raw))
        elif kind == "ident" and raw.lower() in KEYWORDS:
            out.append(Tok("kw", raw.lower(), raw))
        else:
            out.append(Tok(kind or "", raw, raw))
    out.append(Tok("end", None, "<end of query>"))
    return out


# ----------------------------------------------------------------------------------- AST
@dataclass
class Cmp:
    column: str
    op: str  # = != > >= < <= like notlike in notin isnull notnull between
    values: list[Any] = field(default_factory=list)  # literal tokens (Tok)


@dataclass
class BoolOp:
    op: str  # and / or
    left: Any
    right: Any


@dataclass
class Query:
    columns: list[str]
    module: str
    where: Any
    order_by: list[tuple[str, bool]]  # (column, descending)
    limit: int
    offset: int
    criteria: int


class Parser:
    def __init__(self, text: str):
        self.toks = tokenize(text)
        self.pos = 0
        self.clause = "select"
        self.criteria = 0

    def peek(self) -> Tok:
        return self.toks[self.pos]

    def next(self) -> Tok:
        tok = self.toks[self.pos]
        self.pos += 1
        return tok

    def fail(self) -> ApiError:
        return syntax_error(self.clause, self.peek().text)

    def kw(self, word: str) -> bool:
        tok = self.peek()
        if tok.kind == "kw" and tok.value == word:
            self.pos += 1
            return True
        return False

    def expect_kw(self, word: str) -> None:
        if not self.kw(word):
            raise self.fail()

    def punct(self, char: str) -> bool:
        tok = self.peek()
        if tok.kind == "punct" and tok.value == char:
            self.pos += 1
            return True
        return False

    def column(self) -> str:
        tok = self.peek()
        if tok.kind in ("ident", "str"):  # quoted names allow reserved words as columns
            self.pos += 1
            return str(tok.value)
        raise self.fail()

    def parse(self) -> Query:
        self.expect_kw("select")
        columns = [self.column()]
        while self.punct(","):
            columns.append(self.column())
        self.clause = "from"
        self.expect_kw("from")
        tok = self.next()
        if tok.kind not in ("ident", "str"):
            self.pos -= 1
            raise self.fail()
        module = str(tok.value)
        self.clause = "where"
        if not self.kw("where"):
            raise syntax_error("where", self.peek().text if self.peek().kind != "end" else "from " + module)
        where = self.condition()
        order_by: list[tuple[str, bool]] = []
        if self.kw("order"):
            self.clause = "order by"
            self.expect_kw("by")
            while True:
                col = self.column()
                desc = False
                if self.kw("desc"):
                    desc = True
                else:
                    self.kw("asc")
                order_by.append((col, desc))
                if not self.punct(","):
                    break
        limit, offset = DEFAULT_LIMIT, 0
        if self.kw("limit"):
            self.clause = "limit"
            first = self.integer()
            if self.punct(","):
                offset, limit = first, self.integer()
            elif self.kw("offset"):
                limit, offset = first, self.integer()
            else:
                limit = first
        if self.peek().kind != "end":
            raise self.fail()
        return Query(columns, module, where, order_by, limit, offset, self.criteria)

    def integer(self) -> int:
        tok = self.next()
        if tok.kind != "num" or not isinstance(tok.value, int) or tok.value < 0:
            self.pos -= 1
            raise self.fail()
        return tok.value

    def condition(self) -> Any:
        """One operand, optionally joined to exactly one more: Zoho wants brackets beyond two."""
        left = self.operand()
        tok = self.peek()
        if tok.kind == "kw" and tok.value in ("and", "or"):
            self.pos += 1
            right = self.operand()
            nxt = self.peek()
            if nxt.kind == "kw" and nxt.value in ("and", "or"):
                raise self.fail()
            return BoolOp(tok.value, left, right)
        return left

    def operand(self) -> Any:
        if self.punct("("):
            inner = self.condition()
            if not self.punct(")"):
                raise self.fail()
            return inner
        return self.comparison()

    def literal(self) -> Tok:
        tok = self.next()
        if tok.kind in ("str", "num") or (tok.kind == "kw" and tok.value in ("true", "false")):
            return tok
        if tok.kind == "ident":  # Zoho accepts unquoted picklist words, e.g. Lead_Source = Advertisement
            return Tok("str", tok.value, tok.text)
        self.pos -= 1
        raise self.fail()

    def comparison(self) -> Cmp:
        col = self.column()
        self.criteria += 1
        tok = self.peek()
        if tok.kind == "op":
            self.pos += 1
            op = "!=" if tok.value == "<>" else tok.value
            return Cmp(col, op, [self.literal()])
        negate = self.kw("not")
        if self.kw("like"):
            return Cmp(col, "notlike" if negate else "like", [self.literal()])
        if self.kw("in"):
            if not self.punct("("):
                raise self.fail()
            values = [self.literal()]
            while self.punct(","):
                values.append(self.literal())
            if not self.punct(")"):
                raise self.fail()
            return Cmp(col, "notin" if negate else "in", values)
        if self.kw("between") and not negate:
            low = self.literal()
            self.expect_kw("and")
            return Cmp(col, "between", [low, self.literal()])
        if not negate and self.kw("is"):
            if self.kw("not"):
                self.expect_kw("null")
                return Cmp(col, "notnull")
            self.expect_kw("null")
            return Cmp(col, "isnull")
        raise self.fail()


def parse(text: str) -> Query:
    return Parser(text).parse()


# ----------------------------------------------------------------------------------- evaluation
@dataclass
class Column:
    name: str
    kind: str  # id ref text number date epoch bool
    get: Callable[[int, dict[str, Any]], Any]  # comparable value (None when empty)
    out: Callable[[int, dict[str, Any]], Any]  # value as returned in rows
    multiline: bool = False


def _kind(fld: Field) -> str:
    if fld.data_type in ("lookup", "ownerlookup"):
        return "ref"
    if fld.data_type in ("currency", "double", "integer", "bigint"):
        return "number"
    if fld.data_type == "date":
        return "date"
    if fld.data_type == "datetime":
        return "epoch"
    if fld.data_type == "boolean":
        return "bool"
    return "text"


class Evaluator:
    def __init__(self, data: ZohoData):
        self.data = data
        self.offset = data.offset

    # -- columns ----------------------------------------------------------------------------------
    def module_name(self, name: str) -> str:
        for module in MODULES:
            if module.lower() == name.lower():
                return module
        raise invalid_query("invalid module given", module=name)

    def field_of(self, module: str, name: str) -> Field | None:
        fmap = self.data.field_map(module)
        if name in fmap:
            return fmap[name]
        low = name.lower()
        for key, fld in fmap.items():
            if key.lower() == low:
                return fld
        return None

    def resolve(self, module: str, path: str) -> Column:
        parts = path.split(".")
        if len(parts) > 3:
            raise invalid_query("only two relations are supported in a lookup path", column_name=path)
        return self._resolve(module, parts, path, lambda rid, rec: (rid, rec))

    def _resolve(self, module: str, parts: list[str], full: str,
                 hop: Callable[[int, dict[str, Any]], tuple[int, dict[str, Any]] | None]) -> Column:
        name = parts[0]
        offset = self.offset

        def via(fn: Callable[[int, dict[str, Any]], Any]) -> Callable[[int, dict[str, Any]], Any]:
            def inner(rid: int, rec: dict[str, Any]) -> Any:
                target = hop(rid, rec)
                return None if target is None else fn(*target)
            return inner

        if name.lower() == "id":
            if len(parts) > 1:
                raise invalid_query("column given seems to be invalid", column_name=full)
            return Column(full, "id", via(lambda rid, rec: rid), via(lambda rid, rec: str(rid)))
        fld = self.field_of(module, name)
        if fld is None:
            raise invalid_query("column given seems to be invalid", column_name=full)
        api = fld.api_name
        if len(parts) == 1:
            kind = _kind(fld)
            if kind == "ref":
                return Column(full, "ref",
                              via(lambda rid, rec: int(rec[api]) if rec.get(api) is not None else None),
                              via(lambda rid, rec: {"id": rec[api]} if rec.get(api) is not None else None))
            if api in TIME_FIELDS:
                return Column(full, "epoch", via(lambda rid, rec: rec.get(api)),
                              via(lambda rid, rec: format_time(rec[api], offset) if rec.get(api) is not None
                                  else None))
            if kind == "epoch":
                return Column(full, "epoch",
                              via(lambda rid, rec: parse_time(rec[api], offset) if rec.get(api) else None),
                              via(lambda rid, rec: rec.get(api)))
            if kind == "text":
                return Column(full, "text",
                              via(lambda rid, rec: rec[api].lower() if rec.get(api) not in (None, "") else None),
                              via(lambda rid, rec: rec.get(api)), multiline=fld.data_type == "textarea")
            if kind == "number":
                return Column(full, "number",
                              via(lambda rid, rec: float(rec[api]) if rec.get(api) is not None else None),
                              via(lambda rid, rec: rec.get(api)))
            return Column(full, kind, via(lambda rid, rec: rec.get(api)), via(lambda rid, rec: rec.get(api)))
        # a relation: follow the lookup
        if fld.data_type == "ownerlookup":
            if len(parts) != 2 or parts[1].lower() not in USER_FIELDS:
                raise invalid_query("column given seems to be invalid", column_name=full)
            key = parts[1].lower()
            users = self.data.org.users_by_id()

            def user_value(rid: int, rec: dict[str, Any]) -> Any:
                uid = rec.get(api)
                if uid is None:
                    return None
                if key == "id":
                    return uid
                user = users.get(uid)
                return None if user is None else user.get(key)

            if key == "id":
                return Column(full, "ref", via(lambda rid, rec: int(rec[api]) if rec.get(api) else None),
                              via(user_value))
            return Column(full, "text",
                          via(lambda rid, rec: (v.lower() if (v := user_value(rid, rec)) else None)),
                          via(user_value))
        if fld.data_type != "lookup" or not fld.lookup_module:
            raise invalid_query("column given seems to be invalid", column_name=full)
        target_store = self.data.stores[fld.lookup_module]

        def next_hop(rid: int, rec: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
            value = rec.get(api)
            if value is None:
                return None
            tid = int(value)
            trec = target_store.records.get(tid)
            return None if trec is None else (tid, trec)

        def chained(rid: int, rec: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
            first = hop(rid, rec)
            return None if first is None else next_hop(*first)

        if parts[1].lower() == "id" and len(parts) == 2:
            # Account_Name.id is the lookup value itself, even when the target was deleted
            return Column(full, "ref", via(lambda rid, rec: int(rec[api]) if rec.get(api) else None),
                          via(lambda rid, rec: rec.get(api)))
        return self._resolve(fld.lookup_module, parts[1:], full, chained)

    # -- literals and predicates --------------------------------------------------------------------
    def convert(self, col: Column, tok: Any) -> Any:
        value = tok.value
        kind = col.kind
        try:
            if kind in ("id", "ref"):
                if isinstance(value, int) and not isinstance(value, bool):
                    return value
                if isinstance(value, str) and value.isdigit():
                    return int(value)
            elif kind == "text":
                if tok.kind in ("str", "num"):
                    return str(value).lower()
            elif kind == "number":
                if tok.kind == "num":
                    return float(value)
                if tok.kind == "str":
                    return float(value)
            elif kind == "date":
                if tok.kind == "str" and re.match(r"^\d{4}-\d{2}-\d{2}$", value):
                    return value
            elif kind == "epoch":
                if tok.kind == "str":
                    return parse_time(value, self.offset)
            elif kind == "bool":
                if tok.kind == "kw":
                    return value == "true"
                if tok.kind == "str" and value.lower() in ("true", "false"):
                    return value.lower() == "true"
        except ValueError:
            pass
        raise invalid_query("the value given for the column seems to be invalid", column_name=col.name,
                            value=tok.text)

    def predicate(self, module: str, node: Any) -> Callable[[int, dict[str, Any]], bool]:
        if isinstance(node, BoolOp):
            left = self.predicate(module, node.left)
            right = self.predicate(module, node.right)
            if node.op == "and":
                return lambda rid, rec: left(rid, rec) and right(rid, rec)
            return lambda rid, rec: left(rid, rec) or right(rid, rec)
        col = self.resolve(module, node.column)
        if col.multiline:
            raise invalid_query("multi-line fields cannot be used in criteria", column_name=col.name)
        get = col.get
        op = node.op
        if op == "isnull":
            return lambda rid, rec: get(rid, rec) is None
        if op == "notnull":
            return lambda rid, rec: get(rid, rec) is not None
        if op in ("like", "notlike"):
            if col.kind != "text" or node.values[0].kind != "str":
                raise invalid_query("like is supported only for text columns", column_name=col.name)
            pattern = node.values[0].value.lower()
            body = pattern.strip("%")
            if pattern.startswith("%") and pattern.endswith("%") and len(pattern) > 1:
                test = lambda v: body in v  # noqa: E731
            elif pattern.endswith("%"):
                test = lambda v: v.startswith(body)  # noqa: E731
            elif pattern.startswith("%"):
                test = lambda v: v.endswith(body)  # noqa: E731
            else:
                test = lambda v: v == body  # noqa: E731
            if op == "like":
                return lambda rid, rec: (v := get(rid, rec)) is not None and test(v)
            return lambda rid, rec: (v := get(rid, rec)) is not None and not test(v)
        if op in ("in", "notin"):
            if len(node.values) > MAX_IN_VALUES:
                raise ApiError(400, "LIMIT_EXCEEDED", f"at most {MAX_IN_VALUES} values are allowed in IN",
                               {"limit": MAX_IN_VALUES, "operator": op.replace("notin", "not in")})
            values = {self.convert(col, tok) for tok in node.values}
            if op == "in":
                return lambda rid, rec: get(rid, rec) in values
            return lambda rid, rec: (v := get(rid, rec)) is not None and v not in values
        if op in (">", ">=", "<", "<=", "between") and col.kind in ("text", "bool"):
            raise invalid_query(f"the comparator {op} is not supported for this column", column_name=col.name)
        if op == "between":
            low, high = (self.convert(col, tok) for tok in node.values)
            return lambda rid, rec: (v := get(rid, rec)) is not None and low <= v <= high
        value = self.convert(col, node.values[0])
        compare: dict[str, Callable[[Any], bool]] = {
            "=": lambda v: v == value, "!=": lambda v: v != value, ">": lambda v: v > value,
            ">=": lambda v: v >= value, "<": lambda v: v < value, "<=": lambda v: v <= value,
        }
        test2 = compare[op]
        return lambda rid, rec: (v := get(rid, rec)) is not None and test2(v)

    @staticmethod
    def id_bounds(node: Any) -> tuple[int | None, int | None, set[int] | None]:
        """Bounds on the record id implied by an AND-only tree of id comparisons (for bisect)."""
        low: int | None = None
        high: int | None = None
        only: set[int] | None = None
        stack = [node]
        while stack:
            cur = stack.pop()
            if isinstance(cur, BoolOp):
                if cur.op == "and":
                    stack.extend([cur.left, cur.right])
                continue
            if cur.column.lower() != "id":
                continue
            try:
                vals = [int(t.value) for t in cur.values]
            except (TypeError, ValueError):
                continue
            if cur.op in (">", ">="):
                bound = vals[0] + (1 if cur.op == ">" else 0)
                low = bound if low is None else max(low, bound)
            elif cur.op in ("<", "<="):
                bound = vals[0] - (1 if cur.op == "<" else 0)
                high = bound if high is None else min(high, bound)
            elif cur.op == "between":
                low = vals[0] if low is None else max(low, vals[0])
                high = vals[1] if high is None else min(high, vals[1])
            elif cur.op in ("=", "in"):
                only = set(vals) if only is None else only & set(vals)
        return low, high, only

    # -- execution --------------------------------------------------------------------------------
    def run(self, query: Query) -> tuple[list[dict[str, Any]], bool]:
        module = self.module_name(query.module)
        if len(query.columns) > MAX_COLUMNS:
            raise ApiError(400, "LIMIT_EXCEEDED", f"at most {MAX_COLUMNS} columns can be selected",
                           {"limit": MAX_COLUMNS, "clause": "select"})
        if query.criteria > MAX_CRITERIA:
            raise ApiError(400, "LIMIT_EXCEEDED", f"at most {MAX_CRITERIA} criteria are allowed",
                           {"limit": MAX_CRITERIA, "clause": "where"})
        if len(query.order_by) > MAX_ORDER_BY:
            raise ApiError(400, "LIMIT_EXCEEDED", f"at most {MAX_ORDER_BY} order by fields are allowed",
                           {"limit": MAX_ORDER_BY, "clause": "order by"})
        if query.limit < 1 or query.limit > MAX_LIMIT:
            raise ApiError(400, "LIMIT_EXCEEDED", f"limit must be between 1 and {MAX_LIMIT}",
                           {"limit": MAX_LIMIT, "clause": "limit"})
        if query.offset + query.limit > MAX_REACH:
            raise ApiError(400, "LIMIT_EXCEEDED",
                           f"offset plus limit cannot exceed {MAX_REACH}; page by criteria on id instead",
                           {"limit": MAX_REACH, "clause": "offset"})
        for label, names in (("select", query.columns), ("order by", [c for c, _ in query.order_by])):
            lowered = [n.lower() for n in names]
            if len(set(lowered)) != len(lowered):
                raise ApiError(400, "DUPLICATE_DATA", f"duplicate column in the {label} clause",
                               {"clause": label})
        columns = [self.resolve(module, c) for c in query.columns]
        keep = self.predicate(module, query.where)
        orders = [(self.resolve(module, c), desc) for c, desc in query.order_by]
        store = self.data.stores[module]
        records = store.records
        low, high, only = self.id_bounds(query.where)
        if only is not None:
            candidates: list[int] = sorted(i for i in only if i in records)
        else:
            lo_idx = bisect.bisect_left(store.ids, low) if low is not None else 0
            hi_idx = bisect.bisect_right(store.ids, high) if high is not None else len(store.ids)
            candidates = store.ids[lo_idx:hi_idx]
        need = query.offset + query.limit + 1
        streaming = not orders or (len(orders) == 1 and orders[0][0].kind == "id")
        matched: list[int] = []
        if streaming:
            seq = reversed(candidates) if orders and orders[0][1] else candidates
            for rid in seq:
                if keep(rid, records[rid]):
                    matched.append(rid)
                    if len(matched) >= need:
                        break
        else:
            matched = [rid for rid in candidates if keep(rid, records[rid])]
            for col, desc in reversed(orders):
                get = col.get
                if desc:
                    matched.sort(key=lambda rid: ((v := get(rid, records[rid])) is not None, v if v is not None
                                                  else 0), reverse=True)
                else:
                    matched.sort(key=lambda rid: ((v := get(rid, records[rid])) is not None, v if v is not None
                                                  else 0))
        page = matched[query.offset:query.offset + query.limit]
        more = len(matched) > query.offset + query.limit
        rows = []
        for rid in page:
            rec = records[rid]
            row = {col.name: col.out(rid, rec) for col in columns}
            if "id" not in row:
                row["id"] = str(rid)
            rows.append(row)
        return rows, more


def credits_for_limit(limit: int) -> int:
    """COQL cost by the LIMIT asked for (reference §11)."""
    if limit <= 200:
        return 1
    if limit <= 1000:
        return 2
    return 3


def run_query(data: ZohoData, body: Any) -> tuple[int, dict[str, Any] | None, int]:
    """(HTTP status, body or None for 204, credits)."""
    if not isinstance(body, dict) or not isinstance(body.get("select_query"), str) or not body["select_query"].strip():
        raise ApiError(400, "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing",
                       {"param_name": "select_query"})
    query = parse(body["select_query"])
    rows, more = Evaluator(data).run(query)
    cost = credits_for_limit(query.limit)
    if not rows:
        return 204, None, cost
    return 200, {"data": rows, "info": {"count": len(rows), "more_records": more}}, cost
