"""popcon_site.wire: statsd lines, datagram packing, and the UDP send."""

import re
import socket

import pytest
from hypothesis import given, strategies as st

from conftest import require
from popcon_site.config import prefix_problem
from popcon_site.wire import pack_datagrams, report_lines, send_datagrams

CANONICAL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?", fullmatch=True)
COMPONENT = st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True)
VALID_PREFIX = st.lists(COMPONENT, min_size=1, max_size=4).map(".".join)


def test_default_prefix_gives_the_contract_lines():
    lines = report_lines("python_popcon.library_used", {"numpy": "1.26.4", "zope-interface": None})
    assert lines == [
        "python_popcon.library_used.numpy:1|c",
        "python_popcon.library_used.zope-interface:1|c",
        "python_popcon.reports:1|c",
    ]


def test_libraries_are_sorted_and_the_denominator_comes_last():
    lines = report_lines("a.b.used", {"zeta": None, "alpha": None, "mid-dle": None})
    assert lines == ["a.b.used.alpha:1|c", "a.b.used.mid-dle:1|c", "a.b.used.zeta:1|c", "a.b.reports:1|c"]


def test_one_component_prefix_has_an_underscore_denominator():
    assert report_lines("popcon", {"attrs": None}) == ["popcon.attrs:1|c", "popcon_reports:1|c"]


def test_nothing_to_report_gives_no_lines_at_all():
    assert report_lines("python_popcon.library_used", {}) == []


def test_versions_are_tags_only_when_asked():
    assert report_lines("p.lib", {"x": "2.0"}) == ["p.lib.x:1|c", "p.reports:1|c"]
    assert report_lines("p.lib", {"x": "2.0"}, with_versions=True) == ["p.lib.x:1|c|#version:2.0", "p.reports:1|c"]
    # Always tagged when asked: statsd_exporter drops series whose label names differ.
    assert report_lines("p.lib", {"x": None}, with_versions=True) == ["p.lib.x:1|c|#version:unknown", "p.reports:1|c"]


@pytest.mark.parametrize("name", ["Not_Canonical", "zope.interface", "a b", "x:1|c", "x\ny:1|c", "", "ünï"])
def test_non_canonical_names_are_dropped_never_escaped(name):
    lines = report_lines("p.lib", {name: None, "ok": None})
    assert lines == ["p.lib.ok:1|c", "p.reports:1|c"]


@given(prefix=VALID_PREFIX,
       libraries=st.dictionaries(st.text(max_size=40), st.one_of(st.none(), st.text(max_size=20)), max_size=8),
       with_versions=st.booleans())
def test_no_input_can_inject_a_line_or_field(prefix, libraries, with_versions):
    assert prefix_problem(prefix) is None
    counter = re.compile(re.escape(prefix) + r"\.[a-z0-9-]+:1\|c(\|#version:[A-Za-z0-9.+!_-]+)?")
    lines = report_lines(prefix, libraries, with_versions=with_versions)
    if lines:
        assert lines[-1].endswith("reports:1|c") and ":" not in lines[-1][:-len(":1|c")]
        assert all(counter.fullmatch(line) for line in lines[:-1]), lines
        assert len(lines) - 1 == len({name for name in libraries if re.fullmatch(r"[a-z0-9-]+", name)})
        assert b"\n".join(pack_datagrams(lines)).split(b"\n") == [line.encode() for line in lines]


@given(lines=st.lists(st.text(alphabet="abcdefghij.:|-_0123456789", min_size=1, max_size=600), max_size=30),
       limit=st.sampled_from([64, 512, 1432]))
def test_packing_keeps_every_line_in_order_and_fills_datagrams_greedily(lines, limit):
    datagrams = pack_datagrams(lines, limit=limit)
    assert b"\n".join(datagrams) == "\n".join(lines).encode("ascii")
    for datagram in datagrams:
        assert len(datagram) <= limit or b"\n" not in datagram, "only a single long line may exceed the limit"
    for current, following in zip(datagrams, datagrams[1:]):
        first_next_line = following.split(b"\n")[0]
        assert len(current) + 1 + len(first_next_line) > limit, "a line that fitted was moved to the next datagram"


def test_a_typical_report_fits_one_512_byte_datagram():
    lines = report_lines("python_popcon.library_used", {f"library-{i}": None for i in range(10)})
    assert len(pack_datagrams(lines)) == 1
    assert len(pack_datagrams(lines * 10)) > 1
    assert all(len(d) <= 512 for d in pack_datagrams(lines * 10))


def _receive(sock):
    sock.settimeout(5)
    return sock.recvfrom(65535)[0]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_send_reaches_an_ipv4_listener(host):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        send_datagrams(host, sock.getsockname()[1], [b"a.b:1|c", b"a.reports:1|c"])
        assert _receive(sock) == b"a.b:1|c"
        assert _receive(sock) == b"a.reports:1|c"


def test_send_reaches_an_ipv6_listener():
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.bind(("::1", 0))
    except OSError as exc:
        require(f"no IPv6 loopback here: {exc}")
    with sock:
        send_datagrams("::1", sock.getsockname()[1], [b"six:1|c"])
        assert _receive(sock) == b"six:1|c"


def test_send_to_a_name_that_does_not_resolve_raises_oserror():
    with pytest.raises(OSError):
        send_datagrams("does-not-exist.invalid", 8125, [b"x:1|c"])
