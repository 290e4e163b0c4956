"""Plumbing shared by the benchmark rows.

Interpreter discovery, the throwaway venvs the rows measure, the measured
environment, the UDP listener, and the two measuring instruments:

* ``instructions()``: the instruction count of one process under
  ``valgrind --tool=callgrind``; deterministic to about 0.1 %, so it can
  resolve deltas far below the wall-time noise of a shared machine.
* ``interleaved_wall()``: wall-time medians of processes run A, B, A, B, ...
  in one loop, so that drift in machine load hits every configuration alike.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERSIONS = ("3.10", "3.11", "3.12", "3.13")


class Skip(Exception):
    """A row cannot run on this machine; the message says why."""


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def run(cmd, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("check", True)
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    try:
        return subprocess.run([str(c) for c in cmd], **kwargs)
    except subprocess.CalledProcessError as error:
        raise RuntimeError(
            f"command failed ({error.returncode}): {' '.join(map(str, cmd))}\n"
            f"{error.stdout}\n{error.stderr}"
        ) from None


# --------------------------------------------------------------------------
# interpreters


@dataclass(frozen=True)
class Interpreter:
    version: str  # "3.11"
    full_version: str  # "3.11.7"
    executable: str

    @property
    def label(self) -> str:
        return f"py{self.full_version}"


def discover_interpreters(wanted=VERSIONS) -> list[Interpreter]:
    """One runnable interpreter per wanted minor version: pyenv's, else PATH's.

    Every candidate is run once, because a pyenv shim can be on PATH and still
    refuse to run its version.
    """
    candidates: list[str] = []
    try:
        pyenv_root = run(["pyenv", "root"]).stdout.strip()
    except (OSError, RuntimeError):
        pyenv_root = ""
    for version in wanted:
        if pyenv_root:
            candidates += sorted(glob.glob(f"{pyenv_root}/versions/{version}*/bin/python{version}"))
        found = shutil.which(f"python{version}")
        if found:
            candidates.append(found)
    probe = "import sys, venv; print('%d.%d' % sys.version_info[:2], '%d.%d.%d' % sys.version_info[:3], sys.executable)"
    chosen: dict[str, Interpreter] = {}
    for candidate in candidates:
        try:
            out = run([candidate, "-I", "-c", probe], timeout=30).stdout.split()
        except (OSError, RuntimeError, subprocess.TimeoutExpired):
            continue
        if len(out) == 3 and out[0] in wanted and out[0] not in chosen:
            chosen[out[0]] = Interpreter(out[0], out[1], out[2])
    return [chosen[v] for v in wanted if v in chosen]


# --------------------------------------------------------------------------
# venvs and wheels


def build_wheel(base: Interpreter, out_dir: Path, source: Path = ROOT) -> Path:
    """Build popcon-site's wheel from the checkout, as a user's pip would."""
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    run([base.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", out_dir, source],
        env=clean_tool_env())
    wheels = sorted(out_dir.glob("popcon_site-*.whl"))
    if not wheels:
        raise RuntimeError("pip wheel produced no popcon_site wheel")
    return wheels[0]


def file_digest(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]


def clean_tool_env() -> dict[str, str]:
    """Environment for pip and venv: no popcon-site settings leak into it."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PYTHON_POPCONTEST_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3.*/site-packages"))
    if not found:
        raise RuntimeError(f"no site-packages in {venv}")
    return found[0]


def make_venv(interp: Interpreter, venv: Path, key: str, setup) -> Path:
    """Create ``venv`` (without pip) unless one made with the same key exists.

    ``setup(venv)`` fills it. Both compared venvs of a row are made the same
    way, so that they differ only in what the row is about.
    """
    stamp = venv / ".bench-key"
    if stamp.exists() and stamp.read_text() == key and venv_python(venv).exists():
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    run([interp.executable, "-m", "venv", "--without-pip", venv], env=clean_tool_env())
    setup(venv)
    stamp.write_text(key)
    return venv


def pip_install(interp: Interpreter, venv: Path, *requirements, no_deps=False, find_links=None) -> None:
    """Install into a pip-less venv with the base interpreter's pip (``--python``)."""
    cmd = [interp.executable, "-m", "pip", "--python", venv_python(venv), "install", "--quiet"]
    if no_deps:
        cmd.append("--no-deps")
    if find_links:
        cmd += ["--find-links", find_links]
    run(cmd + list(requirements), env=clean_tool_env())


def compile_tree(python: Path, path: Path) -> None:
    """Write .pyc files; PYTHONDONTWRITEBYTECODE may be set for everything else."""
    run([python, "-m", "compileall", "-q", "-j", "0", path], env=clean_tool_env())


