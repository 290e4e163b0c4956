"""`popcon-site collect` as a real process, for hardening tests.

It runs from the checkout on random loopback ports.  Everything waits by
polling the collector's own /metrics with a deadline, never for a fixed time.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from .processes import clean_environ

REPO = Path(__file__).resolve().parents[2]
DEADLINE = 60.0
START_LINE = re.compile(r"listening on udp 127\.0\.0\.1:(\d+) and http://127\.0\.0\.1:(\d+)/metrics")


def cli_environ() -> dict[str, str]:
    env = clean_environ()
    env["PYTHONPATH"] = str(REPO)
    env["PYTHON_POPCONTEST_DISABLE"] = "1"
    return env


def run_shell(command: str, cwd) -> subprocess.CompletedProcess:
    """``command`` in bash (with pipefail) and the CLI's environment; ``$PYTHON`` is this interpreter."""
    env = dict(cli_environ(), PYTHON=sys.executable)
    return subprocess.run(["bash", "-c", "set -o pipefail; " + command], capture_output=True, text=True, env=env,
                          cwd=cwd, stdin=subprocess.DEVNULL, timeout=DEADLINE)


def run_cli(*args, timeout: float = DEADLINE, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "popcon_site", *map(str, args)], capture_output=True, text=True,
                          env=cli_environ(), stdin=subprocess.DEVNULL, timeout=timeout, **kwargs)


def wait_until(predicate, what: str, deadline: float = DEADLINE):
    give_up = time.monotonic() + deadline
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > give_up:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


class CollectorProcess:
    def __init__(self, db: Path, prefix: str, *extra: str, preexec_fn=None) -> None:
        self.db, self.prefix = db, prefix
        self.denominator = prefix.rsplit(".", 1)[0] + ".reports"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "popcon_site", "collect", "--udp", "127.0.0.1:0", "--http", "127.0.0.1:0",
             "--db", str(db), "--prefix", prefix, *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
            env=cli_environ(), preexec_fn=preexec_fn)
        self.start_line = self.proc.stdout.readline()
        match = START_LINE.search(self.start_line)
        if not match:
            self.proc.kill()
            _, err = self.proc.communicate()
            raise AssertionError(f"collector did not start: {self.start_line!r}\n{err}")
        self.udp_port, self.http_port = int(match.group(1)), int(match.group(2))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._err: list[str] = []
        self._reader = threading.Thread(target=lambda: self._err.extend(self.proc.stderr), daemon=True)
        self._reader.start()

    @property
    def stderr(self) -> str:
        return "".join(self._err)

    def send(self, *datagrams: bytes) -> int:
        """Send datagrams; returns how many the kernel took (oversized ones raise EMSGSIZE)."""
        sent = 0
        for data in datagrams:
            try:
                self.sock.sendto(data, ("127.0.0.1", self.udp_port))
                sent += 1
            except OSError:
                pass
        return sent

    def samples(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=30) as response:
            text = response.read().decode()
        found = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                found[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return found

    def lines(self, samples: dict | None = None) -> dict[str, float]:
        samples = samples or self.samples()
        return {dict(labels)["outcome"]: value for (name, labels), value in samples.items()
                if name == "popcon_site_collector_lines_total"}

    def libraries(self, samples: dict | None = None) -> dict[tuple[str, str], float]:
        samples = samples or self.samples()
        return {(dict(labels)["library"], dict(labels).get("version", "")): value
                for (name, labels), value in samples.items() if name == "python_popcon_library_used_total"}

    def reports(self) -> float:
        # Read with a regular expression: the fence runs this thousands of
        # times against pages of thousands of series.
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=30) as response:
            text = response.read().decode()
        match = re.search(r"^python_popcon_reports_total (\S+)$", text, re.M)
        return float(match.group(1)) if match else 0.0

    def fence(self) -> None:
        """Wait until everything sent so far has been processed: loopback
        datagrams from one socket arrive in order, so a counted denominator
        sent last proves the rest were read."""
        before = self.reports()
        self.sock.sendto(f"{self.denominator}:1|c".encode(), ("127.0.0.1", self.udp_port))
        wait_until(lambda: self.reports() >= before + 1, "the fence line")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def stop(self, sig=signal.SIGTERM) -> tuple[int, str]:
        self.proc.send_signal(sig)
        self.proc.wait(timeout=DEADLINE)
        self._reader.join(timeout=DEADLINE)
        self.sock.close()
        return self.proc.returncode, self.stderr

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.sock.close()


def socket_addresses(pid: int) -> list[tuple[str, str]]:
    """(protocol, local address) of every socket the process has open, from /proc."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for proto in ("udp", "udp6", "tcp", "tcp6"):
        try:
            # The process's own view: it may live in another network namespace.
            rows = Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[9] in inodes:
                found.append((proto, _address(fields[1])))
    return found


def _address(hex_address: str) -> str:
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        return f"{socket.inet_ntop(socket.AF_INET, raw[::-1])}:{int(port, 16)}"
    # /proc stores IPv6 addresses as four host-order 32-bit words.
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return f"[{socket.inet_ntop(socket.AF_INET6, words)}]:{int(port, 16)}"


class SmallFilesystem:
    """A tmpfs of a few hundred KiB, mounted for one test (root only)."""

    def __init__(self, path: Path, size: str) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise PermissionError(done.stderr.strip() or "mount failed")

    def remount(self, options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(self.path)], check=True, capture_output=True)

    def fill(self, name: str = "filler") -> Path:
        """Take every free byte, as another program filling the disk would."""
        filler = self.path / name
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for chunk in (b"\0" * 4096, b"\0"):
                try:
                    while True:
                        os.write(fd, chunk)
                except OSError:
                    pass
        finally:
            os.close(fd)
        return filler

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)
