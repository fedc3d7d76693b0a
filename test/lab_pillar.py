"""
A pillar_roots of one's own for the lab (``test/lab up --pillar DIR``), as the integration
test modules and the benchmarks that need their own cluster write it: a top file giving
``etcd`` to every minion, and pillar ``etcd`` with one cluster ``etcd`` of the members given.
"""

import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CA_DIR = "/run/etcd-formula-lab/ca"  # the lab's CA server keeps its CA here
BACKUP_DIR = "/srv/etcd-formula-lab/backups"  # the lab's snapshots (test/lab down removes it)


def ip(host):
    """The lab address of host ``hN``."""
    return "10.77.0.{}".format(10 + int(host[1:]))


def write_base(pillar_dir):
    """The top file: pillar etcd for every minion (members, clients, the CA server)."""
    os.makedirs(pillar_dir, exist_ok=True)
    with open(os.path.join(pillar_dir, "top.sls"), "w") as handle:
        handle.write("base:\n  '*':\n    - etcd\n")


def write_etcd(pillar_dir, members, cluster_lines=()):
    """Pillar ``etcd``: the lab's CA server, cluster ``etcd`` of ``members`` (h1 is seq 1 at
    10.77.0.11 ...), and ``cluster_lines``, more of the cluster's keys as YAML lines."""
    lines = ["etcd:", "  pki:", "    ca_server: master", "    ca_dir: " + CA_DIR,
             "  backup:", "    dir: " + BACKUP_DIR, "  clusters:", "    etcd:"]
    lines += ["      " + line for line in cluster_lines]
    lines += ["      members:"]
    lines += ["        {}: {{seq: {}, address: {}}}".format(h, h[1:], ip(h)) for h in members]
    with open(os.path.join(pillar_dir, "etcd.sls"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
