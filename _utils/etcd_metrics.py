"""
The formula's own metrics, for prometheus (the ``etcd-formula`` rules of
``etcd/files/prometheus/etcd-alerts.yml``): files in node_exporter's textfile collector
directory (pillar ``etcd:monitoring:textfile_dir``), written where the facts are, so no
exporter process of the formula's runs anywhere:

- on a member, a client host and the CA server, each certificate's notAfter
  (``etcd_cert.expiry_exported``, at highstate: a renewal changes it);
- on the salt-master, each cluster's last verified snapshot and whether the last snapshot
  succeeded (``salt-run etcd.snapshot`` writes it after each run).

Timestamps, never seconds left: a file written at highstate stays true until the next one
(the rules subtract ``time()``).
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.append(_HERE)

import etcd_files  # noqa: E402

__virtualname__ = "etcd_metrics"

CERTIFICATE_EXPIRY = "etcd_formula_certificate_expiry_timestamp_seconds"
LAST_SNAPSHOT = "etcd_formula_last_snapshot_timestamp_seconds"
LAST_SNAPSHOT_SUCCESS = "etcd_formula_last_snapshot_success"
# every metric the formula exports (the rules and the dashboard use these only)
NAMES = (CERTIFICATE_EXPIRY, LAST_SNAPSHOT, LAST_SNAPSHOT_SUCCESS)

HELP = {
    CERTIFICATE_EXPIRY: "notAfter of a certificate the formula issued (unix time)",
    LAST_SNAPSHOT: "time of the newest verified snapshot salt-run etcd.snapshot took (unix time)",
    LAST_SNAPSHOT_SUCCESS: "1 when the last salt-run etcd.snapshot verified its snapshot, else 0",
}


def __virtual__():
    return __virtualname__


def _escape(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def certificate_sample(cluster, minion, certificate, not_after):
    """The sample of one certificate's notAfter (unix time)."""
    return (CERTIFICATE_EXPIRY, {"etcd_cluster": cluster, "minion": minion,
                                 "certificate": certificate}, not_after)


def snapshot_samples(cluster, last_verified, success):
    """The samples of a cluster's snapshots: the newest verified one's time (unix time; none
    before the first) and whether the last run succeeded."""
    found = [(LAST_SNAPSHOT_SUCCESS, {"etcd_cluster": cluster}, 1 if success else 0)]
    if last_verified is not None:
        found.insert(0, (LAST_SNAPSHOT, {"etcd_cluster": cluster}, last_verified))
    return found


def render(samples):
    """The text exposition format of ``samples``: [(metric name, {label: value}, value)],
    each family once with its HELP and TYPE (gauges), in the order first seen."""
    families = {}
    for name, labels, value in samples:
        if name not in HELP:
            raise ValueError("{!r} is no metric of the formula ({})".format(name, ", ".join(NAMES)))
        families.setdefault(name, []).append((labels, value))
    lines = []
    for name, found in families.items():
        lines += ["# HELP {} {}".format(name, HELP[name]), "# TYPE {} gauge".format(name)]
        for labels, value in found:
            text = ",".join('{}="{}"'.format(k, _escape(v)) for k, v in sorted(labels.items()))
            lines.append("{}{{{}}} {}".format(name, text, repr(float(value))))
    return "\n".join(lines) + "\n" if lines else ""


def write(directory, filename, text):
    """``text`` into ``<directory>/<filename>`` (0644, renamed over the old file: the
    collector never reads half a file). (path, whether it changed); (None, False) when
    there is no such directory (node_exporter's textfile collector is not installed)."""
    if not directory or not os.path.isdir(directory):
        return None, False
    path = os.path.join(directory, filename)
    return path, etcd_files.replace(path, text, 0o644)
