"""Find the Python 3.10-3.13 interpreters of this machine.

Order of preference: ``POPCON_TEST_PYTHONS`` (an ``os.pathsep``-separated
list of paths or command names, which replaces discovery), else pyenv's
versions, then ``python3.X`` on PATH, then the interpreter running the tests.
Every candidate is run once: a pyenv shim can sit on PATH and still refuse to
run a version it does not manage. One interpreter per minor version is kept.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

SUPPORTED = ((3, 10), (3, 11), (3, 12), (3, 13))

_PROBE = "import os, sys; print(*sys.version_info[:3]); print(os.path.realpath(sys.executable))"


@dataclass(frozen=True)
class Interpreter:
    executable: str
    version: tuple[int, int, int]
    realpath: str

    @property
    def minor(self) -> tuple[int, int]:
        return self.version[:2]

    @property
    def id(self) -> str:
        return "py%d.%d" % self.minor


def probe(executable: str) -> Interpreter | None:
    """Run ``executable`` and describe it, or return None when it does not run."""
    try:
        proc = subprocess.run(
            [executable, "-S", "-c", _PROBE],
            capture_output=True, text=True, timeout=30,
            env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    try:
        version_line, realpath = proc.stdout.strip().splitlines()
        version = tuple(int(part) for part in version_line.split())
    except ValueError:
        return None
    return Interpreter(executable, version, realpath)


def _pyenv_root() -> str | None:
    pyenv = shutil.which("pyenv")
    if not pyenv:
        return None
    try:
        proc = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    root = proc.stdout.strip()
    return root if proc.returncode == 0 and root else None


def candidates(environ=os.environ) -> list[str]:
    override = environ.get("POPCON_TEST_PYTHONS", "").strip()
    if override:
        return [shutil.which(item) or item for item in override.split(os.pathsep) if item]
    found: list[str] = []
    root = _pyenv_root()
    for major, minor in SUPPORTED:
        name = "python%d.%d" % (major, minor)
        if root:
            found += sorted(glob.glob(os.path.join(root, "versions", "%d.%d*" % (major, minor), "bin", name)))
        on_path = shutil.which(name)
        if on_path:
            found.append(on_path)
    found.append(sys.executable)
    return found


def discover(environ=os.environ) -> list[Interpreter]:
    """One runnable interpreter per supported minor version, oldest first."""
    by_minor: dict[tuple[int, int], Interpreter] = {}
    seen_paths: set[str] = set()
    for candidate in candidates(environ):
        interp = probe(candidate)
        if interp is None or interp.minor not in SUPPORTED:
            continue
        if interp.realpath in seen_paths or interp.minor in by_minor:
            continue
        seen_paths.add(interp.realpath)
        by_minor[interp.minor] = interp
    return [by_minor[minor] for minor in sorted(by_minor)]


if __name__ == "__main__":
    for interp in discover():
        print(interp.id, ".".join(map(str, interp.version)), interp.executable)
