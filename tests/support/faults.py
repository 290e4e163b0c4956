"""Fault-matrix helpers: run one case with popcon-site and without, and compare.

Every fault case runs the same command twice, at the same time: once with
popcon-site active and pointed at a test listener, once with
PYTHON_POPCONTEST_DISABLE=1.  The host process must not be able to tell the
difference: same exit code, byte-identical stdout and stderr, and no hang.
The datagrams received are what the active run (and its children) sent.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .processes import Prefix, case_environ
from .udp import UdpListener

# A case that has not finished by then hangs, with or without popcon-site.
# It bounds a hang; it is not a performance limit.
PROMPT_SECONDS = 30


@dataclass
class Outcome:
    rc: int | None
    stdout: bytes
    stderr: bytes
    hung: bool = False

    def __str__(self) -> str:
        return (f"rc={self.rc} hung={self.hung}\n--- stdout ---\n{self.stdout.decode('utf-8', 'replace')}"
                f"\n--- stderr ---\n{self.stderr.decode('utf-8', 'replace')}")


@dataclass
class Twin:
    """The same case run with popcon-site active and opted out."""

    active: Outcome
    quiet: Outcome
    datagrams: list[bytes] = field(default_factory=list)

    @property
    def lines(self) -> list[str]:
        return sorted(line for data in self.datagrams for line in data.decode("utf-8", "replace").split("\n"))

    def __str__(self) -> str:
        return (f"=== with popcon-site ===\n{self.active}\n=== opted out ===\n{self.quiet}\n"
                f"=== datagrams ===\n{self.datagrams!r}")

    def assert_unnoticed(self) -> None:
        """The host process behaved exactly as it does without popcon-site.

        Object addresses (``<function h at 0x7f...>``) differ between any two
        runs of the same program (ASLR), so they are the one thing masked.
        """
        assert not self.quiet.hung, f"the case hangs even without popcon-site\n{self}"
        assert not self.active.hung, f"popcon-site made the process hang\n{self}"
        assert self.active.rc == self.quiet.rc, f"exit code changed\n{self}"
        assert self.active.stdout == self.quiet.stdout, f"stdout changed\n{self}"
        assert _mask(self.active.stderr) == _mask(self.quiet.stderr), f"stderr changed\n{self}"

    def assert_reports(self, *expected: bytes) -> None:
        """Unnoticed, and exactly these datagrams were received, in any order."""
        self.assert_unnoticed()
        assert sorted(self.datagrams) == sorted(expected), f"datagrams differ\n{self}"


_ADDRESS = re.compile(rb" at 0x[0-9a-f]+>")


def _mask(output: bytes) -> bytes:
    return _ADDRESS.sub(b" at 0x...>", output)


def start(cmd: list, env: dict[str, str], cwd=None) -> subprocess.Popen:
    # Its own session, so that a hung case and all its children can be killed.
    return subprocess.Popen([str(part) for part in cmd], env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def finish(proc: subprocess.Popen, deadline: float) -> Outcome:
    try:
        out, err = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
        return Outcome(proc.returncode, out, err)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        out, err = proc.communicate()
        return Outcome(proc.returncode, out, err, hung=True)


def twin(cmd: list, *, listener: UdpListener | None, prefix: Prefix | None, env: dict | None = None,
         cwd=None, expect: int = 0, settle: float = 0.1, timeout: float = PROMPT_SECONDS) -> Twin:
    """Run ``cmd`` with popcon-site and opted out, concurrently, and collect the datagrams.

    ``cmd`` is the full command (interpreter first, or a wrapper such as
    setpriv).  ``expect`` is how many datagrams to wait for.  Both processes
    have exited when the datagrams are collected, and a datagram sent over
    loopback is queued at the listener before sendto returns, so a short
    ``settle`` suffices unless some process outlives the case.
    """
    active_env = case_environ(listener, prefix, env)
    quiet_env = dict(active_env, PYTHON_POPCONTEST_DISABLE="1")
    deadline = time.monotonic() + timeout
    active, quiet = start(cmd, active_env, cwd), start(cmd, quiet_env, cwd)
    result = Twin(finish(active, deadline), finish(quiet, deadline))
    if listener is not None:
        result.datagrams = listener.collect(expect=expect, settle=settle)
    return result


def twins(cmds: list[list], *, listener: UdpListener, prefix: Prefix, env: dict | None = None, cwd=None,
          expect: int = 0, timeout: float = PROMPT_SECONDS) -> tuple[list[Twin], list[bytes]]:
    """Run many cases at once (each with and without popcon-site): all active and
    quiet processes are started before any is waited for."""
    active_env = case_environ(listener, prefix, env)
    quiet_env = dict(active_env, PYTHON_POPCONTEST_DISABLE="1")
    deadline = time.monotonic() + timeout
    procs = [(start(cmd, active_env, cwd), start(cmd, quiet_env, cwd)) for cmd in cmds]
    results = [Twin(finish(a, deadline), finish(q, deadline)) for a, q in procs]
    return results, listener.collect(expect=expect, settle=0.1)


class Udp6Listener(UdpListener):
    """A UdpListener on ::1."""

    def __init__(self) -> None:  # noqa: D107 - deliberately not calling the IPv4 constructor
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.sock.bind(("::1", 0))
        self.host, self.port = self.sock.getsockname()[:2]


def ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


# --- hand-written distributions ----------------------------------------------

def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def write_dist_info(directory: Path, name: str, version: str, files: dict[str, str], *,
                    metadata: bytes | None = None, record: str | bool = True,
                    dist_info_name: str | None = None) -> Path:
    """Install a distribution into ``directory`` by hand, as an installer would.

    ``record`` True writes a correct RECORD, False writes none, a string is
    written as RECORD verbatim.  ``metadata`` replaces METADATA.
    """
    info = directory / (dist_info_name or f"{name.replace('-', '_')}-{version}.dist-info")
    info.mkdir(parents=True)
    for path, text in files.items():
        target = directory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    meta = metadata if metadata is not None else f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    (info / "METADATA").write_bytes(meta)
    (info / "INSTALLER").write_text("pip\n")
    if record is True:
        lines = [f"{path},{_record_hash(text.encode())},{len(text.encode())}" for path, text in files.items()]
        lines += [f"{info.name}/METADATA,,", f"{info.name}/INSTALLER,,", f"{info.name}/RECORD,,"]
        (info / "RECORD").write_text("\n".join(lines) + "\n")
    elif isinstance(record, str):
        (info / "RECORD").write_text(record)
    return info


# --- a private network namespace ------------------------------------------------

# Runs "$@" in a new network and mount namespace that has only a loopback
# interface, so nothing can leave the machine whatever the case sends.
# FAULT_ROUTE: an extra `ip route` in it; FAULT_RESOLV: a resolv.conf bound
# over the real one; FAULT_SILENT_DNS: a Python that binds 127.0.0.1:53 and
# never answers, as a resolver that has stopped responding does.
_NETNS_SCRIPT = r"""
ip link set lo up || exit 97
if [ -n "$FAULT_ROUTE" ]; then ip route add $FAULT_ROUTE || exit 97; fi
if [ -n "$FAULT_RESOLV" ]; then mount --bind "$FAULT_RESOLV" /etc/resolv.conf || exit 97; fi
if [ -n "$FAULT_SILENT_DNS" ]; then
    "$FAULT_SILENT_DNS" -S -E -c '
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
sys.stdout.write("ready\n"); sys.stdout.flush()
time.sleep(3600)' >"$FAULT_DNS_READY" 2>/dev/null &
    dns=$!
    while ! grep -q ready "$FAULT_DNS_READY" 2>/dev/null; do sleep 0.05; done
