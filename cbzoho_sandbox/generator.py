"""Deterministic, deliberately messy datasets for the sandbox's Chargebee site and Zoho CRM org.

Why this exists: the sync is only worth trusting if it has been run against data that looks like a
real billing system a few years in — customers without names or email, the same company typed three
ways, values longer than Zoho accepts, deleted customers, records older than Chargebee's
``updated_at`` field — and against a CRM that already holds some of those people. Demos, tests and
benchmarks all need the same such data on demand, at any size, and identical from run to run so a
failing test or a benchmark number can be reproduced. ``generate_dataset`` builds it in memory:
Chargebee customers and subscriptions in the API's PC 2.0 object shape (optional keys absent, never
null) and pre-existing Zoho Contacts and Accounts in the shape Get Records returns (empty fields null).

Each kind of mess is given to a fixed share of the customers (``CUSTOMER_SHARES``, ``ZOHO_SHARES``);
the counts are exact (``round(share * customers)``) and reported in ``summary`` with a few example
ids, so a test or the demo can say what it was given. From ``ALWAYS_PRESENT_FROM`` customers upwards
every category gets at least one customer (shared companies and duplicate emails at least one pair).

What it must never do:
- read a clock: every timestamp derives from the ``now`` argument (the sandbox passes its own clock);
- use randomness other than the one ``random.Random(seed)`` it creates — same arguments, same output,
  byte for byte once serialised, on every machine;
- touch the network, the filesystem or the sandbox's state (it returns data; loading is the caller's
  job), or import the sandbox's API modules (the item-price catalog is restated in ``ITEM_PRICES``);
- produce values a real Chargebee site cannot hold (field maxima from the API spec are respected:
  names 150, email 70, phone 50, company 250) — over-long values are over-long for Zoho only.

Zoho duplicates: ``zoho["Contacts_duplicates"]`` holds a second Contact for some emails already in
``zoho["Contacts"]``. Load them only into an org that allows duplicate emails (``unique_email`` off);
the caller must take the key out before handing ``zoho`` to ``ZohoOrg.load``.
"""

from __future__ import annotations

import calendar
import random
from datetime import UTC, datetime

__all__ = [
    "ALWAYS_PRESENT_FROM",
    "CUSTOMER_SHARES",
    "ITEM_PRICES",
    "LEGACY_CUTOFF",
    "MRR_STATUSES",
    "ZOHO_SHARES",
    "generate_dataset",
    "item_price_id",
    "subscription_mrr",
]

# --------------------------------------------------------------------------------------------------
# Shares. Each value is the fraction of *customers* that get the category. Categories in one group are
# exclusive (a customer has at most one name problem, one email problem, ...); groups are independent.
# --------------------------------------------------------------------------------------------------
CUSTOMER_SHARES: dict[str, float] = {
    # names
    "missing_first_name": 0.03,
    "missing_last_name": 0.03,
    "missing_both_names": 0.01,
    "unicode_names": 0.08,          # José, Zoë, Łukasz, 山田, Ødegaard ... (first and last)
    "emoji_names": 0.005,           # "Max 🚀"
    "long_last_name": 0.005,        # exactly 120 characters (Zoho Last_Name holds 80)
    # email
    "missing_email": 0.03,
    "email_odd_case_spaces": 0.04,  # "  Jose.Garcia12@EXAMPLE.COM "
    "invalid_email": 0.005,         # "not-an-email", "ada1@", "ada1 at example.com", "ada1@@example.com"
    "duplicate_email": 0.01,        # customers in pairs sharing one email (share / 2 pairs)
    # company
    "missing_company": 0.10,
    "long_company_name": 0.005,     # exactly 150 characters (Zoho Account_Name holds 100)
    "shared_company": 0.15,         # about 25 customers per company; see SHARED_CASE_VARIANT_EVERY
    # lifecycle
    "deleted": 0.02,                # deleted: true, and so are all their subscriptions
    "legacy_without_updated_at": 0.005,  # created before 2016-09-28: no updated_at / resource_version
    # other
    "chargebee_style_id": 0.05,     # auto-generated ids like "16CRibSWvTxWf2g1" instead of cust_000042
    "long_phone": 0.003,            # 31-50 characters (Zoho Phone holds 30)
    # preferred currency (the rest is USD)
    "currency_EUR": 0.20,
    "currency_GBP": 0.12,
    "currency_JPY": 0.08,
}

# Of the customers at a shared company, every 3rd one after the first per company spells it in
# another case ("ACME INC" / "acme inc" for "Acme Inc").
SHARED_CASE_VARIANT_EVERY = 3
SHARED_COMPANY_SIZE = 25

# Zoho records that exist before the first sync. Also fractions of the number of customers.
ZOHO_SHARES: dict[str, float] = {
    "contact_same": 0.10,                 # same email (lower case), same names
    "contact_email_case_differs": 0.03,   # Zoho email "Jose.Garcia12@EXAMPLE.COM"
    "contact_blank_fields": 0.04,         # First_Name, Phone, Mailing_Street/City null in Zoho
    "contact_different_values": 0.04,     # other Last_Name and Phone (and sometimes First_Name)
    "contact_chargebee_email_messy": 0.01,  # Chargebee email has odd case/spaces, Zoho's is clean
    "contact_email_ambiguous": 0.005,     # a 2nd Contact with the email, in "Contacts_duplicates"
    "contact_unrelated": 0.05,            # prospects Chargebee does not know (a fifth without email)
    "account_same": 0.02,                 # Account_Name equal to a Chargebee company
    "account_case_differs": 0.01,         # Account_Name equal ignoring case
    "account_unrelated": 0.01,
}
# Plus exactly one company name held by two Accounts (summary["zoho"]["account_ambiguous_name"]).

ALWAYS_PRESENT_FROM = 100

LEGACY_CUTOFF = 1475020800  # 2016-09-28T00:00:00Z: records untouched since lack updated_at
_LEGACY_EARLIEST = 1325376000  # 2012-01-01T00:00:00Z
_HISTORY_SECONDS = 6 * 365 * 86400  # ordinary customers signed up within six years before `now`
_DAY = 86400

