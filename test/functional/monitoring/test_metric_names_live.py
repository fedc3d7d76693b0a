"""
The metric names the formula's alerts, recording rules and dashboard use, against what a
real etcd exports: this machine's etcd (3.4, Debian 12) and the Debian 13 lab image's (3.5).
A 3-member TLS cluster (local_etcd.LocalCluster) is scraped at a member's client URL
/metrics (the formula's metrics port serves the same registry over plain HTTP).

Some families appear only once something happened: the peer round-trip histogram after the
first probe (about 5 s after the peers connect), per-peer send failures once a send failed.
So one member is stopped, and the other two are scraped until every name is there (or the
deadline passes). ``up`` is prometheus's, ``etcd_formula_*`` the formula's exporter's, and
the recording rules' names prometheus's own: none of them comes from etcd.

A rule may use a metric not every etcd exports if it says so in a comment
(``# metric-condition: <metric>: <condition>``, read by monitoring_promql.metric_conditions):

- ``metrics=extensive``: etcd exports it only with ``--metrics extensive`` (the formula's
  member config leaves etcd's default, basic). Checked absent from the basic cluster (else
  the marker is stale) and present on a one-member cluster run with ``--metrics extensive``.
  Today: grpc_server_handling_seconds (etcdGRPCRequestsSlow).
- ``etcd>=X.Y`` / ``etcd<X.Y``: only those versions export it; present there, absent
  elsewhere. Today: none (every other name is in both 3.4.23 and 3.5.16).
"""

import os
import shutil
import stat
import sys
import tempfile
import time

import pytest
import requests
from local_etcd import ETCD_BIN, LocalCluster, etcd_version

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.join(REPO, "test", "unit", "monitoring"))

from monitoring_promql import (  # noqa: E402
    dashboard_exprs,
    etcd_metric_names,
    family_of,
    image_binary,
    metric_conditions,
    rule_exprs,
    version_satisfies,
)

SYSTEM_ETCD = "/usr/bin/etcd"
# the peer round-trip histogram's first observation comes ~5 s after the peers connect
SCRAPE_DEADLINE = 30


def etcd_binaries():
    """This machine's etcd, the lab image's 3.5, and $ETCD_BIN when it is another one."""
    found = [pytest.param(SYSTEM_ETCD, id="system-etcd")]
    image_etcd = image_binary("etcd")
    if image_etcd:
        found.append(pytest.param(image_etcd, id="trixie-image-etcd"))
    else:
        found.append(pytest.param(None, id="trixie-image-etcd"))
    known = {os.path.realpath(path) for path in (SYSTEM_ETCD, image_etcd) if path}
    if os.path.realpath(ETCD_BIN) not in known:
        found.append(pytest.param(ETCD_BIN, id="ETCD_BIN"))
    return found


def require(binary):
    if binary is None or not os.access(binary, os.X_OK):
        reason = "no etcd at {}: the Debian 13 lab image (test/lab image --release trixie)".format(
            binary or "/var/cache/etcd-formula/images/trixie-*/usr/bin/etcd")
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return binary


def used_names():
    """{etcd metric name: [where]} over the rule files and the dashboard."""
    return etcd_metric_names(rule_exprs() + dashboard_exprs())


def session(cluster):
    client = requests.Session()
    client.trust_env = False
    client.verify = cluster.tls["ca_file"]
    client.cert = (cluster.tls["cert_file"], cluster.tls["key_file"])
    return client


def scrape(client, member):
    """{sample name: [sample lines]} of ``member``'s /metrics."""
    answer = client.get(member.client_url + "/metrics", timeout=5)
    answer.raise_for_status()
    found = {}
    for line in answer.text.splitlines():
        if line and not line.startswith("#"):
            name = line.split("{", 1)[0].split(" ", 1)[0]
            found.setdefault(name, []).append(line)
    return found


def scrape_until(client, members, wanted, deadline=SCRAPE_DEADLINE):
    """The union of ``members``' samples, once it has every name in ``wanted`` or at the
    deadline."""
    give_up_at = time.monotonic() + deadline
    while True:
        found = {}
        for member in members:
            for name, lines in scrape(client, member).items():
                found.setdefault(name, []).extend(lines)
        if wanted <= set(found) or time.monotonic() > give_up_at:
            return found
        time.sleep(0.5)


@pytest.fixture
def cluster_root():
    root = tempfile.mkdtemp(prefix="etcd-mon-")  # short: etcd's sockets live under it
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def extensive_etcd(binary, directory):
    """An executable that runs ``binary`` with ``--metrics extensive`` added."""
    path = os.path.join(directory, "etcd-extensive")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write('#!/bin/sh\nexec "{}" "$@" --metrics extensive\n'.format(binary))
    os.chmod(path, stat.S_IRWXU)
    return path


@pytest.mark.parametrize("binary", etcd_binaries())
def test_every_metric_the_formula_uses_is_exported(binary, cluster_root):
    binary = require(binary)
    version = etcd_version(binary)
    conditions = metric_conditions()
    names = used_names()
    expected, expected_absent, extensive = set(), set(), set()
    for name in names:
        condition = conditions.get(family_of(name))
        if condition is None:
            expected.add(name)
        elif condition == "metrics=extensive":
            extensive.add(name)
            expected_absent.add(name)
        elif version_satisfies(version, condition):
            expected.add(name)
        else:
            expected_absent.add(name)

    with LocalCluster(os.path.join(cluster_root, "basic"), size=3, etcd_bin=binary) as cluster:
        client = session(cluster)
        first, second, third = cluster.members
        # a write through the JSON gateway, as patroni and the formula's client make them
        put = client.post(first.client_url + "/v3/kv/put",
                          json={"key": "bW9uaXRvcmluZw==", "value": "b2s="}, timeout=5)
        assert put.status_code == 200, put.text
        cluster.stop(third)  # its peers' sends to it fail: etcd_network_peer_sent_failures_total
        found = scrape_until(client, [first, second], expected)
        gateway_puts = [line for line in scrape(client, first).get("grpc_server_handled_total", [])
                        if 'grpc_method="Put"' in line and 'grpc_code="OK"' in line]

    version_text = ".".join(map(str, version))
    missing = {name: names[name] for name in sorted(expected - set(found))}
    assert missing == {}, "etcd {} ({}) does not export: {}".format(version_text, binary, missing)
    stale = {name: conditions[family_of(name)] for name in sorted(expected_absent & set(found))}
    assert stale == {}, "etcd {} exports these after all: drop their metric-condition: {}".format(
        version_text, stale)
    # the JSON gateway's requests are counted as gRPC requests: the failed-request alert and
    # the request panels see patroni's traffic
    assert gateway_puts and float(gateway_puts[0].rsplit(" ", 1)[1]) >= 1, gateway_puts

    if extensive:
        root = os.path.join(cluster_root, "extensive")
        os.makedirs(root)
        wrapper = extensive_etcd(binary, root)
        with LocalCluster(root, size=1, name="ext", etcd_bin=wrapper) as cluster:
            found = scrape_until(session(cluster), cluster.members, extensive)
        missing = sorted(extensive - set(found))
        assert missing == [], "etcd {} --metrics extensive does not export: {}".format(
            version_text, missing)
