"""Record storage and the record APIs of the sandbox Zoho org (Contacts, Accounts, Deals).

Why this exists: the sync's correctness is only as well tested as the Zoho behaviour it meets. This
module keeps an org's records with the indexes a 100,000-record org needs (records by id, sorted id
and Modified_Time/Created_Time orderings, case-insensitive match indexes for duplicate-check and
unique fields) and implements the documented semantics of insert / update / upsert / delete / get /
deleted-records: per-record results in input order, mandatory / type / length / lookup / pipeline /
currency / uniqueness validation, 2,000-record discrete paging, page tokens (24 h, 100,000 records),
If-Modified-Since, 204/304 responses.

What it must never do: speak HTTP, check tokens or credits (zoho_api.py does), read the wall clock
(timestamps come from the sandbox clock through the org), or silently accept a value real Zoho would
reject where the reference documents the rejection.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
import re
import secrets
from collections.abc import Iterable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from cbzoho_sandbox.zoho_schema import (
    MODULE_INFO,
    MODULES,
    TIME_FIELDS,
    Field,
    build_fields,
    parse_offset,
)

if TYPE_CHECKING:  # pragma: no cover
    from cbzoho_sandbox.zoho_api import ZohoOrg

MAX_WRITE_RECORDS = 100
MAX_FIELDS_PARAM = 50
MAX_PER_PAGE = 200
DISCRETE_LIMIT = 2000
TOKEN_RECORD_LIMIT = 100_000
PAGE_TOKEN_TTL = 24 * 3600
RECYCLE_DAYS = 60
PERMANENT_DAYS = 120
SORTABLE = ("id", "Created_Time", "Modified_Time")

EMAIL_RE = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"\.[A-Za-z]{2,}$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class ApiError(Exception):
    """A top-level Zoho error: HTTP status plus the {code, details, message, status} body."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(code)
        self.status = status
        self.body = {"code": code, "details": details or {}, "message": message, "status": "error"}
        self.headers = headers or {}


def error_item(code: str, message: str, **details: Any) -> dict[str, Any]:
    return {"code": code, "details": details, "message": message, "status": "error"}


def norm(value: Any) -> str:
    """Key used by duplicate/unique matching: Zoho compares these values case-insensitively."""
    return value.strip().lower() if isinstance(value, str) else str(value)


@lru_cache(maxsize=8)
def _tz(offset_minutes: int) -> dt.timezone:
    return dt.timezone(dt.timedelta(minutes=offset_minutes))


@lru_cache(maxsize=65536)
def format_time(epoch: int, offset_minutes: int) -> str:
    """Zoho date-time: '2024-07-14T10:54:15+05:30' (seconds, org offset)."""
    return dt.datetime.fromtimestamp(epoch, _tz(offset_minutes)).isoformat()


def parse_time(text: str, offset_minutes: int) -> int:
    """ISO 8601 date-time (any offset; naive means the org's offset) -> epoch seconds."""
    if not isinstance(text, str) or "T" not in text:
        raise ValueError(f"not an ISO date-time: {text!r}")
    value = dt.datetime.fromisoformat(text.strip())
    if value.tzinfo is None:
        value = value.replace(tzinfo=_tz(offset_minutes))
    return int(value.timestamp())


