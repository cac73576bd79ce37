#!/usr/bin/env python3
"""Check clickflow's Grafana dashboards against real pipeline output.

    check_dashboards.py [--keep]

1. Structure: every JSON file under grafana/dashboards is a bare dashboard model (no
   {"dashboard": ...} wrapper) with a pinned uid, a title, a schemaVersion and panels whose
   queries use the provisioned data source (grafana/provisioning/datasources/postgres.yml);
   the dashboard provider (grafana/provisioning/dashboards/clickflow.yml) loads the folder
   docker-compose.yml mounts, and the data source's role can read every table.
2. Data: `clickflow produce` (seed 3, 21 days of event time at 0.04 events/s: about 68,000
   events with duplicates, late, malformed and out-of-order messages, 2 % bot visits, shoppers coming back
   over the days) then `clickflow process` into a fresh database cf_dashboards_<pid>
   on the server of DATABASE_URL (default postgres://postgres@127.0.0.1:5432/clickflow);
   binary `<repo>/target/debug/clickflow`, overridable with CLICKFLOW_BIN.
3. Variables: the dashboard's template variables are resolved as Grafana resolves them on
   load, in order: a `query` variable runs its query (macros expanded, earlier variables
   substituted) as the data source's role over the dashboard's range, its values taken as
   Grafana's SQL data sources take them (the columns __text/__value, else every value of
   every column; unique; then the variable's regex and sort), and its current value is the
   saved one if still among them, else the first (All, with includeAll); `custom`,
   `constant` and `textbox` variables take their options or text. A variable whose query
   fails or returns nothing fails, and so does every panel that uses it.
4. Panels: every panel query, with the variables substituted as Grafana's front end does
   (`$product`, `${product}`, `[[product]]`, `${product:format}`; a single value with its
   quotes doubled, several as quoted literals joined by commas) and then Grafana's
   PostgreSQL macros expanded as Grafana's source expands them, runs as the data source's
   role (clickflow_reader) and must succeed and return at least one row; a time-series
   panel must return a `time` column in non-decreasing order and numeric values; a
   groupingToMatrix transformation (a table pivoted into rows × columns) must name columns
   of the query, get each cell once, and get numeric columns in ascending order. A query
   that uses the time range also runs over a range without data and must not fail there.
   A query that uses a name that is no variable of the dashboard fails the structure check.

Time range of a dashboard: the pipeline output has two clocks. Dashboards tagged
`pipeline` read pipeline_progress, source_progress and dead_letters, stamped with the wall
clock, so they run over the span of those rows' reported_at/received_at (plus a minute
each side); every other dashboard reads event-time tables (windows, sessions, events,
cohorts by day; customer_rfm, product_pairs and product_similar are as of the latest
closed day and use no range) and runs over the whole hours covering the events'
event_time.

Prints one line per check and ends with one line `dashboards: N passed, N failed`;
exit status 1 on any failure.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from decimal import Decimal

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
sys.dont_write_bytecode = True  # leave no __pycache__ in the work tree
from pgcheck import Report, psql, remove_scratch, run_psql, with_database  # noqa: E402
DASHBOARDS = os.path.join(REPO, "grafana", "dashboards")
DATASOURCES_YML = os.path.join(REPO, "grafana", "provisioning", "datasources", "postgres.yml")
PROVIDER_YML = os.path.join(REPO, "grafana", "provisioning", "dashboards", "clickflow.yml")
COMPOSE = os.path.join(REPO, "docker-compose.yml")

# three weeks of event time at a low rate (about 68,000 events, 5,600 shoppers): enough
# days for cohorts with three weeks of retention, returning buyers for every RFM segment,
# and products bought together in two orders or more (product_pairs); 2 % of visits by bots
# (session_risk)
PRODUCE_FLAGS = ["--days", "21", "--events-per-second", "0.04", "--seed", "3", "--bots", "0.02", "--duplicates", "0.01",
                 "--late", "0.002", "--malformed", "0.002", "--out-of-order", "0.05"]
# Grafana's default resolution when a panel sets no maxDataPoints (about a panel's width
# in pixels); $__interval = range / resolution, raised to the panel's min interval, rounded.
DEFAULT_MAX_DATA_POINTS = 1000
NULL = "\\N"  # psql's text for NULL in the CSV output below


# ---------------------------------------------------------------------------------------
# psql

def query(url: str, sql: str) -> tuple[list[str], list[list[str | None]]]:
    """Columns and rows of one statement, in the order the statement returns them
    (values as psql prints them; None for NULL)."""
    out = run_psql(url, ["--csv", "-P", f"null={NULL}"], sql)
    rows = list(csv.reader(io.StringIO(out)))
    if not rows:
        return [], []
    columns, data = rows[0], rows[1:]
    return columns, [[None if v == NULL else v for v in r] for r in data]


# ---------------------------------------------------------------------------------------
# Grafana: $__interval and the PostgreSQL macros (pkg/tsdb/sqleng Interpolate, then
# pkg/tsdb/grafana-postgresql-datasource/macros.go)

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def parse_interval(text: str) -> int:
    """gtime.ParseInterval for the units dashboards use: '5m' -> 300000 (ms)."""
    m = re.fullmatch(r"\s*(\d+)\s*(ms|s|m|h|d|w)\s*", text)
    if not m:
        raise ValueError(f"cannot parse interval {text!r}")
    return int(m.group(1)) * _UNITS_MS[m.group(2)]


def format_interval(ms: int) -> str:
    """gtime.FormatInterval: the largest unit, truncated (90000 -> '1m')."""
    for unit, size in (("y", 365 * 86_400_000), ("d", 86_400_000), ("h", 3_600_000),
                       ("m", 60_000), ("s", 1000), ("ms", 1)):
        if ms >= size:
            return f"{ms // size}{unit}"
    return "1ms"


_ROUND = [  # (upper bound inclusive, rounded), ms: Grafana's roundInterval
    (10, 1), (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000),
    (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000), (45000, 30000),
    (90000, 60000), (210000, 120000), (450000, 300000), (750000, 600000), (1050000, 900000),
    (1500000, 1200000), (2700000, 1800000), (5400000, 3600000), (9000000, 7200000),
    (16200000, 10800000), (32400000, 21600000), (86400000, 43200000), (172800000, 86400000),
    (604800000, 86400000), (1814400000, 604800000), (3628800000 - 1, 2592000000),
]


def round_interval(ms: float) -> int:
    for bound, rounded in _ROUND:
        if ms <= bound:
            return rounded
    return 31536000000


def calculate_interval(range_ms: int, max_data_points: int, min_interval_ms: int) -> int:
    raw = range_ms / max_data_points
    return round_interval(max(raw, min_interval_ms))


def go_float(x: float) -> str:
    """Go's fmt %v of a float64 (strconv 'g', shortest): 300 -> '300', 0.2 -> '0.2',
    2592000 -> '2.592e+06'."""
    if x == 0:
        return "0"
    d = Decimal(repr(float(x))).normalize()
    sign, digits, exp = d.as_tuple()
    ds = "".join(map(str, digits))
    e10 = len(ds) + exp - 1  # exponent of the first digit
    s = "-" if sign else ""
    if e10 < -4 or e10 >= 6:
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{s}{mant}e{'-' if e10 < 0 else '+'}{abs(e10):02d}"
    if exp >= 0:
        return s + ds + "0" * exp
    point = len(ds) + exp
    if point > 0:
        return s + ds[:point] + "." + ds[point:]
    return s + "0." + "0" * (-point) + ds


def rfc3339nano(t: dt.datetime) -> str:
    """Go's time.RFC3339Nano of a UTC time: fraction without trailing zeros, 'Z'."""
    t = t.astimezone(dt.timezone.utc)
    s = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond:
        s += "." + f"{t.microsecond:06d}".rstrip("0")
    return s + "Z"


_MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^\)]*)\)")


class MacroError(Exception):
    pass


def interpolate(sql: str, t_from: dt.datetime, t_to: dt.datetime, interval_ms: int) -> str:
    """The SQL Grafana sends to PostgreSQL for a query over [t_from, t_to]."""
    # sqleng.Interpolate: global substitutions first ($__interval_ms before $__interval)
    sql = sql.replace("$__interval_ms", str(interval_ms))
    sql = sql.replace("$__interval", format_interval(interval_ms))
    f_s, t_s = int(t_from.timestamp()), int(t_to.timestamp())
    sql = sql.replace("$__unixEpochFrom()", str(f_s)).replace("$__unixEpochTo()", str(t_s))
    f_ns, t_ns = f_s * 10**9 + t_from.microsecond * 1000, t_s * 10**9 + t_to.microsecond * 1000
    original = sql

    def group(name: str, args: list[str], epoch: bool) -> str:
        if len(args) < 2:
            raise MacroError(f"macro {name} needs time column and interval and optional fill value")
        try:
            secs = go_float(parse_interval(args[1].strip("'")) / 1000)
        except ValueError:
            raise MacroError(f"error parsing interval {args[1]}") from None
        if epoch:
            return f"floor(({args[0]})/{secs})*{secs}"
        return f"floor(extract(epoch from {args[0]})/{secs})*{secs}"

    def evaluate(name: str, args: list[str]) -> str:
        need_col = name in ("__time", "__timeEpoch", "__timeFilter", "__unixEpochFilter",
                            "__unixEpochNanoFilter")
        if need_col and (not args or args[0] == ""):
            raise MacroError(f"missing time column argument for macro {name}")
        if name == "__time":
            return f'{args[0]} AS "time"'
        if name == "__timeEpoch":
            return f'extract(epoch from {args[0]}) as "time"'
        if name == "__timeFilter":
            return f"{args[0]} BETWEEN '{rfc3339nano(t_from)}' AND '{rfc3339nano(t_to)}'"
        if name == "__timeFrom":
            return f"'{rfc3339nano(t_from)}'"
        if name == "__timeTo":
            return f"'{rfc3339nano(t_to)}'"
        if name == "__timeGroup":
            return group(name, args, epoch=False)
        if name == "__timeGroupAlias":
            return group(name, args, epoch=False) + ' AS "time"'
        if name == "__unixEpochFilter":
            return f"{args[0]} >= {f_s} AND {args[0]} <= {t_s}"
        if name == "__unixEpochNanoFilter":
            return f"{args[0]} >= {f_ns} AND {args[0]} <= {t_ns}"
        if name == "__unixEpochNanoFrom":
            return str(f_ns)
        if name == "__unixEpochNanoTo":
            return str(t_ns)
        if name == "__unixEpochGroup":
            return group(name, args, epoch=True)
        if name == "__unixEpochGroupAlias":
            return group(name, args, epoch=True) + ' AS "time"'
        raise MacroError(f"unknown macro {name!r}")

    def replace(m: re.Match) -> str:
        name = m.group(1)
        # Grafana: `$__timeGroup(...)` directly followed by ',' gets the alias too
        if name == "__timeGroup":
            i = original.find(m.group(0))
            if i >= 0 and original[i + len(m.group(0)):i + len(m.group(0)) + 1] == ",":
                name = "__timeGroupAlias"
        args = [a.strip(" ") for a in m.group(2).split(",")]
        return evaluate(name, args)

    return _MACRO.sub(replace, sql)


