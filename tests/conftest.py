"""Session fixtures: the built wheel, interpreters, throwaway venvs, sockets.

Expensive artefacts (the wheel, synthetic wheels, one venv per interpreter)
are built once per test run and shared by pytest-xdist workers through a
directory guarded by file locks.
"""

from __future__ import annotations

import os
import shutil
import sys
import traceback
from pathlib import Path

import pytest
from filelock import FileLock

REPO = Path(__file__).resolve().parent.parent
# Unit tests import the pure modules straight from the checkout.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from support import distributions as dists  # noqa: E402
from support import environments as envs  # noqa: E402
from support import etsy_statsd  # noqa: E402
from support.collector_proc import CollectorProcess  # noqa: E402
from support.interpreters import discover  # noqa: E402
from support.processes import Prefix, run_python  # noqa: E402
from support.udp import UdpListener  # noqa: E402

IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes", "on")
INTERPRETERS = discover()


def pytest_report_header(config):
    found = ", ".join(f"{i.id}={i.executable}" for i in INTERPRETERS) or "none"
    return [f"popcon-site interpreters: {found}", f"CI: {IN_CI}"]


def pytest_generate_tests(metafunc):
    if "interp" in metafunc.fixturenames:
        metafunc.parametrize("interp", INTERPRETERS, ids=[i.id for i in INTERPRETERS], scope="session")


def require(reason: str) -> None:
    """A real component is missing: fail in CI, skip elsewhere."""
    if IN_CI:
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


# --- artefacts shared between workers --------------------------------------

@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory) -> Path:
    base = tmp_path_factory.getbasetemp()
    # Under xdist each worker's basetemp sits inside the run's own directory.
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    path = root / "popcon-shared"
    path.mkdir(exist_ok=True)
    return path


def build_once(shared: Path, name: str, build) -> Path:
    """Run ``build(directory)`` once per test run, whichever worker asks first.

    A failure is recorded, so later tests fail at once with the same message
    instead of retrying an expensive build.
    """
    target = shared / name
    done, failed = target / ".done", shared / f"{name}.failed"
    with FileLock(str(shared / f"{name}.lock")):
        if failed.exists():
            pytest.fail(f"building {name} failed earlier in this run:\n{failed.read_text()}", pytrace=False)
        if not done.exists():
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            try:
                build(target)
            except Exception:
                failed.write_text(traceback.format_exc())
                raise
            done.touch()
    return target


