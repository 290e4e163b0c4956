"""Synthetic distributions for the tests, built as real artefacts.

Wheels are written by hand as zip files with METADATA, WHEEL and a RECORD
whose hashes are correct, so pip installs them exactly as it would any wheel
from an index (wheels never carry top_level.txt). Egg-info style installs,
which pip no longer produces, are written straight into a directory.
"""

from __future__ import annotations

import base64
import os
import hashlib
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Dist:
    name: str                      # as written in METADATA
    version: str
    files: dict[str, str]          # path inside the wheel -> text content
    canonical: str                 # the PEP 503 name a report must use
    extra_metadata: str = ""
    dist_info_files: dict[str, str] = field(default_factory=dict)

    @property
    def escaped(self) -> str:
        """Name as it appears in wheel file names and .dist-info directories."""
        return re.sub(r"[-_.]+", "_", self.name)


def _module(text: str) -> str:
    return text.strip() + "\n"


# Dist name and module name differ (dots, case, hyphen): the report must use
# the canonical dist name, never the module name.
ACME = Dist(
    name="Acme.Widgets-Pro",
    version="1.2.0",
    canonical="acme-widgets-pro",
    files={
        "acme_widgets/__init__.py": _module("VALUE = 'acme'"),
        "acme_widgets/gears.py": _module("TEETH = 12"),
        "acme_widgets/__main__.py": _module(
            "import sys\nimport acme_widgets.gears\nprint('acme main', acme_widgets.gears.TEETH)\nsys.exit(0)"
        ),
    },
)

# Two distributions share the namespace package `acmens` (no __init__.py).
ACMENS_ALPHA = Dist(
    name="acmens-alpha",
    version="0.1",
    canonical="acmens-alpha",
    files={
        "acmens/alpha/__init__.py": _module("NAME = 'alpha'"),
        "acmens/alpha/util.py": _module("X = 1"),
    },
)
ACMENS_BETA = Dist(
    name="acmens_beta",
    version="0.2",
    canonical="acmens-beta",
    files={"acmens/beta/__init__.py": _module("NAME = 'beta'")},
)

# A regular package three namespace levels deep, beside a sibling owned by
# another distribution: the deepest owner must win.
DEEPNS_LEAF = Dist(
    name="DeepNS.Leaf",
    version="3.0",
    canonical="deepns-leaf",
    files={
        "deepns/one/two/leaf/__init__.py": _module("NAME = 'leaf'"),
        "deepns/one/two/leaf/sub.py": _module("NAME = 'sub'"),
    },
)
DEEPNS_OTHER = Dist(
    name="deepns-other",
    version="1.0",
    canonical="deepns-other",
    files={"deepns/one/other/__init__.py": _module("NAME = 'other'")},
)

# Single-module distributions that start-up hooks import.
EARLYLIB = Dist("earlylib", "1.0", {"earlylib.py": _module("NAME = 'early'")}, "earlylib")
LATELIB = Dist("latelib", "1.0", {"latelib.py": _module("NAME = 'late'")}, "latelib")
SITELIB = Dist("sitelib", "1.0", {"sitelib.py": _module("NAME = 'site'")}, "sitelib")

# Installed with `pip --target` into directories put on PYTHONPATH.
HPCTOOL = Dist("HPC_Tool", "2.1", {"hpctool/__init__.py": _module("NAME = 'hpc'")}, "hpc-tool")
HOMELIB = Dist("Home.Private-Lib", "0.0.1", {"homelib/__init__.py": _module("NAME = 'home'")}, "home-private-lib")
SURVIVOR = Dist("Survivor", "1.0", {"survivor.py": _module("NAME = 'survivor'")}, "survivor")

