"""Independent batch reference for clickflow (docs/contract.md §1-§4 and §7 plus the README's
"Choices where the contract is silent").

Written from the contract only, not from clickflow's sources. Everything is computed as
a bounded input ends: every window and session is closed, every row is final.

Times are integer epoch milliseconds (UTC), money is decimal.Decimal (exact), rates are
floats. `compute(lines)` takes the file's lines in order (bytes, without the "\\n") and
returns every table keyed by its primary key.
"""

from __future__ import annotations

import datetime as _dt
import functools
import ipaddress
import json
import math
import re
import time
from collections import defaultdict
from decimal import Decimal, InvalidOperation

MAX_MESSAGE_BYTES = 64 * 1024
FUTURE_TOLERANCE_MS = 15 * 60 * 1000
DAY_MS = 86_400_000  # cohort_retention, customer_rfm: UTC calendar days of event time
PAIRS_MIN_ORDERS = 2  # product_pairs: pairs in at least 2 orders
PAIRS_PER_PRODUCT = 10  # product_pairs: the 10 best for each product_id
SIMILAR_MIN_SESSIONS = 2  # product_similar: pairs viewed in at least 2 common sessions
SIMILAR_PER_PRODUCT = 10  # product_similar: the 10 best for each product_id

EVENT_TYPES = (
    "page_view",
    "product_view",
    "search",
    "add_to_cart",
    "remove_from_cart",
    "begin_checkout",
    "purchase",
)
PRODUCT_TYPES = {"product_view", "add_to_cart", "remove_from_cart", "purchase"}
PRICE_REQUIRED = {"add_to_cart", "purchase"}
QUANTITY_REQUIRED = {"add_to_cart", "remove_from_cart", "purchase"}
DEVICES = {"desktop", "mobile", "tablet"}
REFERRERS = {"direct", "search", "social", "email", "ads", "affiliate"}

# type name -> sessions/traffic counter column
TYPE_COLUMN = {
    "page_view": "page_views",
    "product_view": "product_views",
    "search": "searches",
    "add_to_cart": "cart_adds",
    "remove_from_cart": "cart_removes",
    "begin_checkout": "checkouts",
    "purchase": "purchases",
}
COUNT_COLUMNS = list(TYPE_COLUMN.values())

FUNNEL_STEPS = ((2, "product_view"), (3, "add_to_cart"), (4, "begin_checkout"), (5, "purchase"))

EVENT_COLUMNS = (
    "event_time", "event_type", "user_id", "page", "product_id", "category", "price",
    "quantity", "order_id", "device", "country", "referrer", "user_agent", "ip",
)


class Reject(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# ---------------------------------------------------------------------------------------
# RFC 3339

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})\Z",
    re.ASCII,
)
_EPOCH_ORDINAL = _dt.date(1970, 1, 1).toordinal()


