"""Run real interpreter processes with a controlled environment."""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .udp import UdpListener

# Variables that would change what a child interpreter does, inherited from
# whoever runs the tests (a developer's shell, a Slurm job, a CI runner).
RANK_VARS = ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "SLURM_PROCID")
_KEEP_PYTHON_VARS = {"PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"}


def clean_environ(base=None) -> dict[str, str]:
    """The inherited environment without anything that steers Python or popcon-site."""
    env = dict(os.environ if base is None else base)
    for key in list(env):
        if key.startswith("PYTHON") and key not in _KEEP_PYTHON_VARS:
            del env[key]
        elif key in RANK_VARS or key in ("VIRTUAL_ENV", "CONDA_PREFIX", "__PYVENV_LAUNCHER__"):
            del env[key]
    return env


def setup_environ() -> dict[str, str]:
    """Environment for setup commands (pip, virtualenv): popcon-site switched off."""
    env = clean_environ()
    env["PYTHON_POPCONTEST_DISABLE"] = "1"
    env["PIP_NO_INPUT"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


@dataclass(frozen=True)
class Prefix:
    """A unique statsd prefix per test, so stray traffic can never match."""

    name: str

    @classmethod
    def unique(cls) -> "Prefix":
        return cls(f"popcontest.t{secrets.token_hex(5)}.library_used")

    @property
    def parent(self) -> str:
        return self.name.rsplit(".", 1)[0]

    def library(self, canonical: str) -> str:
        return f"{self.name}.{canonical}:1|c"

    @property
    def denominator(self) -> str:
        return f"{self.parent}.reports:1|c"

    def report(self, *canonicals: str) -> bytes:
        """The single datagram a process that used ``canonicals`` must send."""
        lines = [self.library(name) for name in sorted(set(canonicals))] + [self.denominator]
        return "\n".join(lines).encode("ascii")


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str
    datagrams: list[bytes] = field(default_factory=list)

    @property
    def lines(self) -> list[str]:
        return [line for data in self.datagrams for line in data.decode("utf-8", "replace").split("\n")]

    def __str__(self) -> str:
        return (f"rc={self.rc}\n--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}\n"
                f"--- datagrams ---\n{self.datagrams!r}")


def case_environ(listener: UdpListener | None, prefix: Prefix | None, env: dict | None) -> dict[str, str]:
    """A clean environment pointing popcon-site at ``listener``, plus ``env`` (None removes)."""
    full = clean_environ()
    if listener is not None:
        full["PYTHON_POPCONTEST_STATSD_HOST"] = listener.host
        full["PYTHON_POPCONTEST_STATSD_PORT"] = str(listener.port)
    if prefix is not None:
        full["PYTHON_POPCONTEST_STATSD_PREFIX"] = prefix.name
    for key, value in (env or {}).items():
        if value is None:
            full.pop(key, None)
        else:
            full[key] = value
    return full


def run_python(python: Path | str, args: list[str], *, listener: UdpListener | None, prefix: Prefix | None,
               env: dict[str, str] | None = None, cwd: Path | str | None = None, expect: int = 0,
               settle: float = 0.3, timeout: float = 60) -> Result:
    """Run ``python *args`` as its own process and collect what it sent.

    ``env`` is added on top of a clean environment that points popcon-site
    at ``listener`` with ``prefix``. A value of None in ``env`` removes that
    variable. ``expect`` is the number of datagrams to wait for.
    """
    full_env = case_environ(listener, prefix, env)
    proc = subprocess.run([str(python), *args], env=full_env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    datagrams = listener.collect(expect=expect, settle=settle) if listener is not None else []
    return Result(proc.returncode, proc.stdout, proc.stderr, datagrams)
