"""``popcon-site collect``: statsd over UDP in, SQLite and /metrics out.

One thread receives datagrams, parses them and flushes the store on a timer;
a second thread serves /metrics.  SIGTERM, SIGINT and SIGHUP end the loop
after a last drain of the socket and a last flush.
"""

import errno
import os
import re
import selectors
import signal
import socket
import sys
import threading
import time
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from popcon_site.collector.lines import LineParser
from popcon_site.collector.store import CountStore, StoreError

__all__ = ["CollectorError", "parse_address", "run"]

# Room for bursts: at 10,000 datagrams a second a busy moment must not
# overflow the kernel's queue before the loop drains it.
_RECEIVE_BUFFER = 8 * 1024 * 1024
_MAX_DATAGRAM = 65535
_PORT = re.compile(r"[0-9]{1,5}\Z")


class CollectorError(Exception):
    """A problem that stops the collector, described for an admin."""


def parse_address(text, what):
    """``HOST:PORT`` or ``[V6HOST]:PORT`` -> ``(host, port)``.

    >>> parse_address("127.0.0.1:8125", "--udp")
    ('127.0.0.1', 8125)
    >>> parse_address("[::1]:0", "--http")
    ('::1', 0)
    """
    host, colon, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
    if not colon or not host or not _PORT.match(port) or not 0 <= int(port) < 65536:
        raise CollectorError("%s %r is not HOST:PORT (for IPv6, [ADDRESS]:PORT)" % (what, text))
    return host, int(port)


def _show(host, port):
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def _resolve(host, port, kind, what):
    try:
        infos = socket.getaddrinfo(host, port, type=kind)
    except socket.gaierror as exc:
        raise CollectorError("cannot resolve %s host %r: %s" % (what, host, exc.strerror)) from None
    except UnicodeError as exc:
        # IDNA refuses a name before any lookup; its words vary with the
        # Python version, so the common cases are worded here.
        raise CollectorError("cannot resolve %s host %r: %s" % (what, host, _name_problem(host, exc))) from None
    except ValueError as exc:
        raise CollectorError("cannot resolve %s host %r: %s" % (what, host, exc)) from None
    # IPv4 first, as the reporter prefers it for names.
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    return infos[0][0], infos[0][4]


def _name_problem(host, exc):
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if any(not label for label in labels):
        return "it has an empty label"
    if any(len(label) > 63 for label in labels):
        return "it has a label longer than 63 characters"
    reason = exc.reason if isinstance(exc, UnicodeEncodeError) else str(exc)
    match = re.search(r"\(UnicodeError: (.*)\)\Z", reason)
    return "it is not a host name (%s)" % (match.group(1) if match else reason)


def _bind_udp(host, port):
    family, address = _resolve(host, port, socket.SOCK_DGRAM, "UDP")
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER)
        except OSError:
            pass
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise CollectorError("cannot listen on UDP %s: %s" % (_show(host, port), _reason(exc))) from None
    sock.setblocking(False)
    return sock


def _reason(exc):
    if exc.errno == errno.EADDRINUSE:
        return "the port is already in use"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "that address is not on this machine"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges)"
    return exc.strerror or str(exc)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        pass


class HttpErrors:
    """Requests to /metrics that failed on the connection (a client that
    reset it, sent garbage or went away), counted instead of printed."""

    def __init__(self):
        self._lock = threading.Lock()
        self.count = 0

    def add(self):
        with self._lock:
            self.count += 1

    def describe(self):
        return []

    def collect(self):
        from prometheus_client.core import CounterMetricFamily

        yield CounterMetricFamily(
            "popcon_site_collector_http_errors",
            "Requests to /metrics that failed on the connection (reset, garbage, gone).",
            value=self.count,
        )


def _bind_http(host, port, registry, errors):
    from prometheus_client import make_wsgi_app

    family, address = _resolve(host, port, socket.SOCK_STREAM, "HTTP")

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True
        address_family = family

        def handle_error(self, request, client_address):
            # socketserver prints a traceback for any failed request; a
            # client resetting its connection is no news to the admin.
            errors.add()

    try:
        httpd = make_server(address[0], address[1], make_wsgi_app(registry), Server, handler_class=_QuietHandler)
    except OSError as exc:
        raise CollectorError("cannot listen on HTTP %s: %s" % (_show(host, port), _reason(exc))) from None
    return httpd


