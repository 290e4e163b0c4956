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


# --- 2. an answer of Prometheus of an unexpected shape is one line --------------------

@pytest.fixture
def serve():
    """``serve(raw)``: the base URL of a real HTTP server on loopback that
    answers every request with the bytes ``raw`` (status line and all)."""
    import socketserver
    import threading

    servers = []

    def serve(raw: bytes) -> str:
        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                self.rfile.readline()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                self.wfile.write(raw)

        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def http_answer(body: bytes, status: str = "200 OK", length: int | None = None) -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nConnection: close\r\n"
            f"Content-Length: {len(body) if length is None else length}\r\n\r\n").encode() + body


def vector(*samples) -> bytes:
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": list(samples)}}).encode()


UNREADABLE = [
    (http_answer(b"[]"), "the answer is [], not a JSON object"),
    (http_answer(b"null"), "the answer is null, not a JSON object"),
    (http_answer(b'"success"'), 'the answer is "success", not a JSON object'),
    (http_answer(b'{"status": "success"}'), "its data is null, not an object"),
    (http_answer(b'{"status": "ok", "data": {}}'), 'its status is "ok", not "success"'),
    (http_answer(b'{"status": "success", "data": []}'), "its data is [], not an object"),
    (http_answer(b'{"status": "success", "data": {"resultType": "vector"}}'), "its result is null, not a list"),
    (http_answer(b'{"status": "success", "data": {"resultType": "scalar", "result": [1, "2"]}}'),
     'its result type is "scalar", not "vector"'),
    (http_answer(vector(7)), "a sample is 7, not an object"),
    (http_answer(vector({"metric": {}, "value": [0]})), 'a sample\'s value is [0], not [time, "number"]'),
    (http_answer(vector({"metric": {}})), 'a sample\'s value is null, not [time, "number"]'),
    (http_answer(vector({"metric": {}, "value": [0, 3]})), 'a sample\'s value is [0, 3], not [time, "number"]'),
    (http_answer(vector({"metric": {}, "value": [0, "many"]})), 'a sample\'s value "many" is not a number'),
    (http_answer(vector({"metric": {"library": 5}, "value": [0, "1"]})),
     'a sample\'s labels are {"library": 5}, not names and text'),
    (http_answer(vector({"metric": [], "value": [0, "1"]})), "a sample's labels are [], not names and text"),
    # Not HTTP at all, and an answer broken off before its end.
    (b"hello there\r\n", "it is not an HTTP answer (hello there)"),
    (http_answer(b'{"status": "succ', length=100), "the answer broke off before its end"),
]


@pytest.mark.parametrize("raw, problem", UNREADABLE, ids=[str(i) for i in range(len(UNREADABLE))])
def test_an_answer_of_prometheus_it_cannot_read_is_one_line(serve, raw, problem):
    url = serve(raw)
    for extra in ((), ("--range", "30d"), ("--json", "--versions")):
        done = run_cli("report", "--prometheus", url, *extra)
        assert_one_line_error(done, "report", f"Prometheus at {url} gave an answer popcon-site cannot read: {problem}")


def test_prometheus_errors_and_odd_values_it_can_read(serve):
    # An error of Prometheus's own is the query refused, in its words.
    url = serve(http_answer(b'{"status": "error", "errorType": "bad_data", "error": "parse error\\nat char 3"}'))
    assert_one_line_error(run_cli("report", "--prometheus", url), "report",
                          f"Prometheus at {url} refused the query: parse error at char 3")
    url = serve(http_answer(b'{"status": "error", "error": "overloaded"}', status="503 Service Unavailable"))
    assert_one_line_error(run_cli("report", "--prometheus", url), "report",
                          f"Prometheus at {url} answered 503 overloaded")
    # NaN and infinities, which Prometheus writes as text, count nothing (the
    # server gives the same answer to the denominator's query).
    url = serve(http_answer(vector({"metric": {"library": "six"}, "value": [0, "3"]},
                                   {"metric": {"library": "numpy"}, "value": [0, "NaN"]},
                                   {"metric": {"library": "attrs"}, "value": [0, "+Inf"]})))
    done = run_cli("report", "--prometheus", url, "--json")
    assert (done.returncode, done.stderr) == (0, ""), done
    assert json.loads(done.stdout) == {"processes": 3, "libraries": {"six": 3}}


# --- 3. a host name IDNA refuses, or a port of other digits, is one line ----------------

LONG_LABEL = "a" * 64 + ".example"


