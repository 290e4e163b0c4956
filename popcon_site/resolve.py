"""Host names to addresses for the exit path: bounded in time, and remembered.

Imported only when a report goes to a host name that needs the resolver (not
an IP address, not ``localhost``).  glibc's ``getaddrinfo`` takes no timeout:
a DNS server that has stopped answering costs 5 s per try, twice, for every
name of the search list (20 s and more in a Kubernetes pod), in the exit of
someone else's process.  Resolver options cannot bound it either: glibc reads
them once per thread, at its first lookup, which in a networked program has
long happened.

So the lookup runs beside the exit, which waits for it at most
:data:`RESOLVE_SECONDS`: in a thread, or where an exit handler may not start
one (Python 3.12), in a short-lived child interpreter (``python -I -S``
started with ``posix_spawn``, killed when late).  The answer is remembered
next to the module index for :data:`REMEMBER_SECONDS`, so that the lookup is
paid once every few minutes, not at every exit; a name that did not resolve
is remembered for :data:`RETRY_SECONDS`, so that a broken resolver costs one
bounded wait per process that exits before the failure is remembered, not
one per process.  A failure never replaces an address that is still current,
and while the resolver fails, the last address that worked is kept.
"""

import os
import sys

__all__ = ["REMEMBER_SECONDS", "RESOLVE_SECONDS", "RETRY_SECONDS", "address"]

RESOLVE_SECONDS = 1.0
REMEMBER_SECONDS = 300
RETRY_SECONDS = 30

# What a lookup that could not be tried at all returns; None means it failed.
NOT_TRIED = "not tried"

# The child: the first address of the name, IPv4 preferred like statsd
# clients, as "<family> <address>".  It prints nothing else, ever.
_CHILD = (
    "import _socket, os, sys\n"
    "infos = _socket.getaddrinfo(sys.argv[1].encode('ascii'), 0, 0, _socket.SOCK_DGRAM)\n"
    "infos.sort(key=lambda info: info[0] != _socket.AF_INET)\n"
    "os.write(1, ('%d %s' % (infos[0][0], infos[0][4][0])).encode('ascii'))\n"
)


def _first_address(_socket, name):
    infos = _socket.getaddrinfo(name.encode("ascii"), 0, 0, _socket.SOCK_DGRAM)
    infos.sort(key=lambda info: info[0] != _socket.AF_INET)
    return infos[0][0], infos[0][4][0]


def resolve_in_thread(name, seconds=RESOLVE_SECONDS):
    """``(family, address)``, None when the lookup failed or was late, or
    :data:`NOT_TRIED` when no thread may start (an exit handler on 3.12).

    A late lookup is left behind: the thread holds nothing of the program's,
    and the interpreter does not wait for it at shutdown."""
    import _socket
    import _thread

    found = []
    done = _thread.allocate_lock()
    done.acquire()

    def look_up():
        try:
            found.append(_first_address(_socket, name))
        except BaseException:
            pass
        finally:
            done.release()

    try:
        _thread.start_new_thread(look_up, ())
    except RuntimeError:
        return NOT_TRIED
    if not done.acquire(timeout=seconds):
        return None
    return found[0] if found else None


def resolve_in_child(name, seconds=RESOLVE_SECONDS):
    """``(family, address)``, None when the lookup failed or was late (the
    child is then killed), or :data:`NOT_TRIED` when no child can start."""
    import _signal
    import time

    executable = sys.executable
    # An embedding host (uWSGI, mod_wsgi) puts its own binary here.
    if type(executable) is not str or not os.path.basename(executable).startswith("python"):
        return NOT_TRIED
    env = {key: value for key, value in os.environ.items() if type(key) is str and type(value) is str}
    # Bounds each try in the child, whose resolver starts fresh.
    env["RES_OPTIONS"] = "timeout:1 attempts:1 " + env.get("RES_OPTIONS", "")
    env["PYTHON_POPCONTEST_DISABLE"] = "1"
    read_fd, write_fd = os.pipe()
    # The child's SIGCHLD is not the program's business: in this thread it
    # is blocked meanwhile and taken back.  (A program's other threads can
    # still receive it; see the README.)
    mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, [_signal.SIGCHLD])
    pid = None
    answer = b""
    try:
        try:
            pid = os.posix_spawn(executable, [executable, "-I", "-S", "-c", _CHILD, name], env,
                                 file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                                               (os.POSIX_SPAWN_DUP2, write_fd, 1),
                                               (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)],
                                 setsigmask=mask)
        finally:
            os.close(write_fd)
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
    except (OSError, TypeError, ValueError):
        return NOT_TRIED if pid is None else None
    finally:
        os.close(read_fd)
        if pid is not None:
            try:
                if answer is None:
                    os.kill(pid, 9)
                os.waitpid(pid, 0)
            except OSError:
                pass
            if _signal.SIGCHLD not in mask:
                _signal.sigtimedwait([_signal.SIGCHLD], 0)
        _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)
    if not answer:
        return None
    family, _, text = answer.decode("ascii", "replace").partition(" ")
    return (int(family), text) if family.isdigit() else None