VENV_DISTS = (ACME, ACMENS_ALPHA, ACMENS_BETA, DEEPNS_LEAF, DEEPNS_OTHER, EARLYLIB, LATELIB, SITELIB)
PATH_DISTS = (HPCTOOL, HOMELIB, SURVIVOR)
ALL_DISTS = VENV_DISTS + PATH_DISTS


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def build_wheel(dist: Dist, dest: Path) -> Path:
    """Write ``dist`` as a py3-none-any wheel into ``dest`` and return its path."""
    dest.mkdir(parents=True, exist_ok=True)
    info = f"{dist.escaped}-{dist.version}.dist-info"
    contents: dict[str, bytes] = {path: text.encode() for path, text in dist.files.items()}
    contents[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {dist.name}\nVersion: {dist.version}\n{dist.extra_metadata}"
    ).encode()
    contents[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: popcon-site-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    for name, text in dist.dist_info_files.items():
        contents[f"{info}/{name}"] = text.encode()
    record_lines = [f"{path},{_record_hash(data)},{len(data)}" for path, data in contents.items()]
    record_lines.append(f"{info}/RECORD,,")
    contents[f"{info}/RECORD"] = ("\n".join(record_lines) + "\n").encode()

    wheel = dest / f"{dist.escaped}-{dist.version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in contents.items():
            archive.writestr(path, data)
    return wheel


def write_egg_info(directory: Path, name: str, version: str, modules: dict[str, str],
                   top_level: list[str], pyver: str) -> Path:
    """Install a setuptools-style ``.egg-info`` directory plus its modules.

    Carries top_level.txt and installed-files.txt, as `setup.py install`
    used to leave them.
    """
    escaped = re.sub(r"[^A-Za-z0-9.]+", "_", name)
    info = directory / f"{escaped}-{version}-py{pyver}.egg-info"
    info.mkdir(parents=True)
    (info / "PKG-INFO").write_text(f"Metadata-Version: 1.1\nName: {name}\nVersion: {version}\n")
    (info / "top_level.txt").write_text("".join(f"{top}\n" for top in top_level))
    (info / "SOURCES.txt").write_text("".join(f"{path}\n" for path in modules))
    (info / "dependency_links.txt").write_text("\n")
    for path, text in modules.items():
        target = directory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    installed = [f"../{path}" for path in modules] + ["PKG-INFO", "SOURCES.txt", "top_level.txt"]
    (info / "installed-files.txt").write_text("".join(f"{line}\n" for line in installed))
    return info


# Egg-info install in every test venv: dist `Legacy.Egg`, module `oldegg`.
EGG_NAME, EGG_VERSION, EGG_CANONICAL, EGG_MODULE = "Legacy.Egg", "0.3", "legacy-egg", "oldegg"
EGG_MODULES = {
    "oldegg/__init__.py": _module("NAME = 'oldegg'"),
    "oldegg/core.py": _module("X = 2"),
}


def write_broken_distributions(tree: Path) -> None:
    """Metadata of every odd or broken shape seen in real environments.

    None of them provides an importable module; a scan must skip them all and
    still find every good distribution beside them.
    """
    tree.mkdir(parents=True, exist_ok=True)
    # A metadata directory with nothing in it.
    (tree / "empty-1.0.dist-info").mkdir()
    # RECORD is a directory, METADATA is binary garbage.
    garbage = tree / "garbage-2.0.dist-info"
    garbage.mkdir()
    (garbage / "METADATA").write_bytes(b"\xff\xfe\x00garbage\x00\n\x80")
    (garbage / "RECORD").mkdir()
    # RECORD with undecodable bytes and lines of the wrong shape.
    odd = tree / "oddrecord-1.0.dist-info"
    odd.mkdir()
    (odd / "METADATA").write_text("Metadata-Version: 2.1\nName: oddrecord\nVersion: 1.0\n")
    (odd / "RECORD").write_bytes(b"\x00\xff\n,,,,,\n\"unterminated,quote\n../../../etc/passwd,,\n/abs/path.py,,\n")
    # Egg-info whose files lie outside the directory (the original package died on this).
    outside = tree / "Outside-0.1-py3.egg-info"
    outside.mkdir()
    (outside / "PKG-INFO").write_text("Metadata-Version: 1.1\nName: Outside\nVersion: 0.1\n")
    (outside / "installed-files.txt").write_text("../../../../elsewhere/outside/__init__.py\n/abs/outside.py\n")
    # No RECORD, no top_level.txt, and no module of its name.
    (tree / "norecord-1.0.dist-info").mkdir()
    (tree / "norecord-1.0.dist-info" / "METADATA").write_text("Name: norecord\nVersion: 1.0\n")
    # An egg-info *file*, as distutils wrote them, and a dangling symlink.
    (tree / "Legacy_File-0.1-py3.egg-info").write_text("Metadata-Version: 1.0\nName: Legacy-File\nVersion: 0.1\n")
    os.symlink(tree / "nowhere", tree / "dangling-1.0.dist-info")
    # A dist-info name without a version, and one that is not valid UTF-8.
    (tree / "noversion.dist-info").mkdir()
    os.mkdir(os.path.join(os.fsencode(tree), b"bad\xffname-1.0.dist-info"))
    # top_level.txt naming modules that are not there (a stale install).
    stale = tree / "stale-1.0.dist-info"
    stale.mkdir()
    (stale / "top_level.txt").write_text("stale_missing\n")


BROKEN_NAMES = ("empty", "garbage", "oddrecord", "outside", "norecord", "legacy-file", "dangling", "noversion",
                "stale")
