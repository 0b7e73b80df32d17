"""The watcher's figures (figures.py) in Prometheus' text format, served by the `prometheus-client` library on
`--metrics-address HOST:PORT` (docs/metrics.md). Imported only by a watcher asked to serve metrics: the plugin
and every other command run without the library.

Each scrape reads one snapshot of the figures (Collector), so that what it serves is one pass's state, never
half of two.
"""
import ipaddress
import sys

from .figures import PASS_BUCKETS, REPAIRS, RESULTS

PREFIX = "route_cni_"


def serve(address, figures):
    """Serve `figures` at http://ADDRESS/metrics from a thread of the library's; ValueError for an address
    that is not HOST:PORT, ImportError without the library, OSError when the port cannot be bound."""
    host, port = parse_address(address)
    client = _client()
    registry = client.CollectorRegistry(auto_describe=False)
    registry.register(Collector(figures))
    client.ProcessCollector(registry=registry)  # the watcher's own memory, CPU and descriptors
    client.start_http_server(port, addr=host, registry=registry)


def parse_address(address):
    """(host, port) of 'HOST:PORT', '[IPv6]:PORT' or ':PORT' (every IPv4 address, as 0.0.0.0:PORT)."""
    host, colon, port = address.rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not HOST:PORT: {address!r}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if host:
        ipaddress.ip_address(host)  # an address, not a name: the watcher resolves nothing
    return host or "0.0.0.0", int(port)


def _client():
    try:
        import prometheus_client
    except ImportError:
        # dist/route runs python3 -S: its sys.path has the standard library and the file itself, not the site
        # packages where the DaemonSet's image (or apt's python3-prometheus-client) installs the library.
        import site

        sys.path.extend(path for path in site.getsitepackages() if path not in sys.path)
        try:
            import prometheus_client
        except ImportError:
            raise ImportError(f"the prometheus-client package is not installed for {sys.executable} (pip install "
                              "prometheus-client, or apt-get install python3-prometheus-client)") from None
    return prometheus_client


class Collector:
    """Metric families of one snapshot of the figures, at every scrape."""

    def __init__(self, figures):
        self.figures = figures

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        doc = self.figures.snapshot()

        def family(kind, name, text, label, values, keys=()):
            metric = kind(PREFIX + name, text, labels=[label])
            for key in sorted({*keys, *values}, key=str):
                metric.add_metric([str(key)], values.get(key, 0))
            return metric

        yield family(CounterMetricFamily, "reconcile_passes", "Passes of the watcher, by result: in_shape, "
                     "not_in_shape (something could not be repaired), failed (the state dir could not be read).",
                     "result", doc["passes"], RESULTS)
        buckets, cumulative = [], 0
        for bound, count in zip([*PASS_BUCKETS, float("inf")], doc["pass_seconds"]["buckets"]):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        yield HistogramMetricFamily(PREFIX + "reconcile_pass_duration_seconds", "How long the watcher's passes took.",
                                    buckets=buckets, sum_value=doc["pass_seconds"]["sum"])
        yield family(CounterMetricFamily, "reconcile_repairs", "Changes the watcher made to put the node back in "
                     "shape, by kind: shim, address_copy, node_route, masquerade_rule, pod_side.",
                     "kind", doc["repairs"], REPAIRS)
        yield family(CounterMetricFamily, "reconcile_errors", "Errors the watcher's passes met, by CNI error code "
                     "(docs: README.md#errors).", "code", doc["errors"])
        yield family(GaugeMetricFamily, "reconcile_pods_not_entered", "Pods the last pass could not heal inside, by "
                     "reason.", "reason", doc["not_entered"])
        yield family(GaugeMetricFamily, "attachments", "Attachments recorded on this node at the last pass, by "
                     "network.", "network", doc["attachments"])
        last = doc["last_pass"]
        if last is not None:  # none yet: no sample, rather than a time that is not one
            yield GaugeMetricFamily(PREFIX + "reconcile_last_pass_timestamp_seconds",
                                    "When the last pass ended, in seconds since the epoch.", value=last["at"])
        monitor = doc["monitor"]
        yield GaugeMetricFamily(PREFIX + "watcher_monitor_up", "1 while the watcher's ip monitor runs, else 0.",
                                value=0 if monitor["pid"] is None else 1)
        yield CounterMetricFamily(PREFIX + "watcher_monitor_restarts", "How often the watcher's ip monitor ended and "
                                  "was started again.", value=monitor["restarts"])
