"""Where ``popcon-site report`` reads counts: a store file or Prometheus.

Both give the same :class:`Counts`, so the report looks the same whether the
embedded collector or statsd_exporter plus Prometheus did the collecting.
"""

import http.client
import json
import math
import re
import urllib.error
import urllib.parse
import urllib.request

from popcon_site.collector.mapping import LIBRARY_NAME, REPORTS_NAME

__all__ = ["Counts", "SourceError", "counts_from_db", "counts_from_prometheus"]


class SourceError(Exception):
    """The counts cannot be read; the message says from where and why."""


class Counts:
    """Totals for a report.

    ``libraries`` maps a library to its count; ``versions`` maps a library to
    ``{version: count}``, with ``""`` for counts sent without a version.
    """

    __slots__ = ("processes", "libraries", "versions", "source")

    def __init__(self, processes, versions, source):
        self.processes = processes
        self.versions = versions
        self.libraries = {library: sum(split.values()) for library, split in versions.items()}
        self.source = source


def counts_from_db(path, prefix=None):
    """Counts from a store file written by ``popcon-site collect``."""
    from popcon_site.collector.store import StoreError, read_counts

    try:
        stored_prefix, snap = read_counts(path)
    except StoreError as exc:
        raise SourceError(str(exc)) from None
    if prefix is not None and stored_prefix is not None and prefix != stored_prefix:
        raise SourceError("%s holds counts for the prefix %r, not %r" % (path, stored_prefix, prefix))
    versions = {}
    for (library, version), count in snap.libraries.items():
        versions.setdefault(library, {})[version] = count
    return Counts(snap.reports, versions, "store %s (prefix %s)" % (path, stored_prefix))


_DURATION = re.compile(r"[0-9]+(ms|s|m|h|d|w|y)\Z")
_MATCHER = re.compile(r'\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(=|!=|=~|!~)\s*"(?:[^"\\]|\\.)*"\s*\Z')


def check_range(text):
    """Return a PromQL duration such as ``30d``, or raise ValueError."""
    if not _DURATION.match(text):
        raise ValueError("%r is not a duration such as 30d, 12h or 90m" % (text,))
    return text


def check_matchers(text):
    """Return label matchers such as ``namespace="hub_a"``, or raise ValueError."""
    parts = [part for part in _split_matchers(text) if part.strip()]
    for part in parts:
        if not _MATCHER.match(part):
            raise ValueError("%r is not a label matcher such as namespace=\"hub_a\"" % (part,))
    return ",".join(part.strip() for part in parts)


def _split_matchers(text):
    parts, current, quoted, escaped = [], [], False, False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def check_url(base_url):
    """Return a Prometheus base URL, or raise SourceError if it cannot be one."""
    try:
        parts = urllib.parse.urlsplit(base_url)
        # Reading the port raises for one that is not a number.
        host, _ = parts.hostname, parts.port
    except ValueError as exc:
        raise SourceError("%r is not a valid URL: %s" % (base_url, exc)) from None
    if parts.scheme not in ("http", "https") or not host:
        raise SourceError("%r is not a valid URL: give the server's base URL, such as http://prometheus:9090"
                          % (base_url,))
    return base_url


class _Unreadable(Exception):
    """What is wrong with an answer of Prometheus, in a few words."""


class _Refused(Exception):
    """Prometheus answered the query with an error of its own."""


def _query(base_url, promql, timeout, at):
    """The samples of an instant vector at the Unix time ``at``: ``[(labels, value)]``."""
    url = base_url.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": promql, "time": "%.3f" % at})
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        detail = ""
        try:
            detail = json.load(exc).get("error", "")
        except Exception:
            pass
        if not isinstance(detail, str):
            detail = ""
        raise SourceError("Prometheus at %s answered %s %s" % (base_url, exc.code, _line(detail) or exc.reason)) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SourceError("cannot reach Prometheus at %s: %s" % (base_url, reason)) from None
    except http.client.IncompleteRead:
        raise _unreadable(base_url, "the answer broke off before its end") from None
    except http.client.HTTPException as exc:
        # A server at that port that does not speak HTTP.
        raise _unreadable(base_url, "it is not an HTTP answer (%s)" % (_line(str(exc)) or type(exc).__name__)) from None
    except (ValueError, RecursionError):
        raise SourceError("Prometheus at %s did not answer with JSON; is it the server's base URL?" % (base_url,)) from None
    try:
        return _samples(body)
    except _Refused as exc:
        raise SourceError("Prometheus at %s refused the query: %s" % (base_url, exc)) from None
    except _Unreadable as exc:
        raise _unreadable(base_url, str(exc)) from None


