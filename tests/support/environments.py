"""Throwaway virtualenvs with the built popcon-site wheel installed."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from . import distributions as d
from .interpreters import Interpreter
from .processes import setup_environ


class SetupError(RuntimeError):
    pass


def check_call(cmd: list, **kwargs) -> str:
    proc = subprocess.run([str(part) for part in cmd], capture_output=True, text=True,
                          env=kwargs.pop("env", setup_environ()), **kwargs)
    if proc.returncode != 0:
        raise SetupError(f"command failed ({proc.returncode}): {cmd}\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


@dataclass(frozen=True)
class Venv:
    root: Path
    python: Path
    site_packages: Path
    interp_id: str

    def pip(self, *args: str) -> str:
        return check_call([self.python, "-m", "pip", "--no-input", *args])

    def compile(self, *paths: Path) -> None:
        """Byte-compile hand-written files: PYTHONDONTWRITEBYTECODE stops the import system doing it."""
        check_call([self.python, "-m", "compileall", "-q", *paths])

    def to_json(self) -> str:
        return json.dumps({"root": str(self.root), "python": str(self.python),
                           "site_packages": str(self.site_packages), "interp_id": self.interp_id})

    @classmethod
    def from_json(cls, text: str) -> "Venv":
        data = json.loads(text)
        return cls(Path(data["root"]), Path(data["python"]), Path(data["site_packages"]), data["interp_id"])


def create_venv(interp: Interpreter, root: Path, wheels: list[Path] = ()) -> Venv:
    """``virtualenv -p <interp> root``, then ``pip install`` the given wheels."""
    check_call([sys.executable, "-m", "virtualenv", "--quiet", "-p", interp.executable, root])
    python = root / "bin" / "python"
    site_packages = Path(check_call(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())
    venv = Venv(root, python, site_packages, interp.id)
    if wheels:
        venv.pip("install", "--quiet", "--no-index", *map(str, wheels))
    return venv


def add_egg_info(venv: Venv) -> None:
    """Install the legacy egg-info distribution by hand, as `setup.py install` did."""
    pyver = venv.interp_id.removeprefix("py")
    d.write_egg_info(venv.site_packages, d.EGG_NAME, d.EGG_VERSION, d.EGG_MODULES, [d.EGG_MODULE], pyver)
    venv.compile(venv.site_packages / d.EGG_MODULE)


def add_startup_hooks(venv: Venv) -> None:
    """Import libraries during site initialisation, from both sides of our .pth and sitecustomize."""
    (venv.site_packages / "00_early.pth").write_text("import earlylib\n")
    (venv.site_packages / "zzz_late.pth").write_text("import latelib\n")
    (venv.site_packages / "sitecustomize.py").write_text("import sitelib\n")
    venv.compile(venv.site_packages / "sitecustomize.py")


def pip_target(venv: Venv, target: Path, wheels: list[Path]) -> None:
    """Install wheels into a plain directory, as an HPC module tree or a home-dir install would be."""
    venv.pip("install", "--quiet", "--no-index", "--no-deps", "--target", str(target), *map(str, wheels))


def block_prefix_var(venv: Venv) -> None:
    """Make ``<prefix>/var`` uncreatable, whoever runs the process (root included)."""
    (venv.root / "var").write_text("a file where a directory would be\n")
