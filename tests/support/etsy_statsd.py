"""The reference Etsy statsd daemon (npm ``statsd@0.9.0``), run for real.

It is installed from the npm registry into a cache directory of the
checkout, started on random loopback ports with a generated JS config, and
read back through its management port: ``counters`` answers with Node's
``util.inspect`` of an object (not JSON), followed by a line ``END``.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

VERSION = "0.9.0"


class DaemonError(RuntimeError):
    pass


def install(cache_dir: Path) -> Path:
    """Install statsd@VERSION under ``cache_dir`` (idempotent) and return its package directory."""
    package = cache_dir / "node_modules" / "statsd"
    manifest = package / "package.json"
    if manifest.exists() and json.loads(manifest.read_text()).get("version") == VERSION:
        return package
    npm = shutil.which("npm")
    if npm is None:
        raise DaemonError("npm is not installed")
    cache_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        # The optional dependencies are syslog and Windows-service helpers
        # that compile native code; the console backend needs none of them.
        [npm, "install", "--prefix", str(cache_dir), "--no-audit", "--no-fund", "--omit=optional",
         "--loglevel=error", f"statsd@{VERSION}"],
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0 or not manifest.exists():
        raise DaemonError(f"npm install statsd@{VERSION} failed:\n{proc.stdout}\n{proc.stderr}")
    return package


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_KEY = r"""'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"|([A-Za-z_$][\w$]*)"""
_ENTRY = re.compile(r"(?:" + _KEY + r")\s*:\s*(-?(?:\d+(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?|NaN|-?Infinity)")


def parse_inspect_counters(text: str) -> dict[str, float]:
    """Parse Node's ``util.inspect`` of a flat ``{name: number}`` object.

    Keys are quoted only when they are not identifiers, with single quotes
    unless the key holds one. Long objects wrap over several lines.

    >>> parse_inspect_counters("{ 'a.b-c': 2, plain: 1 }")
    {'a.b-c': 2.0, 'plain': 1.0}
    """
    body = text.strip()
    if not (body.startswith("{") and body.endswith("}")):
        raise ValueError(f"not an inspected object: {text!r}")
    counters: dict[str, float] = {}
    for match in _ENTRY.finditer(body):
        single, double, bare, value = match.groups()
        key = single if single is not None else double if double is not None else bare
        key = re.sub(r"\\(.)", r"\1", key)
        counters[key] = float(value)
    return counters


class EtsyStatsd:
    def __init__(self, package: Path, workdir: Path) -> None:
        self.package = package
        self.workdir = workdir
        self.udp_port = _free_port(socket.SOCK_DGRAM)
        self.mgmt_port = _free_port(socket.SOCK_STREAM)
        self.proc: subprocess.Popen | None = None
        self.log = workdir / "statsd.log"

    def start(self, timeout: float = 30) -> "EtsyStatsd":
        config = self.workdir / "config.js"
        config.write_text(
            "{\n"
            f'  port: {self.udp_port},\n  address: "127.0.0.1",\n'
            f'  mgmt_port: {self.mgmt_port},\n  mgmt_address: "127.0.0.1",\n'
            "  flushInterval: 3600000,\n"
            '  backends: ["./backends/console"]\n'
            "}\n"
        )
        node = shutil.which("node") or shutil.which("nodejs")
        if node is None:
            raise DaemonError("node is not installed")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([node, "stats.js", str(config)], cwd=self.package,
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            if self.proc.poll() is not None:
                raise DaemonError(f"statsd exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if "health: up" in self.command("health", until="\n"):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise DaemonError(f"statsd did not answer on its management port:\n{self.log.read_text()}")

    def command(self, cmd: str, until: str = "\nEND\n", timeout: float = 10) -> str:
        """Send one management command and read its answer up to ``until``."""
        with socket.create_connection(("127.0.0.1", self.mgmt_port), timeout=timeout) as conn:
            conn.sendall(cmd.encode("ascii") + b"\n")
            data = b""
            while until.encode() not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
        return data.decode("ascii", "replace")

    def counters(self) -> dict[str, float]:
        answer = self.command("counters")
        body, sep, _ = answer.partition("\nEND\n")
        if not sep:
            raise DaemonError(f"no END line in answer to 'counters': {answer!r}")
        return parse_inspect_counters(body)

    def wait_for_counters(self, expected: dict[str, float], deadline: float = 15) -> dict[str, float]:
        """Poll until every expected counter has at least its value, then return all counters.

        The daemon handles datagrams asynchronously, so a process having
        exited does not mean its counters are visible yet.
        """
        give_up = time.monotonic() + deadline
        while True:
            current = self.counters()
            if all(current.get(key, 0) >= value for key, value in expected.items()):
                # Give a datagram that should not exist the same chance to show up.
                time.sleep(0.3)
                return self.counters()
            if time.monotonic() >= give_up:
                return current
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