# --------------------------------------------------------------------------------------------------
# Catalog: the contract's default item prices (minor units; JPY is zero-decimal, so major units).
# --------------------------------------------------------------------------------------------------
PLANS = ("basic", "pro", "enterprise")
CURRENCIES = ("USD", "EUR", "GBP", "JPY")
_MONTHLY = {
    "USD": {"basic": 2900, "pro": 9900, "enterprise": 49900},
    "EUR": {"basic": 2900, "pro": 9900, "enterprise": 49900},
    "GBP": {"basic": 2900, "pro": 9900, "enterprise": 49900},
    "JPY": {"basic": 3900, "pro": 12900, "enterprise": 64900},
}
ITEM_PRICES: dict[str, int] = {
    f"{plan}-{cur}-{period}": _MONTHLY[cur][plan] * (10 if period == "yearly" else 1)
    for plan in PLANS
    for cur in CURRENCIES
    for period in ("monthly", "yearly")
}

# Chargebee reports MRR for paying subscriptions only; trials, future, paused and cancelled show 0.
MRR_STATUSES = frozenset({"active", "non_renewing"})


def item_price_id(plan: str, currency: str, unit: str) -> str:
    return f"{plan}-{currency}-{'yearly' if unit == 'year' else 'monthly'}"


def subscription_mrr(status: str, items: list[dict], billing_period_unit: str) -> int:
    """MRR in the currency's Chargebee units: the items' amounts over one month (yearly / 12), summed
    exactly and rounded half up once (yearly 29000 -> 2417)."""
    if status not in MRR_STATUSES:
        return 0
    twelfths = sum(item["amount"] * (12 if billing_period_unit == "month" else 1) for item in items)
    return (twelfths * 2 + 12) // 24


# --------------------------------------------------------------------------------------------------
# Word lists. Each name is (display, ascii slug used to build email addresses).
# --------------------------------------------------------------------------------------------------
def _pairs(words: str) -> tuple[tuple[str, str], ...]:
    return tuple((w, w.lower().replace("'", "")) for w in words.split())


_FIRST = _pairs(
    "Ada Alan Grace Linus Margaret Dennis Barbara Ken Frances Donald Radia Tim Katherine John Hedy "
    "Edsger Annie Claude Sophie Niklaus Joan Vint Karen Bjarne Mary Guido Evelyn James Carol Peter "
    "Lisa Mark Emma Oliver Mia Noah Olivia Liam Ava Lucas Chloe Ethan Hannah Jacob Zara Omar Priya "
    "Ravi Aisha Kofi Mateo Sara Ivan Nina Pablo Elena Tom Ruth Sean Fiona"
)
_LAST = _pairs(
    "Lovelace Turing Hopper Torvalds Hamilton Ritchie Liskov Thompson Allen Knuth Perlman Berners "
    "Johnson McCarthy Lamarr Dijkstra Easley Shannon Wilson Wirth Clarke Cerf Jones Stroustrup Keller "
    "Rossum Smith Miller Brown Taylor Walker Wright Green Baker Hall Young King Scott Adams Nelson "
    "Carter Mitchell Roberts Turner Phillips Campbell Parker Evans Edwards Collins Stewart Morris "
    "O'Brien O'Neill Murphy Kelly Patel Khan Singh Okafor Mensah Silva Rossi Novak Jensen"
)
_UNICODE_FIRST = (
    ("José", "jose"), ("Zoë", "zoe"), ("Łukasz", "lukasz"), ("Søren", "soren"),
    ("François", "francois"), ("Björn", "bjorn"), ("Ana María", "anamaria"), ("Jürgen", "jurgen"),
    ("Małgorzata", "malgorzata"), ("Chloé", "chloe"), ("Şebnem", "sebnem"), ("Ðorđe", "dorde"),
    ("太郎", "taro"), ("花子", "hanako"), ("Мария", "maria"), ("Αλέξανδρος", "alexandros"),
    ("Siân", "sian"), ("Nguyễn Văn", "nguyenvan"),
)
_UNICODE_LAST = (
    ("García", "garcia"), ("Müller", "muller"), ("Ødegaard", "odegaard"), ("Dvořák", "dvorak"),
    ("Nguyễn", "nguyen"), ("山田", "yamada"), ("佐藤", "sato"), ("Wiśniewska", "wisniewska"),
    ("Þórsdóttir", "thorsdottir"), ("Çelik", "celik"), ("Núñez", "nunez"), ("Ivanova", "ivanova"),
    ("Åström", "astrom"), ("Ó Súilleabháin", "osuilleabhain"), ("Papadopoulos", "papadopoulos"),
    ("Kowalczyk-Wróbel", "kowalczykwrobel"), ("Smirnóv", "smirnov"), ("Lévesque", "levesque"),
)
_EMOJI_FIRST = (
    ("Max 🚀", "max"), ("Sunny ☀️", "sunny"), ("Lily 🌸", "lily"), ("🦄 Una", "una"),
    ("Leo 🦁", "leo"), ("Kai 🌊", "kai"),
)

