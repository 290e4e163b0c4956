"""Fault matrix, network and settings: wherever the counters cannot go, or the
settings are wrong, the host process behaves exactly as without popcon-site.

Each case runs twice at once, with popcon-site and with
PYTHON_POPCONTEST_DISABLE=1, and compares exit code, stdout and stderr byte
for byte (support/faults.py).
"""

import secrets

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


K8S_HOST = "popcon-statsd-prometheus-statsd-exporter.monitoring.svc.cluster.local"
K8S_RESOLV = "nameserver 127.0.0.1\nsearch hub.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"


@pytest.mark.parametrize("resolv, host", [
    ("nameserver 127.0.0.1\n", "statsd.popcontest.example"),
    (K8S_RESOLV, K8S_HOST),
], ids=["plain", "kubernetes-search-list"])
def test_resolver_that_never_answers_after_the_program_resolved_a_name(case, netns, tmp_path, venv, resolv, host):
    # glibc sets up a thread's resolver once, at its first lookup: in a
    # program that resolved any name before (here localhost, from
    # /etc/hosts), resolver options set later are ignored, and a search list
    # multiplies the 10 s a silent server costs per name.
    conf = tmp_path / "resolv.conf"
    conf.write_text(resolv)
    env = {"PYTHON_POPCONTEST_STATSD_HOST": host, "FAULT_RESOLV": str(conf),
           "FAULT_SILENT_DNS": str(venv.python), "FAULT_DNS_READY": str(tmp_path / "dns-ready")}
    script = "import socket\nsocket.getaddrinfo('localhost', 80)\n" + SCRIPT
    result = ran_script(case("-c", script, env=env, wrap=faults.in_netns, timeout=DNS_STALL_BOUND))
    result.assert_reports()


WATCH_ENVIRON = """
import os, sys, threading
import acme_widgets
before = dict(os.environ)

def watch():
    while True:
        if dict(os.environ) != before:
            os.write(1, b"the environment changed\\n")
            return

threading.Thread(target=watch, daemon=True).start()
print('out')
print('err', file=sys.stderr)
sys.exit(3)
"""


def test_resolving_the_host_leaves_the_programs_environment_alone(case, netns, tmp_path, venv):
    # A daemon thread of the program reads os.environ while the report waits
    # for a resolver that does not answer.
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.1\n")
    env = {"PYTHON_POPCONTEST_STATSD_HOST": "statsd.popcontest.example", "FAULT_RESOLV": str(conf),
           "FAULT_SILENT_DNS": str(venv.python), "FAULT_DNS_READY": str(tmp_path / "dns-ready")}
    ran_script(case("-c", WATCH_ENVIRON, env=env, wrap=faults.in_netns, timeout=DNS_STALL_BOUND)).assert_reports()


@pytest.mark.parametrize("handler", ["lambda *args: print('SIGCHLD')", "signal.SIG_IGN"], ids=["handler", "ignored"])
def test_the_resolvers_child_process_is_not_the_programs_business(case, handler):
    # A name is resolved in a child process; a program's SIGCHLD handler must
    # not run for it, and an ignored SIGCHLD (children reaped by the kernel)
    # must not trouble the wait.  A name of its own, never remembered yet.
    script = ("import signal, sys, acme_widgets\n"
              f"signal.signal(signal.SIGCHLD, {handler})\n"
              "print('out')\nprint('err', file=sys.stderr)\nsys.exit(3)\n")
    host = "popcon-%s.invalid" % secrets.token_hex(6)
    ran_script(case("-c", script, env={"PYTHON_POPCONTEST_STATSD_HOST": host})).assert_reports()


def _with_name_service(hosts, resolv, cmd):
    # A private mount namespace with its own /etc/hosts and /etc/resolv.conf;
    # the network is the machine's, so the listener is reachable.
    return ["unshare", "-m", "sh", "-c", 'mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/resolv.conf '
            '&& shift 2 && exec "$@"', "name-service", str(hosts), str(resolv), *map(str, cmd)]