class ModuleStore:
    """Records of one module with the orderings and indexes the APIs need."""

    def __init__(self, module: str):
        self.module = module
        self.records: dict[int, dict[str, Any]] = {}
        self.ids: list[int] = []
        self.by_mtime: list[tuple[int, int]] = []
        self.by_ctime: list[tuple[int, int]] = []
        self.match: dict[str, dict[str, set[int]]] = {}
        self.deleted: list[dict[str, Any]] = []
        self.version = 0
        self._views: dict[tuple, tuple[int, list, list[int]]] = {}

    # -- index maintenance -------------------------------------------------------------------
    def set_match_fields(self, names: Iterable[str]) -> None:
        self.match = {name: {} for name in names}
        for rid, rec in self.records.items():
            self._index(rid, rec)

    def _index(self, rid: int, rec: dict[str, Any]) -> None:
        for name, index in self.match.items():
            value = rec.get(name)
            if value is not None and value != "":
                index.setdefault(norm(value), set()).add(rid)

    def _unindex(self, rid: int, rec: dict[str, Any]) -> None:
        for name, index in self.match.items():
            value = rec.get(name)
            if value is not None and value != "":
                key = norm(value)
                bucket = index.get(key)
                if bucket is not None:
                    bucket.discard(rid)
                    if not bucket:
                        del index[key]

    def add(self, rid: int, rec: dict[str, Any]) -> None:
        self.records[rid] = rec
        if not self.ids or rid > self.ids[-1]:
            self.ids.append(rid)
        else:
            bisect.insort(self.ids, rid)
        bisect.insort(self.by_mtime, (rec["Modified_Time"], rid))
        bisect.insort(self.by_ctime, (rec["Created_Time"], rid))
        self._index(rid, rec)
        self.version += 1

    def bulk_add(self, items: list[tuple[int, dict[str, Any]]]) -> None:
        """Add many records at once; one sort instead of one insertion per record."""
        for rid, rec in items:
            self.records[rid] = rec
            self.ids.append(rid)
            self.by_mtime.append((rec["Modified_Time"], rid))
            self.by_ctime.append((rec["Created_Time"], rid))
            self._index(rid, rec)
        self.ids.sort()
        self.by_mtime.sort()
        self.by_ctime.sort()
        self.version += 1

    def replace(self, rid: int, new: dict[str, Any]) -> None:
        old = self.records[rid]
        self._unindex(rid, old)
        if old["Modified_Time"] != new["Modified_Time"]:
            self._remove_sorted(self.by_mtime, (old["Modified_Time"], rid))
            bisect.insort(self.by_mtime, (new["Modified_Time"], rid))
        self.records[rid] = new
        self._index(rid, new)
        self.version += 1

    def remove(self, rid: int) -> dict[str, Any]:
        rec = self.records.pop(rid)
        self._unindex(rid, rec)
        self._remove_sorted(self.ids, rid)
        self._remove_sorted(self.by_mtime, (rec["Modified_Time"], rid))
        self._remove_sorted(self.by_ctime, (rec["Created_Time"], rid))
        self.version += 1
        return rec

    @staticmethod
    def _remove_sorted(seq: list, item: Any) -> None:
        pos = bisect.bisect_left(seq, item)
        if pos < len(seq) and seq[pos] == item:
            del seq[pos]

    # -- ordered views ------------------------------------------------------------------------
    def view(self, sort_by: str, desc: bool, since: int | None, only: tuple[int, ...] | None
             ) -> tuple[list, list[int]]:
        """(ascending keyset keys, record ids) in the requested order; cached per store version."""
        cache_key = (sort_by, desc, since, only)
        hit = self._views.get(cache_key)
        if hit is not None and hit[0] == self.version:
            return hit[1], hit[2]
        if sort_by == "id":
            ids = list(self.ids)
            if since is not None:
                recs = self.records
                ids = [i for i in ids if recs[i]["Modified_Time"] > since]
            if only is not None:
                wanted = set(only)
                ids = [i for i in ids if i in wanted]
            if desc:
                ids.reverse()
                keys: list = [-i for i in ids]
            else:
                keys = list(ids)
        else:
            pairs = self.by_mtime if sort_by == "Modified_Time" else self.by_ctime
            if since is not None:
                recs = self.records
                pairs = [p for p in pairs if recs[p[1]]["Modified_Time"] > since]
            if only is not None:
                wanted = set(only)
                pairs = [p for p in pairs if p[1] in wanted]
            if desc:
                pairs = pairs[::-1]
                keys = [(-t, -i) for t, i in pairs]
            else:
                keys = list(pairs)
            ids = [i for _, i in pairs]
        if len(self._views) > 16:
            self._views.clear()
        self._views[cache_key] = (self.version, keys, ids)
        return keys, ids

    def clear(self) -> None:
        self.__init__(self.module)  # type: ignore[misc]