@pytest.mark.parametrize("option, address, message", [
    ("--udp", "a..b:1", "cannot resolve UDP host 'a..b': it has an empty label"),
    ("--http", ".example:1", "cannot resolve HTTP host '.example': it has an empty label"),
    ("--udp", f"{LONG_LABEL}:1", f"cannot resolve UDP host '{LONG_LABEL}': it has a label longer than 63 characters"),
    ("--http", f"{LONG_LABEL}:1",
     f"cannot resolve HTTP host '{LONG_LABEL}': it has a label longer than 63 characters"),
    ("--udp", "\x80x:1", "cannot resolve UDP host '\\x80x': it is not a host name (Invalid character '\\x80')"),
    # str.isdigit() takes these, int() does not.
    ("--udp", "127.0.0.1:\u00b2", "--udp '127.0.0.1:\u00b2' is not HOST:PORT (for IPv6, [ADDRESS]:PORT)"),
    ("--http", "127.0.0.1:\u2460", "--http '127.0.0.1:\u2460' is not HOST:PORT (for IPv6, [ADDRESS]:PORT)"),
])
def test_an_address_that_cannot_be_one_is_one_line_and_creates_nothing(tmp_path, option, address, message):
    args = {"--udp": "127.0.0.1:0", "--http": "127.0.0.1:0", option: address}
    done = run_cli("collect", "--udp", args["--udp"], "--http", args["--http"], "--db", tmp_path / "x" / "s.sqlite3")
    assert_one_line_error(done, "collect", message)
    assert list(tmp_path.iterdir()) == []


# --- 4. a store path that is not a regular file is refused without opening it ----------

def entries(directory: Path) -> list[tuple[str, str]]:
    import stat

    def kind(mode):
        return "fifo" if stat.S_ISFIFO(mode) else "dir" if stat.S_ISDIR(mode) else \
            "socket" if stat.S_ISSOCK(mode) else "file"

    return sorted((p.name, kind(p.lstat().st_mode)) for p in directory.iterdir())


@pytest.mark.parametrize("kind", ["fifo", "socket", "character device"])
def test_a_store_path_that_is_not_a_file_is_refused_by_both_commands(tmp_path, kind):
    import socket

    if kind == "fifo":
        db = tmp_path / "f.sqlite3"
        os.mkfifo(db)
        what = "a FIFO (named pipe)"
    elif kind == "socket":
        db = tmp_path / "s.sqlite3"
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(db))
        what = "a socket"
    else:
        db = Path("/dev/null")
        what = "a character device"
    before = entries(tmp_path)
    # A FIFO made report wait for a writer forever.
    done = run_cli("report", "--db", db, timeout=30)
    assert_one_line_error(done, "report", f"{db} is {what}, not a store file; give --db the file "
                          "`popcon-site collect` writes")
    done = run_cli("collect", *FREE_PORTS, "--db", db, timeout=30)
    assert_one_line_error(done, "collect", f"{db} is {what}; give --db the path of a file")
    assert entries(tmp_path) == before
    if kind == "socket":
        server.close()


@pytest.mark.parametrize("companion, make", [
    ("-wal", os.mkfifo), ("-shm", os.mkfifo), ("-wal", os.mkdir), (".lock", os.mkfifo), (".lock", os.mkdir),
])
def test_a_store_whose_journal_or_lock_is_not_a_file_is_refused(real_store, tmp_path, companion, make):
    db = tmp_path / "counts.sqlite3"
    shutil.copy(real_store, db)
    make(f"{db}{companion}")
    before, content = entries(tmp_path), db.read_bytes()
    kind = "a FIFO (named pipe)" if make is os.mkfifo else "a directory"
    message = f"cannot use the store {db}: {db}{companion} is {kind}, not a file; remove it"
    # A FIFO as the lock file made collect wait forever, deaf to SIGTERM; as
    # the journal, SQLite used it and then deleted it.
    assert_one_line_error(run_cli("collect", *FREE_PORTS, "--db", db, timeout=30), "collect", message)
    if companion != ".lock":
        # A reader takes no lock; it opens the journal and shared memory.
        assert_one_line_error(run_cli("report", "--db", db, timeout=30), "report", message)
    assert entries(tmp_path) == before and db.read_bytes() == content


# --- 5. one collector per store, whatever the spelling of its path ------------------------

