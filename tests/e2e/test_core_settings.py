"""Settings in real processes: opt-out, dry run, debug, prefix and host validation."""

import pytest

from support import distributions as d

ACME = d.ACME.canonical
SCRIPT = "import sys, acme_widgets\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)"


def assert_untouched(result):
    assert (result.rc, result.stdout, result.stderr) == (3, "out\n", "err\n"), result


# --- opt-out ---------------------------------------------------------------------

@pytest.mark.parametrize("value", ["1", "true", "True", "TRUE", "yes", "Yes", "on", "ON", " 1 ",
                                   # Not a documented spelling, but someone who set it meant it.
                                   "disable", "2"])
def test_opt_out_sends_nothing(run, value):
    result = run("-c", SCRIPT, env={"PYTHON_POPCONTEST_DISABLE": value})
    assert_untouched(result)
    assert result.datagrams == [], result


@pytest.mark.parametrize("value", ["", "0", "false", "no", "off", "OFF"])
def test_plainly_false_opt_out_still_reports(run, prefix, value):
    result = run("-c", SCRIPT, env={"PYTHON_POPCONTEST_DISABLE": value}, expect=1)
    assert_untouched(result)
    assert result.datagrams == [prefix.report(ACME)], result


def test_opt_out_set_by_the_program_before_exit_sends_nothing(run):
    script = "import os, acme_widgets\nos.environ['PYTHON_POPCONTEST_DISABLE'] = '1'"
    result = run("-c", script)
    assert (result.rc, result.datagrams) == (0, []), result


# --- dry run -------------------------------------------------------------------------

def test_dry_run_writes_the_exact_lines_to_stderr_and_sends_nothing(run, prefix):
    result = run("-c", "import acme_widgets, acmens.alpha", env={"PYTHON_POPCONTEST_DRY_RUN": "1"})
    assert (result.rc, result.stdout, result.datagrams) == (0, "", []), result
    expected = [prefix.library(ACME), prefix.library("acmens-alpha"), prefix.denominator]
    lines = result.stderr.splitlines()
    # Every line that would be sent appears alone on its own line, in order.
    positions = [lines.index(line) for line in expected]
    assert positions == sorted(positions) and positions == list(range(positions[0], positions[0] + 3)), result
    assert all(line.startswith("popcon-site") for line in lines if line not in expected), result


def test_dry_run_with_a_non_ascii_host_still_shows_the_lines(run, prefix):
    env = {"PYTHON_POPCONTEST_DRY_RUN": "1", "PYTHON_POPCONTEST_STATSD_HOST": "stätsd.example"}
    result = run("-c", "import acme_widgets", env=env)
    assert (result.rc, result.datagrams) == (0, []), result
    assert prefix.library(ACME) in result.stderr.splitlines(), result


def test_dry_run_with_nothing_to_report_prints_nothing(run):
    result = run("-c", "import json", env={"PYTHON_POPCONTEST_DRY_RUN": "1"})
    assert (result.rc, result.stdout, result.stderr, result.datagrams) == (0, "", "", []), result


# --- debug ---------------------------------------------------------------------------

def test_debug_explains_on_stderr_and_still_sends(run, prefix):
    result = run("-c", "import acme_widgets", env={"PYTHON_POPCONTEST_DEBUG": "1"}, expect=1)
    assert result.rc == 0 and result.stdout == "", result
    assert result.stderr and all(line.startswith("popcon-site: ") for line in result.stderr.splitlines()), result
    assert result.datagrams == [prefix.report(ACME)], result


def test_debug_says_why_nothing_is_sent_for_a_bad_prefix(run):
    result = run("-c", "import acme_widgets",
                 env={"PYTHON_POPCONTEST_DEBUG": "1", "PYTHON_POPCONTEST_STATSD_PREFIX": "bad..prefix"})
    assert result.datagrams == [], result
    assert "bad..prefix" in result.stderr and "PREFIX" in result.stderr, result


def test_debug_reports_a_failed_report_in_one_line(run):
    # The program replaced os.environ with a dict holding a value that is not
    # text: reading the settings fails inside the report.
    code = "import os, acme_widgets\nos.environ = dict(os.environ, PYTHON_POPCONTEST_STATSD_HOST=42)\n"
    result = run("-c", code, env={"PYTHON_POPCONTEST_DEBUG": "1"})
    assert (result.rc, result.stdout, result.datagrams) == (0, "", []), result
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("popcon-site: report failed: AttributeError: "), result
    assert "wire.py:" in lines[0], result


# --- prefix, host, port -------------------------------------------------------------

@pytest.mark.parametrize("bad", [
    "a..b", ".lead", "trail.", "has space.x", "semi;colon", "x:1|c", "x.y:1|c\nz", "a\nb", "ünïcode.x",
    "x/y", "x" * 300,
])
def test_invalid_prefix_sends_nothing_and_leaves_the_process_alone(run, bad):
    result = run("-c", SCRIPT, env={"PYTHON_POPCONTEST_STATSD_PREFIX": bad})
    assert_untouched(result)
    assert result.datagrams == [], result


def test_one_component_prefix_uses_an_underscore_denominator(run):
    result = run("-c", "import acme_widgets", env={"PYTHON_POPCONTEST_STATSD_PREFIX": "popcontestsolo"}, expect=1)
    assert result.datagrams == [b"popcontestsolo.acme-widgets-pro:1|c\npopcontestsolo_reports:1|c"], result


@pytest.mark.parametrize("port", ["0", "65536", "x", "-5", ""])
def test_bad_port_never_disturbs_the_process(run, port):
    result = run("-c", SCRIPT, env={"PYTHON_POPCONTEST_STATSD_PORT": port}, settle=0.1)
    assert_untouched(result)


@pytest.mark.parametrize("host", ["does-not-exist.invalid", "not a host", "ünï.example", "::zz", "[::1"])
def test_bad_or_unresolvable_host_never_disturbs_the_process(run, host):
    result = run("-c", SCRIPT, env={"PYTHON_POPCONTEST_STATSD_HOST": host}, timeout=60, settle=0.1)
    assert_untouched(result)
    assert result.datagrams == []


def test_localhost_name_resolves_to_the_ipv4_listener(run, prefix):
    result = run("-c", "import acme_widgets", env={"PYTHON_POPCONTEST_STATSD_HOST": "localhost"}, expect=1)
    assert result.datagrams == [prefix.report(ACME)], result


def test_nothing_listening_is_not_an_error(run, listener):
    port = listener.port
    listener.close()
    result = run("-c", SCRIPT, env={"PYTHON_POPCONTEST_STATSD_HOST": "127.0.0.1", "PYTHON_POPCONTEST_STATSD_PORT": str(port)},
                 listener=None)
    assert_untouched(result)


def test_versions_setting_adds_version_tags(run, prefix):
    result = run("-c", "import acme_widgets, oldegg", env={"PYTHON_POPCONTEST_VERSIONS": "1"}, expect=1)
    assert result.datagrams == [
        f"{prefix.library(ACME)}|#version:{d.ACME.version}\n"
        f"{prefix.library(d.EGG_CANONICAL)}|#version:{d.EGG_VERSION}\n"
        f"{prefix.denominator}".encode()
    ], result
