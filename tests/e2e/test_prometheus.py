"""A real Prometheus (Debian's `prometheus` package) scraping `popcon-site collect`.

`report --prometheus` must give the same answer as `report --db`, and the
shipped scrape config must pass `promtool check config`.  In CI both tools
are installed by .ci/run; elsewhere the tests skip with the install command.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import require
from support.processes import Prefix, run_python
from test_collector_e2e import Collector, popcon_site, stored_report, wait_until

REPO = Path(__file__).resolve().parents[2]
SCRAPE_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
INSTALL = "apt-get install prometheus"


def tool(name):
    path = shutil.which(name)
    if not path:
        require("%s is not installed (%s)" % (name, INSTALL))
    return path


def free_tcp_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_shipped_scrape_config_passes_promtool():
    done = subprocess.run([tool("promtool"), "check", "config", str(SCRAPE_CONFIG)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


@pytest.fixture
def prometheus_for(tmp_path):
    """Start a Prometheus that scrapes one collector with the shipped config,
    sped up to a 1 s scrape interval."""
    procs = []

    def start(collector: Collector) -> str:
        binary = tool("prometheus")
        config = yaml.safe_load(SCRAPE_CONFIG.read_text())
        config["global"]["scrape_interval"] = "1s"
        job = config["scrape_configs"][0]
        job["scrape_interval"] = "1s"
        job["static_configs"][0]["targets"] = ["127.0.0.1:%d" % collector.http_port]
        config_file = tmp_path / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        port = free_tcp_port()
        log = open(tmp_path / "prometheus.log", "w")
        proc = subprocess.Popen(
            [binary, "--config.file=%s" % config_file, "--storage.tsdb.path=%s" % (tmp_path / "tsdb"),
             "--web.listen-address=127.0.0.1:%d" % port],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        procs.append((proc, log))
        return "http://127.0.0.1:%d" % port

    yield start
    for proc, log in procs:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_report_from_prometheus_agrees_with_the_store(venv, tmp_path, prometheus_for):
    collector = Collector(tmp_path / "counts.sqlite3", Prefix.unique().name)
    try:
        env = {"PYTHON_POPCONTEST_STATSD_HOST": "127.0.0.1", "PYTHON_POPCONTEST_STATSD_PORT": str(collector.udp_port)}
        jobs = [
            ({}, "import acme_widgets"),
            ({}, "import acme_widgets, earlylib"),
            ({"PYTHON_POPCONTEST_VERSIONS": "1"}, "import acme_widgets, acmens.alpha"),
            ({}, "import acmens.beta, latelib"),
        ]
        for extra, code in jobs:
            result = run_python(venv.python, ["-c", code], listener=None, prefix=Prefix(collector.prefix),
                                env={**env, **extra}, cwd=tmp_path)
            assert result.rc == 0, result
        from_db = stored_report(collector.db, len(jobs), "--versions")
        assert from_db["libraries"]["acme-widgets-pro"] == 3

        url = prometheus_for(collector)
        answers = []

        def scraped():
            done = popcon_site("report", "--prometheus", url, "--json", "--versions", check=False)
            if done.returncode != 0:
                answers.append(done.stderr)
                return False
            answers.append(json.loads(done.stdout))
            # A scrape can land between report's queries: wait for one whole.
            return answers[-1] == from_db

        # The first scrape lands some seconds after Prometheus starts.
        wait_until(scraped, "Prometheus to scrape the collector (last answer: %r)" % (answers[-1:],), deadline=60)
        assert answers[-1] == from_db

        # The same through a label matcher, and as a table.
        matched = popcon_site("report", "--prometheus", url, "--json", "--match", 'job="popcon-site"').stdout
        assert json.loads(matched)["libraries"] == from_db["libraries"]
        table = popcon_site("report", "--prometheus", url).stdout
        assert table == popcon_site("report", "--db", collector.db).stdout.replace(
            "from store %s (prefix %s)" % (collector.db, collector.prefix), "from Prometheus %s" % url)

    finally:
        collector.kill()


def test_report_range_counts_what_was_added_within_the_window(tmp_path, prometheus_for):
    # increase() alone sees only what changed between samples inside the
    # window, so the first value of a series born inside it (statsd_exporter
    # creates a counter at its first report, at 1) was lost: a library
    # imported once in the window looked never imported.
    from popcon_site.config import denominator_name

    collector = Collector(tmp_path / "counts.sqlite3", Prefix.unique().name)
    try:
        p = collector.prefix.encode()
        den = denominator_name(collector.prefix).encode() + b":1|c"
        collector.send(*[p + b".numpy:1|c\n" + den] * 5)
        collector.fence()
        url = prometheus_for(collector)

        def totals():
            done = popcon_site("report", "--prometheus", url, "--json", check=False)
            return json.loads(done.stdout)["processes"] if done.returncode == 0 else None

        wait_until(lambda: totals() == 6, "Prometheus to scrape the first 6 reports", deadline=60)
        time.sleep(5)  # a few scrapes of the counters as they were
        sent_at = time.monotonic()
        collector.send(p + b".numpy:1|c\n" + p + b".attrs:1|c\n" + den, p + b".attrs:1|c\n" + den)
        collector.fence()
        wait_until(lambda: totals() == 9, "Prometheus to scrape 3 more reports", deadline=60)
        # increase() extrapolates up to one scrape interval (1 s) past the
        # samples at each end of the window; over 15 s of samples that stays
        # under half of one process, which the report rounds away.
        time.sleep(max(0.0, 14 - (time.monotonic() - sent_at)))
        window = "%ds" % (time.monotonic() - sent_at + 2)

        def report(duration):
            return json.loads(popcon_site("report", "--prometheus", url, "--range", duration, "--json").stdout)

        # The window begins after the first 6 reports: numpy and the
        # denominator grew within it, attrs was born within it at 2.
        assert report(window) == {"processes": 3, "libraries": {"numpy": 1, "attrs": 2}}, window
        # Prometheus first saw every series within the last hour.
        assert report("1h") == {"processes": 9, "libraries": {"numpy": 6, "attrs": 2}}

        # The shipped dashboard's per-library table and reports panel count the same way.
        dashboard = json.loads((REPO / "deploy" / "grafana" / "popcon-site-dashboard.json").read_text())
        exprs = {panel["title"]: panel["targets"][0]["expr"] for panel in dashboard["panels"] if panel.get("targets")}

        def panel_values(title):
            promql = exprs[title].replace("$namespace", ".*").replace("$__range", window)
            query = urllib.parse.urlencode({"query": promql})
            with urllib.request.urlopen("%s/api/v1/query?%s" % (url, query), timeout=30) as response:
                result = json.load(response)["data"]["result"]
            return {sample["metric"].get("library", ""): round(float(sample["value"][1])) for sample in result}

        assert panel_values("Processes per library, and share of reporting processes") == {"numpy": 1, "attrs": 2}
        assert panel_values("Reporting processes in range") == {"": 3}
    finally:
        collector.kill()


def test_report_from_an_unreachable_prometheus_is_a_clean_error():
    done = popcon_site("report", "--prometheus", "http://127.0.0.1:%d" % free_tcp_port(), check=False)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "cannot reach Prometheus" in done.stderr


@pytest.mark.parametrize("args, message", [
    (["--range", "30 days"], "is not a duration"),
    (["--match", "namespace=hub_a"], "is not a label matcher"),
])
def test_report_refuses_bad_promql_pieces(args, message):
    done = popcon_site("report", "--prometheus", "http://127.0.0.1:1", *args, check=False)
    assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr


def test_only_whole_positive_counts_so_the_store_and_prometheus_agree(tmp_path, prometheus_for):
    """Fractional and zero counts are malformed; a zero series left by an
    older collector is no series at all, in the store, on /metrics, under
    the cap, and so in Prometheus."""
    import sqlite3

    from popcon_site.config import denominator_name

    prefix = Prefix.unique().name
    db = tmp_path / "counts.sqlite3"
    first = Collector(db, prefix)
    first.send(("%s.numpy:1|c" % prefix).encode())
    first.fence()
    first.stop()
    # What an older collector stored for `<prefix>.ghost:0|c`.
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO library_used VALUES ('ghost', '', 0.0)")
    conn.close()

    collector = Collector(db, prefix, "--max-series", "2")
    try:
        p = collector.prefix.encode()
        refused = [p + b".numpy:0.5|c", p + b".numpy:1e-05|c", p + b".numpy:0|c", p + b".zero:0|c",
                   p + b".numpy:1.5|c|@0.5", denominator_name(collector.prefix).encode() + b":0|c"]
        collector.send(*refused, p + b".numpy:1|c|@0.4", p + b".attrs:2.0|c")
        collector.fence()
        assert collector.lines("malformed") == len(refused)
        # The zero series took no room under the cap of 2: attrs got in.
        assert collector.library("attrs") == 2 and collector.library("numpy") == 4  # 1 + 1/0.4 rounded
        assert ("python_popcon_library_used_total", frozenset({("library", "ghost")})) not in collector.samples()
        from_db = stored_report(collector.db, 2)
        assert from_db["libraries"] == {"numpy": 4, "attrs": 2}, from_db
        table = popcon_site("report", "--db", collector.db).stdout
        assert "." not in "".join(line.split()[1] for line in table.splitlines()[3:]), table

        url = prometheus_for(collector)
        answers = []

        def scraped():
            done = popcon_site("report", "--prometheus", url, "--json", check=False)
            answers.append(json.loads(done.stdout) if done.returncode == 0 else done.stderr)
            return done.returncode == 0 and answers[-1] == from_db

        wait_until(scraped, "Prometheus to scrape the collector (last answer: %r)" % (answers[-1:],), deadline=60)
    finally:
        collector.kill()