fi
"$@"
rc=$?
if [ -n "$FAULT_SILENT_DNS" ]; then kill "$dns"; fi
exit $rc
"""


def netns_available() -> str | None:
    """None when private network namespaces work here, else the reason they do not."""
    if os.geteuid() != 0:
        return "a private network namespace needs root (unshare -n -m)"
    try:
        proc = subprocess.run(["unshare", "-n", "-m", "sh", "-c", "ip link set lo up && ip route show table local"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unshare failed: {exc}"
    if proc.returncode != 0:
        return f"unshare -n -m failed: {proc.stderr.strip()}"
    return None


def in_netns(cmd: list) -> list:
    """``cmd`` wrapped to run in a private loopback-only network namespace (see _NETNS_SCRIPT)."""
    return ["unshare", "-n", "-m", "sh", "-c", _NETNS_SCRIPT, "netns", *map(str, cmd)]


# --- an unprivileged user -----------------------------------------------------

FAULT_USER = "popcon-fault"


def unprivileged_user() -> tuple[int, int] | str:
    """(uid, gid) of a system user without a home, created if needed; or why there is none."""
    import pwd

    try:
        entry = pwd.getpwnam(FAULT_USER)
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        pass
    if os.geteuid() != 0:
        return "running as an unprivileged user needs root to create one (useradd)"
    proc = subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                           "--shell", "/usr/sbin/nologin", FAULT_USER], capture_output=True, text=True)
    if proc.returncode not in (0, 9):  # 9: created meanwhile by another worker
        return f"useradd failed: {proc.stderr.strip()}"
    entry = pwd.getpwnam(FAULT_USER)
    return entry.pw_uid, entry.pw_gid


def as_user(uid: int, gid: int, cmd: list) -> list:
    """``cmd`` run as uid:gid with no supplementary groups and no write privilege.

    The user keeps CAP_DAC_READ_SEARCH only, so that it can read interpreters
    installed under a home directory closed to others (pyenv under /root);
    every write still needs a real permission.
    """
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
            "--inh-caps=-all,+dac_read_search", "--ambient-caps=-all,+dac_read_search", *map(str, cmd)]


def closed_port(family: int = socket.AF_INET) -> int:
    """A UDP port on loopback where nothing listens (bound, then released)."""
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        return sock.getsockname()[1]