def test_one_collector_owns_a_store_whatever_the_spelling_of_its_path(tmp_path):
    store_dir = tmp_path / "d"
    store_dir.mkdir()
    real = store_dir / "counts.sqlite3"
    link = tmp_path / "link.sqlite3"
    link.symlink_to(real)  # dangling until the first collector creates the store through it
    (tmp_path / "dlink").symlink_to(store_dir)
    first = CollectorProcess(link, PREFIX)
    try:
        first.send(*[f"{PREFIX}.six:1|c".encode()] * 3)
        first.fence()
        for spelling in (real, f"{store_dir}//counts.sqlite3", "d/counts.sqlite3", "./d/../d/counts.sqlite3",
                         "dlink/counts.sqlite3"):
            done = run_cli("collect", *FREE_PORTS, "--db", spelling, cwd=tmp_path)
            assert_one_line_error(done, "collect", f"{spelling} is in use by another collector")
        first.send(*[f"{PREFIX}.six:1|c".encode()] * 2)
        first.fence()
    finally:
        assert first.stop() == (0, "")
    # The lock and the store sit beside each other, the link is still a link,
    # and every count arrived.
    assert entries(store_dir) == [("counts.sqlite3", "file"), ("counts.sqlite3.lock", "file")]
    assert link.is_symlink() and os.readlink(link) == str(real)
    done = run_cli("report", "--db", real, "--json")
    assert json.loads(done.stdout) == {"processes": 2, "libraries": {"six": 5}}, done

    # The other way round: the real path first, then the link.
    second = CollectorProcess(real, PREFIX)
    try:
        assert_one_line_error(run_cli("collect", *FREE_PORTS, "--db", link), "collect",
                              f"{link} is in use by another collector")
    finally:
        assert second.stop() == (0, "")


def test_a_store_made_through_a_link_is_removed_when_collect_cannot_start(tmp_path):
    import resource
    import subprocess
    import sys

    from support.collector_proc import cli_environ

    real = tmp_path / "d" / "counts.sqlite3"
    real.parent.mkdir()
    link = tmp_path / "link.sqlite3"
    link.symlink_to(real)

    def no_file_size():
        # The store is created, then its first write fails.
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))

    done = subprocess.run([sys.executable, "-m", "popcon_site", "collect", *FREE_PORTS, "--db", str(link)],
                          capture_output=True, text=True, env=cli_environ(), stdin=subprocess.DEVNULL,
                          preexec_fn=no_file_size, timeout=60)
    assert_one_line_error(done, "collect", f"cannot open {link}: disk I/O error (a full disk or a file size limit "
                          "gives this too)")
    # What it created through the link is gone, lock and all; the link stays.
    assert entries(real.parent) == [] and link.is_symlink() and os.readlink(link) == str(real)


# --- 6. --help and --version need a writable standard output too -------------------------

@pytest.mark.parametrize("args, prog", [
    ("--version", "popcon-site"), ("--help", "popcon-site"), ("-h", "popcon-site"),
    ("report --help", "popcon-site report"), ("collect -h", "popcon-site collect"),
])
@pytest.mark.parametrize("redirect, message", [
    (">&-", "standard output is closed; redirect it to a file or /dev/null instead"),
    (">/dev/full", "cannot write to standard output: No space left on device"),
])
def test_help_and_version_with_an_unwritable_stdout_are_one_line(tmp_path, args, prog, redirect, message):
    from conftest import require
    from support.collector_proc import run_shell

    if redirect == ">/dev/full" and not os.path.exists("/dev/full"):
        require("no /dev/full on this system")

    def shell(command):
        return run_shell(command, tmp_path)

    done = shell(f'"$PYTHON" -m popcon_site {args} {redirect}')
    assert (done.returncode, done.stderr) == (1, f"{prog}: error: {message}\n"), done
    # Without a stderr either, the exit code still says it.
    assert shell(f'"$PYTHON" -m popcon_site {args} {redirect} 2>&-').returncode == 1
    # A reader that leaves early is no error, as for the commands.
    done = shell(f'"$PYTHON" -m popcon_site {args} | head -c 1')
    assert (done.returncode, done.stdout, done.stderr) == (0, "p" if args == "--version" else "u", ""), done
    assert list(tmp_path.iterdir()) == []


# --- 7. --range and --match without --prometheus: the report subcommand's usage ----------

@pytest.mark.parametrize("args", [("--range", "30d"), ("--match", 'namespace="hub_a"'),
                                  ("--db", "counts.sqlite3", "--range", "30d")])
def test_range_without_prometheus_is_a_usage_error_of_report(tmp_path, args):
    done = run_cli("report", *args, cwd=tmp_path)
    usage = run_cli("report", "--help").stdout.split("\n\n")[0]
    assert usage.startswith("usage: popcon-site report [-h]"), usage
    assert (done.returncode, done.stdout) == (2, ""), done
    assert done.stderr == f"{usage}\npopcon-site report: error: --range and --match need --prometheus\n", done
    assert list(tmp_path.iterdir()) == []


# --- 8. every key of report --json is documented -------------------------------------------

def test_every_key_of_report_json_is_in_the_readme(real_store):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    done = run_cli("report", "--db", real_store, "--json", "--min-count", "1", "--versions", "--unused")
    assert done.returncode == 0, done
    keys = set(json.loads(done.stdout))
    assert keys == {"processes", "libraries", "hidden", "versions", "hidden_versions", "unused", "unused_below",
                    "unused_without_modules"}
    assert [key for key in sorted(keys) if f'"{key}"' not in readme] == []
