"""Host names to addresses for the exit path: bounded in time, and remembered.

Imported only when a report goes to a host name that needs the resolver (not
an IP address, not ``localhost``).  glibc's ``getaddrinfo`` takes no timeout:
a DNS server that has stopped answering costs 5 s per try, twice, for every
name of the search list (20 s and more in a Kubernetes pod), in the exit of
someone else's process.  Resolver options cannot bound it either: glibc reads
them once per thread, at its first lookup, which in a networked program has
long happened.  And starting a thread is refused inside an exit handler on
Python 3.12.

So the name is resolved by a short-lived child interpreter (``python -I -S``,
started with ``posix_spawn``), which is killed when it has not answered within
:data:`RESOLVE_SECONDS`.  The answer is remembered next to the module index
for :data:`REMEMBER_SECONDS`, so a process pays for the child (about 20 ms)
only when the address was not looked up in the last few minutes; a name that
did not resolve is remembered for :data:`RETRY_SECONDS`, so that a broken
resolver costs at most one bounded wait in that time.  When a remembered
address is due again and the resolver fails, the last address that worked is
kept.
"""

import os
import sys

__all__ = ["REMEMBER_SECONDS", "RESOLVE_SECONDS", "RETRY_SECONDS", "address"]

RESOLVE_SECONDS = 1.0
REMEMBER_SECONDS = 300
RETRY_SECONDS = 30

# The child: the first address of the name, IPv4 preferred like statsd
# clients, as "<family> <address>".  It prints nothing else, ever.
_CHILD = (
    "import _socket, os, sys\n"
    "infos = _socket.getaddrinfo(sys.argv[1].encode('ascii'), 0, 0, _socket.SOCK_DGRAM)\n"
    "infos.sort(key=lambda info: info[0] != _socket.AF_INET)\n"
    "os.write(1, ('%d %s' % (infos[0][0], infos[0][4][0])).encode('ascii'))\n"
)


def _locations():
    from popcon_site import reporter

    name = "addresses-%s.marshal" % reporter.CACHE_TAG
    for kind, path in reporter.cache_locations():
        yield kind, os.path.join(os.path.dirname(path), name)


def _valid(entry):
    return (type(entry) is tuple and len(entry) == 3 and type(entry[0]) in (int, float)
            and type(entry[1]) is int and type(entry[2]) is str)


def _remember(tables, key, value, now, debug):
    """Write ``key: value`` into the first address file that can be written,
    with what that file held and is still current."""
    from popcon_site import index

    for kind, path, table in tables:
        kept = {name: entry for name, entry in (table or {}).items()
                if type(name) is str and _valid(entry) and entry[0] > now}
        kept[key] = value
        try:
            index.write_cache(kind, path, kept)
            return
        except OSError as exc:
            debug("cannot remember the address in %s: %s" % (path, exc))


def resolve_in_child(name, seconds=RESOLVE_SECONDS):
    """``(family, address)`` of a host name, or None when it does not resolve
    within ``seconds`` (the child is then killed) or cannot be resolved here."""
    import _signal
    import time

    executable = sys.executable
    # An embedding host (uWSGI, mod_wsgi) puts its own binary here.
    if not executable or not os.path.basename(executable).startswith("python"):
        return None
    env = dict(os.environ)
    # Bounds each try in the child, whose resolver starts fresh.
    env["RES_OPTIONS"] = "timeout:1 attempts:1 " + env.get("RES_OPTIONS", "")
    env["PYTHON_POPCONTEST_DISABLE"] = "1"
    read_fd, write_fd = os.pipe()
    # The child's SIGCHLD is not the program's business: a handler of the
    # program's own must neither run for it nor reap it.
    mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, [_signal.SIGCHLD])
    try:
        try:
            pid = os.posix_spawn(executable, [executable, "-I", "-S", "-c", _CHILD, name], env,
                                 file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                                               (os.POSIX_SPAWN_DUP2, write_fd, 1),
                                               (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)],
                                 setsigmask=mask)
        finally:
            os.close(write_fd)
        answer = b""
        try:
            os.set_blocking(read_fd, False)
            deadline = time.monotonic() + seconds
            while True:
                try:
                    chunk = os.read(read_fd, 256)
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        answer = None
                        break
                    time.sleep(0.002)
                    continue
                if not chunk:
                    break
                answer += chunk
        finally:
            os.close(read_fd)
            try:
                if answer is None:
                    os.kill(pid, 9)
                os.waitpid(pid, 0)
            except OSError:
                pass
            _signal.sigtimedwait([_signal.SIGCHLD], 0)
    finally:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)
    if not answer:
        return None
    family, _, text = answer.decode("ascii", "replace").partition(" ")
    return (int(family), text) if family.isdigit() and text else None


def address(host, port, debug):
    """``(family, sockaddr)`` for a host name; raises OSError when it has none.

    ``debug`` takes one line of explanation."""
    import time

    from popcon_site import reporter

    now = time.time()
    key = host.lower()
    tables = [(kind, path, reporter.read_cache(kind, path)) for kind, path in _locations()]
    # The freshest answer any of the files holds: another user's environment
    # file may be older than this user's own.
    entry = None
    for _, _, table in tables:
        candidate = table.get(key) if table else None
        if _valid(candidate) and (entry is None or candidate[0] > entry[0]):
            entry = candidate
    if entry is not None and entry[0] > now:
        if not entry[1]:
            raise OSError("%s did not resolve a moment ago; trying again in %d s" % (host, entry[0] - now))
        debug("sending to %s, the remembered address of %s" % (entry[2], host))
        return entry[1], (entry[2], port)
    found = resolve_in_child(host)
    if found is not None:
        family, text = found
        _remember(tables, key, (now + REMEMBER_SECONDS, family, text), now, debug)
        debug("resolved %s to %s; remembered for %d s" % (host, text, REMEMBER_SECONDS))
        return family, (text, port)
    if entry is not None and entry[1]:
        # Due again, and the resolver fails: the last address that worked.
        _remember(tables, key, (now + RETRY_SECONDS, entry[1], entry[2]), now, debug)
        debug("%s did not resolve within %g s; keeping its last address %s" % (host, RESOLVE_SECONDS, entry[2]))
        return entry[1], (entry[2], port)
    _remember(tables, key, (now + RETRY_SECONDS, 0, ""), now, debug)
    raise OSError("%s did not resolve within %g s" % (host, RESOLVE_SECONDS))