class ZohoData:
    """Every record-level behaviour of one org; the org supplies settings, users and the clock."""

    def __init__(self, org: ZohoOrg):
        self.org = org
        self.stores: dict[str, ModuleStore] = {m: ModuleStore(m) for m in MODULES}
        self.page_tokens: dict[str, dict[str, Any]] = {}
        self._fields: dict[str, list[Field]] = {}
        self._field_map: dict[str, dict[str, Field]] = {}
        self.next_seq = 3_000_001
        self.refresh_schema()

    # -- schema --------------------------------------------------------------------------------
    def refresh_schema(self) -> None:
        settings = self.org.settings_ref
        fields = {m: build_fields(m, settings) for m in MODULES}
        self._fields = fields
        self._field_map = {m: {f.api_name: f for f in fl} for m, fl in fields.items()}
        for module, store in self.stores.items():
            names = [MODULE_INFO[module]["dup_field"]] + [f.api_name for f in fields[module] if f.unique]
            store.set_match_fields(dict.fromkeys(names))

    def fields(self, module: str) -> list[Field]:
        return self._fields[module]

    def field_map(self, module: str) -> dict[str, Field]:
        return self._field_map[module]

    def unique_fields(self, module: str) -> list[Field]:
        return [f for f in self._fields[module] if f.unique]

    @property
    def offset(self) -> int:
        return parse_offset(self.org.settings_ref["utc_offset"])

    # -- ids ---------------------------------------------------------------------------------
    def new_id(self) -> int:
        rid = self.org.id_prefix * 10 ** 12 + self.next_seq
        self.next_seq += 1
        return rid

    def _claim_id(self, text: Any) -> int:
        if not isinstance(text, (str, int)) or not str(text).isdigit() or str(text).startswith("0"):
            raise ValueError(f"record id must be a numeric string, got {text!r}")
        rid = int(text)
        prefix = self.org.id_prefix * 10 ** 12
        if prefix <= rid < prefix + 10 ** 12:
            self.next_seq = max(self.next_seq, rid - prefix + 1)
        return rid

    def find(self, rid_text: Any) -> tuple[str, int] | None:
        """Module and int id of a live record with this id, in any module."""
        if not isinstance(rid_text, (str, int)) or not str(rid_text).isdigit():
            return None
        rid = int(rid_text)
        for module, store in self.stores.items():
            if rid in store.records:
                return module, rid
        return None

    # -- rendering -----------------------------------------------------------------------------
    def user_ref(self, uid: str | None, with_email: bool = True) -> dict[str, Any] | None:
        if uid is None:
            return None
        user = self.org.users_by_id().get(uid)
        ref: dict[str, Any] = {"name": user["full_name"] if user else None, "id": uid}
        if with_email:
            ref["email"] = user["email"] if user else None
        return ref

    def display_name(self, module: str, rec: dict[str, Any]) -> str | None:
        return rec.get(MODULE_INFO[module]["display_field"])

    def lookup_ref(self, module: str, target_id: str | None) -> dict[str, Any] | None:
        if target_id is None:
            return None
        target = self.stores[module].records.get(int(target_id))
        if target is None:
            return None
        return {"name": self.display_name(module, target), "id": target_id}

    def render_value(self, fld: Field | None, name: str, value: Any) -> Any:
        if value is None:
            return None
        if fld is None:
            return value
        if name in TIME_FIELDS:
            return format_time(value, self.offset)
        if fld.data_type == "ownerlookup":
            return self.user_ref(value)
        if fld.data_type == "lookup":
            return self.lookup_ref(fld.lookup_module or "", value)
        return value

    def render(self, module: str, rid: int, rec: dict[str, Any], only: list[str] | None = None
               ) -> dict[str, Any]:
        fmap = self._field_map[module]
        if only is None:
            out: dict[str, Any] = {"id": str(rid)}
            for fld in self._fields[module]:
                out[fld.api_name] = self.render_value(fld, fld.api_name, rec.get(fld.api_name))
            for key, value in rec.items():
                if key not in out:
                    out[key] = value
            return out
        out = {}
        for name in only:
            if name == "id":
                continue
            fld = fmap.get(name)
            if fld is not None or name in rec:
                out[name] = self.render_value(fld, name, rec.get(name))
        out["id"] = str(rid)
        return out

    def dump(self, module: str) -> list[dict[str, Any]]:
        store = self.stores[module]
        return [self.render(module, rid, store.records[rid]) for rid in store.ids]

    # -- loading --------------------------------------------------------------------------------
    def load(self, module: str, records: list[dict[str, Any]]) -> int:
        """Seed records given in Zoho GET shape; fills id, times and owners; no validation."""
        store = self.stores[module]
        fmap = self._field_map[module]
        now = int(self.org.now())
        admin = self.org.current_user()["id"]
        offset = self.offset
        items: list[tuple[int, dict[str, Any]]] = []
        seen: set[int] = set()
        for raw in records:
            if not isinstance(raw, dict):
                raise ValueError(f"{module} records must be objects")
            rid = self._claim_id(raw["id"]) if raw.get("id") is not None else None
            rec: dict[str, Any] = {}
            for key, value in raw.items():
                if key == "id":
                    continue
                fld = fmap.get(key)
                if fld is not None and fld.data_type in ("lookup", "ownerlookup"):
                    value = str(value["id"]) if isinstance(value, dict) and value.get("id") is not None else (
                        str(value) if isinstance(value, (str, int)) and str(value).isdigit() else None)
                elif key in TIME_FIELDS and value is not None:
                    value = parse_time(value, offset) if isinstance(value, str) else int(value)
                if value is not None:
                    rec[key] = value
            rec.setdefault("Owner", admin)
            rec.setdefault("Created_By", rec["Owner"])
            rec.setdefault("Modified_By", rec["Created_By"])
            rec.setdefault("Created_Time", now)
            rec.setdefault("Modified_Time", rec["Created_Time"])
            if module == "Contacts" and "Full_Name" not in rec:
                rec["Full_Name"] = full_name(rec)
            items.append((rid, rec))  # type: ignore[arg-type]
        final: list[tuple[int, dict[str, Any]]] = []
        for rid, rec in items:
            if rid is None:
                rid = self.new_id()
            if rid in seen or self.find(rid) is not None:
                raise ValueError(f"duplicate record id {rid} in {module}")
            seen.add(rid)
            final.append((rid, rec))
        if store.records and final and min(r for r, _ in final) < store.ids[-1]:
            for rid, rec in final:
                store.add(rid, rec)
        else:
            store.bulk_add(final)
        return len(final)

    # -- validation -----------------------------------------------------------------------------
    def _check_value(self, module: str, fld: Field, value: Any, path: str
                     ) -> tuple[Any, dict[str, Any] | None]:
        """(stored value, None) or (None, per-record error item)."""
        name = fld.api_name
        kind = fld.data_type

        def bad_type(expected: str) -> tuple[None, dict[str, Any]]:
            return None, error_item("INVALID_DATA", "invalid data", expected_data_type=expected,
                                    api_name=name, json_path=path)

        if value is None or (isinstance(value, str) and value == "" and kind not in ("lookup", "ownerlookup")):
            return None, None
        if kind in ("text", "email", "phone", "website", "textarea", "picklist"):
            if not isinstance(value, str):
                return bad_type(kind)
            if fld.length is not None and len(value) > fld.length:
                return None, error_item("INVALID_DATA", "invalid data", maximum_length=fld.length,
                                        api_name=name, json_path=path)
            if kind == "email" and not EMAIL_RE.match(value):
                return bad_type("email")
            return value, None
        if kind in ("currency", "double"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                return bad_type("double")
            if abs(value) >= 10 ** 16:
                return None, error_item("INVALID_DATA", "invalid data", maximum_length=16,
                                        api_name=name, json_path=path)
            return float(round(value, 9)), None
        if kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int):
                return bad_type("integer")
            if abs(value) >= 10 ** 9:
                return None, error_item("INVALID_DATA", "invalid data", maximum_length=9,
                                        api_name=name, json_path=path)
            return value, None
        if kind == "bigint":
            text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
            if not isinstance(text, str) or not text.lstrip("-").isdigit() or len(text.lstrip("-")) > 18:
                return bad_type("bigint")
            return text, None
        if kind == "boolean":
            if not isinstance(value, bool):
                return bad_type("boolean")
            return value, None
        if kind == "date":
            if not isinstance(value, str) or not DATE_RE.match(value):
                return bad_type("date")
            try:
                dt.date.fromisoformat(value)
            except ValueError:
                return bad_type("date")
            return value, None
        if kind == "datetime":
            try:
                epoch = parse_time(value, self.offset)
            except (ValueError, TypeError):
                return bad_type("datetime")
            return format_time(epoch, self.offset), None
        if kind == "lookup":
            if value == "":
                return None, None
            if not isinstance(value, dict):
                return bad_type("jsonobject")
            target = value.get("id")
            if target is None:
                return None, None
            target = str(target)
            if not target.isdigit() or int(target) not in self.stores[fld.lookup_module or ""].records:
                return None, error_item("INVALID_DATA", "the id given seems to be invalid",
                                        api_name=name, json_path=path, id=target)
            return target, None
        if kind == "ownerlookup":
            if not isinstance(value, dict):
                return bad_type("jsonobject")
            uid = str(value.get("id")) if value.get("id") is not None else None
            user = self.org.users_by_id().get(uid or "")
            if user is None or user.get("status") != "active":
                return None, error_item("INVALID_DATA", "invalid data", api_name=name, json_path=path,
                                        **({"id": uid} if uid else {}))
            return uid, None
        return value, None  # pragma: no cover - every data type is handled above

    def _prepare(self, module: str, raw: Any, index: int, existing: dict[str, Any] | None,
                 rid: int | None) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """Merge `raw` into a copy of `existing` (or a new record) and validate it."""
        base = f"$.data[{index}]"
        if not isinstance(raw, dict):
            return None, error_item("INVALID_DATA", "invalid data", expected_data_type="jsonobject",
                                    json_path=base)
        settings = self.org.settings_ref
        fields = self._fields[module]
        fmap = self._field_map[module]
        creating = existing is None
        if module == "Deals" and not settings["multi_currency"] and raw.get("Currency") not in (
                None, settings["home_currency"]):
            return None, error_item("INVALID_DATA", "invalid data", api_name="Currency",
                                    json_path=f"{base}.Currency")
        # mandatory fields first, in layout order
        for fld in fields:
            if not fld.mandatory:
                continue
            given = raw.get(fld.api_name, None if creating else ...)
            if given is ...:
                continue
            if given is None or (isinstance(given, str) and not given.strip()):
                return None, error_item("MANDATORY_NOT_FOUND", "required field not found",
                                        api_name=fld.api_name, json_path=f"{base}.{fld.api_name}")
        new = dict(existing) if existing else {}
        for fld in fields:
            if fld.read_only or fld.api_name not in raw:
                continue
            value, err = self._check_value(module, fld, raw[fld.api_name], f"{base}.{fld.api_name}")
            if err:
                return None, err
            if value is None:
                if fld.data_type == "ownerlookup":
                    continue  # an owner cannot be cleared; Zoho keeps the current one
                new.pop(fld.api_name, None)
            else:
                new[fld.api_name] = value
        if module == "Deals":
            err = self._check_pipeline(new, raw, base)
            if err:
                return None, err
        if module == "Deals" and settings["multi_currency"]:
            currency = new.get("Currency") or settings["home_currency"]
            if currency not in settings["currencies"]:
                return None, error_item("INVALID_DATA", "invalid data", api_name="Currency",
                                        json_path=f"{base}.Currency")
            new["Currency"] = currency
        if module == "Contacts":
            new["Full_Name"] = full_name(new)
        dup = self._duplicates(module, new, rid, base, fmap)
        if dup:
            return None, dup
        return new, None

    def _check_pipeline(self, new: dict[str, Any], raw: dict[str, Any], base: str
                        ) -> dict[str, Any] | None:
        pipelines = self.org.settings_ref["pipelines"]
        pipeline = new.get("Pipeline")
        if pipeline is None and pipelines:
            pipeline = next(iter(pipelines))
        if pipeline not in pipelines:
            return error_item("INVALID_DATA", "Layout doesn't contain the Pipeline", api_name="Pipeline",
                              json_path=f"{base}.Pipeline")
        stage = new.get("Stage")
        if stage is not None and stage not in pipelines[pipeline] and (
                "Stage" in raw or "Pipeline" in raw):
            return error_item("INVALID_DATA", "Pipeline doesn't contain the Stage", api_name="Stage",
                              json_path=f"{base}.Stage")
        return None

    def _duplicates(self, module: str, new: dict[str, Any], rid: int | None, base: str,
                    fmap: dict[str, Field]) -> dict[str, Any] | None:
        store = self.stores[module]
        found: list[dict[str, Any]] = []
        for fld in self.unique_fields(module):
            value = new.get(fld.api_name)
            if value is None or value == "":
                continue
            owners = store.match.get(fld.api_name, {}).get(norm(value), set()) - {rid}
            if not owners:
                continue
            other_id = min(owners)
            other = store.records[other_id]
            owner = self.org.users_by_id().get(other.get("Owner", ""), {})
            found.append(error_item(
                "DUPLICATE_DATA", "duplicate data", api_name=fld.api_name,
                json_path=f"{base}.{fld.api_name}",
                duplicate_record={"id": str(other_id),
                                  "Owner": {"name": owner.get("full_name"), "id": other.get("Owner"),
                                            "zuid": owner.get("zuid")},
                                  "module": {"api_name": module,
                                             "id": self.org.meta_ids.make("module", module)}}))
        if not found:
            return None
        if len(found) == 1:
            return found[0]
        return error_item("MULTIPLE_OR_MULTI_ERRORS", "multiple errors occurred", errors=found)

    # -- writes ---------------------------------------------------------------------------------
    def _success(self, rid: int, rec: dict[str, Any], message: str) -> dict[str, Any]:
        offset = self.offset
        return {"code": "SUCCESS", "details": {
            "Modified_Time": format_time(rec["Modified_Time"], offset),
            "Modified_By": self.user_ref(rec.get("Modified_By"), with_email=False),
            "Created_Time": format_time(rec["Created_Time"], offset),
            "id": str(rid),
            "Created_By": self.user_ref(rec.get("Created_By"), with_email=False),
        }, "message": message, "status": "success"}

    def _stamp(self, rec: dict[str, Any], creating: bool) -> None:
        now = int(self.org.now())
        me = self.org.current_user()["id"]
        if creating:
            rec.setdefault("Owner", me)
            rec["Created_Time"] = now
            rec["Created_By"] = me
        rec["Modified_Time"] = now
        rec["Modified_By"] = me

    def _insert_one(self, module: str, raw: Any, index: int) -> dict[str, Any]:
        new, err = self._prepare(module, raw, index, None, None)
        if err:
            return err
        assert new is not None
        self._stamp(new, creating=True)
        rid = self.new_id()
        self.stores[module].add(rid, new)
        return self._success(rid, new, "record added")

    def _update_one(self, module: str, rid: int, raw: Any, index: int) -> dict[str, Any]:
        store = self.stores[module]
        new, err = self._prepare(module, raw, index, store.records[rid], rid)
        if err:
            return err
        assert new is not None
        self._stamp(new, creating=False)
        store.replace(rid, new)
        return self._success(rid, new, "record updated")

    @staticmethod
    def _data_list(body: Any) -> list[Any]:
        if not isinstance(body, dict) or "data" not in body:
            raise ApiError(400, "MANDATORY_NOT_FOUND", "required param not found", {"param_name": "data"})
        data = body["data"]
        if not isinstance(data, list):
            raise ApiError(400, "INVALID_DATA", "invalid data", {"expected_data_type": "jsonarray",
                                                                 "param_name": "data"})
        if not data:
            raise ApiError(400, "MANDATORY_NOT_FOUND", "required param not found", {"param_name": "data"})
        if len(data) > MAX_WRITE_RECORDS:
            raise ApiError(400, "LIMIT_EXCEEDED", "the number of records exceeds the limit of 100",
                           {"limit": MAX_WRITE_RECORDS, "param_name": "data"})
        return data

    @staticmethod
    def _status(results: list[dict[str, Any]], all_ok: int) -> int:
        ok = sum(1 for r in results if r.get("status") == "success")
        if ok == len(results):
            return all_ok
        return 207 if ok else 400

    def insert(self, module: str, body: Any) -> tuple[int, dict[str, Any]]:
        data = self._data_list(body)
        results = [self._insert_one(module, raw, i) for i, raw in enumerate(data)]
        return self._status(results, 201), {"data": results}

    def update(self, module: str, body: Any, path_id: str | None = None) -> tuple[int, dict[str, Any]]:
        data = self._data_list(body)
        if path_id is not None and len(data) != 1:
            raise ApiError(400, "INVALID_DATA", "only one record can be updated through its id url",
                           {"param_name": "data"})
        results = []
        store = self.stores[module]
        for i, raw in enumerate(data):
            rid_text = path_id if path_id is not None else (raw.get("id") if isinstance(raw, dict) else None)
            if rid_text is None:
                results.append(error_item("MANDATORY_NOT_FOUND", "required field not found",
                                          api_name="id", json_path=f"$.data[{i}].id"))
                continue
            rid_text = str(rid_text)
            if not rid_text.isdigit() or int(rid_text) not in store.records:
                results.append(error_item("INVALID_DATA", "the id given seems to be invalid",
                                          api_name="id", json_path=f"$.data[{i}].id", id=rid_text))
                continue
            results.append(self._update_one(module, int(rid_text), raw, i))
        return self._status(results, 200), {"data": results}

    def upsert(self, module: str, body: Any) -> tuple[int, dict[str, Any]]:
        data = self._data_list(body)
        order = self._check_order(module, body.get("duplicate_check_fields"))
        store = self.stores[module]
        results = []
        for i, raw in enumerate(data):
            target = None
            matched = None
            if isinstance(raw, dict):
                for name in order:
                    value = raw.get(name)
                    if value is None or value == "" or isinstance(value, (dict, list)):
                        continue
                    hits = store.match.get(name, {}).get(norm(value))
                    if hits:
                        target, matched = min(hits), name
                        break
            if target is None:
                result = self._insert_one(module, raw, i)
                if result["status"] == "success":
                    result = {**result, "action": "insert", "duplicate_field": None}
            else:
                result = self._update_one(module, target, raw, i)
                if result["status"] == "success":
                    result = {**result, "action": "update", "duplicate_field": matched}
            results.append(result)
        return self._status(results, 200), {"data": results}

    def _check_order(self, module: str, requested: Any) -> list[str]:
        """Fields upsert compares, in order (reference §6)."""
        system = MODULE_INFO[module]["dup_field"]
        uniques = [f.api_name for f in self.unique_fields(module) if f.api_name != system]
        if requested is None:
            return [system] + uniques
        if not isinstance(requested, list) or not all(isinstance(x, str) for x in requested):
            raise ApiError(400, "INVALID_DATA", "invalid data",
                           {"expected_data_type": "jsonarray", "param_name": "duplicate_check_fields"})
        allowed = {system, *uniques}
        for name in requested:
            if name not in allowed:
                raise ApiError(400, "INVALID_DATA", "the field is neither a system duplicate-check field "
                               "nor a unique field", {"api_name": name, "param_name": "duplicate_check_fields"})
        order = list(dict.fromkeys(requested))
        order += [u for u in uniques if u not in order]
        return order

    def delete(self, module: str, ids_text: str | None) -> tuple[int, dict[str, Any]]:
        if not ids_text:
            raise ApiError(400, "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing",
                           {"param_name": "ids"})
        ids = [x.strip() for x in ids_text.split(",") if x.strip()]
        if len(ids) > MAX_WRITE_RECORDS:
            raise ApiError(400, "LIMIT_EXCEEDED", "the number of ids exceeds the limit of 100",
                           {"limit": MAX_WRITE_RECORDS, "param_name": "ids"})
        store = self.stores[module]
        now = int(self.org.now())
        me = self.org.current_user()["id"]
        results = []
        for text in ids:
            if not text.isdigit() or int(text) not in store.records:
                results.append(error_item("INVALID_DATA", "record not deleted", id=text))
                continue
            rec = store.remove(int(text))
            store.deleted.append({"id": text, "display_name": self.display_name(module, rec),
                                  "type": "recycle", "deleted_by": me,
                                  "created_by": rec.get("Created_By"), "deleted_time": now})
            results.append({"code": "SUCCESS", "details": {"id": text}, "message": "record deleted",
                            "status": "success"})
        return self._status(results, 200), {"data": results}

    # -- reads ----------------------------------------------------------------------------------
    def get_one(self, module: str, rid_text: str) -> tuple[int, dict[str, Any] | None]:
        if not rid_text.isdigit():
            raise ApiError(400, "INVALID_DATA", "the id given seems to be invalid",
                           {"api_name": "id", "id": rid_text})
        store = self.stores[module]
        rec = store.records.get(int(rid_text))
        if rec is None:
            return 204, None
        return 200, {"data": [self.render(module, int(rid_text), rec)]}

    def count(self, module: str) -> dict[str, Any]:
        return {"count": len(self.stores[module].records)}

    @staticmethod
    def int_param(params: dict[str, str], name: str, default: int) -> int:
        text = params.get(name)
        if text is None or text == "":
            return default
        if not text.isdigit() or int(text) < 1:
            raise ApiError(400, "INVALID_DATA", "invalid data", {"param_name": name,
                                                                  "expected_data_type": "integer"})
        return int(text)

    def _since(self, header: str | None) -> int | None:
        if header is None or header == "":
            return None
        try:
            return parse_time(header, self.offset)
        except ValueError:
            raise ApiError(400, "INVALID_DATA", "invalid data", {"header_name": "If-Modified-Since"}) from None

    def list_records(self, module: str, params: dict[str, str], since_header: str | None
                     ) -> tuple[int, dict[str, Any] | None]:
        ids_param = params.get("ids")
        only: tuple[int, ...] | None = None
        if ids_param:
            parts = [x.strip() for x in ids_param.split(",") if x.strip()]
            if len(parts) > 100:
                raise ApiError(400, "LIMIT_EXCEEDED", "the number of ids exceeds the limit of 100",
                               {"limit": 100, "param_name": "ids"})
            only = tuple(sorted({int(x) for x in parts if x.isdigit()}))
        fields_param = params.get("fields")
        if not fields_param and only is None:
            raise ApiError(400, "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing",
                           {"param_name": "fields"})
        fields: list[str] | None = None
        if fields_param:
            fields = list(dict.fromkeys(x.strip() for x in fields_param.split(",") if x.strip()))
            if len(fields) > MAX_FIELDS_PARAM:
                raise ApiError(400, "LIMIT_EXCEEDED", "the number of fields exceeds the limit of 50",
                               {"limit": MAX_FIELDS_PARAM, "param_name": "fields"})
        if params.get("cvid"):
            raise ApiError(400, "INVALID_DATA", "the custom view id given seems to be invalid",
                           {"param_name": "cvid"})
        per_page = self.int_param(params, "per_page", MAX_PER_PAGE)
        if per_page > MAX_PER_PAGE:
            raise ApiError(400, "LIMIT_EXCEEDED", "per_page cannot exceed 200",
                           {"limit": MAX_PER_PAGE, "param_name": "per_page"})
        sort_by = params.get("sort_by") or "id"
        if sort_by not in SORTABLE:
            raise ApiError(400, "INVALID_DATA", "invalid data",
                           {"param_name": "sort_by", "supported_values": list(SORTABLE)})
        sort_order = params.get("sort_order") or "desc"
        if sort_order not in ("asc", "desc"):
            raise ApiError(400, "INVALID_DATA", "invalid data",
                           {"param_name": "sort_order", "supported_values": ["asc", "desc"]})
        since = self._since(since_header)
        token_text = params.get("page_token")
        has_page = params.get("page") not in (None, "")
        if token_text and has_page:
            raise ApiError(400, "AMBIGUITY_DURING_PROCESSING", "page and page_token cannot be used together",
                           {"param_names": ["page", "page_token"]})
        binding = (module, sort_by, sort_order, since, only)
        store = self.stores[module]
        keys, ordered = store.view(sort_by, sort_order == "desc", since, only)
        now = self.org.now()
        if token_text:
            token = self.page_tokens.get(token_text)
            if token is None:
                raise ApiError(400, "INVALID_DATA", "the page_token given seems to be invalid",
                               {"param_name": "page_token"})
            if token["expires"] <= now:
                raise ApiError(400, "EXPIRED_VALUE", "the page_token has expired",
                               {"param_name": "page_token"})
            if token["binding"] != binding:
                raise ApiError(400, "TOKEN_BOUND_DATA_MISMATCH",
                               "the page_token is bound to other parameters", {"param_name": "page_token"})
            served = token["served"]
            if served >= TOKEN_RECORD_LIMIT:
                raise ApiError(400, "PAGINATION_LIMIT_EXCEEDED",
                               "you can only get the first 100000 records through page_token",
                               {"limit": TOKEN_RECORD_LIMIT})
            start = bisect.bisect_right(keys, token["last_key"])
            page_no = served // per_page + 1
        else:
            page_no = self.int_param(params, "page", 1)
            if page_no * per_page > DISCRETE_LIMIT:
                raise ApiError(400, "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
                               "You can only get the first 2000 records without using page_token param",
                               {"limit": DISCRETE_LIMIT})
            start = (page_no - 1) * per_page
            served = start
        if since is not None and not ordered:
            return 304, None
        chunk = ordered[start:start + per_page]
        if not chunk:
            return 204, None
        more = start + len(chunk) < len(ordered)
        next_token = None
        expiry = None
        if more:
            self._prune_tokens(now)
            next_token = "pt" + secrets.token_hex(24)
            self.page_tokens[next_token] = {"binding": binding, "last_key": keys[start + len(chunk) - 1],
                                            "served": served + len(chunk), "expires": now + PAGE_TOKEN_TTL}
            expiry = format_time(int(now + PAGE_TOKEN_TTL), self.offset)
        recs = store.records
        data = [self.render(module, rid, recs[rid], fields) for rid in chunk]
        info = {"per_page": per_page, "count": len(data), "page": page_no, "sort_by": sort_by,
                "sort_order": sort_order, "more_records": more, "next_page_token": next_token,
                "previous_page_token": None, "page_token_expiry": expiry, "call": False, "email": False}
        return 200, {"data": data, "info": info}

    def _prune_tokens(self, now: float) -> None:
        """Keep the token table bounded in long-running demos: drop expired tokens, then the oldest."""
        if len(self.page_tokens) < 20_000:
            return
        for key in [k for k, t in self.page_tokens.items() if t["expires"] <= now]:
            del self.page_tokens[key]
        while len(self.page_tokens) >= 20_000:
            del self.page_tokens[next(iter(self.page_tokens))]

    def list_deleted(self, module: str, params: dict[str, str], since_header: str | None
                     ) -> tuple[int, dict[str, Any] | None]:
        kind = params.get("type") or "all"
        if kind not in ("all", "recycle", "permanent"):
            raise ApiError(400, "INVALID_DATA", "invalid data",
                           {"param_name": "type", "supported_values": ["all", "recycle", "permanent"]})
        per_page = self.int_param(params, "per_page", MAX_PER_PAGE)
        if per_page > MAX_PER_PAGE:
            raise ApiError(400, "LIMIT_EXCEEDED", "per_page cannot exceed 200",
                           {"limit": MAX_PER_PAGE, "param_name": "per_page"})
        page = self.int_param(params, "page", 1)
        since = self._since(since_header)
        now = int(self.org.now())
        items = []
        for entry in reversed(self.stores[module].deleted):
            age_days = (now - entry["deleted_time"]) / 86400
            if age_days > PERMANENT_DAYS:
                continue
            entry_type = "permanent" if age_days > RECYCLE_DAYS else entry["type"]
            if kind != "all" and entry_type != kind:
                continue
            if since is not None and entry["deleted_time"] <= since:
                continue
            items.append((entry, entry_type))
        if since is not None and not items:
            return 304, None
        chunk = items[(page - 1) * per_page: page * per_page]
        if not chunk:
            return 204, None
        data = [{"id": e["id"], "display_name": e["display_name"], "type": t,
                 "deleted_by": self.user_ref(e["deleted_by"], with_email=False),
                 "created_by": self.user_ref(e["created_by"], with_email=False),
                 "deleted_time": format_time(e["deleted_time"], self.offset)} for e, t in chunk]
        return 200, {"data": data, "info": {"per_page": per_page, "count": len(data), "page": page,
                                            "more_records": page * per_page < len(items)}}


def full_name(rec: dict[str, Any]) -> str | None:
    parts = [p for p in (rec.get("First_Name"), rec.get("Last_Name")) if p]
    return " ".join(parts) if parts else None
