"""Defects of `popcon-site collect` and `report` found in review, each kept
fixed by a test on real processes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from support.collector_proc import CollectorProcess, run_cli, run_shell, wait_until
from support.distributions import write_egg_info
from support.processes import Prefix


def stored(db: Path, processes: int, *args) -> dict:
    """`report --db --json` once the store holds ``processes`` reports."""
    docs = []

    def flushed():
        done = run_cli("report", "--db", db, "--json", *args)
        assert done.returncode == 0, done.stderr
        docs.append(json.loads(done.stdout))
        return docs[-1]["processes"] >= processes

    wait_until(flushed, f"{processes} reports in {db}")
    return docs[-1]


# --- 1. --unused with --min-count must not name the hidden libraries -----------

def test_unused_with_min_count_gives_no_hidden_library_away(start, tmp_path):
    site = tmp_path / "site"
    for name in ("pcs-common", "pcs-rare", "pcs-never"):
        module = name.replace("-", "_")
        write_egg_info(site, name, "1.0", {f"{module}/__init__.py": ""}, [module], "3")
    python = tmp_path / "python-with-site"
    python.write_text(f"#!/bin/sh\nPYTHONPATH={site} exec {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    collector = start()
    p = collector.prefix
    collector.send(*[f"{p}.pcs-common:1|c".encode()] * 3, f"{p}.pcs-rare:1|c".encode(),
                   f"{p}.not-installed:1|c".encode(), f"{collector.denominator}:1|c".encode())
    collector.fence()
    collector.stop()
    ours = {"pcs-common", "pcs-rare", "pcs-never"}

    doc = stored(collector.db, 2, "--unused", "--python", python, "--min-count", "2")
    shown = set(doc["libraries"])
    unused = set(doc["unused"]) | set(doc["unused_without_modules"])
    assert doc["libraries"] == {"pcs-common": 3} and doc["hidden"] == 2, doc
    assert doc["unused_below"] == 2
    # Every installed library is either shown or listed: the hidden one is
    # in the list, indistinguishable from the one never counted.
    assert ours <= shown | unused and not shown & unused, doc
    assert {"pcs-rare", "pcs-never"} <= set(doc["unused"])

    table = run_cli("report", "--db", collector.db, "--unused", "--python", python, "--min-count", "2").stdout
    assert "counted fewer than 2 times or never" in table, table
    assert "  pcs-rare 1.0" in table and "  pcs-never 1.0" in table, table

    # Without a threshold nothing is hidden, and unused still means never counted.
    doc = stored(collector.db, 2, "--unused", "--python", python)
    assert "pcs-rare" in doc["libraries"] and "pcs-rare" not in doc["unused"] and "pcs-never" in doc["unused"]
    assert "unused_below" not in doc
    helptext = run_cli("report", "--help").stdout
    assert "gives no hidden library away" in " ".join(helptext.split())


# --- 2. a client resetting its /metrics connection is not worth a traceback ----

def test_metrics_clients_that_reset_are_counted_not_printed(start):
    import socket
    import struct

    collector = start()
    resets = 20
    for i in range(resets):
        client = socket.create_connection(("127.0.0.1", collector.http_port))
        client.sendall(b"GET /met" if i % 2 else b"\x16\x03\x01garbage")
        # SO_LINGER 0: close sends RST, the server's read fails with ECONNRESET.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()

    def errors():
        return collector.samples().get(("popcon_site_collector_http_errors_total", frozenset()), 0)

    wait_until(lambda: errors() >= resets, "every reset counted")
    # Still serving.
    assert collector.reports() == 0
    rc, err = collector.stop()
    assert rc == 0 and err == "", err


# --- 3. a reader without write access reads a store whose collector stopped ----

def _interpreter_for(user: dict) -> str | None:
    """A Python 3.10+ the unprivileged user may run (the test's own may sit
    in a directory only its owner can enter)."""
    import shutil
    import subprocess

    seen = set()
    for candidate in (sys.executable, shutil.which("python3"), "/usr/bin/python3", "/usr/local/bin/python3"):
        if not candidate or candidate in seen:
            continue
        seen.add(candidate)
        try:
            done = subprocess.run([candidate, "-c", "import sys, sqlite3; assert sys.version_info >= (3, 10)"],
                                  capture_output=True, **user)
        except OSError:
            continue
        if done.returncode == 0:
            return candidate
    return None


@pytest.fixture
def reader():
    """``(run keyword arguments, cleanup)`` for an unprivileged reader: a user
    made for the test when running as root, else this user."""
    import os
    import secrets
    import subprocess

    from conftest import require

    if os.geteuid() != 0:
        yield {}
        return
    name = "pcsro" + secrets.token_hex(4)
    done = subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/false", "--no-user-group",
                           "--gid", "nogroup", name], capture_output=True, text=True)
    if done.returncode != 0:
        done = subprocess.run(["useradd", "-M", "-N", "-s", "/bin/false", name], capture_output=True, text=True)
    if done.returncode != 0:
        require(f"cannot add an unprivileged user: {done.stderr.strip()}")
    try:
        import pwd

        entry = pwd.getpwnam(name)
        yield {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    finally:
        subprocess.run(["userdel", name], capture_output=True)


def test_report_reads_a_cleanly_stopped_store_without_write_access(start, reader):
    import os
    import shutil
    import subprocess
    import tempfile

    from conftest import require
    from support.collector_proc import REPO, cli_environ

    python = _interpreter_for(reader)
    if python is None:
        require("no Python 3.10+ that an unprivileged user may run")
    # A directory the reader may enter and read, but not write.
    base = Path(tempfile.mkdtemp(prefix="popcon-ro-"))
    try:
        base.chmod(0o755)
        collector = start(db=base / "counts.sqlite3")
        p = collector.prefix
        collector.send(f"{p}.numpy:1|c".encode(), f"{collector.denominator}:1|c".encode())
        collector.fence()
        rc, err = collector.stop()
        assert rc == 0, err
        # A clean stop checkpoints and removes the WAL and shared-memory files.
        assert not (base / "counts.sqlite3-wal").exists() and not (base / "counts.sqlite3-shm").exists()
        os.chmod(base / "counts.sqlite3", 0o444)
        if not reader:
            base.chmod(0o555)
        env = cli_environ()
        env["PYTHONPATH"] = str(REPO)
        done = subprocess.run([python, "-m", "popcon_site", "report", "--db", str(base / "counts.sqlite3"),
                               "--json"], capture_output=True, text=True, env=env, cwd="/", timeout=60,
                              stdin=subprocess.DEVNULL, **reader)
        assert done.returncode == 0, done.stderr
        doc = json.loads(done.stdout)
        assert doc["processes"] == 2 and doc["libraries"] == {"numpy": 1}, doc  # with the fence
        # Reading created nothing beside the store.
        assert sorted(os.listdir(base)) == ["counts.sqlite3", "counts.sqlite3.lock"]
    finally:
        base.chmod(0o755)
        shutil.rmtree(base)


# --- 4. a collector that refuses to start leaves nothing behind ---------------

def test_a_collector_that_cannot_start_creates_nothing(tmp_path):
    import os
    import socket

    def listing():
        return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))

    a_dir = tmp_path / "a-dir"
    a_dir.mkdir()
    before = listing()
    done = run_cli("collect", "--udp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--db", a_dir)
    assert done.returncode == 1 and "is a directory" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert listing() == before

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy_udp, socket.socket() as busy_tcp:
        busy_udp.bind(("127.0.0.1", 0))
        busy_tcp.bind(("127.0.0.1", 0))
        busy_tcp.listen()
        udp_port, tcp_port = busy_udp.getsockname()[1], busy_tcp.getsockname()[1]
        for args in (("--udp", f"127.0.0.1:{udp_port}", "--http", "127.0.0.1:0"),
                     ("--udp", "127.0.0.1:0", "--http", f"127.0.0.1:{tcp_port}")):
            done = run_cli("collect", *args, "--db", tmp_path / "new" / "dirs" / "counts.sqlite3")
            assert done.returncode == 1 and "already in use" in done.stderr, done.stderr
            assert listing() == before, done.args

    # A store that fails after it was created (a file size limit of 0: the
    # first write fails) is removed with its lock and the directories made.
    import resource
    import subprocess

    from support.collector_proc import cli_environ

    def no_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))

    done = subprocess.run([sys.executable, "-m", "popcon_site", "collect", "--udp", "127.0.0.1:0", "--http",
                           "127.0.0.1:0", "--db", str(tmp_path / "made" / "counts.sqlite3")],
                          capture_output=True, text=True, env=cli_environ(), stdin=subprocess.DEVNULL,
                          preexec_fn=no_file_size, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert listing() == before

    # An existing store of another prefix is refused and kept, lock and all.
    store = tmp_path / "kept.sqlite3"
    first = CollectorProcess(store, Prefix.unique().name)
    assert first.stop()[0] == 0
    kept = listing()
    done = run_cli("collect", "--udp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--db", store,
                   "--prefix", "other.prefix")
    assert done.returncode == 1 and "holds counts for the prefix" in done.stderr, done.stderr
    assert listing() == kept and os.path.getsize(store) > 0


# --- 5. --flush-interval has a floor as well as a ceiling -----------------------

@pytest.mark.parametrize("value", ["1e-9", "0", "0.049", "1.5", "nan", "inf", "-1", "soon"])
def test_flush_interval_out_of_bounds_is_refused(tmp_path, value):
    done = run_cli("collect", "--udp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--db", tmp_path / "db",
                   f"--flush-interval={value}")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert f"{value!r} is not a number of seconds from 0.05 to 1" in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", ["0.05", "1"])
def test_flush_interval_bounds_are_accepted(start, value):
    collector = start("--flush-interval", value)
    assert collector.stop()[0] == 0


# --- 6. closed or full standard output, early signals, SIGHUP --------------------

COMMANDS = {
    "collect": "collect --udp 127.0.0.1:0 --http 127.0.0.1:0 --db store/counts.sqlite3",
    "report": "report --db store/counts.sqlite3",
    "status": "status",
    "mapping": "mapping",
}


@pytest.fixture
def store_dir(tmp_path):
    collector = CollectorProcess(tmp_path / "store" / "counts.sqlite3", "python_popcon.library_used")
    collector.send(b"python_popcon.library_used.numpy:1|c")
    collector.fence()
    assert collector.stop()[0] == 0
    return tmp_path / "store"


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("redirect, message", [
    (">&-", "standard output is closed"),
    (">/dev/full", "cannot write to standard output: No space left on device"),
])
def test_unwritable_stdout_is_one_line_not_a_traceback(tmp_path, store_dir, command, redirect, message):
    import os

    from conftest import require

    if redirect == ">/dev/full" and not os.path.exists("/dev/full"):
        require("no /dev/full on this system")
    before = sorted(os.listdir(store_dir))
    done = run_shell(f'"$PYTHON" -m popcon_site {COMMANDS[command]} {redirect}', tmp_path)
    assert done.returncode == 1, done
    assert done.stderr.startswith(f"popcon-site {command}: error: {message}"), done.stderr
    assert done.stderr.count("\n") == 1 and "Exception" not in done.stderr, done.stderr
    if command == "collect":
        # It created nothing, or removed what it had.
        assert sorted(os.listdir(store_dir)) == before
    # Without a stderr either, still no crash: the exit code says it.
    done = run_shell(f'"$PYTHON" -m popcon_site {COMMANDS[command]} {redirect} 2>&-', tmp_path)
    assert done.returncode == 1, done


def test_sighup_stops_collect_cleanly_with_a_last_flush(start):
    import signal

    from popcon_site.collector.store import read_counts

    collector = start()
    p = collector.prefix
    collector.send(*[f"{p}.numpy:1|c".encode()] * 3)
    collector.fence()
    rc, err = collector.stop(signal.SIGHUP)
    assert rc == 0 and "Traceback" not in err, err
    _, snap = read_counts(str(collector.db))
    assert snap.libraries == {("numpy", ""): 3} and snap.reports == 1


def _mapped(pid: int, fragment: str) -> bool:
    try:
        return fragment in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.parametrize("milestone", ["spawned", "interpreter", "sqlite3", "socket bound"])
def test_a_signal_during_start_up_is_never_a_traceback(tmp_path, milestone):
    """SIGINT at successive points of collect's start-up, each found by
    watching the process itself, never by waiting a fixed time."""
    import signal
    import subprocess

    from support.collector_proc import cli_environ, socket_addresses

    proc = subprocess.Popen([sys.executable, "-m", "popcon_site", "collect", "--udp", "127.0.0.1:0",
                             "--http", "127.0.0.1:0", "--db", str(tmp_path / "counts.sqlite3")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            env=cli_environ())
    try:
        if milestone == "interpreter":
            wait_until(lambda: proc.poll() is not None or _mapped(proc.pid, "libpython")
                       or _mapped(proc.pid, "_struct") or _mapped(proc.pid, "encodings"), "the interpreter")
        elif milestone == "sqlite3":
            # The store's module: imported after collect set its handlers,
            # before the ports are bound.
            give_up = __import__("time").monotonic() + 60
            while proc.poll() is None and not _mapped(proc.pid, "_sqlite3"):
                assert __import__("time").monotonic() < give_up, "sqlite3 never loaded"
        elif milestone == "socket bound":
            wait_until(lambda: proc.poll() is not None or socket_addresses(proc.pid), "a bound socket")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    # Killed before Python set its handler, an interruption (130), or a
    # clean stop (0) once collect's own handlers were in place.
    assert proc.returncode in (0, 130, -signal.SIGINT), (proc.returncode, err)
    if proc.returncode == 130:
        assert err == "popcon-site: interrupted\n", err
    if milestone in ("sqlite3", "socket bound"):
        assert proc.returncode == 0, (proc.returncode, err)


# --- 8. messages that say what is wrong ----------------------------------------

def test_report_errors_say_what_is_wrong(store_dir, tmp_path):
    db = store_dir / "counts.sqlite3"
    cases = [
        (("report", "--db", db, "--unused", "--python", "/usr/bin/env"), 1,
         "popcon-site report: error: /usr/bin/env -c ... failed: "),
        (("report", "--db", tmp_path), 1, f"{tmp_path} is a directory, not a store file"),
        (("report", "--prometheus", "http://[::1"), 1, "'http://[::1' is not a valid URL"),
        (("report", "--prometheus", "http://127.0.0.1:port"), 1, "is not a valid URL"),
        (("report", "--prometheus", "prometheus:9090"), 1, "is not a valid URL"),
        (("report", "--db", ""), 2, "argument --db: the path is empty"),
        (("collect", "--udp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--db", ""), 2,
         "argument --db: the path is empty"),
    ]
    for args, rc, message in cases:
        done = run_cli(*args, cwd=tmp_path)
        assert done.returncode == rc and message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr, (args, done.stderr)
        if rc == 1:
            # One line, and no Python list of lines in it.
            assert done.stderr.count("\n") == 1 and "['" not in done.stderr, (args, done.stderr)
    # The empty path did not fall back to the default store.
    assert list(tmp_path.iterdir()) == [store_dir]