# ---------------------------------------------------------------------------------------
# Grafana: dashboard variables. The front end replaces them before the query goes to the
# data source's back end, which then expands the macros above: templateSrv.replace with
# the SQL data sources' interpolateVariable (public/app/features/templating/template_srv.ts,
# public/app/features/plugins/sql/datasource/SqlDatasource.ts).

# $var, [[var]], [[var:format]], ${var}, ${var.path}, ${var:format} (variables/utils.ts)
_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}")
SUPPORTED_VARIABLE_TYPES = ("query", "custom", "constant", "textbox")


class VariableError(Exception):
    pass


class Variable:
    """A dashboard variable once Grafana has loaded the dashboard: its options and the
    current value (a string, or a list of strings for multi-value and All)."""

    def __init__(self, model: dict):
        self.model = model
        self.name = model.get("name")
        self.multi = bool(model.get("multi"))
        self.include_all = bool(model.get("includeAll"))
        self.value: str | list[str] | None = None  # None: no value (see error)
        self.raw_all = False  # the All option with a customAllValue: inserted as is
        self.error = ""


def variable_refs(text: str) -> list[tuple[str, str | None]]:
    """(name, format) of every variable reference in `text`, Grafana's syntaxes."""
    return [(m.group(1) or m.group(2) or m.group(4), m.group(3) or m.group(6))
            for m in _VARIABLE.finditer(text)]


def is_builtin(name: str) -> bool:
    """Grafana's own names ($__interval, $__timeFilter(...), ...) and $1-style text that
    is no variable: templateSrv leaves them for the data source."""
    return name.startswith("__") or name[:1].isdigit()


def _quote_literal(v: str) -> str:
    return "'" + v.replace("'", "''") + "'"


def _format_value(value: str | list[str], fmt: str, name: str) -> str:
    """An explicit ${var:format}; the formats a SQL query would use."""
    values = value if isinstance(value, list) else [value]
    if fmt in ("raw", "text"):
        return ",".join(values) if isinstance(value, list) else value
    if fmt == "csv":
        return ",".join(values)
    if fmt == "pipe":
        return "|".join(values)
    if fmt == "sqlstring":
        return ",".join(_quote_literal(v) for v in values)
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt == "doublequote":
        return ",".join('"' + v.replace('"', '\\"') + '"' for v in values)
    raise VariableError(f"${{{name}:{fmt}}}: format {fmt!r} not supported by this check")