class _Stop:
    def __init__(self):
        self.requested = False

    def __call__(self, signum, frame):
        self.requested = True


def run(udp, http, db, prefix, max_series, flush_interval, out=None, stop=None):
    """Collect until SIGTERM or SIGINT (or ``stop.requested`` is set, when
    the caller handles the signals itself).  Raises CollectorError or
    StoreError for problems an admin must fix; returns normally after a
    clean stop.

    Nothing is created before the store path is checked and both sockets
    are bound, and a collector that cannot start removes what it created."""
    from prometheus_client import CollectorRegistry

    from popcon_site.collector.exposition import StoreCollector
    from popcon_site.collector.store import check_path

    parser = LineParser(prefix)
    check_path(db)
    store = udp_sock = httpd = None
    serving = started = False
    wake_r, wake_w = os.pipe()
    old_handlers = {}
    try:
        udp_sock = _bind_udp(*udp)
        registry = CollectorRegistry(auto_describe=False)
        errors = HttpErrors()
        registry.register(errors)
        httpd = _bind_http(http[0], http[1], registry, errors)
        store = CountStore(db, prefix, max_series)
        registry.register(StoreCollector(store))
        threading.Thread(target=httpd.serve_forever, name="popcon-site-http", daemon=True).start()
        serving = True

        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        if stop is None:
            stop = _Stop()
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                old_handlers[signum] = signal.signal(signum, stop)

        udp_host, udp_port = udp_sock.getsockname()[:2]
        http_host, http_port = httpd.socket.getsockname()[:2]
        out = out if out is not None else sys.stdout
        try:
            out.write(
                "popcon-site collect: listening on udp %s and http://%s/metrics, storing in %s (prefix %s)\n"
                % (_show(udp_host, udp_port), _show(http_host, http_port), os.path.abspath(db), prefix)
            )
            out.flush()
        except OSError as exc:
            raise CollectorError("cannot write to standard output: %s" % (exc.strerror or exc)) from None
        started = True
        _loop(udp_sock, wake_r, store, parser, flush_interval, stop)
        # Whatever the kernel already queued was sent before the stop.
        _drain(udp_sock, store, parser)
        try:
            store.flush()
        except StoreError as exc:
            raise StoreError("%s; the counts received since the last successful write are lost" % exc) from None
    finally:
        signal.set_wakeup_fd(-1)
        for signum, handler in old_handlers.items():
            signal.signal(signum, handler)
        if httpd is not None:
            if serving:
                httpd.shutdown()
            httpd.server_close()
        if udp_sock is not None:
            udp_sock.close()
        os.close(wake_r)
        os.close(wake_w)
        if store is not None:
            if started:
                store.close()
            else:
                store.discard()


def _drain(sock, store, parser, limit=10000):
    """Receive what is queued, up to ``limit`` datagrams, without blocking."""
    parse = parser.parse
    received = 0
    while received < limit:
        try:
            data = sock.recv(_MAX_DATAGRAM)
        except (BlockingIOError, InterruptedError):
            break
        except OSError:
            # ICMP errors surface on some platforms as a failed recv; the
            # datagram they refer to is gone, the socket is fine.
            received += 1
            continue
        received += 1
        store.add([parse(raw) for raw in data.split(b"\n") if raw])
    return received


def _loop(sock, wake_r, store, parser, flush_interval, stop):
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    next_flush = time.monotonic() + flush_interval
    write_failing = False
    try:
        while not stop.requested:
            timeout = max(0.0, next_flush - time.monotonic())
            for key, _ in selector.select(timeout):
                if key.fileobj is sock:
                    _drain(sock, store, parser, limit=1000)
                else:
                    try:
                        os.read(wake_r, 512)
                    except BlockingIOError:
                        pass
            now = time.monotonic()
            if now >= next_flush:
                next_flush = now + flush_interval
                try:
                    store.flush()
                except StoreError as exc:
                    # Keep counting in memory and retry every interval; say
                    # so once, and again when it recovers.
                    if not write_failing:
                        sys.stderr.write("popcon-site collect: %s; counts are kept in memory and retried\n" % exc)
                        sys.stderr.flush()
                    write_failing = True
                else:
                    if write_failing:
                        sys.stderr.write("popcon-site collect: writing %s works again\n" % store.path)
                        sys.stderr.flush()
                    write_failing = False
    finally:
        selector.close()
