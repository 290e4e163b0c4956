"""Fault matrix, environment: read-only installs, users without a home, and
index caches that are corrupted, truncated, old, or written by many processes
at once.  The host process never notices, and still reports.
"""

import marshal
import os
import shutil
import stat

import pytest
from filelock import FileLock

import conftest
from popcon_site.reporter import SHARDS, shard_of
from conftest import require
from support import distributions as d
from support import faults
from support.environments import pip_target

ACME = d.ACME.canonical
SCRIPT = "import sys, acme_widgets, survivor\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)"


def ran_script(result):
    """Guards a case against its own set-up failing the same way twice."""
    assert (result.quiet.rc, result.quiet.stdout, result.quiet.stderr) == (3, b"out\n", b"err\n"), result
    return result


@pytest.fixture
def tree(venv, synthetic_wheels, tmp_path):
    """A module tree on PYTHONPATH that no cache knows yet, so that every run
    has to index it and tries to write a cache."""
    path = tmp_path / "tree"
    pip_target(venv, path, [synthetic_wheels[d.SURVIVOR.canonical]])
    return path


# --- read-only environment, unprivileged user, no writable home -------------------

@pytest.fixture(scope="session")
def fault_user():
    found = faults.unprivileged_user()
    if isinstance(found, str):
        require(found)
    return found


def _world_tmp(path):
    path.mkdir()
    path.chmod(0o1777)
    return path


@pytest.fixture
def user_case(venv, listener, prefix, fault_user, tree, tmp_path):
    def case(env, expect=1):
        uid, gid = fault_user
        cmd = faults.as_user(uid, gid, [venv.python, "-c", SCRIPT])
        full_env = {"HOME": "/nonexistent", "XDG_CACHE_HOME": None, "PYTHONPATH": str(tree), **env}
        return ran_script(faults.twin(cmd, listener=listener, prefix=prefix, env=full_env, expect=expect,
                                      cwd=tmp_path))
    return case


def test_unprivileged_user_is_really_unprivileged(venv, fault_user, tmp_path):
    # Guards the next tests: the user can run the interpreter but not write to the environment.
    uid, gid = fault_user
    cmd = faults.as_user(uid, gid, [venv.python, "-c", f"open({str(venv.root / 'probe')!r}, 'w')"])
    result = faults.twin(cmd, listener=None, prefix=None, env={"HOME": "/nonexistent"})
    assert result.quiet.rc == 1 and b"PermissionError" in result.quiet.stderr, result


def test_read_only_environment_and_no_home_falls_back_to_a_private_temporary_cache(user_case, prefix, tmp_path,
                                                                                    fault_user):
    tmpdir = _world_tmp(tmp_path / "tmp")
    for _ in range(2):  # the second run reads what the first one cached
        user_case({"TMPDIR": str(tmpdir)}).assert_reports(prefix.report(ACME, "survivor"))
    private = tmpdir / f"popcon-site-{fault_user[0]}"
    st = os.lstat(private)
    assert stat.S_ISDIR(st.st_mode) and st.st_uid == fault_user[0] and stat.S_IMODE(st.st_mode) == 0o700
    assert list(private.glob("index-*.marshal"))


def test_nothing_writable_at_all_still_reports(user_case, prefix, tmp_path):
    closed = tmp_path / "closed-tmp"
    closed.mkdir(mode=0o755)
    user_case({"TMPDIR": str(closed)}).assert_reports(prefix.report(ACME, "survivor"))
    assert list(closed.iterdir()) == []


def test_temporary_cache_directory_taken_by_someone_else_is_not_used(user_case, prefix, tmp_path, fault_user):
    tmpdir = _world_tmp(tmp_path / "tmp")
    squatted = tmpdir / f"popcon-site-{fault_user[0]}"
    squatted.mkdir()
    squatted.chmod(0o777)  # root's, open to all: a planted directory
    user_case({"TMPDIR": str(tmpdir)}).assert_reports(prefix.report(ACME, "survivor"))
    assert list(squatted.iterdir()) == []


