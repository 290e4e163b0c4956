"""Fault matrix, network and settings: wherever the counters cannot go, or the
settings are wrong, the host process behaves exactly as without popcon-site.

Each case runs twice at once, with popcon-site and with
PYTHON_POPCONTEST_DISABLE=1, and compares exit code, stdout and stderr byte
for byte (support/faults.py).
"""

import pytest

from conftest import require
from support import distributions as d
from support import faults

ACME = d.ACME.canonical
# Output on both streams and an exit code of its own, so any change shows.
SCRIPT = "import sys, acme_widgets\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)"


@pytest.fixture
def case(venv, listener, prefix):
    def case(*args, env=None, expect=0, wrap=None, **kwargs):
        cmd = [venv.python, *args]
        kwargs.setdefault("listener", listener)
        return faults.twin(wrap(cmd) if wrap else cmd, prefix=prefix, env=env, expect=expect, **kwargs)
    return case


@pytest.fixture
def newest_case(newest_venv, listener, prefix):
    def case(*args, env=None, expect=0):
        return faults.twin([newest_venv.python, *args], listener=listener, prefix=prefix, env=env, expect=expect)
    return case


def ran_script(result):
    """Guards a case against its own set-up failing the same way twice."""
    assert (result.quiet.rc, result.quiet.stdout, result.quiet.stderr) == (3, b"out\n", b"err\n"), result
    return result


# A process that ends at once must not be held until the resolver gives up.
DNS_STALL_BOUND = 5


@pytest.fixture(scope="session")
def netns():
    reason = faults.netns_available()
    if reason:
        require(reason)


def test_baseline_case_reports(case, prefix):
    # Guards the others: the same script does report when nothing is wrong.
    ran_script(case("-c", SCRIPT, expect=1)).assert_reports(prefix.report(ACME))


# --- where the counters go -------------------------------------------------------

@pytest.mark.parametrize("host", ["popcon-nowhere.invalid", "no-such-host-popcontest", "x" * 63 + ".invalid"])
def test_host_that_does_not_resolve(case, host):
    ran_script(case("-c", SCRIPT, env={"PYTHON_POPCONTEST_STATSD_HOST": host})).assert_reports()


def test_resolver_that_never_answers_does_not_hold_the_exit(case, netns, tmp_path, venv):
    # A DNS server that receives and never answers.  Without a bound the
    # resolver waits 5 s per try, twice, in the exit of a process that
    # otherwise ends at once; the bound here is about that stall, not speed.
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\n")
    env = {"PYTHON_POPCONTEST_STATSD_HOST": "statsd.popcontest.example", "FAULT_RESOLV": str(resolv),
           "FAULT_SILENT_DNS": str(venv.python), "FAULT_DNS_READY": str(tmp_path / "dns-ready")}
    result = ran_script(case("-c", SCRIPT, env=env, wrap=faults.in_netns, timeout=DNS_STALL_BOUND))
    result.assert_reports()


def test_nothing_listening(case):
    ran_script(case("-c", SCRIPT, env={"PYTHON_POPCONTEST_STATSD_PORT": str(faults.closed_port())})).assert_reports()


def test_nothing_listening_then_more_work_in_a_child(case, listener, prefix, tmp_path):
    # A refused datagram (ICMP port unreachable) must not leak into the
    # program as a later socket error.
    script = (
        "import subprocess, sys, acme_widgets\n"
        "subprocess.run([sys.executable, '-c', 'import acmens.beta'], check=True)\n"
        "print('done')\n"
    )
    case("-c", script, env={"PYTHON_POPCONTEST_STATSD_PORT": str(faults.closed_port())}).assert_reports()


def test_loopback_interface_down(case, netns):
    # No route at all: sendto fails with ENETUNREACH.
    ran_script(case("-c", SCRIPT, wrap=lambda cmd: ["unshare", "-n", *map(str, cmd)])).assert_reports()


def test_blackholed_route(case, netns):
    env = {"PYTHON_POPCONTEST_STATSD_HOST": "127.0.0.2", "FAULT_ROUTE": "blackhole 127.0.0.2/32 table local"}
    ran_script(case("-c", SCRIPT, env=env, wrap=faults.in_netns)).assert_reports()


