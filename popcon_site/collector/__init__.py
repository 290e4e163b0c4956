"""The embedded statsd collector and the reports read from what it stored.

* :mod:`.lines` parses statsd counter lines in the contract's names;
* :mod:`.store` aggregates them in memory and keeps them in SQLite;
* :mod:`.exposition` serves the store to Prometheus through ``prometheus_client``;
* :mod:`.server` is the ``popcon-site collect`` loop: UDP in, SQLite and /metrics out;
* :mod:`.sources` reads counts back from a store file or a Prometheus server;
* :mod:`.report` turns counts into the ``popcon-site report`` table or JSON;
* :mod:`.mapping` writes the statsd_exporter mapping for the same names.

Nothing here is imported by the per-process exit path.
"""