def _unreadable(base_url, what):
    return SourceError("Prometheus at %s gave an answer popcon-site cannot read: %s" % (base_url, what))


def _line(text, limit=200):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _shown(value):
    return _line(json.dumps(value), 80)


def _samples(body):
    """Check an answer of the query API, and return its samples as
    ``[(labels, value)]``: an answer of another shape (another server at
    that URL, a proxy, a broken one) is an error that says so."""
    if not isinstance(body, dict):
        raise _Unreadable("the answer is %s, not a JSON object" % _shown(body))
    status = body.get("status")
    if status != "success":
        error = body.get("error")
        if status == "error" and isinstance(error, str):
            raise _Refused(_line(error))
        raise _Unreadable("its status is %s, not \"success\"" % _shown(status))
    data = body.get("data")
    if not isinstance(data, dict):
        raise _Unreadable("its data is %s, not an object" % _shown(data))
    if data.get("resultType", "vector") != "vector":
        raise _Unreadable("its result type is %s, not \"vector\"" % _shown(data.get("resultType")))
    result = data.get("result")
    if not isinstance(result, list):
        raise _Unreadable("its result is %s, not a list" % _shown(result))
    samples = []
    for sample in result:
        if not isinstance(sample, dict):
            raise _Unreadable("a sample is %s, not an object" % _shown(sample))
        labels = sample.get("metric", {})
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise _Unreadable("a sample's labels are %s, not names and text" % _shown(labels))
        value = sample.get("value")
        if not isinstance(value, list) or len(value) != 2 or not isinstance(value[1], str):
            raise _Unreadable("a sample's value is %s, not [time, \"number\"]" % _shown(value))
        try:
            number = float(value[1])
        except ValueError:
            raise _Unreadable("a sample's value %s is not a number" % _shown(value[1])) from None
        # Prometheus writes NaN and infinities as text too; no count comes of them.
        samples.append((labels, number if math.isfinite(number) else 0.0))
    return samples


def _window_terms(series, window):
    """PromQL for what a counter added within ``window``.

    ``increase()`` sees only what changed between samples inside the window,
    so a series born inside it (statsd_exporter creates a library's counter
    at its first report, already at 1) would lose its first value, and a
    library imported once in the window would look never imported.  The
    second term adds the first value of each series that did not exist when
    the window began: its smallest, as counters only grow.
    """
    return ("increase(%s[%s])" % (series, window),
            "min_over_time(%s[%s]) unless %s offset %s" % (series, window, series, window))


def _summed(base_url, metric, by, window, selector, timeout, at):
    """{label values: total} of ``metric``, over ``window`` when one is given."""
    series = metric + selector
    terms = _window_terms(series, window) if window else (series,)
    totals = {}
    for term in terms:
        promql = "sum by (%s) (%s)" % (", ".join(by), term) if by else "sum(%s)" % term
        for labels, value in _query(base_url, promql, timeout, at):
            key = tuple(labels.get(name, "") for name in by)
            totals[key] = totals.get(key, 0.0) + value
    if window:
        # increase() extrapolates to the window's edges, so its counts of
        # whole processes come back fractional.
        totals = {key: float(round(value)) for key, value in totals.items()}
    return totals


def counts_from_prometheus(base_url, window=None, matchers="", timeout=30):
    """Counts from a Prometheus server that scrapes the collector or
    statsd_exporter.

    Without a window it sums the counters as they stand, which is what the
    collector has counted since its store began (statsd_exporter restarts
    from zero).  With a window such as ``30d`` it sums what they added
    within that window, which survives exporter restarts and counts series
    that were born inside it.
    """
    import time

    check_url(base_url)
    selector = "{%s}" % matchers if matchers else ""
    # Every query is evaluated at the same instant, so that a scrape landing
    # between them cannot give a denominator newer than the libraries.
    at = time.time()
    versions = {}
    libraries = _summed(base_url, LIBRARY_NAME, ("library", "version"), window, selector, timeout, at)
    for (library, version), count in libraries.items():
        if library and count:
            versions.setdefault(library, {})[version] = count
    processes = _summed(base_url, REPORTS_NAME, (), window, selector, timeout, at).get((), 0.0)
    description = "Prometheus %s" % base_url
    if window:
        description += ", last %s" % window
    if matchers:
        description += ", %s" % matchers
    return Counts(processes, versions, description)