@pytest.fixture(scope="session")
def core_wheel(shared_dir) -> Path:
    """The popcon-site wheel, built once from the checkout with `python -m build --wheel`."""
    def build(target: Path) -> None:
        envs.check_call([sys.executable, "-m", "build", "--wheel", "--outdir", target, REPO])
    wheels = sorted(build_once(shared_dir, "core-wheel", build).glob("popcon_site-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="session")
def synthetic_wheels(shared_dir) -> dict[str, Path]:
    """Every synthetic distribution as a wheel, keyed by its canonical name."""
    def build(target: Path) -> None:
        for dist in dists.ALL_DISTS:
            dists.build_wheel(dist, target)
    target = build_once(shared_dir, "synthetic-wheels", build)
    return {dist.canonical: target / f"{dist.escaped}-{dist.version}-py3-none-any.whl" for dist in dists.ALL_DISTS}


def _venv_wheels(core_wheel: Path, synthetic_wheels: dict[str, Path]) -> list[Path]:
    return [core_wheel] + [synthetic_wheels[dist.canonical] for dist in dists.VENV_DISTS]


def _shared_venv(shared_dir, name, interp, wheels, customise=()) -> envs.Venv:
    def build(target: Path) -> None:
        venv = envs.create_venv(interp, target / "env", wheels)
        envs.add_egg_info(venv)
        for step in customise:
            step(venv)
        (target / "venv.json").write_text(venv.to_json())
    return envs.Venv.from_json((build_once(shared_dir, name, build) / "venv.json").read_text())


@pytest.fixture(scope="session")
def venv(interp, shared_dir, core_wheel, synthetic_wheels) -> envs.Venv:
    """A venv of ``interp`` with popcon-site, the synthetic wheels and an egg-info install.

    Shared by many tests: never change it; use ``scratch_venv`` for that.
    """
    return _shared_venv(shared_dir, f"venv-{interp.id}", interp, _venv_wheels(core_wheel, synthetic_wheels))


@pytest.fixture(scope="session")
def newest_interp():
    """The newest interpreter found, for cases whose handling is the same pure
    Python on every version."""
    if not INTERPRETERS:
        require("no Python 3.10-3.13 interpreter was found")
    return INTERPRETERS[-1]


@pytest.fixture(scope="session")
def newest_venv(shared_dir, newest_interp, core_wheel, synthetic_wheels) -> envs.Venv:
    """The shared venv of the newest interpreter found, for long lists of values
    whose handling is the same pure Python on every version; a representative
    few of each list also run on every interpreter."""
    return _shared_venv(shared_dir, f"venv-{newest_interp.id}", newest_interp,
                        _venv_wheels(core_wheel, synthetic_wheels))


@pytest.fixture(scope="session")
def hooked_venv(interp, shared_dir, core_wheel, synthetic_wheels) -> envs.Venv:
    """Like ``venv``, plus .pth files on both sides of ours and a sitecustomize, each importing a library."""
    return _shared_venv(shared_dir, f"hooked-venv-{interp.id}", interp,
                        _venv_wheels(core_wheel, synthetic_wheels), customise=[envs.add_startup_hooks])


@pytest.fixture(scope="session")
def readonly_venv(interp, shared_dir, core_wheel, synthetic_wheels) -> envs.Venv:
    """Like ``venv``, but nothing can be created inside it after installation.

    A regular file stands where ``<prefix>/var`` would be, which stops root
    too, so the exit path has to cache its index elsewhere.
    """
    return _shared_venv(shared_dir, f"readonly-venv-{interp.id}", interp,
                        _venv_wheels(core_wheel, synthetic_wheels), customise=[envs.block_prefix_var])


@pytest.fixture(scope="session")
def system_site_venv(interp, shared_dir, core_wheel, synthetic_wheels) -> str:
    """The python of a venv made with --system-site-packages and no seed
    packages, so that pip comes from the base interpreter's site-packages;
    popcon-site and acme-widgets-pro are installed in the venv."""
    def build(target: Path) -> None:
        root = target / "env"
        envs.check_call([sys.executable, "-m", "virtualenv", "--quiet", "--no-seed", "--system-site-packages",
                         "-p", interp.executable, root])
        python = root / "bin" / "python"
        site = envs.check_call([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip()
        wheels = [core_wheel, synthetic_wheels[dists.ACME.canonical]]
        envs.check_call([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target",
                         site, *map(str, wheels)])
        (target / "python").write_text(str(python))
    return (build_once(shared_dir, f"system-site-venv-{interp.id}", build) / "python").read_text()


@pytest.fixture
def scratch_venv(interp, tmp_path, core_wheel, synthetic_wheels) -> envs.Venv:
    """A fresh venv of ``interp`` for one test, which may change it freely."""
    return envs.create_venv(interp, tmp_path / "scratch-env", _venv_wheels(core_wheel, synthetic_wheels))


# --- sockets and processes --------------------------------------------------

@pytest.fixture
def listener():
    with UdpListener() as udp:
        yield udp


@pytest.fixture
def prefix() -> Prefix:
    return Prefix.unique()


@pytest.fixture
def start(tmp_path):
    """Start ``popcon-site collect`` processes on free loopback ports; all are killed afterwards."""
    started = []

    def start(*extra, db=None, prefix=None, **kwargs):
        collector = CollectorProcess(db or tmp_path / "counts.sqlite3", prefix or Prefix.unique().name, *extra,
                                     **kwargs)
        started.append(collector)
        return collector

    yield start
    for collector in started:
        collector.kill()


@pytest.fixture
def run(venv, listener, prefix):
    """Run the shared venv's python with popcon-site pointed at ``listener``."""
    def run(*args: str, python=None, **kwargs):
        kwargs.setdefault("listener", listener)
        kwargs.setdefault("prefix", prefix)
        return run_python(python or venv.python, list(args), **kwargs)
    return run


# --- the reference statsd daemon -------------------------------------------

@pytest.fixture(scope="session")
def etsy_statsd_daemon(tmp_path_factory):
    """Etsy statsd from npm, on random loopback ports, one per worker."""
    if not (shutil.which("npm") and (shutil.which("node") or shutil.which("nodejs"))):
        require("node and npm are needed to run the reference Etsy statsd daemon (apt-get install nodejs npm)")
    cache = REPO / ".cache" / "etsy-statsd"
    cache.parent.mkdir(exist_ok=True)
    try:
        with FileLock(str(cache.parent / "etsy-statsd.lock")):
            package = etsy_statsd.install(cache)
        daemon = etsy_statsd.EtsyStatsd(package, tmp_path_factory.mktemp("etsy-statsd")).start()
    except etsy_statsd.DaemonError as exc:
        require(f"the Etsy statsd daemon could not be installed or started: {exc}")
    yield daemon
    daemon.stop()
