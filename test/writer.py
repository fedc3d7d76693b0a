"""
A writer at a fixed rate, the harness the tests and benchmarks that change a cluster run
beside the change: it puts ``<prefix><n>`` through the formula's own client (every
endpoint given, failing over as patroni would) and records each put's latency and each
failure. ``report()`` gives failed writes, the worst stall (the longest time without a
successful write) and the p99 write latency, also as multiples of the election timeout.
"""

import os
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def formula_client(endpoints, tls, timeout=2, credentials=None):
    """The formula's etcd client (``_utils/etcd_client.py``), as a plain import
    (``credentials``: (user, password) for an etcd with authentication on)."""
    utils = os.path.join(REPO, "_utils")
    if utils not in sys.path:
        sys.path.insert(0, utils)
    import etcd_client

    return etcd_client.connect(endpoints, timeout=timeout, credentials=credentials, **tls)


class Writer(threading.Thread):
    """Puts ``<prefix><n>`` = n every ``1/rate`` s until stopped (``with Writer(...) as w``)."""

    def __init__(self, endpoints, tls, rate=20, prefix="/writer/", timeout=2, credentials=None):
        super().__init__(daemon=True)
        self.client = formula_client(endpoints, tls, timeout=timeout, credentials=credentials)
        self.interval = 1.0 / rate
        self.prefix = prefix
        self.stopping = threading.Event()
        self.written = []  # n of the acknowledged puts
        self.latencies = []  # seconds of the acknowledged puts
        self.failures = []  # (monotonic time, error text)
        self.started_at = self.stopped_at = None
        self._last_ok = None
        self.worst_stall = 0.0

    def run(self):
        self.started_at = self._last_ok = time.monotonic()
        n, next_at = 0, time.monotonic()
        while not self.stopping.is_set():
            n += 1
            began = time.monotonic()
            try:
                self.client.put("{}{}".format(self.prefix, n), str(n))
            except Exception as exc:  # noqa: BLE001 - every failure counts
                self.failures.append((time.monotonic(), str(exc)[:160]))
            else:
                done = time.monotonic()
                self.worst_stall = max(self.worst_stall, done - self._last_ok)
                self._last_ok = done
                self.written.append(n)
                self.latencies.append(done - began)
            next_at += self.interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        self.stopped_at = time.monotonic()
        self.worst_stall = max(self.worst_stall, self.stopped_at - self._last_ok)

    def __enter__(self):
        self.start()
        time.sleep(2 * self.interval)
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def stop(self):
        self.stopping.set()
        self.join(30)
        self.client.close()

    def report(self, election_timeout=1.0):
        """{ok, failed, worst_stall_s, p99_s, worst_stall_x, p99_x (x election timeout)}."""
        latencies = sorted(self.latencies)
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else None
        return {
            "ok": len(self.written),
            "failed": len(self.failures),
            "worst_stall_s": round(self.worst_stall, 3),
            "p99_s": round(p99, 4) if p99 is not None else None,
            "worst_stall_x": round(self.worst_stall / election_timeout, 2),
            "p99_x": round(p99 / election_timeout, 3) if p99 is not None else None,
            "first_failures": [why for _, why in self.failures[:3]],
        }

    def lost(self, reader):
        """The acknowledged writes that ``reader`` (a client) does not return: [] when none."""
        return [n for n in self.written if reader.get("{}{}".format(self.prefix, n)) != str(n)]
