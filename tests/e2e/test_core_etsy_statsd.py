"""Against the reference Etsy statsd daemon (npm statsd@0.9.0), read back over its management port."""

from support import distributions as d
from support.processes import Prefix, run_python


def test_counters_reach_the_reference_statsd_daemon(etsy_statsd_daemon, venv):
    daemon = etsy_statsd_daemon
    prefix = Prefix.unique()
    env = {"PYTHON_POPCONTEST_STATSD_HOST": "127.0.0.1", "PYTHON_POPCONTEST_STATSD_PORT": str(daemon.udp_port)}
    scripts = [
        "import acme_widgets",
        "import acme_widgets, acmens.alpha",
        "import acme_widgets.gears, oldegg",
        "pass",                      # reports nothing, so it is not in the denominator
        "import json",               # neither is a stdlib-only process
    ]
    bad_lines_before = daemon.counters().get("statsd.bad_lines_seen", 0)
    for script in scripts:
        result = run_python(venv.python, ["-c", script], listener=None, prefix=prefix, env=env)
        assert (result.rc, result.stderr) == (0, ""), result

    expected = {
        f"{prefix.name}.{d.ACME.canonical}": 3,
        f"{prefix.name}.acmens-alpha": 1,
        f"{prefix.name}.{d.EGG_CANONICAL}": 1,
        f"{prefix.parent}.reports": 3,
    }
    counters = daemon.wait_for_counters(expected)
    ours = {key: value for key, value in counters.items() if key.startswith(prefix.parent + ".")}
    assert ours == expected, counters
    assert counters.get("statsd.bad_lines_seen", 0) == bad_lines_before, counters


def test_dry_run_and_opt_out_never_reach_the_daemon(etsy_statsd_daemon, venv):
    daemon = etsy_statsd_daemon
    prefix = Prefix.unique()
    env = {"PYTHON_POPCONTEST_STATSD_HOST": "127.0.0.1", "PYTHON_POPCONTEST_STATSD_PORT": str(daemon.udp_port)}
    for extra in ({"PYTHON_POPCONTEST_DRY_RUN": "1"}, {"PYTHON_POPCONTEST_DISABLE": "1"}):
        run_python(venv.python, ["-c", "import acme_widgets"], listener=None, prefix=prefix, env={**env, **extra})
    # A last, real report marks the point by which the others would have arrived.
    run_python(venv.python, ["-c", "import acmens.beta"], listener=None, prefix=prefix, env=env)
    counters = daemon.wait_for_counters({f"{prefix.name}.acmens-beta": 1})
    ours = {key: value for key, value in counters.items() if key.startswith(prefix.parent + ".")}
    assert ours == {f"{prefix.name}.acmens-beta": 1, f"{prefix.parent}.reports": 1}, counters