@pytest.fixture
def listener6():
    if not faults.ipv6_loopback_available():
        require("IPv6 loopback (::1) is not available")
    with faults.Udp6Listener() as udp:
        yield udp


@pytest.mark.parametrize("spelling", ["::1", "[::1]", "0:0:0:0:0:0:0:1"])
def test_ipv6_host_receives_the_report(venv, listener6, prefix, spelling):
    env = {"PYTHON_POPCONTEST_STATSD_HOST": spelling}
    result = faults.twin([venv.python, "-c", SCRIPT], listener=listener6, prefix=prefix, env=env, expect=1)
    result.assert_reports(prefix.report(ACME))


def test_ipv6_host_with_nothing_listening(case, listener6):
    env = {"PYTHON_POPCONTEST_STATSD_HOST": "::1",
           "PYTHON_POPCONTEST_STATSD_PORT": str(faults.closed_port(faults.socket.AF_INET6))}
    ran_script(case("-c", SCRIPT, env=env)).assert_reports()


def test_ipv6_host_without_ipv6(case, netns):
    # A namespace whose loopback has no ::1 address.
    env = {"PYTHON_POPCONTEST_STATSD_HOST": "::1", "FAULT_ROUTE": ""}
    wrap = lambda cmd: faults.in_netns(["sh", "-c", 'ip -6 addr flush dev lo; exec "$@"', "x", *cmd])  # noqa: E731
    ran_script(case("-c", SCRIPT, env=env, wrap=wrap)).assert_reports()


# --- settings ------------------------------------------------------------------

@pytest.mark.parametrize("port", ["0", "65536", "-1", "x", "8125x", " ", "\u0663", "1" * 40, "0x1f90", "1e3"])
def test_invalid_port(newest_case, port):
    ran_script(newest_case("-c", SCRIPT, env={"PYTHON_POPCONTEST_STATSD_PORT": port})).assert_reports()


@pytest.mark.parametrize("prefix_value", ["a..b", ".x", "x.", "a b", "x:1|c", "a\nb.c", "\u00fcber.x", "x/y", "x" * 300,
                                          "a.b|#tag", "a\tb"])
def test_invalid_prefix(newest_case, prefix_value):
    ran_script(newest_case("-c", SCRIPT, env={"PYTHON_POPCONTEST_STATSD_PREFIX": prefix_value})).assert_reports()


@pytest.mark.parametrize("host", ["not a host", "\u00fcn\u00ef.example", "::zz", "[::1", "1.2.3.4.5", "a" * 300,
                                  "host\x7f", "localhost:8125", "-bad-"])
def test_invalid_host(newest_case, host):
    ran_script(newest_case("-c", SCRIPT, env={"PYTHON_POPCONTEST_STATSD_HOST": host})).assert_reports()


@pytest.mark.parametrize("variable", ["PYTHON_POPCONTEST_DEBUG", "PYTHON_POPCONTEST_DRY_RUN",
                                      "PYTHON_POPCONTEST_VERSIONS", "PYTHON_POPCONTEST_INCLUDE_USER",
                                      "PYTHON_POPCONTEST_ALL_RANKS"])
@pytest.mark.parametrize("value", ["maybe", "2", "-1", "\u00e9", "true!", " "])
def test_unrecognised_flag_values_mean_off(newest_case, prefix, variable, value):
    ran_script(newest_case("-c", SCRIPT, env={variable: value}, expect=1)).assert_reports(prefix.report(ACME))


def test_surrounding_spaces_in_settings_are_ignored(case, prefix, listener):
    env = {"PYTHON_POPCONTEST_STATSD_HOST": " 127.0.0.1 ", "PYTHON_POPCONTEST_STATSD_PORT": f" {listener.port} ",
           "PYTHON_POPCONTEST_STATSD_PREFIX": f" {prefix.name} "}
    ran_script(case("-c", SCRIPT, env=env, expect=1)).assert_reports(prefix.report(ACME))


@pytest.mark.parametrize("env", [
    {"PYTHON_POPCONTEST_STATSD_PORT": "x"},
    {"PYTHON_POPCONTEST_STATSD_PREFIX": "a..b"},
    {"PYTHON_POPCONTEST_STATSD_HOST": "not a host"},
], ids=["port", "prefix", "host"])
def test_bad_settings_on_every_interpreter(case, env):
    ran_script(case("-c", SCRIPT, env=env)).assert_reports()