def _locations():
    from popcon_site import reporter

    name = "addresses-%s.marshal" % reporter.CACHE_TAG
    for kind, path in reporter.cache_locations():
        yield kind, os.path.join(os.path.dirname(path), name)


def _read(kind, path):
    from popcon_site import reporter

    return reporter.read_cache(kind, path) or {}


def _valid(entry, now):
    """An entry is (expires, family, address): family 0 for a failure, else
    AF_INET or AF_INET6 with an address of that family.  One that expires
    further ahead than any entry is written (by a clock that was wrong, or
    has been set back since) is no entry; a minute's grace covers processes
    that read the time a moment apart."""
    import _socket

    if type(entry) is not tuple or len(entry) != 3:
        return False
    expires, family, text = entry
    if type(expires) not in (int, float) or not expires <= now + REMEMBER_SECONDS + 60 or type(text) is not str:
        return False
    if family == 0:
        return text == ""
    if family not in (_socket.AF_INET, _socket.AF_INET6):
        return False
    try:
        _socket.inet_pton(family, text)
    except (OSError, ValueError):
        return False
    return True


def _remember(key, value, now, debug):
    """Write ``key: value`` into the first address file that can be written,
    with what that file holds now and is still current.  A failure does not
    replace an address another process has found meanwhile."""
    import time

    from popcon_site import index

    now = max(now, time.time())
    for kind, path in _locations():
        current = {name: entry for name, entry in _read(kind, path).items()
                   if type(name) is str and _valid(entry, now) and entry[0] > now}
        theirs = current.get(key)
        if not value[1] and theirs is not None and theirs[1]:
            return
        current[key] = value
        try:
            index.write_cache(kind, path, current)
            return
        except OSError as exc:
            debug("cannot remember the address in %s: %s" % (path, exc))


def address(host, port, debug):
    """``(family, sockaddr)`` for a host name; raises OSError when it has none.

    ``debug`` takes one line of explanation."""
    import time

    now = time.time()
    key = host.lower()
    # The freshest answer any of the files holds: another user's environment
    # file may be older than this user's own.
    entry = None
    for kind, path in _locations():
        candidate = _read(kind, path).get(key)
        if _valid(candidate, now) and (entry is None or candidate[0] > entry[0]):
            entry = candidate
    if entry is not None and entry[0] > now:
        if not entry[1]:
            raise OSError("%s did not resolve a moment ago; trying again in %d s" % (host, entry[0] - now))
        debug("sending to %s, the remembered address of %s" % (entry[2], host))
        return entry[1], (entry[2], port)
    found = resolve_in_thread(host)
    if found is NOT_TRIED:
        found = resolve_in_child(host)
    if found is NOT_TRIED:
        raise OSError("%s cannot be looked up from this process (no thread or child interpreter may start)" % host)
    if found is not None:
        family, text = found
        _remember(key, (now + REMEMBER_SECONDS, family, text), now, debug)
        debug("resolved %s to %s; remembered for %d s where a cache can be written" % (host, text, REMEMBER_SECONDS))
        return family, (text, port)
    if entry is not None and entry[1]:
        # Due again, and the resolver fails: the last address that worked.
        _remember(key, (now + RETRY_SECONDS, entry[1], entry[2]), now, debug)
        debug("%s did not resolve within %g s; keeping its last address %s" % (host, RESOLVE_SECONDS, entry[2]))
        return entry[1], (entry[2], port)
    _remember(key, (now + RETRY_SECONDS, 0, ""), now, debug)
    raise OSError("%s did not resolve within %g s" % (host, RESOLVE_SECONDS))