def test_user_without_a_passwd_entry_and_no_home_variable(venv, listener, prefix, tree, tmp_path, fault_user):
    # Containers run as arbitrary uids: no HOME, and no passwd entry to find one.
    uid = 54321
    tmpdir = _world_tmp(tmp_path / "tmp")
    cmd = faults.as_user(uid, uid, [venv.python, "-c", SCRIPT])
    env = {"HOME": None, "XDG_CACHE_HOME": None, "TMPDIR": str(tmpdir), "PYTHONPATH": str(tree)}
    result = ran_script(faults.twin(cmd, listener=listener, prefix=prefix, env=env, expect=1, cwd=tmp_path))
    result.assert_reports(prefix.report(ACME, "survivor"))


def test_unreadable_directory_on_the_path(user_case, prefix, tmp_path):
    # A directory on PYTHONPATH that the user may not list (a group's tree).
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    tmpdir = _world_tmp(tmp_path / "tmp")
    env = {"TMPDIR": str(tmpdir), "PYTHONPATH": os.pathsep.join([str(locked), str(tmp_path / "tree")])}
    user_case(env).assert_reports(prefix.report(ACME, "survivor"))


# --- corrupted caches ------------------------------------------------------------

@pytest.fixture(scope="session")
def cache_venv(interp, shared_dir, core_wheel, synthetic_wheels):
    """A venv whose index cache the tests below damage; one test at a time uses it."""
    wheels = [core_wheel] + [synthetic_wheels[dist.canonical] for dist in d.VENV_DISTS]
    return conftest._shared_venv(shared_dir, f"fault-cache-venv-{interp.id}", interp, wheels)


@pytest.fixture
def cache_case(cache_venv, listener, prefix, shared_dir, tmp_path):
    """Runs SCRIPT in cache_venv, with fallback cache locations inside tmp_path."""
    lock = FileLock(str(shared_dir / f"fault-cache-venv-{cache_venv.interp_id}.use.lock"))
    with lock:
        # Start from no cache at all: a damaged one must not outlive its test.
        cache_dir = cache_venv.root / "var" / "cache" / "popcon-site"
        if cache_dir.is_file() or cache_dir.is_symlink():
            cache_dir.unlink()
        for path in cache_dir.glob("*"):
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink()

        def case(path_tree, expect=1):
            env = {"HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "xdg"),
                   "TMPDIR": str(tmp_path), "PYTHONPATH": str(path_tree)}
            return ran_script(faults.twin([cache_venv.python, "-c", SCRIPT], listener=listener, prefix=prefix,
                                          env=env, expect=expect))
        yield case


def _env_cache(venv):
    caches = list((venv.root / "var" / "cache" / "popcon-site").glob("index-*.marshal"))
    assert len(caches) == 1, caches
    return caches[0]


def _warm(cache_case, cache_venv, tree, prefix):
    cache_case(tree).assert_reports(prefix.report(ACME, "survivor"))
    path = _env_cache(cache_venv)
    return path, path.read_bytes()


def _valid(data):
    fmt, tag, table = marshal.loads(data)
    return fmt, tag, table