def parse_rfc3339_ms(text: str) -> int | None:
    """Epoch milliseconds (UTC) of an RFC 3339 timestamp, or None when it is invalid.

    README rules: 'T', 't' or a space between date and time; 'Z', 'z' or ±HH:MM; years
    0001-9999; seconds 00-59 (a leap second :60 is refused); digits below the
    millisecond are truncated.
    """
    m = _RFC3339.match(text)
    if not m:
        return None
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    frac, offset = m.group(7), m.group(8)
    if not (1 <= year <= 9999 and 1 <= month <= 12):
        return None
    try:
        ordinal = _dt.date(year, month, day).toordinal()
    except ValueError:
        return None
    if hour > 23 or minute > 59 or second > 59:
        return None
    ms = int((frac or "")[:3].ljust(3, "0"))
    if offset in ("Z", "z"):
        off_minutes = 0
    else:
        oh, om = int(offset[1:3]), int(offset[4:6])
        if oh > 23 or om > 59:
            return None
        off_minutes = (oh * 60 + om) * (1 if offset[0] == "+" else -1)
    days = ordinal - _EPOCH_ORDINAL
    local_ms = ((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + ms
    return local_ms - off_minutes * 60_000


# ---------------------------------------------------------------------------------------
# Validation

class _DuplicateKey(Exception):
    pass


def _pairs_hook(pairs):
    obj = {}
    dup = None
    for k, v in pairs:
        if k in obj and dup is None:
            dup = k
        obj[k] = v
    if dup is not None:
        # remember it; the README makes a duplicated key an invalid_field, not invalid_json
        obj = _DupDict(obj)
        obj.duplicate_key = dup
    return obj


class _DupDict(dict):
    duplicate_key: str | None = None


def _no_constant(name):
    raise ValueError(f"non-standard JSON constant {name}")


def _is_number(v) -> bool:
    return isinstance(v, (int, Decimal)) and not isinstance(v, bool)


def dead_letter_payload(line: bytes, reason: str) -> str:
    """README: a dead letter keeps the message as text, invalid UTF-8 replaced and NUL
    bytes dropped, cut to its first KiB when it was oversized."""
    kept = line[:1024] if reason == "oversized" else line
    return kept.decode("utf-8", "replace").replace("\x00", "")


def validate(line: bytes, now_ms: int) -> dict:
    """A validated event (dict with EVENT_COLUMNS + event_id, event_time as epoch ms),
    or raises Reject for the first problem found (README "Order of checks")."""
    if len(line) > MAX_MESSAGE_BYTES:
        raise Reject("oversized", f"{len(line)} bytes")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Reject("invalid_json", f"not UTF-8: {e}")
    try:
        obj = json.loads(
            text, parse_float=Decimal, parse_int=int, parse_constant=_no_constant,
            object_pairs_hook=_pairs_hook,
        )
    except (ValueError, RecursionError) as e:
        raise Reject("invalid_json", str(e))
    if not isinstance(obj, dict):
        raise Reject("invalid_json", "not an object")
    if isinstance(obj, _DupDict) and obj.duplicate_key is not None:
        raise Reject("invalid_field", f"duplicate key {obj.duplicate_key}")

    ev: dict = {}

    def present(name):
        return obj.get(name) is not None

    def required(name):
        if not present(name):
            raise Reject("missing_field", name)
        return obj[name]

    def string(name, value, nonempty=False):
        if not isinstance(value, str):
            raise Reject("invalid_field", f"{name} is not a string")
        # README: PostgreSQL text cannot hold NUL, and a lone surrogate escape is no string.
        if "\x00" in value or any("\ud800" <= ch <= "\udfff" for ch in value):
            raise Reject("invalid_field", f"{name} holds NUL or a lone surrogate")
        if nonempty and value == "":
            raise Reject("invalid_field", f"{name} is empty")
        return value

    # fields in the contract's order
    ev["event_id"] = string("event_id", required("event_id"), nonempty=True)
    t = string("event_time", required("event_time"))
    ms = parse_rfc3339_ms(t)
    if ms is None:
        raise Reject("invalid_field", f"event_time {t!r}")
    ev["event_time"] = ms
    et = string("event_type", required("event_type"))
    if et not in EVENT_TYPES:
        raise Reject("unknown_event_type", et)
    ev["event_type"] = et
    ev["user_id"] = string("user_id", required("user_id"), nonempty=True)
    ev["page"] = string("page", required("page"))

    for name in ("product_id", "category"):
        if et in PRODUCT_TYPES:
            ev[name] = string(name, required(name), nonempty=True)
        elif present(name):
            ev[name] = string(name, obj[name])
        else:
            ev[name] = None

    if et in PRICE_REQUIRED or present("price"):
        p = required("price")
        if not _is_number(p):
            raise Reject("invalid_field", "price is not a number")
        p = Decimal(p)
        try:
            cents = p * 100
            if cents != cents.to_integral_value():
                raise Reject("invalid_field", f"price {p} has more than 2 decimals")
        except InvalidOperation:
            raise Reject("invalid_field", f"price {p}")
        if not (0 <= p <= 1_000_000):
            raise Reject("invalid_field", f"price {p} out of range")
        ev["price"] = p.quantize(Decimal("0.01"))
    else:
        ev["price"] = None

    if et in QUANTITY_REQUIRED or present("quantity"):
        q = required("quantity")
        if not (isinstance(q, int) and not isinstance(q, bool)):
            raise Reject("invalid_field", "quantity is not an integer")
        if not (1 <= q <= 10_000):
            raise Reject("invalid_field", f"quantity {q} out of range")
        ev["quantity"] = q
    else:
        ev["quantity"] = None

    if present("order_id"):
        o = string("order_id", obj["order_id"])
        ev["order_id"] = o if o != "" else None
    else:
        ev["order_id"] = None

    d = string("device", required("device"))
    if d not in DEVICES:
        raise Reject("invalid_field", f"device {d!r}")
    ev["device"] = d
    c = string("country", required("country"))
    if not (len(c) == 2 and all("A" <= ch <= "Z" for ch in c)):
        raise Reject("invalid_field", f"country {c!r}")
    ev["country"] = c
    r = string("referrer", required("referrer"))
    if r not in REFERRERS:
        raise Reject("invalid_field", f"referrer {r!r}")
    ev["referrer"] = r
    ev["user_agent"] = string("user_agent", required("user_agent"))
    ip = string("ip", required("ip"))
    if "%" in ip:  # no zone ids
        raise Reject("invalid_field", f"ip {ip!r}")
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise Reject("invalid_field", f"ip {ip!r}")
    ev["ip"] = ip

    if ms > now_ms + FUTURE_TOLERANCE_MS:
        raise Reject("future_event_time", t)
    return ev


# ---------------------------------------------------------------------------------------
# Tables

def split_lines(data: bytes) -> list[bytes]:
    """Messages of a JSON Lines file: split on "\\n"; a final "\\n" ends the last line;
    README: a line ending may be "\\r\\n", its "\\r" is not part of the message."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def _floor(ms: int, width: int) -> int:
    return (ms // width) * width  # floor division: aligned to the epoch, also before 1970


def _ratio(num, den):
    return None if den == 0 else num / den


def compute(
    lines: list[bytes],
    now_ms: int | None = None,
    watermark_delay_ms: int = 60_000,
    session_gap_ms: int = 30 * 60_000,
    traffic_window_ms: int = 60_000,
    stats_window_ms: int = 3_600_000,
    dedupe_horizon_ms: int = 86_400_000,
) -> dict:
    if now_ms is None:
        now_ms = int(time.time() * 1000)

    # ---- admission, in input order -------------------------------------------------
    dead_letters: dict[int, str] = {}  # 1-based line number -> reason
    accepted: list[dict] = []
    seen: dict[str, int] = {}  # event_id -> event_time of its accepted copy
    max_time: int | None = None
    duplicates = 0
    late = 0
    for lineno, line in enumerate(lines, start=1):
        try:
            ev = validate(line, now_ms)
        except Reject as r:
            dead_letters[lineno] = r.reason
            continue
        w = None if max_time is None else max_time - watermark_delay_ms
        if w is not None and ev["event_time"] < w:
            dead_letters[lineno] = "late"
            late += 1
            continue
        # Remembered until W passes its event_time + the dedupe horizon (contract §2).
        first = seen.get(ev["event_id"])
        if first is not None and (w is None or first + dedupe_horizon_ms >= w):
            duplicates += 1
            continue
        seen[ev["event_id"]] = ev["event_time"]
        accepted.append(ev)
        max_time = ev["event_time"] if max_time is None else max(max_time, ev["event_time"])

    events_raw = {(ev["event_id"], ev["event_time"]): {c: ev[c] for c in EVENT_COLUMNS} for ev in accepted}

    # ---- sessions --------------------------------------------------------------------
    by_user: dict[str, list[dict]] = defaultdict(list)
    for ev in accepted:
        by_user[ev["user_id"]].append(ev)
    sessions: dict[tuple, dict] = {}
    viewed: list[set] = []  # per session: the products its product_views name
    session_events: dict[tuple, list] = {}  # (user, session_start) -> its events, in order
    for user, evs in by_user.items():
        evs.sort(key=lambda e: (e["event_time"], e["event_id"]))
        current: list[dict] = []
        for ev in evs + [None]:
            if current and (ev is None or ev["event_time"] - current[-1]["event_time"] >= session_gap_ms):
                row = _session_row(user, current)
                sessions[(user, row["session_start"])] = row
                session_events[(user, row["session_start"])] = current
                viewed.append({e["product_id"] for e in current
                               if e["event_type"] == "product_view" and e["product_id"] is not None})
                current = []
            if ev is not None:
                current.append(ev)

    # ---- traffic -----------------------------------------------------------------------
    traffic: dict[int, dict] = {}
    users_in: dict[int, set] = defaultdict(set)
    for ev in accepted:
        ws = _floor(ev["event_time"], traffic_window_ms)
        row = traffic.get(ws)
        if row is None:
            row = traffic[ws] = {
                "window_end": ws + traffic_window_ms, "events": 0,
                **{c: 0 for c in COUNT_COLUMNS}, "active_users": 0,
                "revenue": Decimal("0.00"), "is_final": True,
            }
        row["events"] += 1
        row[TYPE_COLUMN[ev["event_type"]]] += 1
        users_in[ws].add(ev["user_id"])
        if ev["event_type"] == "purchase":
            row["revenue"] += ev["price"] * ev["quantity"]
    for ws, row in traffic.items():
        row["active_users"] = len(users_in[ws])

    # ---- product_stats -----------------------------------------------------------------
    product_stats: dict[tuple, dict] = {}
    first_ev: dict[tuple, tuple] = {}
    for ev in accepted:
        if ev["event_type"] not in PRODUCT_TYPES:
            continue
        ws = _floor(ev["event_time"], stats_window_ms)
        key = (ws, ev["product_id"])
        row = product_stats.get(key)
        if row is None:
            row = product_stats[key] = {
                "window_end": ws + stats_window_ms, "category": None, "views": 0,
                "cart_adds": 0, "cart_removes": 0, "purchases": 0, "units": 0,
                "revenue": Decimal("0.00"), "view_to_cart_rate": None,
                "cart_to_purchase_rate": None, "is_final": True,
            }
        order = (ev["event_time"], ev["event_id"])
        if key not in first_ev or order < first_ev[key]:
            first_ev[key] = order
            row["category"] = ev["category"]
        et = ev["event_type"]
        if et == "product_view":
            row["views"] += 1
        elif et == "add_to_cart":
            row["cart_adds"] += 1
        elif et == "remove_from_cart":
            row["cart_removes"] += 1
        else:
            row["purchases"] += 1
            row["units"] += ev["quantity"]
            row["revenue"] += ev["price"] * ev["quantity"]
    for row in product_stats.values():
        row["view_to_cart_rate"] = _ratio(row["cart_adds"], row["views"])
        row["cart_to_purchase_rate"] = _ratio(row["purchases"], row["cart_adds"])

    # ---- funnel and conversion -----------------------------------------------------------
    funnel_acc: dict[int, dict] = {}
    conv_acc: dict[tuple, dict] = {}
    for s in sessions.values():
        ws = _floor(s["session_start"], stats_window_ms)
        f = funnel_acc.setdefault(ws, {
            "sessions": 0, "pv": 0, "cart": 0, "checkout": 0, "purchase": 0,
            "abandoned": 0, "with_cart": 0, "bounced": 0, "duration_ms": 0,
            "revenue": Decimal("0.00"),
        })
        f["sessions"] += 1
        f["pv"] += s["funnel_step"] >= 2
        f["cart"] += s["funnel_step"] >= 3
        f["checkout"] += s["funnel_step"] >= 4
        f["purchase"] += s["funnel_step"] >= 5
        f["abandoned"] += s["cart_abandoned"]
        f["with_cart"] += s["cart_adds"] > 0
        f["bounced"] += s["bounced"]
        f["duration_ms"] += s["session_end"] - s["session_start"]
        f["revenue"] += s["revenue"]
        for dim in ("device", "country", "referrer"):
            c = conv_acc.setdefault((ws, dim, s[dim]), {
                "sessions": 0, "converted": 0, "revenue": Decimal("0.00")})
            c["sessions"] += 1
            c["converted"] += s["converted"]
            c["revenue"] += s["revenue"]

    funnel = {
        ws: {
            "window_end": ws + stats_window_ms,
            "sessions": f["sessions"],
            "product_view_sessions": f["pv"],
            "cart_sessions": f["cart"],
            "checkout_sessions": f["checkout"],
            "purchase_sessions": f["purchase"],
            "conversion_rate": f["purchase"] / f["sessions"],
            "cart_abandonment_rate": _ratio(f["abandoned"], f["with_cart"]),
            "bounce_rate": f["bounced"] / f["sessions"],
            "avg_session_seconds": f["duration_ms"] / 1000 / f["sessions"],
            "revenue": f["revenue"],
            "is_final": True,
        }
        for ws, f in funnel_acc.items()
    }
    conversion = {
        key: {
            "window_end": key[0] + stats_window_ms,
            "sessions": c["sessions"],
            "converted_sessions": c["converted"],
            "conversion_rate": c["converted"] / c["sessions"],
            "revenue": c["revenue"],
            "is_final": True,
        }
        for key, c in conv_acc.items()
    }

    # ---- cohort_retention (contract §7) ----------------------------------------------------
    # A user's cohort is the UTC day of their first accepted event; a row per cohort and
    # day on which at least one of its users has an accepted event. Keyed by
    # (cohort_date as epoch ms of the day's start, day_offset).
    cohort_of: dict[str, int] = {}
    for ev in accepted:
        day = _floor(ev["event_time"], DAY_MS)
        if ev["user_id"] not in cohort_of or day < cohort_of[ev["user_id"]]:
            cohort_of[ev["user_id"]] = day
    cohort_size: dict[int, int] = defaultdict(int)
    for day in cohort_of.values():
        cohort_size[day] += 1
    cohort_active: dict[tuple, set] = defaultdict(set)
    cohort_revenue: dict[tuple, Decimal] = defaultdict(lambda: Decimal("0.00"))
    for ev in accepted:
        cohort = cohort_of[ev["user_id"]]
        key = (cohort, (_floor(ev["event_time"], DAY_MS) - cohort) // DAY_MS)
        cohort_active[key].add(ev["user_id"])
        if ev["event_type"] == "purchase":
            cohort_revenue[key] += ev["price"] * ev["quantity"]
    cohort_retention = {
        key: {
            "cohort_users": cohort_size[key[0]],
            "active_users": len(users),
            "retention": len(users) / cohort_size[key[0]],
            "revenue": cohort_revenue[key],
            "is_final": True,
        }
        for key, users in cohort_active.items()
    }

    customer_rfm = _customer_rfm(accepted)
    product_pairs = _product_pairs(accepted)
    product_similar = _product_similar(viewed)

    return {
        "input_events": len(lines),
        "events_raw": events_raw,
        "sessions": sessions,
        "traffic": traffic,
        "product_stats": product_stats,
        "funnel": funnel,
        "conversion": conversion,
        "cohort_retention": cohort_retention,
        "customer_rfm": customer_rfm,
        "product_pairs": product_pairs,
        "product_similar": product_similar,
        "session_events": session_events,
        "dead_letters": dead_letters,
        "duplicates": duplicates,
        "late": late,
        "max_event_time": max_time,
    }


# ---- customer_rfm (contract §7) ---------------------------------------------------------

def rfm_segment(r: int, f: int) -> str:
    """Contract §7: the segment of an (r_score, f_score) pair; every pair has exactly one."""
    if r == 5 and f >= 4:
        return "Champions"
    if r in (3, 4) and f >= 4:
        return "Loyal Customers"
    if r in (4, 5) and f in (2, 3):
        return "Potential Loyalist"
    if r == 5 and f == 1:
        return "New Customers"
    if r == 4 and f == 1:
        return "Promising"
    if r == 3 and f == 3:
        return "Need Attention"
    if r == 3 and f in (1, 2):
        return "About to Sleep"
    if r in (1, 2) and f == 5:
        return "Can't Lose Them"
    if r in (1, 2) and f in (3, 4):
        return "At Risk"
    if r == 1 and f == 1:
        return "Lost"
    assert r in (1, 2) and f in (1, 2), (r, f)
    return "Hibernating"


def _rank_scores(values: dict, worse) -> dict:
    """user -> 1 + floor(5 x (users with a strictly worse value) / n); `worse(a, b)` is
    true when a is strictly worse than b. Quadratic on purpose: the contract's words, not
    a sort."""
    n = len(values)
    return {u: 1 + (5 * sum(1 for w in values.values() if worse(w, v))) // n
            for u, v in values.items()}


def _customer_rfm(accepted: list[dict]) -> dict:
    """Keyed by user_id. At the end of a bounded input, as_of is the end of the latest
    UTC day holding an accepted event, so every accepted purchase is before it. An order
    is a distinct order_id among the user's purchases; a purchase without one (null,
    absent, or empty: stored as NULL) is an order of its own. Times in epoch ms."""
    if not accepted:
        return {}
    as_of = _floor(max(ev["event_time"] for ev in accepted), DAY_MS) + DAY_MS
    last: dict[str, int] = {}
    order_ids: dict[str, set] = defaultdict(set)
    loose: dict[str, int] = defaultdict(int)  # purchases without an order_id
    revenue: dict[str, Decimal] = defaultdict(lambda: Decimal("0.00"))
    for ev in accepted:
        if ev["event_type"] != "purchase":
            continue
        assert ev["event_time"] < as_of
        u = ev["user_id"]
        last[u] = max(last.get(u, ev["event_time"]), ev["event_time"])
        if ev["order_id"] is None:
            loose[u] += 1
        else:
            order_ids[u].add(ev["order_id"])
        revenue[u] += ev["price"] * ev["quantity"]
    recency = {u: (as_of - t) // DAY_MS for u, t in last.items()}
    frequency = {u: len(order_ids[u]) + loose[u] for u in last}
    monetary = {u: revenue[u] for u in last}
    r = _rank_scores(recency, lambda a, b: a > b)
    f = _rank_scores(frequency, lambda a, b: a < b)
    m = _rank_scores(monetary, lambda a, b: a < b)
    return {
        u: {
            "as_of": as_of,
            "last_purchase_at": last[u],
            "recency_days": recency[u],
            "frequency": frequency[u],
            "monetary": monetary[u],
            "r_score": r[u],
            "f_score": f[u],
            "m_score": m[u],
            "segment": rfm_segment(r[u], f[u]),
        }
        for u in last
    }


# ---- product_pairs (contract §7) --------------------------------------------------------

def _product_pairs(accepted: list[dict]) -> dict:
    """Keyed by (product_id, other_product_id). An order is a distinct order_id among
    all purchase events (whoever made them); a purchase without one (null, absent, or
    empty: stored as NULL) is an order of its own. An order holds a product if any of its
    lines has that product_id: a product on several lines of one order counts once. At
    the end of a bounded input as_of is the end of the latest UTC day holding an
    accepted event, so every accepted purchase is in an order before it."""
    if not accepted:
        return {}
    as_of = _floor(max(ev["event_time"] for ev in accepted), DAY_MS) + DAY_MS
    orders: dict[tuple, set] = defaultdict(set)  # order -> the products it holds
    for ev in accepted:
        if ev["event_type"] != "purchase":
            continue
        assert ev["event_time"] < as_of
        # an order of its own: the purchase, as events_raw keys it
        key = ("id", ev["order_id"]) if ev["order_id"] is not None else ("own", ev["event_id"], ev["event_time"])
        orders[key].add(ev["product_id"])
    all_orders = len(orders)
    holding: dict[str, int] = defaultdict(int)  # product -> orders holding it
    together: dict[tuple, int] = defaultdict(int)  # (product, other) -> orders holding both
    for products in orders.values():
        for p in products:
            holding[p] += 1
            for other in products:
                if other != p:
                    together[(p, other)] += 1
    partners: dict[str, list] = defaultdict(list)
    for (p, other), n in together.items():
        if n >= PAIRS_MIN_ORDERS:
            partners[p].append((other, n))
    out = {}
    for p, lst in partners.items():
        # orders_together descending, then other_product_id (code point order)
        lst.sort(key=lambda on: (-on[1], on[0]))
        for other, n in lst[:PAIRS_PER_PRODUCT]:
            out[(p, other)] = {
                "orders_together": n,
                "confidence": n / holding[p],
                "lift": n * all_orders / (holding[p] * holding[other]),
            }
    return out


# ---- product_similar (contract §7) ------------------------------------------------------

def _product_similar(viewed: list[set]) -> dict:
    """Keyed by (product_id, other_product_id), from the products each session's
    product_views name (a session counts once per product). At the end of a bounded input
    every session is final. Ranked by similarity t / sqrt(n_p x n_q) descending, compared
    exactly: for one product p, t1 / sqrt(n1) > t2 / sqrt(n2) exactly when
    t1^2 x n2 > t2^2 x n1 (integers), then other_product_id ascending."""
    sessions_viewing: dict[str, int] = defaultdict(int)
    together: dict[tuple, int] = defaultdict(int)
    for products in viewed:
        for p in products:
            sessions_viewing[p] += 1
            for q in products:
                if q != p:
                    together[(p, q)] += 1
    partners: dict[str, list] = defaultdict(list)
    for (p, q), n in together.items():
        if n >= SIMILAR_MIN_SESSIONS:
            partners[p].append((q, n))

    def better(x, y) -> int:
        (qx, tx), (qy, ty) = x, y
        left, right = tx * tx * sessions_viewing[qy], ty * ty * sessions_viewing[qx]
        if left != right:
            return -1 if left > right else 1
        return -1 if qx < qy else 1 if qx > qy else 0

    out = {}
    for p, lst in partners.items():
        lst.sort(key=functools.cmp_to_key(better))
        for q, n in lst[:SIMILAR_PER_PRODUCT]:
            out[(p, q)] = {
                "sessions_together": n,
                "similarity": n / math.sqrt(sessions_viewing[p] * sessions_viewing[q]),
            }
    return out


def _session_row(user: str, evs: list[dict]) -> dict:
    first, last = evs[0], evs[-1]
    counts = {c: 0 for c in COUNT_COLUMNS}
    units = 0
    revenue = Decimal("0.00")
    for ev in evs:
        counts[TYPE_COLUMN[ev["event_type"]]] += 1
        if ev["event_type"] == "purchase":
            units += ev["quantity"]
            revenue += ev["price"] * ev["quantity"]
    step, reached_at = 1, first["event_time"]
    for k, typ in FUNNEL_STEPS:
        times = [e["event_time"] for e in evs if e["event_type"] == typ and e["event_time"] >= reached_at]
        if not times:
            break
        step, reached_at = k, min(times)
    start, end = first["event_time"], last["event_time"]
    return {
        "session_start": start,
        "session_end": end,
        "duration_seconds": (end - start) / 1000,
        "event_count": len(evs),
        **counts,
        "units": units,
        "revenue": revenue,
        "converted": counts["purchases"] > 0,
        "bounced": len(evs) == 1,
        "cart_abandoned": counts["cart_adds"] > 0 and counts["purchases"] == 0,
        "landing_page": first["page"],
        "exit_page": last["page"],
        "device": first["device"],
        "country": first["country"],
        "referrer": first["referrer"],
        "funnel_step": step,
        "is_final": True,
    }