_ADJECTIVES = (
    "Amber Bright Cedar Coastal Copper Crimson Digital Eastern Emerald Golden Granite Harbor Indigo "
    "Iron Juniper Lunar Maple Meridian Modern Northern Oak Pacific Polar Quantum Rapid Silver Solar "
    "Summit Swift Urban Velvet Western"
).split()
_NOUNS = (
    "Analytics Bakery Bicycles Brewing Cloud Consulting Dental Design Dynamics Energy Fitness Foods "
    "Freight Games Health Insights Labs Logistics Media Metrics Motors Networks Optics Outdoors "
    "Pharma Robotics Software Studios Systems Textiles Travel Ventures"
).split()
_SUFFIXES = ("Ltd", "GmbH", "LLC", "Inc", "SAS", "BV", "KK", "Co.", "AG", "Partners", "Group")
_SHARED_BASES = (
    "Acme Inc", "Globex Corporation", "Initech", "Umbrella Holdings", "Stark Industries",
    "Wayne Enterprises", "Hooli", "Vandelay Industries", "Soylent Corp", "Tyrell Corporation",
    "Cyberdyne Systems", "Wonka Industries", "Massive Dynamic", "Aperture Science",
    "Oceanic Airlines", "Pied Piper", "Dunder Mifflin", "Monarch Solutions", "Nakatomi Trading",
    "Gekko & Co", "Prestige Worldwide", "Sterling Cooper", "Bluth Company", "Wernham Hogg",
)
_SHARED_QUALIFIERS = ("Europe", "Americas", "Asia Pacific", "UK", "Japan", "Labs", "Retail", "Health")
_LONG_COMPANY_WORDS = (
    "International", "Consolidated", "Federation", "of", "Independent", "Regional", "Bakeries",
    "Breweries", "and", "Allied", "Beverage", "Producers", "Metropolitan", "Cooperative", "Society",
    "for", "the", "Advancement", "Sustainable", "Logistics", "Holdings", "Trust",
)
_DOMAINS = ("example.com", "example.org", "example.net", "mail.example", "inbox.example", "corp.example")
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

# country -> (cities (city, state, state_code, zip template with "##"), streets, number first?)
_ADDRESSES = {
    "US": ((("San Francisco", "California", "CA", "941##"), ("New York", "New York", "NY", "100##"),
            ("Austin", "Texas", "TX", "787##"), ("Chicago", "Illinois", "IL", "606##"),
            ("Seattle", "Washington", "WA", "981##")),
           ("Market Street", "Main Street", "Broadway", "Elm Street", "Pine Avenue"), True),
    "GB": ((("London", None, None, "EC1A 1##"), ("Manchester", None, None, "M1 1##"),
            ("Edinburgh", "Scotland", None, "EH1 1##")),
           ("High Street", "Baker Street", "Station Road", "Church Lane"), True),
    "DE": ((("Berlin", "Berlin", "BE", "101##"), ("München", "Bayern", "BY", "803##"),
            ("Hamburg", "Hamburg", "HH", "203##")),
           ("Hauptstraße", "Friedrichstraße", "Bahnhofstraße"), False),
    "FR": ((("Paris", "Île-de-France", None, "750##"), ("Lyon", "Auvergne-Rhône-Alpes", None, "690##")),
           ("rue de Rivoli", "avenue Jean Jaurès", "boulevard Voltaire"), True),
    "ES": ((("Madrid", "Madrid", None, "280##"), ("Barcelona", "Cataluña", None, "080##")),
           ("Calle Mayor", "Gran Vía", "Calle de Alcalá"), False),
    "NL": ((("Amsterdam", "Noord-Holland", None, "10## AB"), ("Utrecht", "Utrecht", None, "35## CD")),
           ("Damrak", "Keizersgracht", "Oudegracht"), False),
    "IE": ((("Dublin", "Dublin", None, "D02 X2##"), ("Cork", "Cork", None, "T12 R2##")),
           ("O'Connell Street", "Grafton Street"), True),
    "JP": ((("Tokyo", "Tokyo", None, "100-00##"), ("Osaka", "Osaka", None, "530-00##")),
           ("Marunouchi 1-", "Umeda 2-", "Shibuya 3-"), False),
}
_CURRENCY_COUNTRIES = {"USD": ("US",), "EUR": ("DE", "FR", "ES", "NL", "IE"), "GBP": ("GB",), "JPY": ("JP",)}
_LOCALES = {"US": "en", "GB": "en", "IE": "en", "DE": "de", "FR": "fr", "ES": "es", "NL": "nl", "JP": "ja"}

# Subscription mix.
_SUBS_PER_CUSTOMER = ((0.20, 0), (0.75, 1), (0.93, 2), (1.01, 3))  # cumulative: 20% 0, 55% 1, 18% 2, 7% 3
_STATUSES = ((0.65, "active"), (0.70, "non_renewing"), (0.78, "in_trial"), (0.92, "cancelled"),
             (0.95, "future"), (1.01, "paused"))
_PLAN_CUMULATIVE = ((0.55, "basic"), (0.90, "pro"), (1.01, "enterprise"))


def _pick(cumulative: tuple, u: float):
    for bound, value in cumulative:
        if u < bound:
            return value
    return cumulative[-1][1]


# --------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------
def _category_counts(n: int, names: list[str], pairs: tuple[str, ...] = ()) -> dict[str, int]:
    """Exact per-category counts for n customers; at least one (a pair for `pairs`) from ALWAYS_PRESENT_FROM."""
    counts = {}
    for name in names:
        c = round(CUSTOMER_SHARES[name] * n)
        if name in pairs:
            c -= c % 2
            if n >= ALWAYS_PRESENT_FROM:
                c = max(c, 2)
        elif n >= ALWAYS_PRESENT_FROM:
            c = max(c, 1)
        counts[name] = c
    return counts


def _assign(rng: random.Random, population: list[int] | range, counts: dict[str, int]) -> dict[int, str]:
    """Give each category `count` distinct members of the population (categories are disjoint)."""
    total = min(sum(counts.values()), len(population))
    picks = rng.sample(population, total)
    kinds: dict[int, str] = {}
    pos = 0
    for kind, c in counts.items():
        for i in picks[pos:pos + c]:
            kinds[i] = kind
        pos += c
    return kinds


_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _add_months(ts: int, months: int) -> int:
    """`ts` moved by whole calendar months, the day clamped to the month's end (as billing dates are)."""
    d = datetime.fromtimestamp(ts, UTC)  # a conversion, not a clock read
    total = d.month - 1 + months
    year, month = d.year + total // 12, total % 12 + 1
    last = 29 if month == 2 and calendar.isleap(year) else _MONTH_DAYS[month - 1]
    return calendar.timegm((year, month, min(d.day, last), d.hour, d.minute, d.second))