def substitute(sql: str, variables: dict[str, Variable]) -> str:
    """templateSrv.replace(sql, {}, SqlDatasource.interpolateVariable): a single value
    with its quotes doubled (the query writes the quotes around it), several values (multi,
    All) as quoted literals joined by commas; an unknown name stays as written."""

    def replace(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(4)
        fmt = m.group(3) or m.group(6)
        var = variables.get(name)
        if var is None:
            return m.group(0)
        if var.value is None:
            raise VariableError(f"${name} has no value: {var.error}")
        if var.raw_all:
            return var.value if isinstance(var.value, str) else ",".join(var.value)
        if fmt:
            return _format_value(var.value, fmt, name)
        if isinstance(var.value, list):
            return ",".join(_quote_literal(v) for v in var.value)
        if var.multi or var.include_all:
            return _quote_literal(var.value)
        return var.value.replace("'", "''")

    return _VARIABLE.sub(replace, sql)


def variable_query_sql(model: dict) -> str:
    """A query variable's SQL: a string, or {"query": ...} / {"rawSql": ...}."""
    q = model.get("query")
    if isinstance(q, dict):
        q = q.get("rawSql") or q.get("query")
    return q if isinstance(q, str) else ""


def metric_find_values(columns: list[str], rows: list[list[str | None]]) -> list[tuple[str, str]]:
    """ResponseParser.transformMetricFindResponse: (text, value) from the columns
    __text and __value if both are there, else every value of every column, column by
    column; unique by text, first kept. NULLs are left out."""
    out: list[tuple[str, str]] = []
    if "__text" in columns and "__value" in columns:
        ti, vi = columns.index("__text"), columns.index("__value")
        pairs = [(r[ti], r[vi]) for r in rows]
    else:
        pairs = [(r[i], r[i]) for i in range(len(columns)) for r in rows]
    seen = set()
    for text, value in pairs:
        if text is None or value is None or text in seen:
            continue
        seen.add(text)
        out.append((text, value))
    return out


def _natural_key(s: str):
    return [(0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in re.findall(r"\d+|\D+", s)]


def sort_options(options: list[tuple[str, str]], sort: int) -> list[tuple[str, str]]:
    """The variable's `sort`: 0 as the query returns them, 1/2 alphabetical, 3/4
    numerical (by the first number in the text), 5/6 alphabetical ignoring case, 7/8
    natural; odd ascending, even descending."""
    if not sort:
        return options
    if sort in (1, 2):
        key = lambda o: o[0]  # noqa: E731
    elif sort in (3, 4):
        def key(o):
            m = re.search(r"-?\d+(\.\d+)?", o[0])
            return float(m.group(0)) if m else float("-inf")
    elif sort in (5, 6):
        key = lambda o: o[0].lower()  # noqa: E731
    else:
        key = lambda o: _natural_key(o[0])  # noqa: E731
    return sorted(options, key=key, reverse=sort % 2 == 0)


def apply_regex(options: list[tuple[str, str]], regex: str) -> list[tuple[str, str]]:
    """The variable's `regex` (/pattern/flags): options that match, the first capture
    group (or the named groups text and value) taking the place of the value."""
    m = re.fullmatch(r"/(.*)/([gimsuy]*)", regex, re.S)
    pattern, flags = (m.group(1), m.group(2)) if m else (regex, "")
    rx = re.compile(pattern, (re.I if "i" in flags else 0) | (re.M if "m" in flags else 0)
                    | (re.S if "s" in flags else 0))
    out = []
    for text, value in options:
        hit = rx.search(value)
        if not hit:
            continue
        groups = hit.groupdict()
        if groups.get("text") or groups.get("value"):
            out.append((groups.get("text") or groups.get("value"), groups.get("value") or groups.get("text")))
        elif hit.groups() and hit.group(1) is not None:
            out.append((hit.group(1), hit.group(1)))
        else:
            out.append((text, value))
    return out


def choose_current(var: Variable, options: list[tuple[str, str]]) -> str:
    """Grafana's selection once options are loaded: the saved current value if it is
    still among the options, else the first option (All, when the variable has it).
    Returns how the value was chosen."""
    values = [v for _, v in options]
    current = var.model.get("current") or {}
    saved = current.get("value")
    saved_list = saved if isinstance(saved, list) else ([saved] if saved not in (None, "") else [])
    if var.include_all and (not saved_list or saved_list in (["$__all"], ["All"])):
        custom = var.model.get("allValue")
        if custom:
            var.value, var.raw_all = custom, True
        else:
            var.value = values
        return "All" + (" (the first option)" if not saved_list else " (saved)")
    by_text = dict(options)
    kept = [by_text.get(v, v) for v in saved_list if v in values or v in by_text]
    if kept:
        var.value = kept if var.multi else kept[0]
        return f"{', '.join(kept)} (saved)"
    var.value = [values[0]] if var.multi else values[0]
    return f"{values[0]} (the first option)"


def resolve_variables(rep: Report, url: str, dash_name: str, model: dict, rng: tuple) -> dict[str, Variable]:
    """Every variable of the dashboard as Grafana resolves it on load, in order (a
    variable's query may use the ones before it): query variables run their query as the
    data source's role over the dashboard's range. One line per variable; a variable
    without a value makes its own line fail, and every panel that uses it."""
    t_from, t_to = rng
    interval_ms = calculate_interval(int((t_to - t_from).total_seconds() * 1000), DEFAULT_MAX_DATA_POINTS, 0)
    variables: dict[str, Variable] = {}
    for vm in (model.get("templating") or {}).get("list") or []:
        var = Variable(vm)
        variables[var.name] = var
        kind = vm.get("type")
        problems = []
        summary = ""
        options: list[tuple[str, str]] = []
        if kind == "query":
            sql = ""
            try:
                sql = interpolate(substitute(variable_query_sql(vm), variables), t_from, t_to, interval_ms)
                columns, rows = query(url, sql)
            except (VariableError, MacroError) as e:
                var.error = f"its query cannot be built: {e}"
                problems.append(var.error)
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                var.error = "its query failed"
                problems.append(f"query failed: {e}\n--- SQL sent ---\n{sql}")
            else:
                options = metric_find_values(columns, rows)
                if vm.get("regex"):
                    options = apply_regex(options, vm["regex"])
                options = sort_options(options, vm.get("sort") or 0)
                if not options:
                    var.error = "its query returned nothing"
                    problems.append(f"its query returned no values ({len(rows)} row(s)"
                                    f"{', after the regex' if vm.get('regex') and rows else ''}): "
                                    f"the panels that use ${var.name} would query for nothing\n"
                                    f"--- SQL sent ---\n{sql}")
        elif kind == "custom":
            text = vm.get("query") or ""
            options = [(o.strip(), o.strip()) for o in re.split(r"(?<!\\),", text) if o.strip()]
            options = [(t.split(" : ", 1)[0], t.split(" : ", 1)[-1]) for t, _ in options]
            if not options:
                var.error = "it has no options"
                problems.append("custom variable without options")
        elif kind in ("constant", "textbox"):
            var.value = str(vm.get("query") or "")
            summary = f"{kind} {var.value!r}"
        else:
            var.error = f"type {kind!r} is not supported by this check"
            problems.append(var.error)
        if options:
            how = choose_current(var, options)
            shown = ", ".join(t for t, _ in options[:5]) + (", ..." if len(options) > 5 else "")
            order = {0: "in query order"}.get(vm.get("sort") or 0, f"sort {vm.get('sort')}")
            summary = (f"{len(options)} value{'s' if len(options) != 1 else ''} {order} ({shown}); "
                       f"current {how}")
        rep.result(f"{dash_name} / variable ${var.name}", problems, summary)
    return variables


# ---------------------------------------------------------------------------------------
# the few YAML shapes the provisioning files use (no YAML library in the standard library)

def yaml_values(text: str) -> dict[str, list[str]]:
    """key -> every scalar value written as `key: value` (quotes and comments removed)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = re.sub(r"\s+#.*$", "", line)
        m = re.match(r"^\s*(?:-\s+)?([A-Za-z_][\w.]*)\s*:\s*(.+?)\s*$", line)
        if m and not m.group(2).startswith("#"):
            out.setdefault(m.group(1), []).append(m.group(2).strip("'\""))
    return out


def yaml_block(text: str, key: str, indent: int) -> str:
    """The lines under `key:` written at `indent` spaces, up to the next line at that indent."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line == " " * indent + key + ":" or line.startswith(" " * indent + key + ": "):
            body = [line]
            for nxt in lines[i + 1:]:
                stripped = nxt.strip()
                if stripped and not stripped.startswith("#") and len(nxt) - len(nxt.lstrip(" ")) <= indent:
                    break
                body.append(nxt)
            return "\n".join(body)
    return ""


def compose_volumes(service_block: str) -> list[str]:
    vols = []
    m = re.search(r"^\s*volumes:\s*\[(.*)\]\s*$", service_block, re.M)
    if m:
        vols += [v.strip().strip("'\"") for v in m.group(1).split(",") if v.strip()]
    m = re.search(r"^(\s*)volumes:\s*\n((?:\1\s+-.*\n?)+)", service_block + "\n", re.M)
    if m:
        vols += [re.sub(r"^\s*-\s*", "", v).strip().strip("'\"") for v in m.group(2).splitlines() if v.strip()]
    return vols


# ---------------------------------------------------------------------------------------



def check_datasource(rep: Report) -> dict:
    """The provisioned data source; returns its settings for the panel checks."""
    problems = []
    ds = {}
    try:
        text = open(DATASOURCES_YML, encoding="utf-8").read()
    except OSError as e:
        rep.result("datasource provisioning", [f"cannot read {DATASOURCES_YML}: {e}"])
        return ds
    v = yaml_values(text)
    for key in ("uid", "type", "user", "database", "password", "url"):
        vals = v.get(key, [])
        if len(vals) != 1:
            problems.append(f"expected one `{key}:` in {os.path.relpath(DATASOURCES_YML, REPO)}, found {vals}")
        else:
            ds[key] = vals[0]
    if ds.get("type") not in (None, "grafana-postgresql-datasource", "postgres"):
        problems.append(f"type {ds.get('type')!r} is not Grafana's PostgreSQL data source")
    if ds.get("user") == "postgres":
        problems.append("the data source logs in as the superuser, not as the read-only role")
    try:
        compose = open(COMPOSE, encoding="utf-8").read()
        pg = yaml_values(yaml_block(compose, "postgres", 2))
        db = (pg.get("POSTGRES_DB") or ["postgres"])[0]
        if ds.get("database") and ds["database"] != db:
            problems.append(f"database {ds['database']!r} but docker-compose's PostgreSQL creates {db!r}")
        host = ds.get("url", "").split(":")[0]
        if host and not yaml_block(compose, host, 2):
            problems.append(f"url {ds.get('url')!r}: docker-compose.yml has no service {host!r}")
    except OSError as e:
        problems.append(f"cannot read docker-compose.yml: {e}")
    rep.result("datasource provisioning", problems,
               f"uid {ds.get('uid')}, user {ds.get('user')}, database {ds.get('database')}")
    return ds


def check_provider(rep: Report, files: list[str]):
    problems = []
    try:
        text = open(PROVIDER_YML, encoding="utf-8").read()
    except OSError as e:
        rep.result("dashboard provider", [f"cannot read {PROVIDER_YML}: {e}"])
        return
    v = yaml_values(text)
    if v.get("type") != ["file"]:
        problems.append(f"provider type {v.get('type')}, expected [file]")
    paths = v.get("path", [])
    if len(paths) != 1:
        problems.append(f"expected one `path:`, found {paths}")
        paths = [""]
    try:
        compose = open(COMPOSE, encoding="utf-8").read()
    except OSError as e:
        compose = ""
        problems.append(f"cannot read docker-compose.yml: {e}")
    vols = compose_volumes(yaml_block(compose, "grafana", 2))
    mounts = {}
    for vol in vols:
        parts = vol.split(":")
        if len(parts) >= 2:
            mounts[parts[1].rstrip("/")] = parts[0]
    host = mounts.get(paths[0].rstrip("/"))
    if host is None:
        problems.append(f"docker-compose's grafana service mounts nothing at {paths[0]!r} (volumes: {vols})")
    elif os.path.normpath(os.path.join(REPO, host)) != os.path.normpath(DASHBOARDS):
        problems.append(f"{paths[0]} is mounted from {host!r}, not from ./grafana/dashboards")
    prov = mounts.get("/etc/grafana/provisioning")
    if prov is None or os.path.normpath(os.path.join(REPO, prov)) != os.path.join(REPO, "grafana", "provisioning"):
        problems.append("docker-compose's grafana service does not mount ./grafana/provisioning at /etc/grafana/provisioning")
    if not files:
        problems.append("no dashboard JSON files in grafana/dashboards")
    rep.result("dashboard provider", problems,
               f"{paths[0]} <- {host}, {len(files)} dashboard file(s)")


def flat_panels(panels: list) -> list[dict]:
    out = []
    for p in panels:
        out.append(p)
        if p.get("type") == "row":
            out += flat_panels(p.get("panels") or [])
    return out


def is_time_series(panel: dict, target: dict) -> bool:
    return panel.get("type") in ("timeseries", "graph", "state-timeline", "heatmap") \
        or target.get("format") == "time_series"


def check_structure(rep: Report, path: str, ds: dict, seen_uids: dict) -> dict | None:
    name = os.path.relpath(path, REPO)
    problems = []
    try:
        model = json.load(open(path, encoding="utf-8"))
    except (OSError, ValueError) as e:
        rep.result(f"{name}: structure", [f"not valid JSON: {e}"])
        return None
    if not isinstance(model, dict):
        rep.result(f"{name}: structure", ["not a JSON object"])
        return None
    if "dashboard" in model:
        problems.append('wrapped in {"dashboard": ...}: provisioning needs the bare model')
    uid = model.get("uid")
    if not isinstance(uid, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid or ""):
        problems.append(f"uid {uid!r} is not pinned (a non-empty string of at most 40 letters, digits, - or _)")
    elif uid in seen_uids:
        problems.append(f"uid {uid!r} also used by {seen_uids[uid]}")
    else:
        seen_uids[uid] = name
    if not model.get("title"):
        problems.append("no title")
    if not isinstance(model.get("schemaVersion"), int):
        problems.append("no schemaVersion")
    if model.get("id") not in (None,):
        problems.append(f"id {model.get('id')!r}: a provisioned dashboard should have id null")
    names = []
    templating = model.get("templating") or {}
    for vm in (templating.get("list") if isinstance(templating, dict) else None) or []:
        vname = vm.get("name") if isinstance(vm, dict) else None
        if not isinstance(vname, str) or not re.fullmatch(r"\w+", vname) or is_builtin(vname):
            problems.append(f"variable {vname!r}: not a usable name (letters, digits, _; not __...)")
            continue
        if vname in names:
            problems.append(f"variable ${vname} defined twice")
        names.append(vname)
        kind = vm.get("type")
        if kind not in SUPPORTED_VARIABLE_TYPES:
            problems.append(f"variable ${vname}: type {kind!r} (this check runs {', '.join(SUPPORTED_VARIABLE_TYPES)})")
        if kind == "query":
            d = vm.get("datasource")
            d_uid = d.get("uid") if isinstance(d, dict) else d
            if d_uid != ds.get("uid"):
                problems.append(f"variable ${vname}: datasource {d!r} is not the provisioned uid {ds.get('uid')!r}")
            sql = variable_query_sql(vm)
            if not sql.strip():
                problems.append(f"variable ${vname}: no query")
            unknown = sorted({n for n, _ in variable_refs(sql) if not is_builtin(n) and n not in names[:-1]})
            if unknown:
                problems.append(f"variable ${vname}: its query uses {', '.join('$' + n for n in unknown)}, "
                                f"not a variable defined before it")
    panels = model.get("panels")
    if not isinstance(panels, list) or not panels:
        problems.append("no panels")
        panels = []
    ids = set()
    queried = 0
    for p in flat_panels(panels):
        title = p.get("title") or f"panel {p.get('id')}"
        if p.get("id") in ids:
            problems.append(f"{title}: panel id {p.get('id')} used twice")
        ids.add(p.get("id"))
        gp = p.get("gridPos") or {}
        if not all(isinstance(gp.get(k), int) for k in ("h", "w", "x", "y")):
            problems.append(f"{title}: no gridPos")
        if p.get("type") == "row":
            continue
        if not p.get("title"):
            problems.append(f"panel {p.get('id')}: no title")
        targets = p.get("targets") or []
        if not targets:
            problems.append(f"{title}: no queries")
        for t in [p] + targets:
            d = t.get("datasource")
            where = title if t is p else f"{title} [{t.get('refId')}]"
            if not isinstance(d, dict) or d.get("uid") != ds.get("uid"):
                problems.append(f"{where}: datasource {d!r} is not the provisioned uid {ds.get('uid')!r}")
            elif ds.get("type") and d.get("type") not in (None, ds["type"]):
                problems.append(f"{where}: datasource type {d.get('type')!r}, provisioned {ds['type']!r}")
        for t in targets:
            if not t.get("refId"):
                problems.append(f"{title}: a query without refId")
            unknown = sorted({n for n, _ in variable_refs(t.get("rawSql") or "")
                              if not is_builtin(n) and n not in names})
            if unknown:
                problems.append(f"{title} [{t.get('refId')}]: uses {', '.join('$' + n for n in unknown)}, "
                                f"not a variable of the dashboard (variables: {names})")
            if not (t.get("rawQuery") and isinstance(t.get("rawSql"), str) and t["rawSql"].strip()):
                problems.append(f"{title} [{t.get('refId')}]: no raw SQL")
            if p.get("type") == "timeseries" and t.get("format") != "time_series":
                problems.append(f"{title} [{t.get('refId')}]: time-series panel with format {t.get('format')!r}")
            queried += 1
    rep.result(f"{name}: structure", problems,
               f"uid {uid}, {len([p for p in flat_panels(panels) if p.get('type') != 'row'])} panels, "
               f"{queried} queries, tags {model.get('tags')}"
               + (f", variables {['$' + n for n in names]}" if names else ""))
    return None if problems else model


def as_time(v: str) -> float:
    """A `time` value as Grafana reads it: a timestamp, or a number of epoch seconds."""
    try:
        return float(v)
    except ValueError:
        return dt.datetime.fromisoformat(v.replace(" ", "T")).timestamp()


def is_number(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return v in ("NaN", "Infinity", "-Infinity")


def check_matrix(options: dict, columns: list[str], rows: list[list[str | None]]) -> tuple[list[str], str]:
    """Grafana's groupingToMatrix transformation on one query's rows: one row per value of
    rowField, one column per value of columnField, both in order of first appearance.
    Problems: a field that is not a column, a cell given twice (the later row wins),
    numeric columns out of ascending order (rows ordered by something else first)."""
    fields = {k: options.get(k) or default for k, default in
              (("rowField", "Time"), ("columnField", "Time"), ("valueField", "Value"))}
    missing = [f"{k} {v!r}" for k, v in fields.items() if v not in columns]
    if missing:
        return [f"groupingToMatrix: no column for {', '.join(missing)} (columns: {columns})"], ""
    ri, ci = columns.index(fields["rowField"]), columns.index(fields["columnField"])
    row_keys = list(dict.fromkeys(r[ri] for r in rows))
    col_keys = list(dict.fromkeys(r[ci] for r in rows))
    problems = []
    cells = [(r[ri], r[ci]) for r in rows]
    twice = len(cells) - len(set(cells))
    if twice:
        dup = next(c for i, c in enumerate(cells) if c in cells[:i])
        problems.append(f"groupingToMatrix: {twice} cell(s) given more than once, e.g. "
                        f"{fields['rowField']}={dup[0]!r}, {fields['columnField']}={dup[1]!r}")
    if col_keys and all(k is not None and is_number(k) for k in col_keys):
        nums = [float(k) for k in col_keys]
        if nums != sorted(nums):
            problems.append(f"groupingToMatrix: columns in the order {', '.join(col_keys[:12])}"
                            f"{', ...' if len(col_keys) > 12 else ''}: order the rows by "
                            f"{fields['columnField']} first")
    shown = ", ".join(str(k) for k in col_keys[:4]) + (f" .. {col_keys[-1]}" if len(col_keys) > 4 else "")
    empty = len(row_keys) * len(col_keys) - len(set(cells))
    return problems, (f"matrix {len(row_keys)} {fields['rowField']} × {len(col_keys)} "
                      f"{fields['columnField']} ({shown}), {empty} empty cell(s)")


def run_panel(rep: Report, url: str, dash_name: str, panel: dict, rng: tuple,
              variables: dict[str, Variable] | None = None):
    variables = variables or {}
    t_from, t_to = rng
    title = panel.get("title")
    problems = []
    summaries = []
    range_ms = int((t_to - t_from).total_seconds() * 1000)
    min_ms = parse_interval(panel["interval"]) if panel.get("interval") else 0
    interval_ms = calculate_interval(range_ms, panel.get("maxDataPoints") or DEFAULT_MAX_DATA_POINTS, min_ms)
    for t in panel.get("targets") or []:
        ref = t.get("refId")
        tag = f"[{ref}] " if len(panel["targets"]) > 1 else ""
        try:
            raw = substitute(t["rawSql"], variables)
        except VariableError as e:
            problems.append(f"{tag}not run: {e}")
            continue
        try:
            sql = interpolate(raw, t_from, t_to, interval_ms)
        except MacroError as e:
            problems.append(f"{tag}macro: {e}")
            continue
        try:
            columns, rows = query(url, sql)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            problems.append(f"{tag}query failed: {e}\n--- SQL sent ---\n{sql}")
            continue
        if not rows:
            problems.append(f"{tag}no rows\n--- SQL sent ---\n{sql}")
            continue
        note = ""
        if is_time_series(panel, t):
            if "time" not in columns:
                problems.append(f"{tag}no column named time (columns: {columns})")
                continue
            ti = columns.index("time")
            try:
                times = [as_time(r[ti]) for r in rows]
            except (TypeError, ValueError) as e:
                problems.append(f"{tag}unreadable time value: {e}")
                continue
            bad = [i for i in range(1, len(times)) if times[i] < times[i - 1]]
            if bad:
                i = bad[0]
                problems.append(f"{tag}rows not ordered by time: row {i + 1} ({rows[i][ti]}) "
                                f"before row {i} ({rows[i - 1][ti]})")
            values = [i for i, c in enumerate(columns) if c not in ("time", "metric")]
            if not values:
                problems.append(f"{tag}no value column")
            for i in values:
                wrong = [r[i] for r in rows if r[i] is not None and not is_number(r[i])]
                if wrong:
                    problems.append(f"{tag}column {columns[i]!r} is not numeric (e.g. {wrong[0]!r})")
            lo = dt.datetime.fromtimestamp(min(times), dt.timezone.utc)
            hi = dt.datetime.fromtimestamp(max(times), dt.timezone.utc)
            span = f"time {rfc3339nano(lo)} .. {rfc3339nano(hi)}"
            series = ""
            if "metric" in columns:
                mi = columns.index("metric")
                series = f", {len({r[mi] for r in rows})} series"
            if values and all(r[i] is None for r in rows for i in values):
                note = " (note: every value NULL)"
            summaries.append(f"{tag}{len(rows)} row{'s' if len(rows) != 1 else ''}, {span}{series}, $__interval "
                             f"{format_interval(interval_ms)}{note}")
        else:
            if all(v is None for r in rows for v in r):
                note = " (note: every value NULL)"
            first = ", ".join(f"{c}={v}" for c, v in zip(columns, rows[0]))
            if len(first) > 110:
                first = first[:107] + "..."
            summaries.append(f"{tag}{len(rows)} row{'s' if len(rows) != 1 else ''}{note}; first: {first}")
        for tr in panel.get("transformations") or []:
            if tr.get("id") == "groupingToMatrix" and not tr.get("disabled"):
                if len(panel["targets"]) > 1:
                    problems.append("groupingToMatrix works on a single query's frame, the panel has "
                                    f"{len(panel['targets'])} queries")
                    continue
                mp, ms = check_matrix(tr.get("options") or {}, columns, rows)
                problems += [f"{tag}{x}" for x in mp]
                if ms:
                    summaries.append(f"{tag}{ms}")
        # the same query over a range without data must not fail either (division by
        # zero, casts of NULL, ...): Grafana users look at empty ranges all the time
        shift = dt.timedelta(days=400)
        shifted = interpolate(raw, t_from - shift, t_to - shift, interval_ms)
        if shifted == sql:
            summaries.append(f"{tag}the time range is not used")
            continue
        try:
            cols, empty_rows = query(url, shifted)
            if any(v is not None for r in empty_rows for c, v in zip(cols, r) if c not in ("time", "metric")):
                summaries.append(f"{tag}a range without data still shows {len(empty_rows)} row(s) with values")
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            problems.append(f"{tag}query over a range without data failed: {e}")
    rep.result(f"{dash_name} / {title}", problems, "; ".join(summaries))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="check clickflow's Grafana dashboards against real output")
    ap.add_argument("--keep", action="store_true", help="keep the database and the event file")
    args = ap.parse_args(argv)

    base_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/clickflow")
    binary = os.environ.get("CLICKFLOW_BIN", os.path.join(REPO, "target", "debug", "clickflow"))
    db = f"cf_dashboards_{os.getpid()}"
    url = with_database(base_url, db)
    rep = Report("dashboards")

    # 1. structure
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(DASHBOARDS)
                   for f in fs if f.endswith(".json")) if os.path.isdir(DASHBOARDS) else []
    ds = check_datasource(rep)
    check_provider(rep, files)
    seen: dict = {}
    dashboards = []
    for path in files:
        model = check_structure(rep, path, ds, seen)
        if model is not None:
            dashboards.append((os.path.splitext(os.path.basename(path))[0], model))

    # 2. data, 3. panels
    tmp = tempfile.mkdtemp(prefix="cf_dashboards_")
    events = os.path.join(tmp, "events.jsonl")
    created = False
    try:
        p = subprocess.run([binary, "produce", *PRODUCE_FLAGS, "--out", events],
                           capture_output=True, timeout=300)
        if p.returncode != 0:
            raise RuntimeError(f"produce exit {p.returncode}: {p.stderr.decode('utf-8', 'replace').strip()[-1000:]}")
        psql(base_url, f'CREATE DATABASE "{db}"')
        created = True
        t0 = time.time()
        p = subprocess.run([binary, "process", "--input", events, "--postgres", url, "--quiet", "--progress-interval", "300ms"],
                           capture_output=True, timeout=900)
        problems = []
        if p.returncode != 0:
            problems.append(f"exit status {p.returncode}; stderr: "
                            f"{p.stderr.decode('utf-8', 'replace').strip()[-2000:]}")
        rep.result("pipeline output (produce + process)", problems, f"{time.time() - t0:.1f} s")
        if problems:
            raise RuntimeError("no pipeline output to run the panels on")

        # the data source's role, as Grafana logs in
        reader = ds.get("user") or "postgres"
        reader_url = with_database(base_url, db, reader, ds.get("password"))
        problems = []
        tables = psql(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1").split()
        unreadable = psql(url, f"""
            SELECT string_agg(tablename, ' ' ORDER BY tablename) FROM pg_tables
            WHERE schemaname = 'public'
              AND NOT has_table_privilege({sql_literal(reader)}, format('%I.%I', schemaname, tablename), 'SELECT')""").strip()
        if unreadable:
            problems.append(f"{reader} cannot SELECT from: {unreadable}")
        writable = psql(url, f"""
            SELECT string_agg(tablename, ' ' ORDER BY tablename) FROM pg_tables
            WHERE schemaname = 'public'
              AND has_table_privilege({sql_literal(reader)}, format('%I.%I', schemaname, tablename), 'INSERT,UPDATE,DELETE')""").strip()
        if writable:
            problems.append(f"{reader} may write to: {writable}")
        try:
            who = psql(reader_url, "SELECT current_user").strip()
            if who != reader:
                problems.append(f"logged in as {who!r}, expected {reader!r}")
        except RuntimeError as e:
            problems.append(f"cannot log in as {reader}: {e}")
        rep.result(f"datasource role {reader}", problems, f"reads all {len(tables)} tables, writes none")

        # time ranges of the two clocks
        ev = psql(url, """
            SELECT extract(epoch FROM date_trunc('hour', min(event_time)))::bigint,
                   extract(epoch FROM date_trunc('hour', max(event_time)) + interval '1 hour')::bigint
            FROM events_raw""").strip().split("|")
        wall = psql(url, """
            SELECT floor(extract(epoch FROM min(t)))::bigint - 60, ceil(extract(epoch FROM max(t)))::bigint + 60
            FROM (SELECT reported_at AS t FROM pipeline_progress
                  UNION ALL SELECT reported_at FROM source_progress
                  UNION ALL SELECT received_at FROM dead_letters) AS w""").strip().split("|")
        if "" in ev or "" in wall:
            raise RuntimeError(f"the pipeline wrote no events or no progress (event range {ev}, wall range {wall})")
        utc = dt.timezone.utc
        ranges = {
            "event time": tuple(dt.datetime.fromtimestamp(int(x), utc) for x in ev),
            "wall clock": tuple(dt.datetime.fromtimestamp(int(x), utc) for x in wall),
        }
        for clock, (a, b) in ranges.items():
            print(f"     {clock} range: {rfc3339nano(a)} .. {rfc3339nano(b)}")

        for name, model in dashboards:
            clock = "wall clock" if "pipeline" in (model.get("tags") or []) else "event time"
            print(f"---- {name} ({model.get('uid')}): {clock} range")
            variables = resolve_variables(rep, reader_url, name, model, ranges[clock])
            for panel in flat_panels(model["panels"]):
                if panel.get("type") != "row":
                    run_panel(rep, reader_url, name, panel, ranges[clock], variables)
    except Exception as e:  # a broken run is a failed check, not a traceback
        rep.result("check ran to the end", [f"{type(e).__name__}: {e}"])
    finally:
        remove_scratch(base_url, db if created else None, tmp, args.keep)

    print(rep.closing_line())
    return 1 if rep.failed else 0


def sql_literal(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


if __name__ == "__main__":
    sys.exit(main())
