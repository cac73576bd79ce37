#!/usr/bin/env python3
"""Independent clickstream generator for clickflow's end-to-end check.

    generate.py OUT_FILE [--seed S]

Writes a JSON Lines data set following docs/contract.md §1, generated without
`clickflow produce`: ~40 simulated shoppers over ~6 hours of event time from
2026-11-01T00:00:00Z, plus scripted users and lines for the edge cases (see EDGE_CASES).
The same seed gives the same bytes. Later UTC days (cohorts) are
appended after the first day's lines, drawn from a random stream of their own, so that
the first day's lines are the same as without them; so are the purchases added for
customer_rfm (rfm_buyers), after the later days' lines, and those added for
product_pairs (pair_buyers), after them, and the sessions added for product_similar
(similar_viewers) and for session_risk (risky_sessions) last; these lines always end in "\n" and draw nothing, so every
earlier line keeps its line end too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
from decimal import Decimal

T0 = 1_793_491_200_000  # 2026-11-01T00:00:00Z in epoch ms
MINUTE = 60_000
HOUR = 60 * MINUTE
GAP = 30 * MINUTE  # session gap
DELAY = 60_000  # watermark delay
SPAN = 6 * HOUR
DAY = 24 * HOUR
MIDNIGHT = T0 + DAY  # 2026-11-02T00:00:00Z: the end of the first day

EDGE_CASES = """\
- first line: an event before 1970 (negative epoch ms, windows aligned by floor), the
  second line a year-0001 event (valid timestamp, late)
- events exactly on traffic-window (1 min) and stats-window (1 h) boundaries, one ms
  before them, and a session crossing an hour boundary (funnel uses its start)
- session gaps of exactly 30 min (split), 30 min - 1 ms (same session), 30 min + 1 ms
- ties in event_time inside a session (order by event_id decides landing/exit page,
  first device/country/referrer, and product_stats.category)
- funnel: steps at the same ms, add_to_cart before any product_view, purchases before
  any product_view (funnel stays below 5 while converted is true)
- multi-line orders (one purchase event per line, same order_id), empty order_id
- event_time offsets Z, +00:00, +05:30, -08:00, -03:30, +09:45; 'T', 't', ' ';
  fractions of 0, 1, 3, 6 and 9 digits (truncated to ms)
- prices 10, 10.5, 19.99, 19.990, 1e2, 1999e-2, 1E-2, 0.10e1, 0, 0.0, the maximum
  1e6 / 1000000 with the maximum quantity 10000; quantities 1..4
- a valid line of exactly 65536 bytes (accepted) and one of 65537 (oversized)
- sub-ms digits right before a window boundary (truncated, not rounded)
- odd seeds: the last line has no trailing "\n"
- optional fields null vs absent, optional fields present on other types (validated),
  unknown extra fields (nested objects, arrays, null), shuffled key order, whitespace
- strings with quotes, backslashes, tabs, newlines, \\/ escapes, \\u escapes,
  non-ASCII (Zürich), emoji, U+2028 in page and user_agent
- IPv4 and IPv6 addresses
- out-of-order delivery within the 60 s watermark delay (never late), an event exactly
  at W (not late) and one at W - 1 ms (late)
- late-but-admitted events that merge two sessions and that move a session's start
- exact duplicates (within the delay), a duplicate arriving after W passed it (late),
  a same-id message with different content (first accepted wins), and a valid message
  whose id was first seen on a rejected line (accepted)
- late events (3-15 min behind the watermark, after later events)
- bad lines of every dead-letter kind: invalid_json, missing_field, invalid_field,
  unknown_event_type, oversized, future_event_time
- "\\n" line ends with a few "\\r\\n" ones
- cohorts (contract §7): after the first ~6 hours, some shoppers and edge users come
  back on one or two later UTC days (2026-11-02 and -03), new users are first seen on
  the second day (some back on the third); events at midnight - 1 ms and exactly at midnight; a user first seen
  just after midnight whose earlier event (before midnight) arrives out of order within
  the delay, so that the cohort moves to the earlier, still open day (once leaving
  another user in the later cohort, once leaving it empty: its row is deleted), with
  over 97 messages between first sight and the move; every event of the later days is
  delivered after all the first day's lines and never late
- customer_rfm (contract §7): new users on days 2 and 3 with two purchases without
  order_id (field absent, field null: two orders) beside a two-line order, and two users
  tied in monetary with different frequency and recency (see rfm_buyers)
- product_pairs (contract §7): a product with 14 partners in at least 2 orders (4, 3 and
  twelve tied at 2: the top-10 cut falls inside the tie, decided by other_product_id,
  the partners bought in descending id order), partner pairs in only one order (left
  out, as is the cut partners' pair from the hub's side while the hub stays in theirs), a
  product twice in one order (counts once, in orders_together and in the orders holding
  it), and purchases without order_id ("" and null: one order each, not merged) whose
  products are together in one order only (see pair_buyers)
- product_similar (contract §7): a product with 11 partners viewed in at least 2 common
  sessions, the 10th and 11th tied exactly (3 / sqrt(3 x 18) and 2 / sqrt(3 x 8), which
  doubles order the other way) and decided by other_product_id; a pair in one session
  only; a product viewed three times in one session (counts once); views of one user 31
  minutes apart (two sessions); a product added to the cart and bought but never viewed
  (see similar_viewers)
- session_risk (contract §8): every rule's threshold met exactly and missed by one, and
  the median gap of an even number of gaps (see risky_sessions)
