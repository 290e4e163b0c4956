"""Synthetic installed distributions, laid out the way pip leaves them.

Two kinds:

* ``install_libraries``: a handful of small importable libraries, for the
  "process that imports 20 libraries" rows.
* ``make_distribution_tree``: N distributions for the index-build rows, with
  realistic RECORD sizes (a few files up to about a thousand), half of them
  without ``top_level.txt`` (as modern build backends produce), plus single
  modules, namespace packages, extension modules, scripts and a few
  ``*.egg-info`` installs.

Everything is deterministic: the same N gives the same tree.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

LIBRARY_PREFIX = "popbenchlib"

_LIB_INIT = '''"""Synthetic benchmark library {name}."""
from .core import Thing, make
from .util import helper

__version__ = "1.0.{i}"
__all__ = ["Thing", "make", "helper"]
'''

_LIB_CORE = '''class Thing:
    """A small class so that importing does some real work."""

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return f"Thing({{self.value!r}})"


def make(n={i}):
    return [Thing(k) for k in range(n)]
'''

_LIB_UTIL = '''import os

CONSTANT = {i}


def helper(path=os.sep):
    return os.path.join(path, "x{i}")
'''


def _record_line(path: str, content: bytes | None) -> str:
    if content is None:
        return f"{path},,"
    digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(content)}"


def _metadata(name: str, version: str) -> str:
    return (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
            f"Summary: synthetic distribution for benchmarks\nRequires-Python: >=3.8\n\n")


def _write_dist_info(site: Path, name: str, version: str, files: dict[str, bytes],
                     top_level: list[str] | None, pyc_tag: str | None = None,
                     extra_record: list[str] = ()) -> None:
    """Write ``files`` under ``site`` and a pip-like ``*.dist-info`` for them."""
    for rel, content in files.items():
        target = site / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    info_name = f"{name.replace('-', '_')}-{version}.dist-info"
    info = site / info_name
    info.mkdir(parents=True, exist_ok=True)
    meta = {
        "METADATA": _metadata(name, version).encode(),
        "WHEEL": b"Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        "INSTALLER": b"pip\n",
    }
    if top_level is not None:
        meta["top_level.txt"] = ("\n".join(top_level) + "\n").encode()
    for rel, content in meta.items():
        (info / rel).write_bytes(content)
    lines = []
    for rel, content in files.items():
        lines.append(_record_line(rel, content))
        if pyc_tag and rel.endswith(".py"):
            head, _, tail = rel.rpartition("/")
            pyc = f"{head + '/' if head else ''}__pycache__/{tail[:-3]}.{pyc_tag}.pyc"
            lines.append(_record_line(pyc, None))
    lines += extra_record
    lines += [_record_line(f"{info_name}/{rel}", content) for rel, content in meta.items()]
    lines.append(f"{info_name}/RECORD,,")
    (info / "RECORD").write_text("\n".join(lines) + "\n")


def library_names(count: int) -> list[str]:
    return [f"{LIBRARY_PREFIX}{i:02d}" for i in range(1, count + 1)]


def install_libraries(site: Path, pyc_tag: str, count: int = 20) -> list[str]:
    """Install ``count`` small libraries into ``site``; return their import names.

    Each is a package of three modules; half of them ship ``top_level.txt``.
    The caller compiles them (``compileall``), as pip would have.
    """
    names = library_names(count)
    for i, name in enumerate(names, 1):
        files = {
            f"{name}/__init__.py": _LIB_INIT.format(name=name, i=i).encode(),
            f"{name}/core.py": _LIB_CORE.format(i=i).encode(),
            f"{name}/util.py": _LIB_UTIL.format(i=i).encode(),
        }
        _write_dist_info(site, name.replace("lib", "-lib-"), f"1.0.{i}", files,
                         top_level=[name] if i % 2 else None, pyc_tag=pyc_tag)
    return names


# --------------------------------------------------------------------------
# many distributions

# Files per distribution, cycled: most wheels are small, a few are huge.
_RECORD_SIZES = (3, 5, 8, 12, 18, 25, 40, 60, 100, 250, 900)


def _package_files(root: str, count: int, seed: int) -> dict[str, bytes]:
    """``count`` module files spread over a few nested packages under ``root``."""
    files: dict[str, bytes] = {f"{root}/__init__.py": f"# {root}\n".encode()}
    subpackages = [root] + [f"{root}/sub{k}" for k in range(max(0, min(8, count // 12)))]
    for sub in subpackages[1:]:
        files[f"{sub}/__init__.py"] = b""
    k = 0
    while len(files) < count:
        pkg = subpackages[k % len(subpackages)]
        files[f"{pkg}/mod{k}.py"] = f"VALUE = {seed * 1000 + k}\n".encode()
        k += 1
    return files


def make_distribution_tree(site: Path, count: int) -> None:
    """Fill the empty directory ``site`` with ``count`` installed distributions."""
    site.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        size = _RECORD_SIZES[i % len(_RECORD_SIZES)]
        with_top_level = i % 2 == 0
        kind = i % 10
        version = f"{1 + i % 7}.{i % 13}.{i % 3}"
        extra: list[str] = []
        if kind == 0:
            # a single-module distribution
            name = f"synth-mod-{i:04d}"
            roots = [f"synthmod_{i:04d}"]
            files = {f"{roots[0]}.py": b"X = 1\n"}
        elif kind == 1:
            # a portion of a shared namespace package (no __init__.py at the top)
            name = f"synthns.part{i:04d}"
            roots = ["synthns"]
            files = {f"synthns/part{i:04d}/{rel.split('/', 1)[1]}": body
                     for rel, body in _package_files(f"p{i}", size, i).items()}
        elif kind == 2:
            # a package plus a private extension module at the top
            name = f"Synth_Ext_{i:04d}"
            roots = [f"synthext_{i:04d}", f"_synthext_{i:04d}"]
            files = _package_files(roots[0], size, i)
            files[f"{roots[1]}.cpython-311-x86_64-linux-gnu.so"] = b"\x7fELF" + bytes(60)
        elif kind == 3 and i % 50 == 3:
            # an old-style egg-info install
            name = f"synth-egg-{i:04d}"
            root = f"syntheggpkg_{i:04d}"
            files = _package_files(root, size, i)
            for rel, content in files.items():
                target = site / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
            egg = site / f"synth_egg_{i:04d}-{version}-py3.11.egg-info"
            egg.mkdir()
            (egg / "PKG-INFO").write_text(_metadata(name, version))
            (egg / "top_level.txt").write_text(root + "\n")
            (egg / "SOURCES.txt").write_text("\n".join(["setup.py", *files]) + "\n")
            (egg / "installed-files.txt").write_text(
                "\n".join([f"../{rel}" for rel in files] + ["./", "PKG-INFO", "SOURCES.txt", "top_level.txt"]) + "\n")
            continue
        else:
            name = f"synth-pkg-{i:04d}"
            roots = [f"synthpkg_{i:04d}"]
            files = _package_files(roots[0], size, i)
        if i % 7 == 0:
            extra.append(_record_line(f"../../../bin/synth-tool-{i:04d}", b"#!python\n"))
        _write_dist_info(site, name, version, files, roots if with_top_level else None,
                         pyc_tag="cpython-311", extra_record=extra)


def tree_file_count(site: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(site))
