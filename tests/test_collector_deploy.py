"""The deploy kit: the statsd_exporter mapping (valid YAML, the contract's
names, shipped as generated), the helm values, the systemd unit, the dashboard.

statsd_exporter itself is not packaged in Debian or on PyPI, so it cannot run
here.  These tests apply the mapping with statsd_exporter's documented glob
semantics instead: ``*`` matches exactly one dot-separated component, ``$n``
substitutes the n-th match, and the first matching rule wins.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from popcon_site import wire
from popcon_site.collector.mapping import mapping_yaml

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"


def apply_mapping(mapping, name, metric_type="counter"):
    """``(prometheus name, labels)`` for one statsd name, or None when no rule matches."""
    parts = name.split(".")
    for rule in mapping["mappings"]:
        if rule.get("match_metric_type", metric_type) != metric_type:
            continue
        pattern = rule["match"].split(".")
        if len(pattern) != len(parts):
            continue
        captures = []
        for want, got in zip(pattern, parts):
            if want == "*":
                captures.append(got)
            elif want != got:
                break
        else:
            def substitute(text):
                return re.sub(r"\$(\d+)", lambda m: captures[int(m.group(1)) - 1], text)

            labels = {key: substitute(value) for key, value in (rule.get("labels") or {}).items()}
            # Prometheus treats an empty label as no label at all.
            return substitute(rule["name"]), {k: v for k, v in labels.items() if v}
    return None


def statsd_names(prefix, libraries):
    return [line.split(":")[0] for line in wire.report_lines(prefix, dict.fromkeys(libraries))]


def test_default_mapping_gives_the_contract_names():
    mapping = yaml.safe_load(mapping_yaml())
    names = statsd_names("python_popcon.library_used", ["numpy", "zope-interface", "reports"])
    assert [apply_mapping(mapping, name) for name in names] == [
        ("python_popcon_library_used_total", {"library": "numpy"}),
        ("python_popcon_library_used_total", {"library": "reports"}),
        ("python_popcon_library_used_total", {"library": "zope-interface"}),
        ("python_popcon_reports_total", {}),
    ]


def test_default_mapping_also_covers_namespaced_prefixes():
    mapping = yaml.safe_load(mapping_yaml())
    names = statsd_names("python_popcon.hub_a.library_used", ["numpy"])
    assert [apply_mapping(mapping, name) for name in names] == [
        ("python_popcon_library_used_total", {"library": "numpy", "namespace": "hub_a"}),
        ("python_popcon_reports_total", {"namespace": "hub_a"}),
    ]


@pytest.mark.parametrize(
    "prefix, namespace",
    [
        ("python_popcon.library_used", None),
        ("python_popcon.hub_a.library_used", "hub_a"),
        ("popcon", None),
        ("site.python.lab-3.used", "python.lab-3"),
    ],
)
def test_mapping_for_one_prefix(prefix, namespace):
    mapping = yaml.safe_load(mapping_yaml(prefix))
    extra = {"namespace": namespace} if namespace else {}
    names = statsd_names(prefix, ["attrs", "numpy"])
    assert [apply_mapping(mapping, name) for name in names] == [
        ("python_popcon_library_used_total", {"library": "attrs", **extra}),
        ("python_popcon_library_used_total", {"library": "numpy", **extra}),
        ("python_popcon_reports_total", extra),
    ]
    # Every rule of one metric sets the same label names: statsd_exporter
    # drops series whose label names change.
    label_sets = {}
    for rule in mapping["mappings"]:
        label_sets.setdefault(rule["name"], set()).add(frozenset(rule.get("labels") or ()))
    assert all(len(sets) == 1 for sets in label_sets.values())


def test_mapping_ignores_other_metrics_and_types():
    mapping = yaml.safe_load(mapping_yaml())
    assert apply_mapping(mapping, "python_popcon.library_used.numpy", "gauge") is None
    assert apply_mapping(mapping, "other.app.numpy") is None
    assert apply_mapping(mapping, "python_popcon.library_used.zope.interface") is None


def test_shipped_mapping_is_the_generated_one():
    shipped = (DEPLOY / "statsd_exporter" / "mapping.yaml").read_text()
    assert shipped == mapping_yaml()


def test_shipped_helm_values_carry_the_same_mapping():
    values = yaml.safe_load((DEPLOY / "statsd_exporter" / "helm-values.yaml").read_text())
    assert yaml.safe_load(values["statsd"]["mappingConfig"]) == yaml.safe_load(mapping_yaml())


def test_mapping_command_prints_the_same_yaml():
    done = subprocess.run(
        [sys.executable, "-m", "popcon_site", "mapping", "--prefix", "python_popcon.hub_a.library_used"],
        capture_output=True, text=True, cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == mapping_yaml("python_popcon.hub_a.library_used")


def test_mapping_command_refuses_a_bad_prefix():
    done = subprocess.run(
        [sys.executable, "-m", "popcon_site", "mapping", "--prefix", "a:1|c"],
        capture_output=True, text=True, cwd=REPO,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "character outside" in done.stderr


def test_deploy_yaml_files_parse():
    for path in sorted(DEPLOY.rglob("*.y*ml")):
        list(yaml.safe_load_all(path.read_text()))


def test_grafana_dashboard_queries_the_contract_names():
    import json

    dashboard = json.loads((DEPLOY / "grafana" / "popcon-site-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert exprs and all("python_popcon_" in e for e in exprs)
    assert any("python_popcon_library_used_total" in e for e in exprs)
    assert any("python_popcon_reports_total" in e for e in exprs)


def test_systemd_unit_runs_a_valid_collect_command():
    import shlex

    from popcon_site.cli import build_parser

    unit = (DEPLOY / "systemd" / "popcon-site-collect.service").read_text()
    exec_start = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    assert len(exec_start) == 1
    argv = shlex.split(exec_start[0].partition("=")[2])
    assert argv[0].endswith("/popcon-site")
    args = build_parser().parse_args(argv[1:])
    assert (args.command, args.udp, args.http) == ("collect", "127.0.0.1:8125", "127.0.0.1:9102")
    assert args.db.startswith("/var/lib/popcon-site/")
    assert "StateDirectory=popcon-site" in unit


def test_jupyterhub_snippet_sets_a_valid_namespaced_prefix():
    from popcon_site.config import prefix_problem

    values = yaml.safe_load((DEPLOY / "jupyterhub" / "z2jh-config.yaml").read_text())
    env = values["singleuser"]["extraEnv"]
    assert prefix_problem(env["PYTHON_POPCONTEST_STATSD_PREFIX"]) is None
    mapping = yaml.safe_load(mapping_yaml())
    names = statsd_names(env["PYTHON_POPCONTEST_STATSD_PREFIX"], ["numpy"])
    assert apply_mapping(mapping, names[0]) == (
        "python_popcon_library_used_total", {"library": "numpy", "namespace": "hub_a"})
    assert int(env["PYTHON_POPCONTEST_STATSD_PORT"]) == 9125