# --------------------------------------------------------------------------
# the measured environment and the listener


class Listener:
    """A UDP statsd sink on a random 127.0.0.1 port, counting what arrives."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.prefix = f"bench_{uuid.uuid4().hex[:10]}"
        self.datagrams = 0
        self.last: list[bytes] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            with self._lock:
                self.datagrams += 1
                self.last.append(data)
                del self.last[:-64]

    def drain(self) -> list[bytes]:
        with self._lock:
            got, self.last = self.last, []
            return got

    def close(self) -> None:
        self.sock.close()


def measured_env(listener: Listener | None, home: Path, **extra: str) -> dict[str, str]:
    """The environment of every measured process.

    No PYTHON_POPCONTEST_* setting leaks in from outside; bytecode may be
    written (so the measured processes run from .pyc files, as in real use);
    the hash seed is fixed so instruction counts repeat; HOME and the XDG
    cache point into the bench work dir so no per-user cache is shared with
    anything else.
    """
    drop = ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME",
            "PYTHONUSERBASE", "PYTHONINSPECT", "PYTHONPROFILEIMPORTTIME", "PYTHONWARNINGS",
            "VIRTUAL_ENV", "PYTHONTRACEMALLOC", "PYTHONDEVMODE", "PYTHONSAFEPATH")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PYTHON_POPCONTEST_") and k not in drop}
    env["PYTHONHASHSEED"] = "0"
    env["HOME"] = str(home)
    env["XDG_CACHE_HOME"] = str(home / ".cache")
    env["TMPDIR"] = str(home / "tmp")
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    if listener is not None:
        env["PYTHON_POPCONTEST_STATSD_HOST"] = "127.0.0.1"
        env["PYTHON_POPCONTEST_STATSD_PORT"] = str(listener.port)
        env["PYTHON_POPCONTEST_STATSD_PREFIX"] = f"{listener.prefix}.library_used"
    env.update(extra)
    return env


def clear_index_caches(venv: Path, home: Path) -> None:
    """Delete every popcon-site index cache a measured process could use:
    the environment's, the per-user one, and the per-uid one under TMPDIR."""
    for path in [venv / "var" / "cache" / "popcon-site", home / ".cache" / "popcon-site",
                 *(home / "tmp").glob("popcon-site*")]:
        shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------
# instruments


@dataclass
class Config:
    """One measured process: its argv, environment, and an optional hook run
    before each run (outside the timed region), e.g. to delete a cache."""

    name: str
    argv: list[str]
    env: dict[str, str]
    before: object = None
    cwd: str | None = None
    wall: list[float] = field(default_factory=list)
    instr: int | None = None

    @property
    def median_ms(self) -> float | None:
        return statistics.median(self.wall) * 1e3 if self.wall else None


def have_valgrind() -> bool:
    return shutil.which("valgrind") is not None


def instructions(config: Config, repeat: int = 1, out_file: str = "/dev/null") -> int:
    """Median "Collected : N" of ``repeat`` callgrind runs of ``config``."""
    counts = []
    for _ in range(repeat):
        if config.before:
            config.before()
        proc = run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}", *config.argv],
                   env=config.env, cwd=config.cwd, check=False)
        found = re.search(r"Collected\s*:\s*(\d+)", proc.stderr)
        if proc.returncode != 0 or not found:
            raise RuntimeError(f"callgrind run of {config.name} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
        counts.append(int(found.group(1)))
    config.instr = int(statistics.median(counts))
    return config.instr


def _spawn_timed(config: Config, devnull: int) -> float:
    if config.before:
        config.before()
    cwd = config.cwd
    actions = [(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1),
               (os.POSIX_SPAWN_DUP2, devnull, 2)]
    if cwd is not None:
        raise RuntimeError("cwd not supported for timed runs")
    start = time.perf_counter()
    pid = os.posix_spawn(config.argv[0], config.argv, config.env, file_actions=actions)
    _, status = os.waitpid(pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{config.name} exited with {os.waitstatus_to_exitcode(status)}")
    return elapsed


def interleaved_wall(configs: list[Config], rounds: int, warmup: int = 3) -> None:
    """Run the configs A, B, C, A, B, C, ... and record each wall time."""
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        for _ in range(warmup):
            for config in configs:
                _spawn_timed(config, devnull)
        for _ in range(rounds):
            for config in configs:
                config.wall.append(_spawn_timed(config, devnull))
    finally:
        os.close(devnull)


def run_once(config: Config) -> subprocess.CompletedProcess:
    if config.before:
        config.before()
    return run(config.argv, env=config.env, cwd=config.cwd, check=False)
