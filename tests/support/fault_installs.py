"""Installs that only a real installer makes: PEP 660 editable installs by pip
through setuptools and hatchling, a legacy ``.egg-link`` develop install, and a
directory that a ``.pth`` file adds to sys.path.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from filelock import FileLock

from . import distributions as d
from .environments import SetupError, Venv, check_call, pip_target

# The build back-ends (and what hatchling asks for to build an editable) are fetched from PyPI once and kept, so that each venv's
# `pip install -e` needs no network (pip's build isolation installs them from here).
BACKENDS = ("setuptools>=70.1", "hatchling>=1.18", "editables>=0.3")
# hatchling needs tomli below 3.11: also fetch what the oldest supported Python needs.
OLDEST = "3.10"


def backend_wheels(cache: Path) -> Path:
    """A directory of wheels for the build back-ends and their dependencies."""
    done = cache / ".done"
    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache) + ".lock"):
        if not done.exists():
            base = [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(cache)]
            check_call(base + list(BACKENDS))
            check_call(base + ["--only-binary=:all:", "--python-version", OLDEST, "tomli"] + list(BACKENDS))
            done.touch()
    return cache


SETUPTOOLS_FLAT = {
    "pyproject.toml": (
        '[build-system]\nrequires = ["setuptools>=70.1"]\nbuild-backend = "setuptools.build_meta"\n\n'
        '[project]\nname = "Setup-Edit.Flat"\nversion = "1.0"\n\n'
        '[tool.setuptools]\npackages = ["setflatpkg"]\n'
    ),
    "setflatpkg/__init__.py": "NAME = 'setflat'\n",
    "setflatpkg/sub.py": "X = 1\n",
}
SETUPTOOLS_SRC = {
    "pyproject.toml": (
        '[build-system]\nrequires = ["setuptools>=70.1"]\nbuild-backend = "setuptools.build_meta"\n\n'
        '[project]\nname = "setup-edit-src"\nversion = "2.0"\n'
    ),
    "src/setsrcpkg/__init__.py": "NAME = 'setsrc'\n",
}
HATCHLING = {
    "pyproject.toml": (
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n\n'
        '[project]\nname = "Hatch-Edit-Proj"\nversion = "3.0"\n\n'
        '[tool.hatch.build.targets.wheel]\npackages = ["src/hatcheditpkg"]\n'
    ),
    "src/hatcheditpkg/__init__.py": "NAME = 'hatchedit'\n",
}
# dist name -> (canonical name, module to import)
EDITABLE = {
    "setuptools-flat": ("setup-edit-flat", "setflatpkg.sub", SETUPTOOLS_FLAT),
    "setuptools-src": ("setup-edit-src", "setsrcpkg", SETUPTOOLS_SRC),
    "hatchling": ("hatch-edit-proj", "hatcheditpkg", HATCHLING),
}
LEGACY = ("legacy-develop", "legacydev")  # canonical name, module
PTH_ADDED = (d.SURVIVOR.canonical, "survivor")


def _write_project(root: Path, files: dict[str, str]) -> None:
    for path, text in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def build_editable_wheels(target: Path, wheels_dir: Path) -> dict[str, Path]:
    """Write each EDITABLE project under ``target`` and build its PEP 660
    editable wheel there, through the project's own back-end in an isolated
    environment, exactly as `pip install -e` does before it installs the wheel.

    The wheels are pure and point at the projects by absolute path, so one
    build serves every interpreter's venv.
    """
    import os
    import warnings

    from build import ProjectBuilder
    from build.env import DefaultIsolatedEnv

    saved = {key: os.environ.get(key) for key in ("PIP_NO_INDEX", "PIP_FIND_LINKS")}
    os.environ.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheels_dir))
    wheels = {}
    try:
        for key, (_, _, files) in EDITABLE.items():
            project = target / "projects" / key
            _write_project(project, files)
            with DefaultIsolatedEnv() as env:
                builder = ProjectBuilder.from_isolated_env(env, project)
                env.install(builder.build_system_requires)
                env.install(builder.get_requires_for_build("editable"))
                with warnings.catch_warnings():
                    # setuptools warns that a folder named like the package
                    # in the working directory takes precedence: known.
                    warnings.simplefilter("ignore")
                    wheels[key] = Path(builder.build("editable", target / "wheels"))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return wheels


def add_editable_installs(venv: Venv, editable_wheels: dict[str, Path]) -> None:
    """Install each project's editable wheel into ``venv``, as `pip install -e` does."""
    venv.pip("install", "--quiet", "--no-index", "--no-deps", *map(str, editable_wheels.values()))


def add_legacy_develop_install(venv: Venv) -> None:
    """What `setup.py develop` left: an .egg-link, an easy-install.pth line, and
    the project's own .egg-info beside its code."""
    project = venv.root.parent / "projects" / "legacy"
    _write_project(project, {"legacydev/__init__.py": "NAME = 'legacy'\n"})
    info = project / "Legacy_Develop.egg-info"
    info.mkdir()
    (info / "PKG-INFO").write_text("Metadata-Version: 1.1\nName: Legacy-Develop\nVersion: 0.5\n")
    (info / "top_level.txt").write_text("legacydev\n")
    (info / "SOURCES.txt").write_text("legacydev/__init__.py\n")
    (venv.site_packages / "Legacy-Develop.egg-link").write_text(f"{project}\n.")
    with open(venv.site_packages / "easy-install.pth", "a") as pth:
        pth.write(f"{project}\n")


def add_pth_directory(venv: Venv, survivor_wheel: Path) -> None:
    """A directory outside the venv that a plain .pth path line adds to sys.path."""
    extra = venv.root.parent / "pth-added"
    pip_target(venv, extra, [survivor_wheel])
    (venv.site_packages / "zz_site_extra.pth").write_text(f"# added by an administrator\n{extra}\n")


REENTRANT_FINDER_PTH = (
    "import sys; exec(\"class ReentrantFinder:\\n"
    "    @staticmethod\\n"
    "    def find_spec(name, path=None, target=None):\\n"
    "        if name == 'acme_widgets':\\n"
    "            import colorsys\\n"
    "        return None\\n"
    "sys.meta_path.insert(0, ReentrantFinder)\")\n"
)


def add_reentrant_finder(venv: Venv) -> None:
    """A .pth that puts, ahead of ours, a finder that imports inside find_spec,
    as setuptools' _distutils_hack does when pip is imported."""
    (venv.site_packages / "zz_reentrant_finder.pth").write_text(REENTRANT_FINDER_PTH)


def check_installed(venv: Venv) -> None:
    modules = [module for _, module, _ in EDITABLE.values()] + [LEGACY[1], PTH_ADDED[1]]
    code = "import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules)
    try:
        check_call([venv.python, "-c", code])
    except SetupError as exc:
        raise SetupError(f"the odd installs are not importable:\n{exc}") from None


def pip_available() -> bool:
    return subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode == 0
