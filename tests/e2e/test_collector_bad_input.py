"""Bad input to `popcon-site collect` and `report`, as real processes: each is
one line on stderr and exit code 1, never a traceback, and nothing is lost or
half-written."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from support.collector_proc import CollectorProcess, run_cli

PREFIX = "python_popcon.library_used"
FREE_PORTS = ("--udp", "127.0.0.1:0", "--http", "127.0.0.1:0")


def assert_one_line_error(done, command, message):
    """Exit code 1 and exactly ``popcon-site <command>: error: <message>``."""
    assert (done.returncode, done.stdout, done.stderr) == (1, "", f"popcon-site {command}: error: {message}\n"), done


def listing(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def real_store(tmp_path_factory) -> Path:
    """A store written by a real collector: one datagram for six and a report,
    then a clean stop."""
    db = tmp_path_factory.mktemp("real-store") / "counts.sqlite3"
    collector = CollectorProcess(db, PREFIX)
    collector.send(f"{PREFIX}.six:1|c\npython_popcon.reports:1|c".encode())
    collector.fence()
    assert collector.stop() == (0, "")
    return db


# --- 1. a store with wrongly-typed values is refused in one line, by both commands ---

DAMAGE = [
    ("INSERT OR REPLACE INTO library_used VALUES ('six', '', 'abc')",
     "library_used holds the count 'abc' for six, not a whole number of 0 or more"),
    ("INSERT OR REPLACE INTO totals VALUES ('names_dropped', 1e999)",
     "totals holds the count inf for names_dropped, not a whole number of 0 or more"),
    ("INSERT OR REPLACE INTO totals VALUES ('reports', 'x')",
     "totals holds the count 'x' for reports, not a whole number of 0 or more"),
    ("INSERT OR REPLACE INTO library_used VALUES (X'ff', '', 3)",
     "library_used holds the library name b'\\xff', which is not a canonical name"),
    ("INSERT OR REPLACE INTO totals VALUES ('lines.accepted', 'many')",
     "totals holds the count 'many' for lines.accepted, not a whole number of 0 or more"),
    ("INSERT OR REPLACE INTO library_used VALUES ('six', '1.0', -2)",
     "library_used holds the count -2.0 for six 1.0, not a whole number of 0 or more"),
    ("INSERT OR REPLACE INTO library_used VALUES ('six', '', 1.5)",
     "library_used holds the count 1.5 for six, not a whole number of 0 or more"),
    ("INSERT OR REPLACE INTO library_used VALUES ('Six', '', 1)",
     "library_used holds the library name 'Six', which is not a canonical name"),
    ("INSERT OR REPLACE INTO library_used VALUES ('six', 'two words', 1)",
     "library_used holds the version 'two words' of six, which is not a version"),
    ("INSERT OR REPLACE INTO library_used VALUES ('six', X'00', 1)",
     "library_used holds the version b'\\x00' of six, which is not a version"),
    ("INSERT OR REPLACE INTO totals VALUES (X'01', 1)",
     "totals holds the name b'\\x01', not text"),
    ("UPDATE meta SET value = X'ff' WHERE key = 'prefix'",
     "its prefix is b'\\xff', not text"),
    ("UPDATE meta SET value = 'no spaces allowed' WHERE key = 'prefix'",
     "its prefix 'no spaces allowed' is not one the collector accepts"),
]


@pytest.mark.parametrize("statement, problem", DAMAGE, ids=[str(i) for i in range(len(DAMAGE))])
def test_a_damaged_store_is_one_line_for_report_and_collect(real_store, tmp_path, statement, problem):
    db = tmp_path / "counts.sqlite3"
    shutil.copy(real_store, db)
    with sqlite3.connect(db) as conn:
        conn.execute(statement)
    conn.close()
    before = listing(tmp_path)
    message = f"{db} is damaged: {problem}; move it aside to start a new one"

    for args in (("--db", db), ("--db", db, "--json"), ("--db", db, "--versions", "--min-count", "1")):
        assert_one_line_error(run_cli("report", *args), "report", message)
    # The collector refuses it before it listens: it never starts on counts
    # it would crash on, or lose, at the first datagram or /metrics request.
    assert_one_line_error(run_cli("collect", *FREE_PORTS, "--db", db), "collect", message)
    # Left as it was for its owner to look at, and no lock file left behind.
    assert listing(tmp_path) == before


def test_a_sound_store_still_resumes_and_its_zero_series_are_still_ignored(real_store, tmp_path):
    # The counts an older collector left at 0 are no series, not damage.
    db = tmp_path / "counts.sqlite3"
    shutil.copy(real_store, db)
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO library_used VALUES ('numpy', '', 0)")
    conn.close()
    collector = CollectorProcess(db, PREFIX)
    collector.send(f"{PREFIX}.six:1|c|#version:1.16.0".encode())
    collector.fence()
    assert collector.libraries() == {("six", ""): 1, ("six", "1.16.0"): 1}
    assert collector.stop() == (0, "")
    done = run_cli("report", "--db", db, "--json", "--versions")
    assert done.returncode == 0 and done.stderr == "", done
    assert json.loads(done.stdout) == {
        "processes": 3, "libraries": {"six": 2}, "versions": {"six": {"": 1, "1.16.0": 1}}}