def _current_term(start: int, now: int, now_dt: datetime, step: int) -> tuple[int, int]:
    """The billing term (start, end) containing `now` for a subscription anchored at `start`."""
    s = datetime.fromtimestamp(start, UTC)
    elapsed = (now_dt.year - s.year) * 12 + now_dt.month - s.month
    k = max(0, elapsed // step * step)
    term_start = _add_months(start, k)
    while term_start > now and k > 0:
        k -= step
        term_start = _add_months(start, k)
    term_end = _add_months(start, k + step)
    while term_end <= now:  # month-end clamping can leave us one term behind
        k += step
        term_start, term_end = term_end, _add_months(start, k + step)
    return term_start, term_end


def _phone(rng: random.Random, country: str) -> str:
    r = rng.randrange(10000)
    if country == "US":
        area = (415, 212, 512, 312, 206)[r % 5]
        return f"+1 {area} 555 01{r % 100:02d}" if r % 3 else f"({area}) 555-01{r % 100:02d}"
    if country == "GB":
        return f"+44 20 7946 0{r % 1000:03d}"
    if country == "JP":
        return f"+81 3-{1000 + r % 9000:04d}-{r:04d}"
    prefix = {"DE": "+49 30", "FR": "+33 1", "ES": "+34 91", "NL": "+31 20", "IE": "+353 1"}[country]
    return f"{prefix} {r:04d} {rng.randrange(1000):03d}"


def _long_last_name(rng: random.Random) -> str:
    parts: list[str] = []
    while sum(len(p) + 1 for p in parts) < 121:
        parts.append(rng.choice(_LAST)[0].replace("'", ""))
    name = "-".join(parts)[:120]
    return name[:-1] + "x" if name[-1] in "- " else name


def _long_company(rng: random.Random) -> str:
    words = ["The"]
    while sum(len(w) + 1 for w in words) < 151:
        words.append(rng.choice(_LONG_COMPANY_WORDS))
    name = " ".join(words)[:150]
    return name[:-1] + "s" if name[-1] == " " else name


def _unique_company(counter: int) -> str:
    """A distinct company name per counter value; never equal (any case) to a shared-company name."""
    m = len(_ADJECTIVES) * len(_NOUNS) * len(_SUFFIXES)
    cycle, k = divmod(counter, m)
    k = (k * 7919) % m  # spread consecutive counters over the word lists
    k, s = divmod(k, len(_SUFFIXES))
    a, b = divmod(k, len(_NOUNS))
    name = f"{_ADJECTIVES[a]} {_NOUNS[b]} {_SUFFIXES[s]}"
    return name if cycle == 0 else f"{name} {cycle + 1}"


def _shared_company(k: int) -> str:
    base = _SHARED_BASES[k % len(_SHARED_BASES)]
    cycle = k // len(_SHARED_BASES)
    if cycle == 0:
        return base
    qualifier = _SHARED_QUALIFIERS[(cycle - 1) % len(_SHARED_QUALIFIERS)]
    rounds = (cycle - 1) // len(_SHARED_QUALIFIERS)
    return f"{base} {qualifier}" if rounds == 0 else f"{base} {qualifier} {rounds + 1}"


def _clean_email(email: str) -> str:
    return email.strip().lower()


def _shout_email(email: str) -> str:
    """Same address, other case: title-cased local part, upper-case domain."""
    local, _, domain = email.partition("@")
    return f"{local.title()}@{domain.upper()}"


# --------------------------------------------------------------------------------------------------
# The generator
# --------------------------------------------------------------------------------------------------
def generate_dataset(
    customers: int, seed: int = 42, *, now: int, zoho_user_ids: list[str] | None = None
) -> dict:
    """Build a messy, reproducible Chargebee site and Zoho org content for `customers` customers.

    -> {"chargebee": {"customers": [...], "subscriptions": [...]},
        "zoho": {"Contacts": [...], "Accounts": [...], "Deals": [], "Contacts_duplicates": [...]},
        "summary": {...}}
    `now` (unix seconds) is the newest possible timestamp; only future-dated fields (next billing,
    term ends, trial ends, future start dates, resume dates) lie after it. The Owner of every Zoho
    record is ``zoho_user_ids[0]`` when given, else left out for the sandbox to fill.

    summary: ``seed``, ``now``; ``totals`` (record counts per list, deleted ones); ``shares`` (the two
    share tables); ``counts`` (customers per CUSTOMER_SHARES category, plus ``duplicate_email_pairs``,
    ``shared_companies``, ``shared_company_case_variant``, ``legacy_subscriptions_without_updated_at``,
    ``cf_tier``); ``currencies``; ``subscription_statuses``; ``subscriptions_per_customer``; ``zoho``
    (records per ZOHO_SHARES category, ``account_ambiguous_name``/``_records``); ``examples`` (up to
    three Chargebee customer ids per category, Zoho ones prefixed ``zoho_``).
    """
    n = int(customers)
    if n < 0:
        raise ValueError("customers must be >= 0")
    now = int(now)
    if not LEGACY_CUTOFF + 365 * _DAY <= now < 10**11:
        raise ValueError("now must be unix seconds after 2017-09-28 (legacy records predate 2016-09-28)")
    rng = random.Random(seed)
    now_dt = datetime.fromtimestamp(now, UTC)
    owner = {"id": str(zoho_user_ids[0])} if zoho_user_ids else None

    # ---- who gets which mess -------------------------------------------------------------------
    name_counts = _category_counts(n, ["missing_first_name", "missing_last_name", "missing_both_names",
                                       "unicode_names", "emoji_names", "long_last_name"])
    email_counts = _category_counts(n, ["missing_email", "email_odd_case_spaces", "invalid_email",
                                        "duplicate_email"], pairs=("duplicate_email",))
    company_counts = _category_counts(n, ["missing_company", "long_company_name", "shared_company"],
                                      pairs=("shared_company",))
    other_counts = _category_counts(n, ["chargebee_style_id"])
    phone_counts = _category_counts(n, ["long_phone"])
    currency_counts = _category_counts(n, ["currency_EUR", "currency_GBP", "currency_JPY"])
    life_counts = _category_counts(n, ["deleted", "legacy_without_updated_at"])
    n_legacy = min(life_counts["legacy_without_updated_at"], n)

    name_kind = _assign(rng, range(n), name_counts)
    # duplicate pairs: "duplicate_email_original" keeps its address, each copy takes one original's
    dup_n = email_counts.pop("duplicate_email")
    email_counts["duplicate_email_original"] = dup_n // 2
    email_counts["duplicate_email"] = dup_n // 2
    email_kind = _assign(rng, range(n), email_counts)
    company_kind = _assign(rng, range(n), company_counts)
    id_kind = _assign(rng, range(n), other_counts)
    phone_kind = _assign(rng, range(n), phone_counts)
    currency_of = _assign(rng, range(n), currency_counts)
    # legacy customers are the oldest ones (ids are in signup order); deletions among the rest
    deleted_set = set(_assign(rng, range(n_legacy, n), {"deleted": life_counts["deleted"]}))

    dup_originals = sorted(i for i, k in email_kind.items() if k == "duplicate_email_original")
    dup_copies = sorted(i for i, k in email_kind.items() if k == "duplicate_email")
    rng.shuffle(dup_copies)
    copy_of = dict(zip(dup_copies, dup_originals, strict=True))

    # shared companies: a pool of ~SHARED_COMPANY_SIZE customers per company, each company >= 2 customers
    shared_members = sorted(i for i, k in company_kind.items() if k == "shared_company")
    rng.shuffle(shared_members)
    pool_size = max(1, min(len(shared_members) // 2, round(len(shared_members) / SHARED_COMPANY_SIZE)))
    pool = [_shared_company(k) for k in range(pool_size)] if shared_members else []
    company_of: dict[int, str] = {}
    variant_count = 0
    for j, i in enumerate(shared_members):
        company = pool[j % pool_size] if j < 2 * pool_size else pool[int(pool_size * rng.random() ** 2)]
        if j >= pool_size and (j - pool_size) % SHARED_CASE_VARIANT_EVERY == 0:
            company = company.upper() if (j // SHARED_CASE_VARIANT_EVERY) % 2 else company.lower()
            variant_count += 1
        company_of[i] = company

    # signup times, oldest first; the first n_legacy predate LEGACY_CUTOFF
    start = max(LEGACY_CUTOFF, now - _HISTORY_SECONDS)
    span = max(1, now - 60 - start)
    created = sorted(_LEGACY_EARLIEST + int(rng.random() * (LEGACY_CUTOFF - _LEGACY_EARLIEST - 1))
                     for _ in range(n_legacy))
    created += sorted(start + int(rng.random() * span) for _ in range(n - n_legacy))

    # ---- Chargebee customers and subscriptions ---------------------------------------------------
    cb_customers: list[dict] = []
    cb_subs: list[dict] = []
    unique_company_counter = 0
    used_ids: set[str] = set()
    status_counts = {s: 0 for _, s in _STATUSES}
    subs_per_customer = {"0": 0, "1": 0, "2": 0, "3": 0}
    tier_count = 0
    legacy_subs_without_updated_at = 0
    deleted_subs = 0
    sub_seq = 0

    for i in range(n):
        r = rng.random
        cur = currency_of.get(i, "currency_USD")[-3:]
        countries = _CURRENCY_COUNTRIES[cur]
        country = countries[int(r() * len(countries))]
        is_deleted = i in deleted_set
        is_legacy = i < n_legacy

        # id
        if id_kind.get(i) == "chargebee_style_id":
            cid = "".join(rng.choices(_ALNUM, k=16))
            while cid in used_ids:
                cid = "".join(rng.choices(_ALNUM, k=16))
            used_ids.add(cid)
        else:
            cid = f"cust_{i + 1:06d}"

        # names
        nk = name_kind.get(i)
        if nk == "unicode_names":
            firsts, lasts = _UNICODE_FIRST, _UNICODE_LAST
        elif nk == "emoji_names":
            firsts, lasts = _EMOJI_FIRST, _LAST
        else:
            firsts, lasts = _FIRST, _LAST
        first, fslug = firsts[int(r() * len(firsts))]
        last, lslug = lasts[int(r() * len(lasts))]
        if nk == "long_last_name":
            last = _long_last_name(rng)
            lslug = last.split("-", 1)[0].lower()
        if nk in ("missing_first_name", "missing_both_names"):
            first, fslug = None, ""
        if nk in ("missing_last_name", "missing_both_names"):
            last, lslug = None, ""

        # email (unique by construction through the customer number)
        local = (f"{fslug}.{lslug}" if lslug else fslug) if fslug else (lslug or "billing")
        domain = _DOMAINS[int(r() * len(_DOMAINS))]
        email: str | None = f"{local}{i + 1}@{domain}"
        ek = email_kind.get(i)
        if ek == "missing_email":
            email = None
        elif ek == "email_odd_case_spaces":
            email = " " * (1 + i % 2) + _shout_email(email) + " " * (i % 3)
        elif ek == "invalid_email":
            # "not-an-email" is a placeholder and repeats; the other forms are one customer's each
            own = f"{local}{i + 1}"
            email = ("not-an-email", f"{own}@", f"{own} at {domain}", f"{own}@@{domain}")[i % 4]

        # phone
        phone = None
        if phone_kind.get(i) == "long_phone":
            phone = f"{_phone(rng, 'US')} ext. {rng.randrange(100, 10000)} (reception)"
        elif r() < 0.75:
            phone = _phone(rng, country)

        # company
        ck = company_kind.get(i)
        if ck == "missing_company":
            company = None
        elif ck == "long_company_name":
            company = _long_company(rng)
        elif ck == "shared_company":
            company = company_of[i]
        else:
            company = _unique_company(unique_company_counter)
            unique_company_counter += 1

        # times
        created_at = created[i]
        if is_deleted:
            updated_at = created_at + int(r() * (now - created_at))
        elif is_legacy:
            updated_at = None
        elif r() < 0.4:
            updated_at = created_at
        else:
            updated_at = created_at + int(r() ** 0.5 * (now - created_at))

        auto_on = r() < 0.85
        c: dict = {"id": cid}
        if first is not None:
            c["first_name"] = first
        if last is not None:
            c["last_name"] = last
        if email is not None:
            c["email"] = email
        if phone is not None:
            c["phone"] = phone
        if company is not None:
            c["company"] = company
        c["auto_collection"] = "on" if auto_on else "off"
        c["net_term_days"] = 0 if auto_on else (30, 30, 15, 45, 60)[int(r() * 5)]
        c["allow_direct_debit"] = r() < 0.05
        c["created_at"] = created_at
        c["taxability"] = "exempt" if r() < 0.05 else "taxable"
        if updated_at is not None:
            c["updated_at"] = updated_at
        if r() < 0.3:
            c["locale"] = _LOCALES[country]
        c["pii_cleared"] = "active"
        if updated_at is not None:
            c["resource_version"] = updated_at * 1000 + int(r() * 1000)
        c["deleted"] = is_deleted
        c["object"] = "customer"
        if r() < 0.7:
            cities, streets, number_first = _ADDRESSES[country]
            city, state, state_code, zip_tmpl = cities[int(r() * len(cities))]
            street, number = streets[int(r() * len(streets))], 1 + int(r() * 240)
            addr: dict = {}
            if first is not None:
                addr["first_name"] = first
            if last is not None:
                addr["last_name"] = last
            if number_first:
                addr["line1"] = f"{number} {street}"
            else:  # "Hauptstraße 12", "Marunouchi 1-12"
                addr["line1"] = f"{street}{'' if street.endswith('-') else ' '}{number}"
            addr["city"] = city
            if state_code is not None:
                addr["state_code"] = state_code
            if state is not None:
                addr["state"] = state
            addr["country"] = country
            addr["zip"] = zip_tmpl.replace("##", f"{int(r() * 100):02d}")
            addr["validation_status"] = "not_validated"
            addr["object"] = "billing_address"
            c["billing_address"] = addr
        u = r()
        c["card_status"] = "valid" if u < 0.6 else "no_card" if u < 0.95 else "expiring" if u < 0.98 else "expired"
        # balances in whole dollars/euros/pounds written in cents, or hundreds of yen (JPY has no cents)
        c["promotional_credits"] = 0 if is_deleted or r() >= 0.05 else (5 + int(r() * 46)) * 100
        c["refundable_credits"] = 0 if is_deleted or r() >= 0.02 else (10 + int(r() * 90)) * 100
        c["excess_payments"] = 0 if is_deleted or r() >= 0.01 else (1 + int(r() * 20)) * 100
        c["unbilled_charges"] = 0 if is_deleted or r() >= 0.03 else (1 + int(r() * 200)) * 100
        c["preferred_currency_code"] = cur
        if r() < 0.4:
            c["cf_tier"] = ("bronze", "silver", "gold", "platinum")[int(r() * 4)]
            tier_count += 1
        cb_customers.append(c)

        # subscriptions
        if is_legacy:
            k_subs = 1
        else:
            k_subs = _pick(_SUBS_PER_CUSTOMER, r())
        subs_per_customer[str(k_subs)] += 1
        for _ in range(k_subs):
            sub_seq += 1
            plan = _pick(_PLAN_CUMULATIVE, r())
            unit = "year" if r() < 0.25 else "month"
            price_id = item_price_id(plan, cur, unit)
            price = ITEM_PRICES[price_id]
            if is_deleted:
                status = "cancelled"
            elif is_legacy:
                status = "active" if r() < 0.5 else "cancelled"
            else:
                status = _pick(_STATUSES, r())
            s_created = created_at + int(r() ** 2 * ((updated_at if is_deleted else now) - created_at))
            fields: dict = {}
            sub_updated: int | None
            if status == "in_trial":
                trial_days = 14 if r() < 0.7 else 30
                s_created = max(created_at, now - int(r() * (trial_days * _DAY - 3600)))
                trial_end = s_created + trial_days * _DAY
                fields = {"trial_start": s_created, "trial_end": trial_end,
                          "current_term_start": s_created, "current_term_end": trial_end,
                          "next_billing_at": trial_end, "created_at": s_created, "started_at": s_created}
                sub_updated = s_created
            elif status == "future":
                s_created = max(created_at, now - int(r() * 30 * _DAY))
                start_date = now + (1 + int(r() * 45)) * _DAY
                fields = {"start_date": start_date, "next_billing_at": start_date, "created_at": s_created}
                sub_updated = s_created
            elif status in ("active", "non_renewing"):
                term_start, term_end = _current_term(s_created, now, now_dt, 12 if unit == "year" else 1)
                fields = {"current_term_start": term_start, "current_term_end": term_end}
                if status == "active":
                    fields["next_billing_at"] = term_end
                fields.update(created_at=s_created, started_at=s_created, activated_at=s_created)
                sub_updated = min(now, term_start + int(r() * 60))
                if status == "non_renewing":
                    sub_updated = term_start + int(r() * (now - term_start))
                    fields["cancelled_at"] = term_end
            elif status == "paused":
                pause_date = s_created + _DAY + int(r() * max(0, now - s_created - _DAY))
                pause_date = min(pause_date, now)
                fields = {"created_at": s_created, "started_at": s_created, "activated_at": s_created,
                          "pause_date": pause_date}
                if r() < 0.5:
                    fields["resume_date"] = now + (1 + int(r() * 60)) * _DAY
                sub_updated = pause_date
            else:  # cancelled
                if is_legacy:  # cancelled before LEGACY_CUTOFF and untouched since
                    s_created = created_at + int(r() * max(0, LEGACY_CUTOFF - _DAY - created_at) / 2)
                    cancelled_at = s_created + int(r() * max(0, LEGACY_CUTOFF - _DAY - s_created))
                else:
                    end = updated_at if is_deleted else now
                    cancelled_at = s_created + int(r() * (end - s_created))
                fields = {"created_at": s_created, "started_at": s_created, "activated_at": s_created,
                          "cancelled_at": cancelled_at}
                if r() < 0.3:
                    fields["cancel_reason"] = "not_paid"
                sub_updated = cancelled_at
            if is_deleted:
                sub_updated = updated_at
            if sub_updated is not None and sub_updated < LEGACY_CUTOFF:
                sub_updated = None  # untouched since before Chargebee recorded updated_at
                legacy_subs_without_updated_at += 1

            items = [{"item_price_id": price_id, "item_type": "plan", "quantity": 1, "unit_price": price,
                      "amount": price, "free_quantity": 0, "object": "subscription_item"}]
            sub = {"id": f"sub_{sub_seq:07d}", "billing_period": 1, "billing_period_unit": unit,
                   "customer_id": cid, "status": status}
            sub.update(fields)
            if sub_updated is not None:
                sub["updated_at"] = sub_updated
            sub["has_scheduled_changes"] = False
            if status == "non_renewing":
                sub["cancel_schedule_created_at"] = sub_updated
            if sub_updated is not None:
                sub["resource_version"] = sub_updated * 1000 + int(r() * 1000)
            sub["deleted"] = is_deleted
            sub["object"] = "subscription"
            sub["currency_code"] = cur
            sub["subscription_items"] = items
            sub["due_invoices_count"] = 0
            sub["mrr"] = subscription_mrr(status, items, unit)
            sub["has_scheduled_advance_invoices"] = False
            cb_subs.append(sub)
            status_counts[status] += 1
            deleted_subs += is_deleted

    # duplicate emails: the copy takes the original's address (key position unchanged)
    for copy_i, orig_i in copy_of.items():
        cb_customers[copy_i]["email"] = cb_customers[orig_i]["email"]

    zoho, zoho_summary, zoho_examples = _zoho_records(
        rng, n, cb_customers, email_kind, deleted_set, company_kind, pool, owner, unique_company_counter
    )

    # ---- summary ----------------------------------------------------------------------------------
    counts = {}
    counts.update(name_counts)
    counts.update({"missing_email": email_counts["missing_email"],
                   "email_odd_case_spaces": email_counts["email_odd_case_spaces"],
                   "invalid_email": email_counts["invalid_email"],
                   "duplicate_email": 2 * len(copy_of),
                   "duplicate_email_pairs": len(copy_of)})
    counts.update(company_counts)
    counts["shared_company"] = len(shared_members)
    counts["shared_companies"] = len(pool)
    counts["shared_company_case_variant"] = variant_count
    counts["deleted"] = len(deleted_set)
    counts["legacy_without_updated_at"] = n_legacy
    counts["legacy_subscriptions_without_updated_at"] = legacy_subs_without_updated_at
    counts.update(other_counts)
    counts.update(phone_counts)
    counts["cf_tier"] = tier_count

    by_kind: dict[str, list[str]] = {}
    for mapping in (name_kind, email_kind, company_kind, id_kind, phone_kind):
        for i in sorted(mapping):
            kind = mapping[i]
            if kind != "duplicate_email_original":
                ids = by_kind.setdefault(kind, [])
                if len(ids) < 3:
                    ids.append(cb_customers[i]["id"])
    by_kind["deleted"] = [cb_customers[i]["id"] for i in sorted(deleted_set)[:3]]
    by_kind["legacy_without_updated_at"] = [cb_customers[i]["id"] for i in range(min(3, n_legacy))]
    by_kind.update(zoho_examples)

    currencies = {cur: 0 for cur in CURRENCIES}
    for c in cb_customers:
        currencies[c["preferred_currency_code"]] += 1

    summary = {
        "seed": seed,
        "now": now,
        "totals": {
            "customers": n,
            "customers_deleted": len(deleted_set),
            "subscriptions": len(cb_subs),
            "subscriptions_deleted": deleted_subs,
            "zoho_contacts": len(zoho["Contacts"]),
            "zoho_contacts_duplicates": len(zoho["Contacts_duplicates"]),
            "zoho_accounts": len(zoho["Accounts"]),
            "zoho_deals": 0,
        },
        "shares": {"customers": dict(CUSTOMER_SHARES), "zoho": dict(ZOHO_SHARES)},
        "counts": counts,
        "currencies": currencies,
        "subscription_statuses": status_counts,
        "subscriptions_per_customer": subs_per_customer,
        "zoho": zoho_summary,
        "examples": by_kind,
    }
    return {
        "chargebee": {"customers": cb_customers, "subscriptions": cb_subs},
        "zoho": zoho,
        "summary": summary,
    }


def _zoho_contact(first, last, email, phone, addr: dict | None, owner) -> dict:
    rec = {
        "First_Name": first[:40] if first else None,
        "Last_Name": last[:80],
        "Email": email,
        "Phone": phone if phone and len(phone) <= 30 else None,
        "Mailing_Street": addr.get("line1") if addr else None,
        "Mailing_City": addr.get("city") if addr else None,
        "Mailing_State": addr.get("state") if addr else None,
        "Mailing_Zip": addr.get("zip") if addr else None,
        "Mailing_Country": addr.get("country") if addr else None,
    }
    if owner:
        rec["Owner"] = dict(owner)
    return rec


def _zoho_account(name: str, owner, rng: random.Random) -> dict:
    rec = {"Account_Name": name, "Website": None}
    if rng.random() < 0.5:
        slug = "".join(ch for ch in name.lower() if ch.isalnum())[:40] or "company"
        rec["Website"] = f"https://www.{slug}.example"
    if owner:
        rec["Owner"] = dict(owner)
    return rec


def _zoho_records(rng, n, cb_customers, email_kind, deleted_set, company_kind, pool, owner, company_counter):
    """Pre-existing Zoho Contacts and Accounts, some matching Chargebee customers."""
    def want(name: str) -> int:
        c = round(ZOHO_SHARES[name] * n)
        return max(c, 1) if n >= ALWAYS_PRESENT_FROM else c

    contacts: list[dict] = []
    duplicates: list[dict] = []
    done = {name: 0 for name in ZOHO_SHARES}
    examples: dict[str, list[str]] = {}

    def note(category: str, cust: dict) -> None:
        done[category] += 1
        ids = examples.setdefault(f"zoho_{category}", [])
        if len(ids) < 3:
            ids.append(cust["id"])

    # customers with a normal, unique email, not deleted: shuffled, then dealt to categories in order
    eligible = [i for i in range(n) if i not in email_kind and i not in deleted_set]
    eligible = rng.sample(eligible, len(eligible))
    plan = [
        ("contact_same", lambda c: "last_name" in c and len(c["last_name"]) <= 80),
        ("contact_email_case_differs", lambda c: True),
        ("contact_blank_fields", lambda c: "first_name" in c and "phone" in c),
        ("contact_different_values", lambda c: True),
        ("contact_email_ambiguous", lambda c: True),
    ]
    targets = {name: want(name) for name, _ in plan}
    slot = 0
    for i in eligible:
        while slot < len(plan) and done[plan[slot][0]] >= targets[plan[slot][0]]:
            slot += 1
        if slot == len(plan):
            break
        cust = cb_customers[i]
        for name, ok in plan[slot:]:
            if done[name] < targets[name] and ok(cust):
                break
        else:
            continue
        first, last = cust.get("first_name"), cust.get("last_name")
        last = last or rng.choice(_LAST)[0]
        email, phone, addr = cust["email"], cust.get("phone"), cust.get("billing_address")
        if name == "contact_same":
            contacts.append(_zoho_contact(first, last, email, phone, addr, owner))
        elif name == "contact_email_case_differs":
            contacts.append(_zoho_contact(first, last, _shout_email(email), phone, addr, owner))
        elif name == "contact_blank_fields":
            rec = _zoho_contact(first, last, email, phone, addr, owner)
            rec.update(First_Name=None, Phone=None, Mailing_Street=None, Mailing_City=None)
            contacts.append(rec)
        elif name == "contact_different_values":
            other_last = rng.choice([w for w, _ in _LAST if w != cust.get("last_name")])
            other_first = rng.choice(_FIRST)[0] if rng.random() < 0.5 else first
            other_phone = _phone(rng, "US")
            while other_phone == phone:
                other_phone = _phone(rng, "US")
            contacts.append(_zoho_contact(other_first, other_last, email, other_phone, addr, owner))
        else:  # contact_email_ambiguous: one in Contacts, one in Contacts_duplicates
            contacts.append(_zoho_contact(first, last, email, phone, addr, owner))
            twin_email = email if rng.random() < 0.5 else _shout_email(email)
            duplicates.append(_zoho_contact(rng.choice(_FIRST)[0], last, twin_email, None, None, owner))
        note(name, cust)

    messy = [i for i in range(n) if email_kind.get(i) == "email_odd_case_spaces" and i not in deleted_set]
    for i in rng.sample(messy, min(len(messy), want("contact_chargebee_email_messy"))):
        cust = cb_customers[i]
        contacts.append(_zoho_contact(cust.get("first_name"), cust.get("last_name") or rng.choice(_LAST)[0],
                                      _clean_email(cust["email"]), cust.get("phone"),
                                      cust.get("billing_address"), owner))
        note("contact_chargebee_email_messy", cust)

    for k in range(want("contact_unrelated")):
        (first, fslug), (last, lslug) = rng.choice(_FIRST), rng.choice(_LAST)
        email = None if k % 5 == 4 else f"{fslug}.{lslug}{k + 1}@prospects.example"
        contacts.append(_zoho_contact(first, last, email, _phone(rng, "US") if rng.random() < 0.5 else None,
                                      None, owner))
        done["contact_unrelated"] += 1
    rng.shuffle(contacts)

    # Accounts. Shared companies (half of them) get an Account spelled canonically: their Chargebee
    # customers already use several spellings. Ordinary companies (one spelling each) fill the rest of
    # account_same, and account_case_differs as upper case.
    accounts: list[dict] = []
    used: set[str] = set()

    def add_account(category: str, name: str, cust: dict) -> None:
        accounts.append(_zoho_account(name, owner, rng))
        used.add(name.lower())
        note(category, cust)

    shared_first_customer: dict[str, dict] = {}
    for i, c in enumerate(cb_customers):
        if company_kind.get(i) == "shared_company":
            shared_first_customer.setdefault(c["company"].lower(), c)
    need_same, need_case = want("account_same"), want("account_case_differs")
    for company in pool[: min(need_same, (len(pool) + 1) // 2)]:
        add_account("account_same", company, shared_first_customer[company.lower()])
    ordinary = [i for i in range(n) if i not in company_kind]
    picked = rng.sample(ordinary, min(len(ordinary), need_same - done["account_same"] + need_case))
    for i in picked:
        cust = cb_customers[i]
        if done["account_same"] < need_same:
            add_account("account_same", cust["company"], cust)
        else:
            add_account("account_case_differs", cust["company"].upper(), cust)

    ambiguous_name = None
    spare = [p for p in pool if p.lower() not in used]
    if spare:
        ambiguous_name = spare[-1]
    else:
        left = [i for i in range(n) if i not in company_kind and cb_customers[i]["company"].lower() not in used]
        if left:
            ambiguous_name = cb_customers[left[-1]]["company"]
    if ambiguous_name:
        accounts.append(_zoho_account(ambiguous_name, owner, rng))
        accounts.append(_zoho_account(ambiguous_name, owner, rng))

    for k in range(want("account_unrelated")):
        accounts.append(_zoho_account(_unique_company(company_counter + k), owner, rng))
        done["account_unrelated"] += 1
    rng.shuffle(accounts)

    zoho_summary = dict(done)
    zoho_summary["account_ambiguous_name"] = ambiguous_name
    zoho_summary["account_ambiguous_records"] = 2 if ambiguous_name else 0
    return (
        {"Contacts": contacts, "Accounts": accounts, "Deals": [], "Contacts_duplicates": duplicates},
        zoho_summary,
        examples,
    )
