"""
A pillar_roots of one's own for the lab (``test/lab up --pillar DIR``), as the integration
test modules and the benchmarks that need their own cluster write it: a top file giving
``etcd`` to every minion and the CA policies to the CA server, and pillar ``etcd`` with one
cluster ``etcd`` of the members given.
"""

import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CA_DIR = "/run/etcd-formula-lab/ca"  # the lab's CA server keeps its CA here


def ip(host):
    """The lab address of host ``hN``."""
    return "10.77.0.{}".format(10 + int(host[1:]))


def write_base(pillar_dir):
    """The top file, and the CA server's signing policies: pillar.example's, in CA_DIR."""
    os.makedirs(pillar_dir, exist_ok=True)
    with open(os.path.join(pillar_dir, "top.sls"), "w") as handle:
        handle.write("base:\n  '*':\n    - etcd\n  'master':\n    - etcd_ca_policies\n")
    with open(os.path.join(REPO, "pillar.example")) as handle:
        example = handle.read()
    with open(os.path.join(pillar_dir, "etcd_ca_policies.sls"), "w") as handle:
        handle.write(example[example.index("x509_signing_policies:"):]
                     .replace("/etc/pki/etcd-ca/", CA_DIR + "/"))


def write_etcd(pillar_dir, members, cluster_lines=()):
    """Pillar ``etcd``: the lab's CA server, cluster ``etcd`` of ``members`` (h1 is seq 1 at
    10.77.0.11 ...), and ``cluster_lines``, more of the cluster's keys as YAML lines."""
    lines = ["etcd:", "  pki:", "    ca_server: master", "    ca_dir: " + CA_DIR,
             "  clusters:", "    etcd:"]
    lines += ["      " + line for line in cluster_lines]
    lines += ["      members:"]
    lines += ["        {}: {{seq: {}, address: {}}}".format(h, h[1:], ip(h)) for h in members]
    with open(os.path.join(pillar_dir, "etcd.sls"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