"""

CATEGORIES = ["books", "electronics", "garden", "toys", "fashion"]
PRICE_CENTS = [1000, 1050, 1999, 10000, 0, 249, 4500, 99999, 12345, 500, 2999, 75]
COUNTRIES = ["US", "DE", "CH", "IN", "FR", "GB", "JP", "BR", "CA", "AU"]
DEVICES = ["desktop", "mobile", "tablet"]
REFERRERS = ["direct", "search", "social", "email", "ads", "affiliate"]
USER_AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)",
    'Agent "quoted" with \\backslash\\ and\ttab',
    "Bot aus Zürich ☃ 😀",
    "multi\nline\r\nagent",
    "",
    "weird\u2028separator\u0085nel",
]
IPS = [
    "203.0.113.7", "198.51.100.23", "192.0.2.1", "10.0.0.255", "2001:db8::1",
    "::1", "fe80::1:2:3:4", "2001:db8:85a3::8a2e:370:7334", "::ffff:192.0.2.128",
    "0.0.0.0",
]
SEARCH_PAGES = [
    "/search?q=books",
    '/search?q="quoted phrase"',
    "/search?q=back\\slash",
    "/search?q=tab\there",
    "/search?q=new\nline",
    "/search?q=Zürich",
    "/search?q=🚀 rocket",
    "/search?q=caf\u00e9&x=\u2028",
]
OFFSETS = [0, 0, 330, -480, -210, 585]  # minutes


class Gen:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.items: list[tuple[int, int, bytes]] = []  # (delivery key ms, seq, line)
        self.seq = 0
        self.plain_end: set[int] = set()  # seqs of lines that always end in "\n"
        self.times: dict[int, int] = {}  # seq -> event_time of the lines emit() delivered
        self.expect = {"late": 0, "duplicates": 0}
        self.products = [
            (f"P{i:05d}", CATEGORIES[i % len(CATEGORIES)], PRICE_CENTS[i % len(PRICE_CENTS)])
            for i in range(1, 31)
        ]

    # ---- ids ------------------------------------------------------------------------
    def uuid(self, prefix: str = "") -> str:
        h = f"{self.rng.getrandbits(128):032x}"
        h = h[:12] + "4" + h[13:16] + "89ab"[int(h[16], 16) % 4] + h[17:]
        s = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        return prefix + s[len(prefix):] if prefix else s

    # ---- formatting --------------------------------------------------------------------
    def fmt_time(self, ms: int, plain: bool = False) -> str:
        rng = self.rng
        off = 0 if plain or rng.random() < 0.7 else rng.choice(OFFSETS)
        local = dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=ms + off * 60_000)
        sep = "T" if plain or rng.random() < 0.9 else rng.choice(["t", " "])
        frac_ms = ms % 1000
        if plain:
            frac = f".{frac_ms:03d}"
        else:
            r = rng.random()
            if frac_ms == 0 and r < 0.3:
                frac = ""
            elif frac_ms % 100 == 0 and r < 0.5:
                frac = f".{frac_ms // 100}"
            elif r < 0.75:
                frac = f".{frac_ms:03d}"
            elif r < 0.88:
                frac = f".{frac_ms:03d}{rng.randrange(1000):03d}"
            else:
                frac = f".{frac_ms:03d}{rng.randrange(10**6):06d}"
        if off == 0:
            tz = "Z" if plain or rng.random() < 0.85 else rng.choice(["z", "+00:00"])
        else:
            sign = "+" if off > 0 else "-"
            tz = f"{sign}{abs(off) // 60:02d}:{abs(off) % 60:02d}"
        return (
            f"{local.year:04d}-{local.month:02d}-{local.day:02d}{sep}"
            f"{local.hour:02d}:{local.minute:02d}:{local.second:02d}{frac}{tz}"
        )

    def jstr(self, s: str) -> str:
        out = json.dumps(s, ensure_ascii=self.rng.random() < 0.3)
        if self.rng.random() < 0.1:
            out = out.replace("/", "\\/")
        return out

    def price_text(self, cents: int) -> str:
        rng = self.rng
        d = Decimal(cents) / 100
        plain = format(d.normalize(), "f") if cents else "0"
        r = rng.random()
        if r < 0.7:
            text = plain
        elif r < 0.8:
            text = f"{cents}e-2"
        elif r < 0.9:
            text = plain + ("0" if "." in plain else ".00")
        elif cents == 10000:
            text = "1e2"
        elif cents % 100 == 0 and cents:
            text = f"{cents // 100}E0"
        else:
            text = f"{d:.2f}"
        assert Decimal(text) * 100 == cents, (text, cents)
        return text

    def line(self, ev: dict, drop=(), nulls=(), override=None, extra=None, dup_key=None,
             shuffle=None) -> bytes:
        """Serialise an event dict. Optional fields whose value is None are written as
        null or left out at random (unless forced)."""
        rng = self.rng
        override = override or {}
        fields: list[tuple[str, str]] = []
        for name in ("event_id", "event_time", "event_type", "user_id", "page",
                     "product_id", "category", "price", "quantity", "order_id",
                     "device", "country", "referrer", "user_agent", "ip"):
            if name in drop:
                continue
            if name in override:
                fields.append((name, override[name]))
                continue
            if name in nulls:
                fields.append((name, "null"))
                continue
            v = ev.get(name)
            if name == "event_time":
                text = ev.get("time_text") or self.fmt_time(v, ev.get("plain_time", False))
                fields.append((name, json.dumps(text)))
            elif v is None:
                if rng.random() < 0.5:
                    fields.append((name, "null"))
            elif name == "price":
                fields.append((name, ev.get("price_text") or self.price_text(v)))
            elif name == "quantity":
                fields.append((name, str(v)))
            else:
                fields.append((name, self.jstr(v)))
        if extra is None and rng.random() < 0.08:
            extra = rng.choice([
                {"schema_version": "2"},
                {"x_debug": '{"a": [1, 2.5, {"b": null}], "c": "d"}'},
                {"currency": '"EUR"', "experiment": "null"},
                {"tags": '["a", "\\u00fc", []]'},
            ])
        for k, v in (extra or {}).items():
            fields.insert(rng.randrange(len(fields) + 1), (k, v))
        if dup_key is not None:
            fields.append(dup_key)
        if shuffle if shuffle is not None else rng.random() < 0.1:
            rng.shuffle(fields)
        spaced = rng.random() < 0.1
        sep, colon = (", ", ": ") if spaced else (",", ":")
        body = "{" + sep.join(f"{json.dumps(k)}{colon}{v}" for k, v in fields) + "}"
        if rng.random() < 0.02:
            body = " " + body + "\t "
        return body.encode("utf-8")

    # ---- delivery --------------------------------------------------------------------------
    def deliver(self, key: int, line: bytes):
        self.seq += 1
        self.items.append((key, self.seq, line))

    def event(self, **kw) -> dict:
        ev = {
            "event_id": kw.pop("event_id", None) or self.uuid(),
            "product_id": None, "category": None, "price": None, "quantity": None,
            "order_id": None,
        }
        ev.update(kw)
        return ev

    def emit(self, ev: dict, key: int | None = None, **line_kw):
        self.deliver(ev["event_time"] if key is None else key, self.line(ev, **line_kw))
        self.times[self.seq] = ev["event_time"]


# ---------------------------------------------------------------------------------------
# Simulated shoppers

def simulate(g: Gen):
    rng = g.rng
    events = []
    for u in range(1, 41):
        user = f"user-{u:03d}" if u % 7 else f"usér-{u:03d}-Zürich"
        home = {
            "device": rng.choice(DEVICES),
            "country": rng.choice(COUNTRIES),
            "ip": rng.choice(IPS),
            "user_agent": rng.choice(USER_AGENTS),
        }
        t = T0 + rng.randrange(0, 40 * MINUTE)
        while t < T0 + SPAN - 10 * MINUTE:
            t = session(g, user, home, t, events)
            r = rng.random()
            if r < 0.08:
                t += GAP  # exactly the gap: a new session
            elif r < 0.13:
                t += GAP - 1  # just under: same session
            elif r < 0.16:
                t += GAP + 1
            else:
                t += GAP + rng.randrange(1, 25 * MINUTE)
    return events


def session(g: Gen, user: str, home: dict, t: int, out: list) -> int:
    rng = g.rng
    device = home["device"] if rng.random() < 0.9 else rng.choice(DEVICES)
    country = home["country"]
    referrer = rng.choice(REFERRERS)
    cart: dict[str, list] = {}  # product id -> [category, cents, qty]
    viewed = None

    def add(etype, page, **kw):
        ev = g.event(
            event_time=t, event_type=etype, user_id=user, page=page, device=device,
            country=country, referrer=referrer, user_agent=home["user_agent"], ip=home["ip"],
            **kw,
        )
        if rng.random() < 0.05:  # changes mid-session: only the first event's counts
            ev["referrer"] = rng.choice(REFERRERS)
        if rng.random() < 0.03:
            ev["country"] = rng.choice(COUNTRIES)
        out.append(ev)

    n = 1 if rng.random() < 0.25 else rng.randrange(3, 40)
    add("page_view", rng.choice(["/", "/", "/category/" + rng.choice(CATEGORIES), "/deals"]))
    for _ in range(n - 1):
        r = rng.random()
        if r < 0.05:
            pass  # tie with the previous event
        elif r < 0.1:
            t = (t // MINUTE + 1) * MINUTE  # on a traffic-window boundary
        else:
            t += rng.randrange(200, 150_000)
        if rng.random() < 0.15:
            device = device if rng.random() < 0.5 else rng.choice(DEVICES)
        a = rng.random()
        if a < 0.18:
            add("page_view", rng.choice(["/", "/category/" + rng.choice(CATEGORIES), "/about",
                                         "/help?topic=\"returns\"", "/cart"]))
        elif a < 0.45:
            pid, cat, cents = rng.choice(g.products)
            viewed = (pid, cat, cents)
            kw = {}
            if rng.random() < 0.4:
                kw["price"] = cents  # optional on product_view, validated when present
            add("product_view", f"/product/{pid}", product_id=pid, category=cat, **kw)
        elif a < 0.55:
            add("search", rng.choice(SEARCH_PAGES))
        elif a < 0.7:
            pid, cat, cents = viewed if viewed and rng.random() < 0.85 else rng.choice(g.products)
            q = rng.choice([1, 1, 1, 2, 3, 4])
            cart.setdefault(pid, [cat, cents, 0])[2] += q
            add("add_to_cart", f"/product/{pid}", product_id=pid, category=cat, price=cents,
                quantity=q)
        elif a < 0.76 and cart:
            pid = rng.choice(sorted(cart))
            cat, cents, q = cart[pid]
            rq = rng.randrange(1, q + 1)
            kw = {"price": cents} if rng.random() < 0.5 else {}
            add("remove_from_cart", "/cart", product_id=pid, category=cat, quantity=rq, **kw)
            cart[pid][2] -= rq
            if cart[pid][2] == 0:
                del cart[pid]
        elif a < 0.86 and cart:
            add("begin_checkout", "/checkout")
        elif a < 0.95 and cart:
            order = g.uuid()
            for pid in sorted(cart):
                cat, cents, q = cart[pid]
                add("purchase", "/checkout/complete", product_id=pid, category=cat,
                    price=cents, quantity=q, order_id=order)
                t += rng.choice([0, 0, 1, 2])
            cart = {}
        else:
            add("page_view", "/")
    return t


# ---------------------------------------------------------------------------------------
# Scripted edge cases

def base(g: Gen, user: str, t: int, etype: str = "page_view", page: str = "/", **kw) -> dict:
    fields = dict(
        event_time=t, event_type=etype, user_id=user, page=page, device="desktop",
        country="CH", referrer="direct", user_agent="edge-agent", ip="192.0.2.10",
    )
    if etype in ("product_view", "add_to_cart", "remove_from_cart", "purchase"):
        fields.update(product_id="P00001", category="books")
    if etype in ("add_to_cart", "purchase"):
        fields.update(price=1999)
    if etype in ("add_to_cart", "remove_from_cart", "purchase"):
        fields.update(quantity=1)
    fields.update(kw)
    return g.event(**fields)


def scripted(g: Gen) -> list[dict]:
    """Events delivered in event-time order (plus the specially delivered ones, which
    are emitted here directly)."""
    rng = g.rng
    ev = []
    H1 = T0 + HOUR
    # window boundaries: one ms before and exactly at the hour; minute boundaries
    ev += [
        base(g, "edge-window", H1 - 5 * MINUTE),
        base(g, "edge-window", H1 - 1, "product_view", "/product/P00001"),
        base(g, "edge-window", H1, "add_to_cart", "/product/P00001"),
        base(g, "edge-window", H1 + MINUTE, "begin_checkout", "/checkout"),
        base(g, "edge-window", H1 + 2 * MINUTE - 1, "purchase", "/done", order_id="o-window"),
        base(g, "edge-window", T0 + 2 * HOUR, "page_view", "/hour-two-exact"),
    ]
    # gaps: exactly 30 min splits, 30 min - 1 ms does not, 30 min + 1 ms splits
    t = T0 + 20 * MINUTE
    for i, step in enumerate([0, GAP, GAP - 1, GAP - 1, GAP + 1, 5_000, GAP]):
        t += step
        ev.append(base(g, "edge-gap", t, page=f"/gap/{i}", referrer=REFERRERS[i % 6]))
    # ties inside a session: ids decide the order
    t = T0 + 90 * MINUTE + 123
    ev += [
        base(g, "edge-tie", t, page="/tie-second", event_id=g.uuid("b"), device="tablet"),
        base(g, "edge-tie", t, page="/tie-first", event_id=g.uuid("a"), device="mobile",
             country="IN", referrer="email"),
        base(g, "edge-tie", t + 10_000, "product_view", "/product/P00002",
             event_id=g.uuid("f"), product_id="P00002", category="electronics"),
        # add_to_cart at the same ms as the view, smaller id: still reaches step 3
        base(g, "edge-tie", t + 10_000, "add_to_cart", "/product/P00002",
             event_id=g.uuid("0"), product_id="P00002", category="electronics", price=1050),
        base(g, "edge-tie", t + 10_000, "begin_checkout", "/checkout", event_id=g.uuid("1")),
        base(g, "edge-tie", t + 20_000, "page_view", "/tie-exit-b", event_id=g.uuid("e")),
        base(g, "edge-tie", t + 20_000, "page_view", "/tie-exit-a", event_id=g.uuid("d")),
    ]
    # funnel out of order: add_to_cart before any view, then a view, no later cart add
    t = T0 + 150 * MINUTE
    ev += [
        base(g, "edge-funnel", t),
        base(g, "edge-funnel", t + 1_000, "add_to_cart", "/product/P00003",
             product_id="P00003", category="garden", price=10000, quantity=2),
        base(g, "edge-funnel", t + 2_000, "begin_checkout", "/checkout"),
        base(g, "edge-funnel", t + 3_000, "purchase", "/done", product_id="P00003",
             category="garden", price=10000, quantity=2, order_id="o-nofunnel"),
        base(g, "edge-funnel", t + 3_000, "purchase", "/done", product_id="P00004",
             category="toys", price=1050, quantity=3, order_id="o-nofunnel"),
        base(g, "edge-funnel", t + 4_000, "product_view", "/product/P00003",
             product_id="P00003", category="garden"),
    ]
    # a purchase with nothing before it but a page view; empty order id; free item
    t = T0 + 200 * MINUTE
    ev += [
        base(g, "edge-buy", t, device="mobile", country="US", referrer="ads"),
        base(g, "edge-buy", t + 500, "purchase", "/done", price=0, quantity=4, order_id=""),
        base(g, "edge-buy", t + 501, "purchase", "/done", price=1000, quantity=1,
             order_id="o-x", product_id="P00005", category="fashion"),
    ]
    # a full funnel reached in one ms
    t = T0 + 230 * MINUTE + 7
    ev += [
        base(g, "edge-samems", t, "product_view", "/product/P00006", event_id=g.uuid("9"),
             product_id="P00006", category="books"),
        base(g, "edge-samems", t, "add_to_cart", "/product/P00006", event_id=g.uuid("8"),
             product_id="P00006", category="books", price=1999, quantity=3),
        base(g, "edge-samems", t, "begin_checkout", "/checkout", event_id=g.uuid("7")),
        base(g, "edge-samems", t, "purchase", "/done", event_id=g.uuid("6"),
             product_id="P00006", category="books", price=1999, quantity=3, order_id="o-ms"),
    ]
    # product_stats.category = category on the product's earliest event (time, id)
    t = T0 + 260 * MINUTE
    ev += [
        base(g, "edge-cat", t, "product_view", "/product/P09999", event_id=g.uuid("c"),
             product_id="P09999", category="cat-later-id"),
        base(g, "edge-cat", t, "add_to_cart", "/product/P09999", event_id=g.uuid("2"),
             product_id="P09999", category="cat-earliest", price=1050, quantity=1),
        base(g, "edge-cat", t + 30_000, "remove_from_cart", "/cart",
             product_id="P09999", category="cat-other", quantity=1),
    ]
    # time texts at window boundaries: offsets, and sub-ms digits that must be truncated
    # (rounding would move the event into the next minute and hour)
    ev += [
        base(g, "edge-text", T0, time_text="2026-10-31T16:00:00-08:00", page="/t0"),
        base(g, "edge-text", H1 - 1, time_text="2026-11-01T00:59:59.9999999Z", page="/trunc"),
        base(g, "edge-text2", T0 + 3 * HOUR, time_text="2026-11-01T08:30:00+05:30"),
        base(g, "edge-text2", T0 + 3 * HOUR + 59_999,
             time_text="2026-11-01 03:00:59.999999+00:00"),
        base(g, "edge-text2", T0 + 3 * HOUR + MINUTE, time_text="2026-11-01t03:01:00.0Z"),
    ]
    # price spellings and the largest allowed price and quantity
    t = T0 + 250 * MINUTE
    for i, (text, cents, q) in enumerate([
        ("1E-2", 1, 1), ("0.10e1", 100, 2), ("19.990", 1999, 1), ("0.0", 0, 1),
        ("1e6", 100_000_000, 1), ("1000000", 100_000_000, 10_000), ("1.5E1", 1500, 3),
    ]):
        ev.append(base(g, "edge-price", t + i * 1000, "purchase", "/done", price=cents,
                       price_text=text, quantity=q, order_id="o-price",
                       product_id="P00007", category="garden"))
    # tricky strings in the landing / exit pages and user agent
    t = T0 + 280 * MINUTE
    ev += [
        base(g, "edge-strings", t, page='/q?"x"\\y\tz\nw Zürich 😀 \u2028',
             user_agent='UA "q" \\ \t \n é ☃ 🚀', ip="2001:db8::dead:beef"),
        base(g, "edge-strings", t + 1_000, page="/exit/ünïcödé/✓", ip="::"),
    ]
    return ev


def lower_case_zone(g: Gen):
    """README: 'z' is as good as 'Z' (the generator also mixes them in at random)."""
    t = T0 + 150 * MINUTE + 123
    text = g.fmt_time(t, plain=True)
    assert text.endswith("Z")
    g.emit(base(g, "edge-lower-z", t, page="/lower-z"), override={"event_time": json.dumps(text[:-1] + "z")})


def reused_id_after_watermark(g: Gen):
    """A message reusing an accepted event's id, with a later
    event_time, after W has passed the first one. docs/contract.md §1 makes it a duplicate
    (counted once, first one wins)."""
    t = T0 + 130 * MINUTE
    first = base(g, "edge-reuse", t, page="/reuse-first")
    g.emit(first)
    again = base(g, "edge-reuse-2", t + 20 * MINUTE, "purchase", "/reuse-second",
                 event_id=first["event_id"], price=500, quantity=1, order_id="o-reuse")
    g.emit(again)
    g.expect["duplicates"] += 1


def special_deliveries(g: Gen):
    """Lines whose delivery order is the point: out of order within the delay, exactly at
    W, just below W, session merge and start move, duplicates and lateness."""
    rng = g.rng
    # an event exactly at W and one at W - 1 ms: delivered right after an event at t + 60 s
    t = T0 + 100 * MINUTE + 500
    anchor = base(g, "edge-w-anchor", t + DELAY)
    g.emit(anchor)
    at_w = base(g, "edge-w", t, page="/at-watermark")
    g.emit(at_w, key=t + DELAY)  # same key, later seq: processed right after the anchor
    below = base(g, "edge-w", t - 1, page="/below-watermark")
    g.emit(below, key=t + DELAY)
    g.expect["late"] += 1
    # merge: sessions 30 min 30 s apart, joined by an event 40 s before the second one
    t = T0 + 40 * MINUTE
    g.emit(base(g, "edge-merge", t, page="/merge-a"))
    g.emit(base(g, "edge-merge", t + GAP + 30_000, page="/merge-c"))
    g.emit(base(g, "edge-merge", t + GAP - 10_000, page="/merge-b"), key=t + GAP + 30_001)
    # start move: an event 40 s before a session's start arrives 10 s after it
    t = T0 + 170 * MINUTE
    g.emit(base(g, "edge-move", t, page="/move-second"))
    g.emit(base(g, "edge-move", t + 5_000, page="/move-third"))
    g.emit(base(g, "edge-move", t - 40_000, page="/move-first", device="tablet"), key=t + 10_000)
    # a same-id message with different content after the first: first accepted wins
    t = T0 + 110 * MINUTE
    e = base(g, "edge-dup", t, page="/dup-first")
    g.emit(e)
    g.emit(dict(e, page="/dup-second"), key=t + 5_000)
    g.expect["duplicates"] += 1
    # an exact duplicate that arrives after the watermark passed it: late, not duplicate
    t = T0 + 115 * MINUTE
    e = base(g, "edge-dup", t + 1, page="/dup-late")
    ln = g.line(e)
    g.deliver(t + 1, ln)
    g.deliver(t + 6 * MINUTE, ln)
    g.expect["late"] += 1
    # a valid event of exactly 64 KiB is not oversized (only "over 64 KiB" is)
    t = T0 + 125 * MINUTE
    e = base(g, "edge-big", t, user_agent="A" * 1000)
    g.deliver(t, sized(g.line(e, shuffle=False, extra={}), 65_536))
    # the first line with this id is rejected (bad device): the later valid one is accepted
    t = T0 + 120 * MINUTE
    e = base(g, "edge-dup", t, page="/accepted-after-reject")
    g.deliver(t - 2_000, g.line(e, override={"device": '"phone"'}))
    g.emit(e)


def later_days(g: Gen, seed: int):
    """Cohorts (contract §7): activity on later UTC days. Drawn from a random stream of its
    own (the first day's lines stay as they were) and delivered with keys from 23:57 on
    the first day, after every first-day line (whose keys end before T0 + 7 h), so no
    existing event becomes late and no expectation changes. Every event here is
    delivered at its event_time or less than DELAY after it (keys are never before the
    event time), so none is late: the largest accepted time is at most its key."""
    saved, g.rng = g.rng, random.Random(f"later-days-{seed}")
    rng = g.rng
    try:
        assert all(key < MIDNIGHT - 10 * MINUTE for key, _, _ in g.items)
        M = MIDNIGHT
        # around midnight: the boundary belongs to the later day
        for ev in [
            base(g, "edge-midnight", M - 3 * MINUTE, page="/late-evening"),
            base(g, "edge-midnight", M - 1, "product_view", "/product/P00008",
                 product_id="P00008", category="toys"),  # day 1 (cohort 2026-11-01)
            base(g, "edge-midnight", M, "add_to_cart", "/product/P00008",
                 product_id="P00008", category="toys", price=2999, quantity=2),  # day 2
            base(g, "edge-midnight", M + 2_000, "purchase", "/done", product_id="P00008",
                 category="toys", price=2999, quantity=2, order_id="o-midnight"),
            base(g, "edge-new-at-midnight", M, page="/first-at-midnight"),  # cohort day 2
        ]:
            g.emit(ev)
        # cohort move: first seen at M + 20 s and M + 40 s (a purchase on day 2); the
        # event of M - 15 s arrives at key M + 44 s, after a burst of 120 events of
        # another user (so that an epoch of 97 messages ends in between and the old
        # cohort's row is written before the move), when W <= M - 16 s: on time, and day
        # 1 is still open, so the cohort moves to 2026-11-01. The other user, first seen
        # at M + 10 s, keeps the 2026-11-02 cohort's row (updated, not deleted).
        g.emit(base(g, "edge-cohort-stay", M + 10_000, page="/stay"))
        g.emit(base(g, "edge-cohort-move", M + 20_000, "product_view", "/product/P00009",
                    product_id="P00009", category="garden"))
        g.emit(base(g, "edge-cohort-move", M + 40_000, "purchase", "/done",
                    product_id="P00009", category="garden", price=4500, quantity=1,
                    order_id="o-move"))
        for i in range(120):
            g.emit(base(g, "edge-cohort-stay", M + 40_001 + i * 30, page=f"/burst/{i}"))
        g.emit(base(g, "edge-cohort-move", M - 15_000, page="/before-midnight",
                    referrer="social"), key=M + 44_000)
        # the same at the next midnight, but the mover is alone in its first cohort
        # (2026-11-03) when it moves to 2026-11-02: that row is deleted. The burst is a
        # day-1 user's.
        M2 = M + DAY
        g.emit(base(g, "edge-cohort-move2", M2 + 5_000, page="/move2-first-seen"))
        g.emit(base(g, "edge-cohort-move2", M2 + 30_000, "purchase", "/done", price=249,
                    quantity=3, order_id="o-move2"))
        for i in range(120):
            g.emit(base(g, "edge-midnight", M2 + 30_001 + i * 30, page=f"/burst2/{i}"))
        g.emit(base(g, "edge-cohort-move2", M2 - 20_000, page="/move2-before-midnight"),
               key=M2 + 35_000)
        # the other scripted users of day 1 come back on day 2 (and some on day 3)
        for user, day, hour, etype, kw in [
            ("edge-buy", 1, 9, "purchase", dict(price=1999, quantity=2, order_id="o-day2")),
            ("edge-window", 1, 13, "page_view", {}),
            ("edge-window", 2, 8, "purchase", dict(price=10000, quantity=1, order_id="o-day3")),
            ("edge-gap", 2, 23, "page_view", {}),
            ("edge-cohort-move", 2, 10, "purchase", dict(price=75, quantity=4, order_id="o-m3")),
            ("edge-new-at-midnight", 2, 12, "page_view", {}),
        ]:
            t = T0 + day * DAY + hour * HOUR + rng.randrange(0, 30 * MINUTE)
            page = "/done" if etype == "purchase" else "/back"
            g.emit(base(g, user, t, page=page, device="mobile"))
            g.emit(base(g, user, t + 1_000, etype, page, **kw))
        # simulated shoppers: some return on day 2, some on day 3, some on both; and new
        # users first seen on day 2, some of them back on day 3. No user is first seen on
        # day 3 (edge-cohort-move2 only was, for a while): its row must end up deleted.
        returning = [(f"user-{u:03d}" if u % 7 else f"usér-{u:03d}-Zürich")
                     for u in rng.sample(range(1, 41), 12)]
        plan = [(u, days) for u, days in zip(returning, [(1,), (1,), (1,), (1,), (2,), (2,),
                                                           (2,), (1, 2), (1, 2), (1, 2), (1,), (2,)])]
        plan += [(f"new-day2-{i}", (1, 2) if i % 2 else (1,)) for i in range(5)]
        events = []
        for user, days in plan:
            home = {
                "device": rng.choice(DEVICES),
                "country": rng.choice(COUNTRIES),
                "ip": rng.choice(IPS),
                "user_agent": rng.choice(USER_AGENTS),
            }
            for day in days:
                # from 01:00-18:00: up to two sessions (at most ~1.6 h each, 30-90 min
                # apart) stay inside the day
                t = T0 + day * DAY + HOUR + rng.randrange(0, 17 * HOUR)
                for _ in range(rng.choice([1, 1, 2])):
                    t = session(g, user, home, t, events) + GAP + rng.randrange(1, HOUR)
        for ev in events:
            assert MIDNIGHT + HOUR <= ev["event_time"] < T0 + 3 * DAY - HOUR
            t = ev["event_time"]
            if rng.random() < 0.06:  # out of order, within the delay: never late
                g.emit(ev, key=t + rng.randrange(1, DELAY))
            else:
                g.emit(ev)
    finally:
        g.rng = saved


def rfm_buyers(g: Gen, seed: int):
    """customer_rfm (contract §7): purchases the rest of the data set lacks. Every other
    purchase without an order id is edge-buy's one with an empty id, so here a user has
    two purchases without order_id (one with the field absent, one null: two orders, not
    one) beside a multi-line order, and two users tie in monetary (51.00) with different
    frequency and recency. The users are new, first seen on day 2 (2026-11-02; none on
    day 3, which must stay without a cohort), between 03:00 and 06:00, away from both
    midnights. Drawn from a random stream of its own, after later_days, and delivered
    like its events: at the event time or less than DELAY after it, so none is late and
    no expectation changes."""
    saved, g.rng = g.rng, random.Random(f"rfm-buyers-{seed}")
    rng = g.rng
    try:
        D2, D3 = T0 + DAY, T0 + 2 * DAY
        t = D2 + 3 * HOUR + rng.randrange(0, 10 * MINUTE)
        g.emit(base(g, "edge-rfm-loose", t, page="/rfm"))
        # two purchases without order_id: each an order of its own
        g.emit(base(g, "edge-rfm-loose", t + 5_000, "purchase", "/done", price=1999,
                    quantity=2), drop=("order_id",))
        g.emit(base(g, "edge-rfm-loose", t + 9_000, "purchase", "/done", price=500,
                    quantity=1, product_id="P00010", category="books"), nulls=("order_id",))
        # one order of two lines, the second delivered 30 s late (within the delay)
        g.emit(base(g, "edge-rfm-loose", t + 60_000, "purchase", "/done", price=249,
                    quantity=4, product_id="P00006", category="books", order_id="o-rfm"))
        g.emit(base(g, "edge-rfm-loose", t + 60_001, "purchase", "/done", price=12345,
                    quantity=1, product_id="P00009", category="garden", order_id="o-rfm"),
               key=t + 90_001)
        # ties in monetary: 30.00 + 21.00 in one order on day 2 against 25.50 on day 2 and
        # 25.50 on day 3 in two orders
        t = D2 + 5 * HOUR + rng.randrange(0, 10 * MINUTE)
        g.emit(base(g, "edge-rfm-tie-a", t, "purchase", "/done", price=1000, quantity=3,
                    order_id="o-tie-a"))
        g.emit(base(g, "edge-rfm-tie-a", t + 2_000, "purchase", "/done", price=1050,
                    quantity=2, product_id="P00002", category="electronics",
                    order_id="o-tie-a"))
        t = D2 + 4 * HOUR + rng.randrange(0, 10 * MINUTE)
        g.emit(base(g, "edge-rfm-tie-b", t, "purchase", "/done", price=2550, quantity=1,
                    order_id="o-tie-b1"))
        t = D3 + 4 * HOUR + rng.randrange(0, 10 * MINUTE)
        g.emit(base(g, "edge-rfm-tie-b", t, "purchase", "/done", price=2550, quantity=1,
                    order_id="o-tie-b2"))
    finally:
        g.rng = saved


def anchors_from(g: Gen, start: int) -> list[tuple[int, int]]:
    """Anchors: existing lines of day 2 from `start` on, in delivery order, each with the
    largest event time delivered up to it (m), at least 60 s of m apart. A line delivered
    right after an anchor's line (same key, later seq) with an event time in (m - 60 s, m]
    is never late (W = m - 60 s), and never raises the largest event time, so every later
    line meets the same W as without it."""
    anchors, m = [], None
    items = sorted(g.items)
    for n, (key, seq, _) in enumerate(items):
        if key >= MIDNIGHT:
            assert seq in g.times, "a day-2 line without a known event time"
        if seq in g.times:
            m = g.times[seq] if m is None else max(m, g.times[seq])
        last_of_key = n + 1 == len(items) or items[n + 1][0] != key
        if (key >= start and last_of_key
                and (not anchors or m >= anchors[-1][1] + 60_000)):
            anchors.append((key, m))
    return anchors


def pair_buyers(g: Gen, seed: int):
    """product_pairs (contract §7): orders the rest of the data set lacks, of products
    nothing else buys (P20xxx). The hub P20020 is bought with P20013 in 4 orders (one
    also holding P20014: P20013-P20014 is in one order only), with P20014 in 3, and with
    each of P20001..P20012 in 2: two of them in each order, the partner pairs never
    repeated (in one order only: no row). Of the hub's 14 qualifying partners it keeps
    P20013, P20014 and P20001..P20008; P20009..P20012 tie with P20008 at 2 and are cut
    by other_product_id, though bought first (descending ids), while each of them still
    lists the hub. P20031 is twice in an order with P20032 and twice in one with P20033,
    once more with P20033: P20031-P20033 is in 2 orders (3 or 4 lines), P20031-P20032 in
    one (2 lines: no row), P20031 in 3 orders (5 lines). The hub alone with order_id ""
    and P20040 alone with a null order_id are two orders (an order of its own each, in
    the orders holding their product and in all orders), and the two are together in
    one order only: no row, unless they were merged. The users are new, first seen on
    day 2 (2026-11-02; none on day 3) from about 06:30, away from the midnights and the
    other scripted lines. Drawn from a random stream of its own, after rfm_buyers; each
    line is delivered right after an existing one, never later than W allows and never
    past the largest event time so far (see anchors): none is late, no expectation and
    no existing line's distance to W changes. The lines end in "\n" without drawing, so
    that earlier lines keep theirs."""
    saved, g.rng = g.rng, random.Random(f"pair-buyers-{seed}")
    rng = g.rng
    first_seq = g.seq
    try:
        hub = "P20020"
        tied = [f"P{20000 + i:05d}" for i in range(1, 13)]  # P20001..P20012
        orders: list[tuple[str, list[str]]] = []  # (order_id or "" / None, product ids)
        # every tied partner twice with the hub, never twice with the same partner;
        # descending ids, so that the first bought are the ones cut
        for a, b in [(12, 1), (11, 10), (9, 8), (7, 6), (5, 4), (3, 2),
                     (12, 11), (10, 9), (8, 7), (6, 5), (4, 3), (2, 1)]:
            orders.append((f"o-pair-t{a}-{b}", [tied[a - 1], hub, tied[b - 1]]))
        orders += [(f"o-pair-a{i}", [hub, "P20013"]) for i in range(3)]
        orders.append(("o-pair-ab", ["P20014", hub, "P20013"]))
        orders += [(f"o-pair-b{i}", [hub, "P20014"]) for i in range(2)]
        # a product twice in one order
        orders += [("o-pair-d1", ["P20031", "P20032", "P20031"]),
                   ("o-pair-d2", ["P20033", "P20031"]),
                   ("o-pair-d3", ["P20031", "P20033", "P20031"])]
        # without order_id: two orders of one product each; together once in an order
        orders += [("", [hub]), (None, ["P20040"]), ("o-pair-hb", [hub, "P20040"])]
        users = [f"edge-pairs-{c}" for c in "abcd"]
        start = T0 + DAY + 6 * HOUR + 30 * MINUTE + rng.randrange(0, 5 * MINUTE)
        anchors = anchors_from(g, start)
        # the lines of one anchor: its key, event times m - 10 s + i s (at most m)
        groups = [[base(g, user, 0, page="/pairs") for user in users]]
        for n, (order_id, products) in enumerate(orders):
            user = users[n % len(users)]
            group = []
            for pid in products:
                kw = {} if order_id is None else {"order_id": order_id}
                group.append(base(g, user, 0, "purchase", "/done", product_id=pid,
                                  category=CATEGORIES[int(pid[1:]) % len(CATEGORIES)],
                                  price=rng.choice(PRICE_CENTS),
                                  quantity=rng.choice([1, 1, 2, 3]), **kw))
            groups.append(group)
        assert len(anchors) > len(groups) and anchors[len(groups)][0] < T0 + DAY + 12 * HOUR
        for (key, m), group in zip(anchors, groups):
            for i, ev in enumerate(group):
                ev["event_time"] = m - 10_000 + i * 1_000
            if group[0].get("order_id") == "o-pair-d3":
                group = group[::-1]  # delivered out of order (same key), never late
            for ev in group:
                if ev["event_type"] == "purchase" and ev["order_id"] is None:
                    g.emit(ev, key=key, nulls=("order_id",))
                else:
                    g.emit(ev, key=key)
    finally:
        g.rng = saved
        g.plain_end.update(range(first_seq + 1, g.seq + 1))


def similar_viewers(g: Gen, seed: int):
    """product_similar (contract §7): sessions of new users viewing products nothing else
    views (P22xxx), each session one user's lines at one anchor (see anchors_from), 1 s
    apart, from day 2 13:00 on (after pair_buyers'); drawn from a random stream of its own
    and ending in "\n", like pair_buyers.

    - T = P22100 is viewed in 3 sessions: two with b = P22101, a = P22102 and c1..c9 =
      P22103..P22111, one with b alone. So T has 11 partners in 2 sessions or more; c1..c9
      rank first (2 / sqrt(3 x 2)); b (3 sessions with T, 18 viewing it: 15 more sessions
      view b alone) and a (2 with T, 8 viewing it: 6 more view a alone) tie exactly,
      3 / sqrt(3 x 18) = 2 / sqrt(3 x 8), and the id keeps b and cuts a (as doubles b's is
      the smaller, and a would be kept).
    - P22120 and P22121 are in one session together only: no row.
    - P22130 is viewed three times in a session with P22131, then once in another
      session with it: sessions_together 2, 2 sessions viewing each, similarity 1.
    - Two users each view P22140, then, 31 minutes later (more than the session gap),
      P22141: two sessions each, no row; had the gap not split them, each user's one
      session would view both: 2 sessions, a row.
    - P22150 is viewed in two sessions that add P22151 to the cart and buy it: a cart add
      and a purchase are no view, no row.
    """
    saved, g.rng = g.rng, random.Random(f"similar-viewers-{seed}")
    rng = g.rng
    first_seq = g.seq
    try:
        def view(pid):
            return ("product_view", pid)

        t, b, a = "P22100", "P22101", "P22102"
        cs = [f"P{22103 + i}" for i in range(9)]
        sessions: list[list[tuple[str, str]]] = []  # each: (event type, product) in order
        sessions += [[view(p) for p in [t, b, a, *cs]] for _ in range(2)]
        sessions.append([view(t), view(b)])
        sessions += [[view(b)] for _ in range(15)] + [[view(a)] for _ in range(6)]
        sessions.append([view("P22120"), view("P22121")])
        sessions.append([view("P22130"), view("P22131"), view("P22130"), view("P22130")])
        sessions.append([view("P22131"), view("P22130")])
        sessions += [[view("P22150"), ("add_to_cart", "P22151"), ("purchase", "P22151")] for _ in range(2)]
        start = T0 + DAY + 13 * HOUR + rng.randrange(0, 5 * MINUTE)
        anchors = anchors_from(g, start)
        placed: list[tuple[int, int, str, list]] = []  # (anchor key, m, user, lines)
        for n, lines in enumerate(sessions):
            key, m = anchors[n]
            placed.append((key, m, f"edge-similar-{n:02d}", lines))
        # the gap: one user's two sessions at anchors more than 31 minutes of m apart
        n = len(sessions)
        for user in ("edge-similar-gap-a", "edge-similar-gap-b"):
            key, m = anchors[n]
            later = next(i for i in range(n + 1, len(anchors)) if anchors[i][1] >= m + GAP + MINUTE)
            placed.append((key, m, user, [view("P22140")]))
            placed.append((*anchors[later], user, [view("P22141")]))
            n = later + 1
        assert placed[-1][0] < T0 + DAY + 20 * HOUR, "the sessions of similar_viewers run into day 3"
        for key, m, user, lines in placed:
            for i, (etype, pid) in enumerate(lines):
                kw = {"price": rng.choice(PRICE_CENTS)} if etype != "product_view" else {}
                ev = base(g, user, m - (len(lines) - 1 - i) * 1_000, etype, f"/product/{pid}", product_id=pid,
                          category=CATEGORIES[int(pid[1:]) % len(CATEGORIES)], **kw)
                g.emit(ev, key=key)
    finally:
        g.rng = saved
        g.plain_end.update(range(first_seq + 1, g.seq + 1))


def risky_sessions(g: Gen, seed: int):
    """session_risk (contract §8, the README's rules): sessions of new users, each at one
    anchor (see anchors_from) from day 2 20:30 on, every rule's threshold met exactly and
    missed by one: 12 cart adds and no checkout (cart_stuffing) and 11; 20 distinct
    products viewed and no cart add (catalogue_sweep), 19, and 20 with a cart add (the
    20-event ones also machine_pace: 1 s apart, as every session here, to stay within
    the watermark delay of their anchor); three
    purchases of one product averaging 19.99 (repeated_small_purchases) and averaging
    20.00; 3 checkouts more than purchases (declined_checkouts) and 2; 20 events whose
    median gap is 5,000 ms (machine_pace) and 5,001 ms, and 21 events (20 gaps: the upper
    of the two middle ones counts) whose middle gaps are 500 and 5,001 ms; 5 cart adds one
    of 5 units (bulk_cart_adds, 40 points: not flagged by the rule) and 4. Products
    P23xxx, nothing else's; drawn from a random stream of its own, lines ending in "\n"."""
    saved, g.rng = g.rng, random.Random(f"risky-sessions-{seed}")
    rng = g.rng
    first_seq = g.seq
    try:
        def paced(events: list[tuple], gaps: list[int]) -> list[tuple]:
            """(offset ms, event type, product, quantity, price) from gaps between events."""
            t, out = 0, []
            for n, (etype, pid, qty, price) in enumerate(events):
                t += gaps[n - 1] if n else 0
                out.append((t, etype, pid, qty, price))
            return out

        def evenly(events: list[tuple]) -> list[tuple]:
            return paced(events, [1_000] * len(events))

        def adds(n: int, qty=lambda i: 1, base_id: int = 23000) -> list[tuple]:
            return [("add_to_cart", f"P{base_id + i}", qty(i), 1999) for i in range(n)]

        def views(n: int, base_id: int) -> list[tuple]:
            return [("product_view", f"P{base_id + i}", None, None) for i in range(n)]

        checkout = ("begin_checkout", None, None, None)
        page = ("page_view", None, None, None)

        def bought(price):
            return ("purchase", "P23300", 1, price)

        sessions = {
            "stuffer-12": evenly(adds(12)),
            "stuffer-11": evenly(adds(11)),
            "stuffer-12-checkout": evenly(adds(12) + [checkout]),
            "sweep-20": evenly(views(20, 23100)),
            "sweep-19": evenly(views(19, 23200)),
            "sweep-20-cart": evenly(views(20, 23400) + adds(1, base_id=23400)),
            "tester-1999": evenly([checkout, bought(1999), checkout, bought(1999), checkout, bought(1999)]),
            "tester-2000": evenly([checkout, bought(1999), checkout, bought(2001), checkout, bought(2000)]),
            "declined-3": evenly([checkout] * 4 + [bought(5000)]),
            "declined-2": evenly([checkout] * 3 + [bought(5000)]),
            "pace-5000": paced([page] * 20, [1_000] * 9 + [5_000] * 10),
            "pace-5001": paced([page] * 20, [1_000] * 9 + [5_001] * 10),
            "pace-even": paced([page] * 21, [500] * 10 + [5_001] * 10),
            "bulk-5": evenly(adds(5, qty=lambda i: 5 if i == 2 else 1, base_id=23500)),
            "bulk-4": evenly(adds(4, qty=lambda i: 5 if i == 2 else 1, base_id=23600)),
        }
        anchors = anchors_from(g, T0 + DAY + 20 * HOUR + 30 * MINUTE + rng.randrange(0, 5 * MINUTE))
        assert len(anchors) > len(sessions), "too few anchors for risky_sessions"
        for (key, m), (name, events) in zip(anchors, sessions.items()):
            span = events[-1][0]
            assert span < 60_000, f"{name} spans {span} ms: some of it would be late"
            for offset, etype, pid, qty, price in events:
                kw = {"quantity": qty} if qty is not None else {}
                if price is not None:
                    kw["price"] = price
                if pid is not None:
                    kw.update(product_id=pid, category=CATEGORIES[int(pid[1:]) % len(CATEGORIES)])
                ev = base(g, f"edge-risk-{name}", m - span + offset, etype, f"/risk/{etype}", **kw)
                g.emit(ev, key=key)
    finally:
        g.rng = saved
        g.plain_end.update(range(first_seq + 1, g.seq + 1))


def sized(line: bytes, size: int) -> bytes:
    """Pad the run of 1000 'A's in a line so that the line is exactly `size` bytes."""
    assert line.count(b"A" * 1000) == 1
    out = line.replace(b"A" * 1000, b"A" * (1000 + size - len(line)))
    assert len(out) == size
    return out


def bad_lines(g: Gen) -> list[bytes]:
    """One line per dead-letter case; every bad line has exactly one problem."""
    rng = g.rng

    def good(etype="add_to_cart", **kw):
        kw.setdefault("page", "/bad")
        return base(g, "edge-bad", T0 + rng.randrange(10 * MINUTE, SPAN), etype, **kw)

    def L(ev=None, **kw):
        return g.line(ev or good(), shuffle=False, extra={}, **kw)

    out: list[tuple[str, bytes]] = []
    # invalid_json
    whole = L()
    bad_utf8 = L().replace(b'"edge-bad"', b'"edge-bad\xff\xfe"', 1)
    assert b"\xff" in bad_utf8
    out += [
        ("invalid_json", whole[: len(whole) // 2]),
        ("invalid_json", b"[1, 2, 3]"),
        ("invalid_json", b'"just a string"'),
        ("invalid_json", b"42"),
        ("invalid_json", b"null"),
        ("invalid_json", b""),
        ("invalid_json", b"   \t "),
        ("invalid_json", bad_utf8),
        ("invalid_json", L() + b" trailing"),
        ("invalid_json", b"{}{}"),
        ("invalid_json", L(override={"price": "NaN"})),
        ("invalid_json", b'{"event_id": "x\x00y", "event_t'),
        ("invalid_json", b"{'event_id': 'single-quoted'}"),
        ("invalid_json", L()[:-1] + b",}"),
    ]
    # missing_field: absent and null required fields
    out.append(("missing_field", b"{}"))
    for name, mode, etype in [
        ("event_id", "drop", "page_view"), ("event_id", "null", "page_view"),
        ("event_time", "drop", "page_view"), ("event_type", "null", "page_view"),
        ("user_id", "drop", "search"), ("page", "drop", "search"),
        ("product_id", "drop", "add_to_cart"), ("category", "null", "product_view"),
        ("price", "null", "purchase"), ("price", "drop", "add_to_cart"),
        ("quantity", "drop", "remove_from_cart"), ("quantity", "null", "purchase"),
        ("device", "null", "page_view"), ("country", "drop", "page_view"),
        ("referrer", "drop", "page_view"), ("user_agent", "null", "page_view"),
        ("ip", "drop", "page_view"),
    ]:
        e = good(etype, order_id="o" if etype == "purchase" else None)
        kw = {"drop": (name,)} if mode == "drop" else {"nulls": (name,)}
        out.append(("missing_field", L(e, **kw)))
    # invalid_field: one broken rule each
    for name, value, etype in [
        ("price", "19.999", "add_to_cart"), ("price", "19.995", "purchase"),
        ("price", "-1", "add_to_cart"), ("price", "-0.01", "add_to_cart"),
        ("price", "1000000.01", "add_to_cart"), ("price", '"10.50"', "add_to_cart"),
        ("price", "true", "purchase"), ("price", "1.234", "product_view"),
        ("quantity", "0", "add_to_cart"), ("quantity", "2.5", "purchase"),
        ("quantity", "-1", "remove_from_cart"), ("quantity", "10001", "add_to_cart"),
        ("quantity", '"2"', "add_to_cart"), ("quantity", "0", "page_view"),
        ("device", '"phone"', "page_view"), ("device", '"Mobile"', "page_view"),
        ("country", '"us"', "page_view"), ("country", '"USA"', "page_view"),
        ("country", '"D1"', "page_view"), ("country", '""', "page_view"),
        ("referrer", '"tv"', "page_view"),
        ("ip", '"300.1.2.3"', "page_view"), ("ip", '"not-an-ip"', "page_view"),
        ("ip", '"1.2.3"', "page_view"), ("ip", '"2001:db8::g"', "page_view"),
        ("event_time", '"2026-11-01T00:10:60Z"', "page_view"),
        ("event_time", '"2026-11-01T25:00:00Z"', "page_view"),
        ("event_time", '"2026-02-30T00:00:00Z"', "page_view"),
        ("event_time", '"2026-11-01T00:10:00"', "page_view"),
        ("event_time", '"2026/11/01 00:10:00Z"', "page_view"),
        ("event_time", '""', "page_view"),
        ("event_time", '"0000-01-01T00:00:00Z"', "page_view"),
        ("event_time", "1793491800000", "page_view"),
        ("event_time", '"2026-11-01T05:40:00+0530"', "page_view"),
        ("event_time", '"2026-11-01T00:10Z"', "page_view"),
        ("event_id", '""', "page_view"), ("event_id", "123", "page_view"),
        ("user_id", '""', "page_view"),
        ("product_id", '""', "add_to_cart"), ("category", '""', "purchase"),
        ("page", "5", "page_view"), ("user_agent", "{}", "page_view"),
        ("order_id", "5", "purchase"),
    ]:
        e = good(etype, order_id="o" if etype == "purchase" else None)
        out.append(("invalid_field", L(e, override={name: value})))
    out.append(("invalid_field", L(good("page_view"), dup_key=("device", '"mobile"'))))
    # README: a lone surrogate escape and a NUL character are no storable string
    out.append(("invalid_field", L(good("page_view"), override={"page": '"/x\\ud800"'})))
    out.append(("invalid_field", L(good("page_view"), override={"user_agent": '"a\\u0000b"'})))
    # README: a UTF-8 byte-order mark is not JSON
    out.append(("invalid_json", b"\xef\xbb\xbf" + L()))
    # unknown_event_type
    for et in ["checkout", "PageView", "purchase ", "click"]:
        out.append(("unknown_event_type", L(good("page_view"), override={"event_type": json.dumps(et)})))
    # oversized: a valid event padded past 64 KiB, and oversized garbage
    out.append(("oversized", L(good("page_view", user_agent="A" * 70_000))))
    out.append(("oversized", b"{" + b"x" * 66_000))
    out.append(("oversized", sized(L(good("page_view", user_agent="A" * 1000)), 65_537)))
    out.append(("oversized", L(good("page_view", page="/" + "é" * 33_000))))
    # future_event_time
    for ts in ["2999-01-01T00:00:00Z", "9999-12-31T23:59:59.999Z", "2999-06-01T12:00:00+05:30"]:
        out.append(("future_event_time", L(good("page_view"), override={"event_time": json.dumps(ts)})))
    return out


def generate(seed: int = 1) -> tuple[bytes, dict]:
    g = Gen(seed)
    rng = g.rng
    sim = simulate(g)
    for ev in scripted(g):
        g.emit(ev)
    special_deliveries(g)
    reused_id_after_watermark(g)
    lower_case_zone(g)
    for ev in sim:
        t = ev["event_time"]
        r = rng.random()
        if r < 0.06:  # out of order, within the watermark delay: never late
            g.emit(ev, key=t + rng.randrange(1, DELAY))
        elif r < 0.066 and t < T0 + SPAN - HOUR:  # late: delivered minutes after later events
            g.emit(ev, key=t + rng.randrange(3 * MINUTE, 15 * MINUTE))
            g.expect["late"] += 1
        else:
            ln = g.line(ev)
            g.deliver(t, ln)
            if rng.random() < 0.015:  # exact duplicate within the delay
                g.deliver(t + rng.randrange(0, 50_000), ln)
                g.expect["duplicates"] += 1
    bad = bad_lines(g)
    for _, ln in bad:
        g.deliver(T0 + rng.randrange(0, SPAN), ln)
    later_days(g, seed)
    rfm_buyers(g, seed)
    pair_buyers(g, seed)
    similar_viewers(g, seed)
    risky_sessions(g, seed)
    g.items.sort(key=lambda it: (it[0], it[1]))
    lines = [it[2] for it in g.items]
    plain_end = [it[1] in g.plain_end for it in g.items]
    # the very first lines: an event before 1970, then a valid year-0001 event (late)
    pre = base(g, "edge-epoch", -29_500, page="/before-1970")
    pre["plain_time"] = True
    lines.insert(0, g.line(pre, shuffle=False, extra={}))
    ancient = base(g, "edge-epoch", 0, page="/year-one")
    ln = g.line(ancient, shuffle=False, extra={},
                override={"event_time": '"0001-01-01T00:00:00Z"'})
    lines.insert(1, ln)
    plain_end[0:0] = [False, False]
    g.expect["late"] += 1
    # line ends: "\n", with some "\r\n"
    out = bytearray()
    for i, ln in enumerate(lines):
        crlf = (not plain_end[i] and ln.startswith(b"{") and ln.endswith(b"}") and len(ln) < 60_000
                and (i == 2 or rng.random() < 0.01))
        last = i == len(lines) - 1
        # odd seeds: the last line has no line end
        out += ln + (b"" if last and seed % 2 else b"\r\n" if crlf else b"\n")
    expect = dict(g.expect)
    expect["lines"] = len(lines)
    expect["bad"] = {}
    for reason, _ in bad:
        expect["bad"][reason] = expect["bad"].get(reason, 0) + 1
    return bytes(out), expect


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_file")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    data, expect = generate(args.seed)
    with open(args.out_file, "wb") as f:
        f.write(data)
    print(f"wrote {expect['lines']} lines to {args.out_file}", file=sys.stderr)


if __name__ == "__main__":
    main()
