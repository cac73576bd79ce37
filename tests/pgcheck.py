"""What the Python checks share: psql as a subprocess, database URLs, and the report
that prints one line per check and the closing `name: N passed, N failed` line."""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.parse

MAX_SHOWN = 5


def run_psql(url: str, args: list[str], sql: str) -> str:
    """Runs one statement with psql (UTF-8, UTC, 60 s statement timeout); its stdout."""
    env = dict(os.environ, PGCLIENTENCODING="UTF8", PGTZ="UTC", PGOPTIONS="-c statement_timeout=60000")
    p = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", *args, "-d", url, "-c", sql],
                       capture_output=True, env=env, timeout=120)
    if p.returncode != 0:
        raise RuntimeError(p.stderr.decode("utf-8", "replace").strip() or f"psql exit {p.returncode}")
    return p.stdout.decode("utf-8")


def psql(url: str, sql: str) -> str:
    """Unaligned, tuples-only output."""
    return run_psql(url, ["-At"], sql)


def with_database(url: str, db: str, user: str | None = None, password: str | None = None) -> str:
    """`url` with its database (and optionally its user and password) replaced."""
    u = urllib.parse.urlsplit(url)
    netloc = u.netloc
    if user is not None:
        host = netloc.rsplit("@", 1)[-1]
        cred = urllib.parse.quote(user, safe="")
        if password is not None:
            cred += ":" + urllib.parse.quote(password, safe="")
        netloc = f"{cred}@{host}"
    return urllib.parse.urlunsplit((u.scheme, netloc, "/" + db, u.query, u.fragment))


def remove_scratch(base_url: str, db: str | None, folder: str | None, keep: bool):
    """Drops the scratch database `db` (if it was created) and removes `folder` (if any),
    unless `keep`; never raises, so that a check's own result is what gets reported."""
    if keep:
        print(f"kept database {db} and folder {folder}")
        return
    if db is not None:
        try:
            psql(base_url, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        except Exception as e:
            print(f"warning: could not drop database {db}: {e}")
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


class Report:
    """Counts checks and prints `ok   name — summary` or `FAIL name` with the first problems."""

    def __init__(self, name: str):
        self.name = name
        self.passed = 0
        self.failed = 0

    def result(self, name: str, problems: list[str], summary: str = ""):
        tail = f" — {summary}" if summary else ""
        if problems:
            self.failed += 1
            print(f"FAIL {name}: {len(problems)} problem(s){tail}")
            for p in problems[:MAX_SHOWN]:
                for i, ln in enumerate(str(p).splitlines()):
                    print(f"     {'' if i == 0 else '  '}{ln}")
            if len(problems) > MAX_SHOWN:
                print(f"     ... and {len(problems) - MAX_SHOWN} more")
        else:
            self.passed += 1
            print(f"ok   {name}{tail}")

    def closing_line(self) -> str:
        return f"{self.name}: {self.passed} passed, {self.failed} failed"
