"""`popcon-site collect` under attack and under failure, as a real process.

Hostile datagrams over real UDP, a cardinality flood with its memory read
from /proc, SIGKILL in the middle of heavy writes, a real full filesystem and
a read-only one, and the addresses it binds by default.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import require
from popcon_site.collector.lines import ACCEPTED, LineParser
from popcon_site.collector.store import read_counts
from support.collector_proc import (
    SmallFilesystem,
    cli_environ,
    run_cli,
    socket_addresses,
    wait_until,
)
from support.processes import Prefix
from support.statsd_fuzz import PREFIX, any_line, statsd_lines

# The largest UDP payload over IPv4; the kernel refuses anything bigger.
MAX_UDP = 65507


def assert_one_line_error(rc, stderr, *phrases):
    assert rc == 1, (rc, stderr)
    assert "Traceback" not in stderr, stderr
    assert stderr.count("\n") == 1 and stderr.startswith("popcon-site collect: error: "), stderr
    for phrase in phrases:
        assert phrase in stderr, stderr


# --- hostile datagrams ------------------------------------------------------------

datagrams = st.one_of(
    st.lists(statsd_lines(), min_size=1, max_size=30).map(b"\n".join),
    st.lists(statsd_lines(), min_size=1, max_size=5).map(b"\r\n".join),
    st.binary(min_size=1, max_size=2000),
    any_line,
    # Oversized: at and past the UDP limit, and lines past the parser's limit.
    st.integers(min_value=MAX_UDP - 10, max_value=MAX_UDP + 10).map(lambda n: (b"x" * 99 + b"\n") * (n // 100)
                                                                     + b"y" * (n % 100)),
    st.integers(min_value=1, max_value=3000).map(lambda n: f"{PREFIX}.numpy:1|c|#".encode() + b"t:v," * n),
    st.just(b"\n" * 5000),
)


@pytest.fixture
def fuzz_collector(start):
    return start("--max-series", "1000000", prefix=PREFIX)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batch=st.lists(datagrams, min_size=1, max_size=20))
def test_hostile_datagrams_are_each_classified_and_counted_as_the_parser_says(fuzz_collector, batch):
    # One collector serves every example; each example is judged by its deltas.
    collector = fuzz_collector
    before = collector.samples()
    parser = LineParser(PREFIX)
    lines, libraries, reports = Counter(), Counter(), 0.0
    fences, in_flight = 1, 0
    for data in batch:
        if collector.send(data) != 1:
            assert len(data) > MAX_UDP
            continue
        # A default receive buffer holds a few hundred KiB: wait for the
        # collector before the kernel would have to drop anything.
        in_flight += len(data) + 1024
        if in_flight > 128 * 1024:
            collector.fence()
            fences, in_flight = fences + 1, 0
        for raw in data.split(b"\n"):
            if raw:
                outcome, key, count = parser.parse(raw)
                lines[outcome] += 1
                if outcome == ACCEPTED and key is None:
                    reports += count
                elif outcome == ACCEPTED:
                    libraries[key] += count
    collector.fence()
    after = collector.samples()
    assert collector.proc.poll() is None, collector.stderr
    gained = {k: v - collector.lines(before).get(k, 0) for k, v in collector.lines(after).items()}
    gained[ACCEPTED] -= fences
    assert {k: v for k, v in gained.items() if v} == dict(lines)
    was, now = collector.libraries(before), collector.libraries(after)
    assert {k: now[k] - was.get(k, 0) for k in now if now[k] != was.get(k, 0)} == {
        k: v for k, v in libraries.items() if v}
    reports_total = ("python_popcon_reports_total", frozenset())
    assert after[reports_total] - before[reports_total] == reports + fences
    assert collector.stderr == ""


# --- cardinality ----------------------------------------------------------------------

def flood(collector, names, per_datagram=150, fence_every=5):
    """Send one counter line per name, packed in datagrams, fencing now and
    then so that even a default receive buffer (a few hundred KiB) never
    overflows."""
    batch, sent = [], 0
    for name in names:
        batch.append(name)
        if len(batch) == per_datagram:
            collector.send(b"\n".join(batch))
            batch, sent = [], sent + 1
            if sent % fence_every == 0:
                collector.fence()
    if batch:
        collector.send(b"\n".join(batch))
    collector.fence()


def test_cardinality_flood_keeps_series_and_memory_bounded(start):
    cap = 2000
    collector = start("--max-series", str(cap))
    p = collector.prefix.encode()
    long = b"-x" * 90
    flood(collector, (p + b".warm%d%s:1|c" % (i, long) for i in range(20000)))
    warm = collector.rss_kib()
    # Ten times as many new names, and a version flood on one library.
    flood(collector, (p + b".flood%d%s:1|c" % (i, long) for i in range(200000)))
    flood(collector, (p + b".numpy:1|c|#version:%d.%s" % (i, b"9" * 50) for i in range(50000)))
    flooded = collector.rss_kib()
    samples = collector.samples()
    assert samples[("popcon_site_collector_series", frozenset())] == cap
    assert samples[("popcon_site_collector_names_dropped_total", frozenset())] == 20000 + 200000 + 50000 - cap
    assert collector.lines(samples)["over_cap"] == 20000 + 200000 + 50000 - cap
    # Unbounded, 250,000 more names of 190 bytes would take well over 64 MiB.
    assert flooded - warm < 32 * 1024, (warm, flooded)
    rc, err = collector.stop()
    assert (rc, err) == (0, "")
    assert os.path.getsize(collector.db) < 8 * 1024 * 1024


# --- SIGKILL ----------------------------------------------------------------------------

def stored(db):
    _, snap = read_counts(str(db))
    return snap


def test_sigkill_in_heavy_writes_never_corrupts_and_each_restart_resumes(start, tmp_path):
    db, prefix = tmp_path / "counts.sqlite3", Prefix.unique().name
    p, den = prefix.encode(), (Prefix(prefix).parent + ".reports:1|c").encode()
    previous = 0.0
    for cycle in range(4):
        collector = start("--flush-interval", "0.1", db=db, prefix=prefix)
        # The restart resumes from exactly what the store holds.
        assert collector.reports() == previous
        stop, sent = threading.Event(), [0]

        def heavy_writes():
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            i = 0
            while not stop.is_set():
                # One datagram is one process's report: a library and the denominator.
                sock.sendto(p + b".lib%d-%d:1|c\n" % (cycle, i % 2000) + den, ("127.0.0.1", collector.udp_port))
                i += 1
                sent[0] = i
            sock.close()

        sender = threading.Thread(target=heavy_writes)
        sender.start()
        try:
            wait_until(lambda: stored(db).reports > previous + 500, "heavy writes reaching the store")
            collector.proc.send_signal(signal.SIGKILL)
            collector.proc.wait()
        finally:
            stop.set()
            sender.join()
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        snap = stored(db)
        # Every flush is one transaction: the libraries agree with the denominator.
        assert snap.reports == sum(snap.libraries.values())
        assert previous + 500 < snap.reports <= previous + sent[0]
        previous = snap.reports

    # Quiet, then killed: everything counted more than one flush before the kill is stored.
    collector = start("--flush-interval", "0.1", db=db, prefix=prefix)
    collector.send(*[p + b".quiet:1|c\n" + den] * 300)
    collector.fence()
    in_memory = collector.reports()
    wait_until(lambda: stored(db).reports == in_memory, "a flush after the writes stopped")
    collector.kill()
    assert stored(db).reports == in_memory == previous + 301


# --- full and read-only filesystems ---------------------------------------------------------

@pytest.fixture
def small_fs(tmp_path):
    if os.geteuid() != 0:
        require("mounting a small tmpfs needs root")
    try:
        fs = SmallFilesystem(tmp_path / "small", "2m")
    except (OSError, PermissionError) as exc:
        require(f"cannot mount a tmpfs here: {exc}")
    yield fs
    fs.unmount()


def test_a_full_disk_at_start_is_one_clear_line(small_fs):
    small_fs.fill()
    done = run_cli("collect", "--udp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--db", small_fs.path / "c.sqlite3")
    assert_one_line_error(done.returncode, done.stderr, str(small_fs.path / "c.sqlite3"), "full")


def test_a_disk_that_fills_while_collecting_loses_nothing_once_space_returns(start, small_fs):
    collector = start("--flush-interval", "0.1", db=small_fs.path / "c.sqlite3")
    p = collector.prefix.encode()
    filler = small_fs.fill()
    names = [b"%s.lib-%d-%s:1|c" % (p, i, b"z" * 150) for i in range(1000)]
    for i in range(0, len(names), 100):
        collector.send(b"\n".join(names[i:i + 100]))
    collector.fence()
    wait_until(lambda: "full" in collector.stderr, "the write error on stderr")
    # Said once, in one line, and it keeps counting and serving.
    assert collector.stderr.count("\n") == 1 and "retried" in collector.stderr, collector.stderr
    assert len(collector.libraries()) == 1000
    filler.unlink()
    wait_until(lambda: "works again" in collector.stderr, "recovery once space returns")
    rc, err = collector.stop()
    assert rc == 0 and "Traceback" not in err, err
    snap = stored(collector.db)
    assert len(snap.libraries) == 1000 and snap.reports == 1


def test_a_disk_still_full_at_shutdown_says_what_is_lost(start, small_fs):
    collector = start("--flush-interval", "0.1", db=small_fs.path / "c.sqlite3")
    p = collector.prefix.encode()
    small_fs.fill()
    for i in range(30):
        collector.send(b"\n".join(b"%s.lib-%d-%d-%s:1|c" % (p, i, j, b"z" * 150) for j in range(100)))
    collector.fence()
    wait_until(lambda: "full" in collector.stderr, "the write error on stderr")
    rc, err = collector.stop()
    assert rc == 1 and "Traceback" not in err, err
    assert err.splitlines()[-1].startswith("popcon-site collect: error: ") and "lost" in err, err


def test_a_read_only_filesystem_at_start_is_one_clear_line(small_fs):
    small_fs.remount("ro")
    try:
        done = run_cli("collect", "--udp", "127.0.0.1:0", "--http", "127.0.0.1:0",
                       "--db", small_fs.path / "sub" / "c.sqlite3")
    finally:
        small_fs.remount("rw")
    assert_one_line_error(done.returncode, done.stderr, str(small_fs.path / "sub"), "ead-only")


def test_a_db_file_the_collector_may_not_write_is_one_clear_line(tmp_path):
    # SQLite opens a file it may not write read-only, without a word; the
    # first write must turn that into an error an admin can act on.
    db = tmp_path / "c.sqlite3"
    db.write_bytes(b"")
    if os.geteuid() == 0:  # root writes any mode: make the file immutable instead
        done = subprocess.run(["chattr", "+i", str(db)], capture_output=True, text=True)
        if done.returncode != 0:
            require(f"chattr +i is not available here: {done.stderr.strip()}")
    else:
        db.chmod(0o444)
    try:
        done = run_cli("collect", "--udp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--db", db)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(db)], capture_output=True)
    assert_one_line_error(done.returncode, done.stderr, str(db))


# --- default addresses ------------------------------------------------------------------------

def test_binds_loopback_by_default(tmp_path):
    """Start `collect` with its default addresses and read what it bound
    from /proc.  In a private network namespace when possible, so that the
    default ports are free whatever else runs on the machine."""
    db = tmp_path / "c.sqlite3"
    command = [sys.executable, "-m", "popcon_site", "collect", "--db", str(db)]
    unshare = shutil.which("unshare")
    private_net = unshare and os.geteuid() == 0 and subprocess.run(
        [unshare, "--net", "true"], capture_output=True).returncode == 0
    if private_net:
        command = [unshare, "--net", "sh", "-c", 'ip link set lo up 2>/dev/null; exec "$@"', "sh", *command]
    else:
        for kind, port in ((socket.SOCK_DGRAM, 8125), (socket.SOCK_STREAM, 9102)):
            with socket.socket(socket.AF_INET, kind) as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    require(f"port {port} is in use here and no private network namespace can be made")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_environ(),
                            stdin=subprocess.DEVNULL)
    try:
        line = proc.stdout.readline()
        assert "listening on udp 127.0.0.1:8125 and http://127.0.0.1:9102/metrics" in line, (line, proc.stderr)
        bound = socket_addresses(proc.pid)
        assert sorted(bound) == [("tcp", "127.0.0.1:9102"), ("udp", "127.0.0.1:8125")], bound
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr.read()


def test_a_database_of_another_program_is_refused_and_left_untouched(tmp_path):
    # `--db` pointed at another program's SQLite file by mistake: adopting it
    # would add tables to it and switch it to WAL for good.
    db = tmp_path / "places.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE moz_places (id INTEGER PRIMARY KEY, url TEXT)")
        conn.execute("INSERT INTO moz_places (url) VALUES ('https://example.org/')")
    conn.close()
    before = db.read_bytes()
    done = run_cli("collect", "--udp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--db", db)
    assert_one_line_error(done.returncode, done.stderr, str(db), "another program")
    assert db.read_bytes() == before
    # Not even the lock file is left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["places.sqlite"]


# --- redaction --------------------------------------------------------------------------------

def test_min_count_also_hides_rare_versions_of_common_libraries(start):
    # A version only one person runs (an old pin, a local build) identifies
    # them as surely as a rare library does.
    collector = start()
    p = collector.prefix.encode()
    collector.send(*[p + b".numpy:1|c|#version:1.26.4"] * 5, p + b".numpy:1|c|#version:1.0.0+acme.internal",
                   *[p + b".attrs:1|c"] * 3, p + b".onlyme:1|c")
    collector.fence()
    rc, err = collector.stop()
    assert (rc, err) == (0, "")
    table = run_cli("report", "--db", collector.db, "--min-count", "3", "--versions")
    assert table.returncode == 0, table.stderr
    assert "1.26.4" in table.stdout and "attrs" in table.stdout
    assert "acme" not in table.stdout and "onlyme" not in table.stdout, table.stdout
    assert "1 library counted fewer than 3 times not shown" in table.stdout
    assert "1 version counted fewer than 3 times not shown" in table.stdout
    doc = run_cli("report", "--db", collector.db, "--min-count", "3", "--versions", "--json")
    assert "acme" not in doc.stdout and "onlyme" not in doc.stdout, doc.stdout
    assert '"hidden_versions": 1' in doc.stdout
