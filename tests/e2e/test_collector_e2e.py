"""`popcon-site collect` as a real process: real UDP in, SQLite and /metrics out.

The collector runs from the checkout; the processes that report to it run
in a throwaway venv with the built wheel installed.  Nothing here waits for a
fixed time: each check polls until the collector has counted what was sent
(loopback UDP from one socket arrives in order), with a deadline.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from popcon_site.config import denominator_name
from support.processes import Prefix, clean_environ, run_python

REPO = Path(__file__).resolve().parents[2]
DEADLINE = 30.0


def cli_environ(extra=None):
    env = clean_environ()
    env["PYTHONPATH"] = str(REPO)
    env["PYTHON_POPCONTEST_DISABLE"] = "1"
    env.update(extra or {})
    return env


def popcon_site(*args, check=True, **kwargs):
    """Run the popcon-site command from the checkout."""
    done = subprocess.run([sys.executable, "-m", "popcon_site", *map(str, args)], capture_output=True,
                          text=True, env=cli_environ(), stdin=subprocess.DEVNULL, timeout=120, **kwargs)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def report_json(db, *args):
    return json.loads(popcon_site("report", "--db", db, "--json", *args).stdout)


def stored_report(db, processes, *args):
    """`report --db --json` once the store holds ``processes`` reports (the
    collector flushes at least once a second)."""
    docs = []

    def flushed():
        docs.append(report_json(db, *args))
        return docs[-1]["processes"] >= processes

    wait_until(flushed, "%d reports in the store" % processes)
    return docs[-1]


def wait_until(predicate, what, deadline=DEADLINE):
    give_up = time.monotonic() + deadline
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > give_up:
            pytest.fail("gave up waiting for %s" % what)
        time.sleep(0.05)


class Collector:
    """One `popcon-site collect` process on random loopback ports."""

    def __init__(self, db: Path, prefix: str, *extra: str, preexec_fn=None):
        self.db = db
        self.prefix = prefix
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "popcon_site", "collect", "--udp", "127.0.0.1:0", "--http", "127.0.0.1:0",
             "--db", str(db), "--prefix", prefix, *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
            env=cli_environ(), preexec_fn=preexec_fn,
        )
        self.start_line = self.proc.stdout.readline()
        match = re.search(r"udp 127\.0\.0\.1:(\d+) and http://127\.0\.0\.1:(\d+)/metrics", self.start_line)
        if not match:
            self.proc.kill()
            _, err = self.proc.communicate()
            raise AssertionError("collector did not start: %r\n%s" % (self.start_line, err))
        self.udp_port, self.http_port = int(match.group(1)), int(match.group(2))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.stderr_chunks = []
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_reader.start()

    def _read_stderr(self):
        for line in self.proc.stderr:
            self.stderr_chunks.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_chunks)

    def send(self, *datagrams: bytes) -> None:
        for data in datagrams:
            self.sock.sendto(data, ("127.0.0.1", self.udp_port))

    def metrics_text(self) -> str:
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.http_port, timeout=10) as response:
            return response.read().decode()

    def samples(self) -> dict:
        """{(sample name, frozenset(labels)): value}"""
        found = {}
        for family in text_string_to_metric_families(self.metrics_text()):
            for sample in family.samples:
                found[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return found

    def lines(self, outcome: str) -> float:
        return self.samples()[("popcon_site_collector_lines_total", frozenset({("outcome", outcome)}))]

    def reports(self) -> float:
        return self.samples()[("python_popcon_reports_total", frozenset())]

    def library(self, name: str, version: str = "") -> float:
        labels = {("library", name)} | ({("version", version)} if version else set())
        return self.samples().get(("python_popcon_library_used_total", frozenset(labels)), 0.0)

    def fence(self) -> None:
        """Send a denominator line and wait until it is counted: everything
        sent before it has been processed."""
        before = self.reports()
        self.send(("%s:1|c" % denominator_name(self.prefix)).encode())
        wait_until(lambda: self.reports() >= before + 1, "the fence line")

    def stop(self, sig=signal.SIGTERM) -> tuple[int, str, str]:
        self.proc.send_signal(sig)
        out = self.proc.stdout.read()
        self.proc.wait(timeout=DEADLINE)
        self._stderr_reader.join(timeout=DEADLINE)
        self.sock.close()
        return self.proc.returncode, out, self.stderr

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.sock.close()


@pytest.fixture
def collector_factory(tmp_path):
    started = []

    def start(*extra, db=None, prefix=None, **kwargs):
        collector = Collector(db or tmp_path / "counts.sqlite3", prefix or Prefix.unique().name, *extra, **kwargs)
        started.append(collector)
        return collector

    yield start
    for collector in started:
        collector.kill()


@pytest.fixture
def collector(collector_factory):
    return collector_factory()


# --- real reporting processes ---------------------------------------------------

SUBPROCESS_SCRIPT = """
import subprocess, sys
import acmens.alpha
subprocess.run([sys.executable, "-c", "import earlylib"], check=True)
"""


def test_counts_real_processes_from_a_venv(venv, collector, tmp_path):
    prefix = Prefix(collector.prefix)
    env = {"PYTHON_POPCONTEST_STATSD_HOST": "127.0.0.1", "PYTHON_POPCONTEST_STATSD_PORT": str(collector.udp_port)}

    def run(*args):
        result = run_python(venv.python, list(args), listener=None, prefix=prefix, env=env, cwd=tmp_path)
        assert result.rc == 0, result

    script = tmp_path / "job.py"
    script.write_text(SUBPROCESS_SCRIPT)
    run("-c", "import acme_widgets")
    run("-m", "acme_widgets")                      # -m: prints and exits through sys.exit(0)
    run(str(script))                               # a script that starts a subprocess: two reports
    run("-c", "import acmens.alpha, acmens.beta")  # a namespace package split over two dists
    run("-c", "pass")                              # imports nothing: sends nothing
    wait_until(lambda: collector.reports() == 5, "5 reports")

    assert stored_report(collector.db, 5) == {
        "processes": 5,
        "libraries": {"acme-widgets-pro": 2, "acmens-alpha": 2, "acmens-beta": 1, "earlylib": 1},
    }
    assert collector.library("acme-widgets-pro") == 2
    assert collector.lines("accepted") == 5 + 6
    assert collector.lines("malformed") == collector.lines("foreign_name") == 0

    # The table: a header, then library, processes and share of the 5
    # reporting processes, most used first, ties by name.
    table = popcon_site("report", "--db", collector.db).stdout.splitlines()
    header = table.index(next(line for line in table if line.split() == ["library", "processes", "share"]))
    rows = [line.split() for line in table[header + 1:] if line.strip()]
    assert rows == [
        ["acme-widgets-pro", "2", "40.0%"],
        ["acmens-alpha", "2", "40.0%"],
        ["acmens-beta", "1", "20.0%"],
        ["earlylib", "1", "20.0%"],
    ], table
    assert any(line.startswith("5 reporting processes") for line in table[:header]), table


def test_versions_are_kept_as_a_split(venv, collector, tmp_path):
    env = {"PYTHON_POPCONTEST_STATSD_HOST": "127.0.0.1", "PYTHON_POPCONTEST_STATSD_PORT": str(collector.udp_port)}
    prefix = Prefix(collector.prefix)
    for extra in ({"PYTHON_POPCONTEST_VERSIONS": "1"}, {"PYTHON_POPCONTEST_VERSIONS": "1"}, {}):
        result = run_python(venv.python, ["-c", "import acme_widgets"], listener=None, prefix=prefix,
                            env={**env, **extra}, cwd=tmp_path)
        assert result.rc == 0, result
    wait_until(lambda: collector.reports() == 3, "3 reports")
    assert collector.library("acme-widgets-pro", "1.2.0") == 2
    assert collector.library("acme-widgets-pro") == 1
    doc = stored_report(collector.db, 3, "--versions")
    assert doc["libraries"] == {"acme-widgets-pro": 3}
    assert doc["versions"] == {"acme-widgets-pro": {"": 1, "1.2.0": 2}}
    table = popcon_site("report", "--db", collector.db, "--versions").stdout
    assert re.search(r"acme-widgets-pro\s+1\.2\.0\s+2\s+66\.7%", table), table


def test_unused_lists_installed_dists_never_counted(venv, collector, tmp_path):
    env = {"PYTHON_POPCONTEST_STATSD_HOST": "127.0.0.1", "PYTHON_POPCONTEST_STATSD_PORT": str(collector.udp_port)}
    result = run_python(venv.python, ["-c", "import acme_widgets, earlylib"], listener=None,
                        prefix=Prefix(collector.prefix), env=env, cwd=tmp_path)
    assert result.rc == 0, result
    wait_until(lambda: collector.reports() == 1, "1 report")
    doc = stored_report(collector.db, 1, "--unused", "--python", venv.python)
    unused = set(doc["unused"])
    assert {"acmens-alpha", "acmens-beta", "latelib", "sitelib"} <= unused
    assert not {"acme-widgets-pro", "earlylib", "popcon-site"} & unused
    # pip and friends ship modules; nothing in this venv is module-less except what the venv tooling adds.
    assert "pip" in unused
    assert set(doc["unused_without_modules"]).isdisjoint(unused)
    table = popcon_site("report", "--db", collector.db, "--unused", "--python", venv.python).stdout
    assert "never counted" in table and "without an importable module" in table


def test_unused_shows_dists_without_modules_apart(venv, collector, tmp_path):
    from support import distributions as dists

    stub = dists.Dist("types-fake", "1.0", {"fake-stubs/__init__.pyi": "X: int\n"}, "types-fake")
    tool = dists.Dist("just-a-tool", "2.0", {}, "just-a-tool")
    target = tmp_path / "extra-site"
    target.mkdir()
    for dist in (stub, tool):
        wheel = dists.build_wheel(dist, tmp_path)
        subprocess.run([str(venv.python), "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                        "--target", str(target), str(wheel)], check=True, env=cli_environ())
    wrapper = tmp_path / "python-with-extra"
    wrapper.write_text("#!/bin/sh\nPYTHONPATH=%s exec %s \"$@\"\n" % (target, venv.python))
    wrapper.chmod(0o755)
    doc = report_json(collector.db, "--unused", "--python", wrapper)
    assert {"types-fake", "just-a-tool"} <= set(doc["unused_without_modules"])
    assert not {"types-fake", "just-a-tool"} & set(doc["unused"])


def test_unused_with_a_python_that_does_not_run(collector, tmp_path):
    done = popcon_site("report", "--db", collector.db, "--unused", "--python", tmp_path / "no-python", check=False)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "cannot run" in done.stderr


def test_min_count_hides_rare_libraries_and_says_how_many(collector):
    p = collector.prefix
    collector.send(*[("%s.common:1|c" % p).encode()] * 3, ("%s.rare:1|c" % p).encode(), ("%s.once:1|c" % p).encode())
    collector.fence()
    doc = stored_report(collector.db, 1, "--min-count", "2")
    assert doc["libraries"] == {"common": 3} and doc["hidden"] == 2
    table = popcon_site("report", "--db", collector.db, "--min-count", "2").stdout
    assert not re.search(r"^(rare|once) ", table, re.M) and re.search(r"^common +3 ", table, re.M), table
    assert "2 libraries counted fewer than 2 times not shown" in table


# --- raw datagrams ------------------------------------------------------------------

def test_raw_datagrams_are_counted_by_outcome(collector):
    p = collector.prefix.encode()
    den = denominator_name(collector.prefix).encode()
    datagrams = [
        p + b".numpy:1|c\n" + den + b":1|c",             # a report
        p + b".numpy:1|c|@0.5",                           # sample rate: counts as 2
        p + b".numpy:1|c|#version:1.26.4",               # version split
        b"\xff\xfe\xfd:1|c",                              # non-UTF-8
        p + b".numpy:1|g\n" + p + b".numpy:5|ms",         # other types
        b"other.app.hits:1|c\n" + p + b".Bad.Name:1|c",   # foreign names
        b"garbage\n:1|c\n" + p + b".x:-1|c\n" + p + b".x:1|c|@0",  # malformed
        b"",                                              # empty datagram: nothing
        b"\n\n",                                          # empty lines: nothing
        p + b".attrs:1|c\n\xc3\n" + p + b".six:1|c",      # one bad line does not spoil the rest
        (p + b".big:1|c\n") * 3000,                       # an oversized datagram: about 130 kB is too big for UDP
    ]
    big = datagrams.pop()
    with pytest.raises(OSError):
        collector.send(big)
    collector.send((p + b".big:1|c\n") * 1400)            # about 60 kB fits
    collector.send(*datagrams)
    collector.fence()
    assert collector.library("numpy") == 3
    assert collector.library("numpy", "1.26.4") == 1
    assert collector.library("attrs") == collector.library("six") == 1
    assert collector.library("big") == 1400
    assert collector.reports() == 2  # the report and the fence
    assert collector.lines("accepted") == 2 + 1 + 1 + 2 + 1400 + 1
    assert collector.lines("non_utf8") == 2
    assert collector.lines("other_type") == 2
    assert collector.lines("foreign_name") == 2
    assert collector.lines("malformed") == 4
    assert collector.lines("over_cap") == 0
    # Still serving after all that.
    assert collector.proc.poll() is None


def test_cardinality_cap_drops_new_names_and_counts_them(collector_factory):
    collector = collector_factory("--max-series", "3")
    p = collector.prefix
    collector.send(*[("%s.lib%d:1|c" % (p, i)).encode() for i in range(10)])
    collector.send(*[("%s.lib%d:1|c" % (p, i)).encode() for i in range(10)])
    collector.fence()
    samples = collector.samples()
    assert samples[("popcon_site_collector_series", frozenset())] == 3
    assert samples[("popcon_site_collector_series_limit", frozenset())] == 3
    assert samples[("popcon_site_collector_names_dropped_total", frozenset())] == 7
    assert collector.lines("over_cap") == 14
    assert [collector.library("lib%d" % i) for i in range(4)] == [2, 2, 2, 0]
    # The cap holds across a restart: the stored series count towards it.
    rc, _, err = collector.stop()
    assert rc == 0, err
    again = collector_factory("--max-series", "3", db=collector.db, prefix=collector.prefix)
    again.send(("%s.lib9:1|c" % p).encode(), ("%s.lib0:1|c" % p).encode())
    again.fence()
    assert again.library("lib0") == 3 and again.library("lib9") == 0
    assert again.samples()[("popcon_site_collector_names_dropped_total", frozenset())] == 8


# --- durability -------------------------------------------------------------------

def test_sigterm_flushes_and_a_restart_resumes_exactly(collector_factory):
    first = collector_factory()
    p = first.prefix.encode()
    den = (denominator_name(first.prefix) + ":1|c").encode()
    first.send(*[p + b".numpy:1|c\n" + den] * 25, p + b".attrs:1|c|@0.5")
    first.fence()
    rc, out, err = first.stop(signal.SIGTERM)
    assert (rc, err) == (0, "")
    assert report_json(first.db) == {"processes": 26, "libraries": {"numpy": 25, "attrs": 2}}

    second = collector_factory(db=first.db, prefix=first.prefix)
    assert second.reports() == 26 and second.library("numpy") == 25 and second.library("attrs") == 2
    assert second.lines("accepted") == 25 * 2 + 1 + 1
    second.send(p + b".numpy:1|c\n" + den)
    second.fence()
    rc, _, err = second.stop(signal.SIGINT)
    assert (rc, err) == (0, "")
    assert report_json(first.db) == {"processes": 28, "libraries": {"numpy": 26, "attrs": 2}}


def test_sigkill_loses_at_most_the_last_flush_and_never_corrupts(collector_factory):
    first = collector_factory()
    p = first.prefix.encode()
    den = (denominator_name(first.prefix) + ":1|c").encode()
    first.send(*[p + b".numpy:1|c\n" + den] * 40)
    first.fence()
    # Everything counted so far reaches the store within one flush interval.
    wait_until(lambda: report_json(first.db)["processes"] == 41, "a flush of 41 reports")

    stop = threading.Event()
    sent = [0]

    def flood():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        i = 0
        while not stop.is_set():
            # Every datagram is one report: a library and the denominator.
            sock.sendto(p + b".lib%d:1|c\n" % (i % 500) + den, ("127.0.0.1", first.udp_port))
            i += 1
            sent[0] = i
        sock.close()

    sender = threading.Thread(target=flood)
    sender.start()
    try:
        wait_until(lambda: report_json(first.db)["processes"] > 41 + 100, "heavy writes reaching the store")
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=DEADLINE)
    finally:
        stop.set()
        sender.join()

    with sqlite3.connect(first.db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    doc = report_json(first.db)
    # Each flush is one transaction: the denominator and the libraries agree.
    assert doc["processes"] == 41 + sum(count for name, count in doc["libraries"].items() if name != "numpy")
    assert doc["libraries"]["numpy"] == 40
    assert 41 + 100 < doc["processes"] <= 41 + sent[0]

    second = collector_factory(db=first.db, prefix=first.prefix)
    assert second.reports() == doc["processes"]
    second.send(p + b".numpy:1|c\n" + den)
    second.fence()
    assert second.library("numpy") == 41


def test_store_is_a_wal_journal_while_collecting(collector):
    collector.send(("%s.numpy:1|c" % collector.prefix).encode())
    collector.fence()
    wait_until(lambda: report_json(collector.db)["processes"] == 1, "the first flush")
    with sqlite3.connect(collector.db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_sigkill_after_a_quiet_flush_interval_loses_nothing(collector_factory):
    # The default flush interval is one second: what was counted more than a
    # couple of intervals before a SIGKILL is in the store, all of it.
    first = collector_factory()
    p = first.prefix.encode()
    den = (denominator_name(first.prefix) + ":1|c").encode()
    first.send(*[p + b".numpy:1|c\n" + den] * 30, p + b".attrs:1|c|@0.5")
    first.fence()
    counted = (first.reports(), first.library("numpy"), first.library("attrs"))
    assert counted == (31, 30, 2)
    time.sleep(3.0)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(timeout=DEADLINE)
    assert report_json(first.db) == {"processes": 31, "libraries": {"numpy": 30, "attrs": 2}}


def test_default_store_is_under_the_user_data_directory(tmp_path):
    data_home = tmp_path / "data"
    env = cli_environ({"HOME": str(tmp_path / "home"), "XDG_DATA_HOME": str(data_home)})
    proc = subprocess.Popen([sys.executable, "-m", "popcon_site", "collect", "--udp", "127.0.0.1:0", "--http",
                             "127.0.0.1:0", "--prefix", "popcondefault.library_used"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            env=env)
    try:
        start_line = proc.stdout.readline()
        expected = data_home / "popcon-site" / "counts.sqlite3"
        assert "storing in %s " % expected in start_line, start_line + proc.stderr.read()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=DEADLINE) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert expected.is_file()
    done = subprocess.run([sys.executable, "-m", "popcon_site", "report", "--json"], capture_output=True, text=True,
                          env=env, stdin=subprocess.DEVNULL, timeout=DEADLINE)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"processes": 0, "libraries": {}}


def test_report_reads_consistently_while_collecting(collector):
    p = collector.prefix.encode()
    den = (denominator_name(collector.prefix) + ":1|c").encode()
    stop = threading.Event()

    def flood():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        while not stop.is_set():
            sock.sendto(p + b".numpy:1|c\n" + p + b".attrs:1|c\n" + den, ("127.0.0.1", collector.udp_port))
            time.sleep(0.0005)
        sock.close()

    sender = threading.Thread(target=flood)
    sender.start()
    seen = []

    def read_once():
        doc = report_json(collector.db)
        if doc["processes"]:
            # A report sees one whole flush: every process counted both libraries.
            assert doc["libraries"] == {"numpy": doc["processes"], "attrs": doc["processes"]}
            seen.append(doc["processes"])
        return len(set(seen)) >= 4

    try:
        wait_until(read_once, "reports of four successive flushes", deadline=60)
    finally:
        stop.set()
        sender.join()
    assert seen == sorted(seen)


# --- errors an admin can act on ------------------------------------------------------

def run_collect(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "popcon_site", "collect", *map(str, args)], capture_output=True,
                          text=True, env=cli_environ(), stdin=subprocess.DEVNULL, timeout=DEADLINE, **kwargs)


def assert_clean_error(done, *phrases):
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("popcon-site collect: error: "), done.stderr
    for phrase in phrases:
        assert phrase in done.stderr, done.stderr


def test_udp_port_in_use(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        done = run_collect("--udp", "127.0.0.1:%d" % port, "--http", "127.0.0.1:0", "--db", tmp_path / "db")
    assert_clean_error(done, "UDP 127.0.0.1:%d" % port, "already in use")


def test_http_port_in_use(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_collect("--udp", "127.0.0.1:0", "--http", "127.0.0.1:%d" % port, "--db", tmp_path / "db")
    assert_clean_error(done, "HTTP 127.0.0.1:%d" % port, "already in use")


def test_unusable_db_paths(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    done = run_collect("--udp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--db", a_file / "db.sqlite3")
    assert_clean_error(done, str(a_file))
    done = run_collect("--udp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--db", tmp_path)
    assert_clean_error(done, str(tmp_path))
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"this is not a database" * 100)
    done = run_collect("--udp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--db", garbage)
    assert_clean_error(done, str(garbage))


def test_directory_not_writable(tmp_path):
    if os.geteuid() == 0:
        # Root writes anywhere a mode allows; sysfs refuses new files even to root.
        db = Path("/sys/popcon-site-test.sqlite3")
    else:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        db = ro / "db.sqlite3"
    done = run_collect("--udp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--db", db)
    assert_clean_error(done, "cannot store counts in %s: permission denied" % db)


def test_db_of_another_prefix_is_refused(collector_factory):
    first = collector_factory()
    first.stop()
    done = run_collect("--udp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--db", first.db, "--prefix", "other.prefix")
    assert_clean_error(done, "holds counts for the prefix")


def test_second_collector_on_the_same_db_is_refused(collector):
    done = run_collect("--udp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--db", collector.db,
                       "--prefix", collector.prefix)
    assert_clean_error(done, "in use by another collector")


def _limit_file_size(limit):
    # A file size limit makes writes fail the way a full disk does (SQLite
    # sees a short write), without needing a small filesystem.
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_full_disk_at_start(tmp_path):
    done = run_collect("--udp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--db", tmp_path / "db.sqlite3",
                       preexec_fn=_limit_file_size(0))
    assert_clean_error(done, "db.sqlite3")


def test_full_disk_while_collecting_is_reported_not_silent(collector_factory):
    collector = collector_factory(preexec_fn=_limit_file_size(256 * 1024))
    p = collector.prefix
    for batch in range(20):
        collector.send(*[("%s.lib-%d-%s:1|c" % (p, batch * 200 + i, "x" * 150)).encode() for i in range(200)])
    collector.fence()
    wait_until(lambda: "retried" in collector.stderr, "the write error on stderr")
    # It keeps counting in memory and serving.
    assert collector.library("lib-0-" + "x" * 150) == 1
    rc, _, err = collector.stop()
    assert rc == 1
    assert "Traceback" not in err
    assert "counts received since the last successful write are lost" in err


def test_start_line_and_loopback_defaults(collector):
    assert collector.start_line.startswith("popcon-site collect: listening on udp 127.0.0.1:")
    assert str(collector.db) in collector.start_line and collector.prefix in collector.start_line
    help_text = popcon_site("collect", "--help").stdout
    assert "127.0.0.1:8125" in help_text and "127.0.0.1:9102" in help_text


def test_ipv6_loopback(tmp_path):
    """`[::1]:PORT` works where the machine has IPv6 loopback, and is a clean
    error where it has not."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
        have_ipv6 = True
    except OSError:
        have_ipv6 = False
    proc = subprocess.Popen(
        [sys.executable, "-m", "popcon_site", "collect", "--udp", "[::1]:0", "--http", "[::1]:0",
         "--db", str(tmp_path / "v6.sqlite3"), "--prefix", "popconv6"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=cli_environ())
    try:
        start_line = proc.stdout.readline()
        if not have_ipv6:
            proc.wait(timeout=DEADLINE)
            assert proc.returncode == 1 and "Traceback" not in proc.stderr.read()
            return
        match = re.search(r"udp \[::1\]:(\d+) and http://\[::1\]:(\d+)/metrics", start_line)
        assert match, start_line + proc.stderr.read()
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"popconv6.numpy:1|c\npopconv6_reports:1|c", ("::1", int(match.group(1))))

        def counted():
            url = "http://[::1]:%s/metrics" % match.group(2)
            with urllib.request.urlopen(url, timeout=10) as response:
                return 'python_popcon_library_used_total{library="numpy"} 1.0' in response.read().decode()

        wait_until(counted, "the IPv6 datagram")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=DEADLINE) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