def test_a_resolved_name_is_remembered_when_the_resolver_then_fails(scratch_venv, listener, prefix, tmp_path, netns):
    name = "statsd.popcontest.example"
    known, unknown, refused = tmp_path / "hosts-known", tmp_path / "hosts-unknown", tmp_path / "resolv.conf"
    known.write_text("127.0.0.1 localhost\n127.0.0.1 %s\n" % name)
    unknown.write_text("127.0.0.1 localhost\n")
    refused.write_text("nameserver 127.0.0.9\n")  # nothing listens there: every query is refused at once
    env = {"PYTHON_POPCONTEST_STATSD_HOST": name}

    def run(hosts):
        cmd = _with_name_service(hosts, refused, [scratch_venv.python, "-c", SCRIPT])
        return ran_script(faults.twin(cmd, listener=listener, prefix=prefix, env=env, expect=1))

    addresses = scratch_venv.root / "var" / "cache" / "popcon-site"

    run(known).assert_reports(prefix.report(ACME))     # resolved, and remembered
    assert list(addresses.glob("addresses-*.marshal")), "the address was not remembered"
    run(unknown).assert_reports(prefix.report(ACME))   # the name service fails now: the address is remembered

    for path in addresses.glob("addresses-*.marshal"):
        path.unlink()
    run(unknown).assert_reports()                      # nothing remembered, and no answer: nothing sent
    # A name that did not resolve is not looked up again for a while, so a
    # broken resolver costs one bounded wait, not one per process.
    run(known).assert_reports()


def _address_file(venv, interp):
    tag = "cpython-%d%d" % interp.minor
    return venv.root / "var" / "cache" / "popcon-site" / f"addresses-{tag}.marshal"


def _write_addresses(path, table):
    import marshal

    from popcon_site.reporter import FORMAT

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(marshal.dumps((FORMAT, path.name[len("addresses-"):-len(".marshal")], table)))


def test_a_failed_lookup_never_replaces_an_address_found_meanwhile(scratch_venv, interp, listener, prefix,
                                                                    tmp_path, netns):
    # One process waits for a silent resolver while another finds the
    # address and remembers it: the failure must not overwrite it.
    import subprocess
    import time

    name = "statsd.popcontest.example"
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.1\n")
    addresses = _address_file(scratch_venv, interp)
    env = faults.case_environ(listener, prefix, {
        "PYTHON_POPCONTEST_STATSD_HOST": name, "FAULT_RESOLV": str(conf), "FAULT_SILENT_DNS": str(scratch_venv.python),
        "FAULT_DNS_READY": str(tmp_path / "dns-ready")})
    waiting = subprocess.Popen(faults.in_netns([scratch_venv.python, "-c", "import acme_widgets"]), env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.5)  # well inside the waiting process's 1 s lookup
    _write_addresses(addresses, {name: (time.time() + 300, 2, "127.0.0.1")})
    out, err = waiting.communicate(timeout=DNS_STALL_BOUND)
    assert (waiting.returncode, out, err) == (0, b"", b""), (out, err)
    cmd = _with_name_service(tmp_path / "no-hosts", tmp_path / "refused", [scratch_venv.python, "-c", SCRIPT])
    (tmp_path / "no-hosts").write_text("127.0.0.1 localhost\n")
    (tmp_path / "refused").write_text("nameserver 127.0.0.9\n")
    ran_script(faults.twin(cmd, listener=listener, prefix=prefix, env={"PYTHON_POPCONTEST_STATSD_HOST": name},
                           expect=1)).assert_reports(prefix.report(ACME))


@pytest.mark.parametrize("entry", ["failure", "address"])
def test_a_remembered_entry_from_a_clock_set_far_ahead_is_ignored(scratch_venv, interp, listener, prefix, tmp_path,
                                                                  netns, entry):
    import time

    name = "statsd.popcontest.example"
    wrong = (time.time() + 86400, 0, "") if entry == "failure" else (time.time() + 86400, 2, "127.0.0.9")
    _write_addresses(_address_file(scratch_venv, interp), {name: wrong})
    hosts, refused = tmp_path / "hosts", tmp_path / "resolv.conf"
    hosts.write_text("127.0.0.1 localhost\n127.0.0.1 %s\n" % name)
    refused.write_text("nameserver 127.0.0.9\n")
    cmd = _with_name_service(hosts, refused, [scratch_venv.python, "-c", SCRIPT])
    ran_script(faults.twin(cmd, listener=listener, prefix=prefix, env={"PYTHON_POPCONTEST_STATSD_HOST": name},
                           expect=1)).assert_reports(prefix.report(ACME))


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