CORRUPTIONS = {
    "random-bytes": lambda data: os.urandom(4096),
    "empty": lambda data: b"",
    "truncated": lambda data: data[: len(data) // 2],
    "last-byte-missing": lambda data: data[:-1],
    "older-format": lambda data: marshal.dumps((0,) + _valid(data)[1:]),
    "other-interpreter": lambda data: marshal.dumps((_valid(data)[0], "cpython-29", _valid(data)[2])),
    "not-a-tuple": lambda data: marshal.dumps(["index", 1]),
    "table-not-a-dict": lambda data: marshal.dumps(_valid(data)[:2] + ([1, 2],)),
    "entries-of-the-wrong-shape": lambda data: marshal.dumps(
        _valid(data)[:2] + ({k: ("x", None) for k in _valid(data)[2]},)),
    "roots-of-the-wrong-shape": lambda data: marshal.dumps(
        _valid(data)[:2] + ({k: _with_roots(v, lambda roots: {**roots, "acme_widgets": 7, 3: ("a", "b")})
                             for k, v in _valid(data)[2].items()},)),
    "shard-not-marshal": lambda data: marshal.dumps(
        _valid(data)[:2] + ({k: (v[0], v[1], tuple(b"\x00garbage" for _ in v[2])) for k, v in _valid(data)[2].items()},)),
    "huge-valid-table": lambda data: marshal.dumps(
        _valid(data)[:2] + (dict(_valid(data)[2], **{f"/nowhere/{i}": (i, frozenset(), (marshal.dumps({}),) * SHARDS)
                                                      for i in range(20000)}),)),
}


def _with_roots(entry, change):
    """A cache entry (mtime, deep, shards) whose roots went through ``change``."""
    mtime, deep, shards = entry
    roots = {}
    for shard in shards:
        roots.update(marshal.loads(shard))
    roots = change(roots)
    rebuilt = [{} for _ in range(SHARDS)]
    for name, owner in roots.items():
        rebuilt[shard_of(name) if isinstance(name, str) else 0][name] = owner
    return (mtime, deep, tuple(marshal.dumps(shard) for shard in rebuilt))


@pytest.mark.parametrize("damage", sorted(CORRUPTIONS))
def test_damaged_cache_file_is_rebuilt(cache_case, cache_venv, tree, prefix, damage):
    path, data = _warm(cache_case, cache_venv, tree, prefix)
    path.write_bytes(CORRUPTIONS[damage](data))
    cache_case(tree).assert_reports(prefix.report(ACME, "survivor"))
    cache_case(tree).assert_reports(prefix.report(ACME, "survivor"))
    _valid(_env_cache(cache_venv).read_bytes())  # rewritten whole


def test_poisoned_cache_entry_cannot_inject_lines(cache_case, cache_venv, tree, prefix):
    path, data = _warm(cache_case, cache_venv, tree, prefix)
    fmt, tag, table = _valid(data)
    poisoned = {}
    for directory, entry in table.items():
        poisoned[directory] = _with_roots(entry, lambda roots: {
            name: ("evil\nx.y:1|c", "1") if name == "acme_widgets" else owner for name, owner in roots.items()})
    path.write_bytes(marshal.dumps((fmt, tag, poisoned)))
    result = cache_case(tree)
    result.assert_reports(prefix.report("survivor"))


@pytest.mark.parametrize("kind", ["directory", "fifo", "dangling-symlink", "symlink-to-dev-zero", "unreadable"])
def test_cache_path_that_is_not_a_regular_file(cache_case, cache_venv, tree, prefix, kind):
    path, _ = _warm(cache_case, cache_venv, tree, prefix)
    path.unlink()
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "dangling-symlink":
        path.symlink_to(path.parent / "nowhere")
    elif kind == "symlink-to-dev-zero":
        path.symlink_to("/dev/zero")
    else:
        path.write_bytes(b"")
        path.chmod(0)
    try:
        for _ in range(2):
            cache_case(tree).assert_reports(prefix.report(ACME, "survivor"))
    finally:
        if path.is_dir() and not path.is_symlink():
            path.rmdir()
        elif path.exists() or path.is_symlink():
            path.unlink()


def test_cache_directory_that_is_a_file(cache_case, cache_venv, tree, prefix):
    path, _ = _warm(cache_case, cache_venv, tree, prefix)
    directory = path.parent
    for child in directory.iterdir():
        child.unlink()
    directory.rmdir()
    directory.write_bytes(b"not a directory")
    try:
        cache_case(tree).assert_reports(prefix.report(ACME, "survivor"))
    finally:
        directory.unlink()


# A tmpfs with one free page mounted over the environment's cache directory, in a
# mount namespace of the case's own; what the cache directory held at the end
# is copied out before the namespace goes away.
FULL_DISK = r"""
mount -t tmpfs -o size=8k tmpfs "$FAULT_CACHE_DIR" || exit 97
head -c 4096 /dev/zero > "$FAULT_CACHE_DIR/filler"
"$@"
rc=$?
mkdir -p "$FAULT_OUT/run${PYTHON_POPCONTEST_DISABLE:-active}"
cp -a "$FAULT_CACHE_DIR/." "$FAULT_OUT/run${PYTHON_POPCONTEST_DISABLE:-active}/"
exit $rc
"""


def test_full_disk_leaves_no_truncated_cache(cache_case, cache_venv, listener, prefix, tree, tmp_path):
    if faults.netns_available():  # the same needs: root and unshare
        require(f"a private mount namespace is needed: {faults.netns_available()}")
    cache_dir = cache_venv.root / "var" / "cache" / "popcon-site"
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Enough distributions that the cache needs more than the one free page:
    # the write then comes up short rather than failing at once.
    many = tmp_path / "many"
    for i in range(150):
        faults.write_dist_info(many, f"filler-dist-{i}", "1.0", {f"filler_module_{i}.py": ""})
    out = tmp_path / "out"
    env = {"HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "xdg"), "TMPDIR": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([str(tree), str(many)]), "FAULT_CACHE_DIR": str(cache_dir),
           "FAULT_OUT": str(out)}
    cmd = ["unshare", "-m", "sh", "-c", FULL_DISK, "full-disk", cache_venv.python, "-c", SCRIPT]
    for _ in range(2):
        result = ran_script(faults.twin(cmd, listener=listener, prefix=prefix, env=env, expect=1))
        result.assert_reports(prefix.report(ACME, "survivor"))
        left = sorted(p.name for p in (out / "runactive").iterdir())
        assert left == ["filler"] or all(_valid(p.read_bytes()) for p in (out / "runactive").glob("*.marshal")), left
        assert not [name for name in left if name.endswith(".tmp")], left
    # The full disk sent the cache to the next location, which holds it whole.
    _valid(next((tmp_path / "xdg" / "popcon-site").glob("index-*.marshal")).read_bytes())


# A program may restore the default action of SIGXFSZ (Python ignores it at
# start-up): a cache write beyond the file size limit must then fail, not
# kill the process.
FILE_SIZE_LIMIT = ("import signal, sys, acme_widgets, survivor\n"
                   "signal.signal(signal.SIGXFSZ, signal.SIG_DFL)\n"
                   "print('out')\nprint('err', file=sys.stderr)\nsys.exit(3)\n")


@pytest.mark.parametrize("action", ["default", "ignored"])
def test_file_size_limit_while_writing_the_cache(cache_case, cache_venv, listener, prefix, tree, tmp_path, action):
    code = FILE_SIZE_LIMIT if action == "default" else SCRIPT
    env = {"HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "xdg"), "TMPDIR": str(tmp_path),
           "PYTHONPATH": str(tree)}
    cmd = ["sh", "-c", 'ulimit -f 1 && exec "$@"', "limited", cache_venv.python, "-c", code]
    for _ in range(2):
        result = ran_script(faults.twin(cmd, listener=listener, prefix=prefix, env=env, expect=1))
        result.assert_reports(prefix.report(ACME, "survivor"))
    for directory in (cache_venv.root / "var" / "cache" / "popcon-site", tmp_path / "xdg" / "popcon-site"):
        left = sorted(p.name for p in directory.glob("*")) if directory.is_dir() else []
        assert not [name for name in left if name.endswith(".tmp")], left


def test_debug_lines_beyond_a_file_size_limit_keep_the_exit_status(venv, listener, prefix, tmp_path):
    # Debug goes to stderr, here a file that may not grow at all, in a
    # program that restored the default action of SIGXFSZ.
    from support.processes import run_python

    code = ("import signal, sys, acme_widgets\nsignal.signal(signal.SIGXFSZ, signal.SIG_DFL)\n"
            "print('out')\nsys.exit(3)\n")
    cmd = ["-c", 'ulimit -f 0 && exec "$@" 2>"$0"', str(tmp_path / "stderr"), str(venv.python), "-c", code]
    result = run_python("sh", cmd, listener=listener, prefix=prefix, env={"PYTHON_POPCONTEST_DEBUG": "1"}, expect=1)
    assert (result.rc, result.stdout) == (3, "out\n"), result
    assert result.datagrams == [prefix.report(ACME)], result


def test_cache_entries_of_the_wrong_types_raise_no_bytes_warning(cache_case, cache_venv, listener, prefix, tree,
                                                                  tmp_path):
    # python -b warns when bytes are compared with str, -bb raises: a damaged
    # or foreign cache with bytes where names belong must be dropped quietly.
    path, data = _warm(cache_case, cache_venv, tree, prefix)
    fmt, tag, table = _valid(data)
    damaged = dict(table)
    for directory, entry in table.items():
        damaged[directory.encode()] = entry
    env = {"HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "xdg"), "TMPDIR": str(tmp_path),
           "PYTHONPATH": str(tree)}
    for variant in [(fmt, tag, damaged), (fmt, tag.encode(), table), (fmt, tag, {k.encode(): v for k, v in table.items()})]:
        for flag in ("-b", "-bb"):
            path.write_bytes(marshal.dumps(variant))
            result = ran_script(faults.twin([cache_venv.python, flag, "-c", SCRIPT], listener=listener, prefix=prefix,
                                            env=env, expect=1))
            result.assert_reports(prefix.report(ACME, "survivor"))
            # Rewritten without the odd entries, so the next process is quiet too.
            ran_script(faults.twin([cache_venv.python, flag, "-c", SCRIPT], listener=listener, prefix=prefix,
                                   env=env, expect=1)).assert_reports(prefix.report(ACME, "survivor"))


# --- many processes at once ------------------------------------------------------

CONCURRENT = 48


def test_dozens_of_processes_writing_the_cache_at_once(cache_case, cache_venv, listener, prefix, tree, tmp_path,
                                                       venv, synthetic_wheels):
    # Each process also has a tree of its own, so every one of them indexes,
    # merges and writes the shared cache file at the same moment.
    cache_case(tree)  # takes the lock; the runs below go around it
    # No cache directory either: every process races to create it too.
    shutil.rmtree(cache_venv.root / "var" / "cache")
    own = []
    for i in range(CONCURRENT):
        path = tmp_path / f"own-{i}"
        path.mkdir()
        (path / f"scratch{i}.py").write_text("")
        own.append(path)
    cmds = [[cache_venv.python, "-c", f"import sys, acme_widgets, survivor, scratch{i}\nprint({i})"]
            for i in range(CONCURRENT)]
    results, datagrams = [], []
    env = {"HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "xdg"), "TMPDIR": str(tmp_path)}
    active_env = faults.case_environ(listener, prefix, env)
    quiet_env = dict(active_env, PYTHON_POPCONTEST_DISABLE="1")
    procs = []
    for i, cmd in enumerate(cmds):
        path_env = {"PYTHONPATH": os.pathsep.join([str(own[i]), str(tree)])}
        procs.append((faults.start(cmd, {**active_env, **path_env}), faults.start(cmd, {**quiet_env, **path_env})))
    import time

    deadline = time.monotonic() + faults.PROMPT_SECONDS * 2
    results = [faults.Twin(faults.finish(a, deadline), faults.finish(q, deadline)) for a, q in procs]
    datagrams = listener.collect(expect=CONCURRENT, settle=0.5)
    for i, result in enumerate(results):
        result.assert_unnoticed()
        assert result.active.stdout == f"{i}\n".encode(), result
    assert datagrams == [prefix.report(ACME, "survivor")] * CONCURRENT
    fmt, tag, table = _valid(_env_cache(cache_venv).read_bytes())
    assert str(tree) in table
    assert not list(_env_cache(cache_venv).parent.glob("*.tmp")), "temporary files left behind"


# --- a half-installed popcon-site ---------------------------------------------------

BROKEN_MODULES = {
    "reporter-missing": ("reporter.py", None),
    "reporter-syntax-error": ("reporter.py", "def (:\n"),
    "reporter-exits-on-import": ("reporter.py", "raise SystemExit(42)\n"),
    "wire-interrupts-on-import": ("wire.py", "raise KeyboardInterrupt\n"),
    "index-raises-on-import": ("index.py", "raise MemoryError\n"),
}


@pytest.mark.parametrize("damage", sorted(BROKEN_MODULES))
def test_half_installed_popcon_site_never_disturbs_the_process(cache_case, cache_venv, tree, damage):
    # An interrupted upgrade or a damaged file: whatever the exit path cannot
    # import, the program keeps its output and exit code (and nothing is sent).
    name, content = BROKEN_MODULES[damage]
    module = cache_venv.site_packages / "popcon_site" / name
    saved = module.read_bytes()
    try:
        if content is None:
            module.unlink()
        else:
            module.write_text(content)
        cache_case(tree, expect=0).assert_reports()
    finally:
        module.write_bytes(saved)
