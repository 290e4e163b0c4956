"""/metrics: the store's totals as Prometheus metric families.

``prometheus_client`` formats the exposition; this module only says which
families exist.  The two contract names are the same ones the shipped
statsd_exporter mapping produces, so dashboards and ``popcon-site report
--prometheus`` work with either.
"""

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = ["LIBRARY_METRIC", "REPORTS_METRIC", "StoreCollector"]

LIBRARY_METRIC = "python_popcon_library_used"
REPORTS_METRIC = "python_popcon_reports"


class StoreCollector:
    """A ``prometheus_client`` collector that reads a :class:`CountStore`."""

    def __init__(self, store):
        self.store = store

    def describe(self):
        # Registering must not read the store; the families are dynamic.
        return []

    def collect(self):
        snap = self.store.snapshot()
        libraries = Metric(
            LIBRARY_METRIC,
            "Reporting processes that imported a module of this installed distribution.",
            "counter",
        )
        for (library, version), count in sorted(snap.libraries.items()):
            # An untagged count carries no version label at all, as a
            # statsd_exporter series without the DogStatsD tag would.
            labels = {"library": library, "version": version} if version else {"library": library}
            libraries.add_sample(LIBRARY_METRIC + "_total", labels, count)
        yield libraries
        yield CounterMetricFamily(
            REPORTS_METRIC,
            "Processes that sent a report (the denominator).",
            value=snap.reports,
        )
        lines = CounterMetricFamily(
            "popcon_site_collector_lines",
            "statsd lines received, by what became of them.",
            labels=["outcome"],
        )
        for outcome, count in snap.lines.items():
            lines.add_metric([outcome], count)
        yield lines
        yield CounterMetricFamily(
            "popcon_site_collector_names_dropped",
            "Distinct new names refused because the series cap was reached.",
            value=snap.names_dropped,
        )
        yield GaugeMetricFamily("popcon_site_collector_series", "Library series stored.", value=snap.series)
        yield GaugeMetricFamily(
            "popcon_site_collector_series_limit",
            "Most library series the collector stores (--max-series).",
            value=snap.max_series,
        )
