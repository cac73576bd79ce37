"""session_risk and risk_models (docs/contract.md §8) as far as they follow from the
contract and the README's rules alone, without the forest:

- every final session whose rules give 70 points or more (the default threshold) is in
  session_risk, and no session below it is unless the model's `unusual_behaviour` says so;
- a flagged session's reasons are its rules' reasons in the vocabulary's order, then
  `unusual_behaviour` or nothing; its score is its rules' points unless the model gave a
  reason, and is then at least 60 or above the rules' points;
- `scored_at` is the session's end plus the gap; the version is that of the UTC day of
  `scored_at`, `forest-` when 256 sessions or more were final before that day, else
  `rules-`, trained on min(1024, those sessions);
- risk_models holds one row per day on which a session became final, and nothing else.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

VOCABULARY = ["repeated_small_purchases", "declined_checkouts", "cart_stuffing", "catalogue_sweep",
              "machine_pace", "bulk_cart_adds", "unusual_behaviour"]
POINTS = {"repeated_small_purchases": 80, "declined_checkouts": 80, "cart_stuffing": 80,
          "catalogue_sweep": 80, "machine_pace": 70, "bulk_cart_adds": 40}
THRESHOLD = 70
SAMPLE, MIN_SAMPLE = 1024, 256
STANDS_OUT = 60
DAY_MS = 86_400_000


def rule_reasons(evs: list[dict]) -> list[str]:
    """The README's rules over one session's events, in the vocabulary's order."""
    of = lambda t: [e for e in evs if e["event_type"] == t]  # noqa: E731
    purchases, checkouts, adds = of("purchase"), of("begin_checkout"), of("add_to_cart")
    viewed = {e["product_id"] for e in of("product_view") if e["product_id"] is not None}
    revenue = sum((e["price"] * e["quantity"] for e in purchases), Decimal(0))
    times = sorted(e["event_time"] for e in evs)
    gaps = sorted(b - a for a, b in zip(times, times[1:]))
    median_gap = gaps[len(gaps) // 2] if gaps else 0  # of an even number, the upper middle
    holds = {
        "repeated_small_purchases": len(purchases) >= 3 and len({e["product_id"] for e in purchases}) == 1
                                    and revenue < 20 * len(purchases),
        "declined_checkouts": len(checkouts) - len(purchases) >= 3,
        "cart_stuffing": len(adds) >= 12 and not checkouts,
        "catalogue_sweep": len(viewed) >= 20 and not adds,
        "machine_pace": len(evs) >= 20 and median_gap <= 5_000,
        "bulk_cart_adds": len(adds) >= 5 and max(e["quantity"] for e in adds) >= 5,
    }
    return [r for r in VOCABULARY[:-1] if holds[r]]


def versions(session_ends: list[int], gap_ms: int) -> dict[int, tuple[str, int]]:
    """Per day on which a session became final: the version's name and its sessions."""
    finals = sorted(end + gap_ms for end in session_ends)
    out = {}
    for day in sorted({f - f % DAY_MS for f in finals}):
        before = sum(1 for f in finals if f < day)
        kind = "forest" if before >= MIN_SAMPLE else "rules"
        date = dt.datetime.fromtimestamp(day / 1000, dt.timezone.utc).strftime("%Y-%m-%d")
        out[day] = (f"{kind}-{date}", min(SAMPLE, before))
    return out


def check(session_events: dict, flagged: dict, models: dict, gap_ms: int) -> list[str]:
    """session_events: (user_id, session_start) -> its events; flagged: the same key ->
    session_risk's row; models: model_version -> risk_models' row."""
    problems = []
    expected_versions = versions([evs[-1]["event_time"] for evs in session_events.values()], gap_ms)
    for key, evs in sorted(session_events.items(), key=repr):
        rules = rule_reasons(evs)
        points = max((POINTS[r] for r in rules), default=0)
        row = flagged.get(key)
        if row is None:
            if points >= THRESHOLD:
                problems.append(f"{key!r}: rules {rules} give {points} points, not in session_risk")
            continue
        end = evs[-1]["event_time"]
        reasons, score = row["reasons"], row["score"]
        model_said = reasons[len(rules):] == ["unusual_behaviour"]
        if reasons[:len(rules)] != rules or not (len(reasons) == len(rules) or model_said):
            problems.append(f"{key!r}: reasons {reasons}, the rules give {rules} (then unusual_behaviour or nothing)")
        elif score < THRESHOLD or (not model_said and score != points) or (model_said and score < min(STANDS_OUT, points + 1)):
            problems.append(f"{key!r}: score {score} with reasons {reasons} and {points} rule points")
        if row["session_end"] != end or row["scored_at"] != end + gap_ms:
            problems.append(f"{key!r}: session_end {row['session_end']} / scored_at {row['scored_at']}, "
                            f"expected {end} / {end + gap_ms}")
        want = expected_versions[(end + gap_ms) - (end + gap_ms) % DAY_MS][0]
        if row["model_version"] != want:
            problems.append(f"{key!r}: model_version {row['model_version']}, expected {want}")
    for key in sorted(set(flagged) - set(session_events), key=repr):
        problems.append(f"{key!r}: in session_risk, not a session")
    want_models = {name: (day, n) for day, (name, n) in expected_versions.items()}
    got_models = {name: (m["valid_from"], m["sessions"]) for name, m in models.items()}
    if got_models != want_models:
        problems.append(f"risk_models {sorted(got_models.items())}, expected {sorted(want_models.items())}")
    for name, m in models.items():
        if m["has_forest"] != name.startswith("forest-"):
            problems.append(f"risk_models {name}: forest {m['has_forest']}")
    return problems
