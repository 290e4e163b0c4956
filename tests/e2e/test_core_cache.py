"""Where the exit path caches its index, and what it does when nothing is writable.

Runs as any user, root included: locations are made unusable by putting a
regular file where a directory would have to be, which stops root too.
"""

import os
import stat
import subprocess

import pytest

from support import distributions as d
from support.processes import clean_environ, run_python

ACME = d.ACME.canonical
SCRIPT = "import sys, acme_widgets\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)"


def _block(path):
    """A regular file where the directory ``path`` would be created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("not a directory\n")
    return path


@pytest.fixture
def blocked(readonly_venv):
    assert (readonly_venv.root / "var").is_file()
    return readonly_venv


def _run(venv, listener, prefix, env):
    result = run_python(venv.python, ["-c", SCRIPT], listener=listener, prefix=prefix, env=env, expect=1)
    assert (result.rc, result.stdout, result.stderr) == (3, "out\n", "err\n"), result
    assert result.datagrams == [prefix.report(ACME)], result
    return result


def _caches(directory):
    return sorted(p.name for p in directory.rglob("index-*.marshal"))


def _cache_files(directory):
    """Each cache file with its inode and mtime: a rebuild replaces the file."""
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in directory.rglob("index-*.marshal")}


def test_read_only_environment_uses_the_user_cache(blocked, listener, prefix, tmp_path):
    xdg = tmp_path / "xdg"
    env = {"XDG_CACHE_HOME": str(xdg), "TMPDIR": str(tmp_path / "tmp")}
    _run(blocked, listener, prefix, env)
    assert _caches(xdg / "popcon-site"), "expected the index cache in the user's cache directory"
    built = _cache_files(xdg / "popcon-site")
    # The second run uses it, still reports, and does not index again.
    _run(blocked, listener, prefix, env)
    assert _cache_files(xdg / "popcon-site") == built


def test_without_a_writable_home_the_private_temporary_directory_is_used(blocked, listener, prefix, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {"XDG_CACHE_HOME": str(_block(tmp_path / "xdg-file") / "sub"), "HOME": str(_block(tmp_path / "home-file")),
           "TMPDIR": str(tmp)}
    _run(blocked, listener, prefix, env)
    private = tmp / f"popcon-site-{os.getuid()}"
    assert _caches(private), "expected the index cache in a private directory under TMPDIR"
    assert private.stat().st_mode & 0o777 == 0o700
    built = _cache_files(private)
    _run(blocked, listener, prefix, env)
    assert _cache_files(private) == built


def test_a_temporary_directory_open_to_others_is_not_trusted(blocked, listener, prefix, tmp_path):
    tmp = tmp_path / "tmp"
    shared = tmp / f"popcon-site-{os.getuid()}"
    shared.mkdir(parents=True)
    shared.chmod(0o777)
    env = {"XDG_CACHE_HOME": str(_block(tmp_path / "xdg-file") / "sub"), "HOME": str(_block(tmp_path / "home-file")),
           "TMPDIR": str(tmp)}
    _run(blocked, listener, prefix, env)
    assert _caches(shared) == [], "a world-writable cache directory must not be used"


def test_nothing_writable_at_all_still_reports(blocked, listener, prefix, tmp_path):
    env = {"XDG_CACHE_HOME": str(_block(tmp_path / "xdg-file") / "sub"), "HOME": str(_block(tmp_path / "home-file")),
           "TMPDIR": str(_block(tmp_path / "tmp-file"))}
    _run(blocked, listener, prefix, env)
    _run(blocked, listener, prefix, env)


def test_corrupt_environment_cache_is_rebuilt(scratch_venv, listener, prefix):
    _run(scratch_venv, listener, prefix, {})
    caches = list((scratch_venv.root / "var" / "cache" / "popcon-site").glob("index-*.marshal"))
    assert caches
    for cache in caches:
        cache.write_bytes(b"\x00garbage")
    _run(scratch_venv, listener, prefix, {})
    assert all(cache.read_bytes() != b"\x00garbage" for cache in caches)


def test_environment_cache_is_readable_by_every_user_whatever_the_umask(scratch_venv):
    # An admin with umask 077 runs `popcon-site index`: the cache is shared by
    # every user of the environment, so it must still be world-readable.
    cli = scratch_venv.root / "bin" / "popcon-site"
    proc = subprocess.run(["sh", "-c", f"umask 077 && exec {cli} index"], capture_output=True, text=True,
                          env=clean_environ(), timeout=120)
    assert proc.returncode == 0, proc
    cache = scratch_venv.root / "var" / "cache" / "popcon-site"
    for path in [scratch_venv.root / "var", cache.parent, cache]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o755, path
    files = list(cache.glob("index-*.marshal"))
    assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o644 for f in files), files
