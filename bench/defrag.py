#!/opt/etcd-formula/venv/bin/python
"""
Defragmentation of a fragmented db of about 200 MB, the formula's way and by hand, in one
run on one lab (cluster h1..h3 by highstate):

- ``salt-run etcd.defrag`` beside a writer (bench/harness.py: failed writes, worst stall):
  its wall time and, per member, the time it reports;
- the same db fragmented again, then ``etcdctl defrag`` by hand, one member at a time from
  the master (what an operator types), beside the same writer.

    bench/defrag.py [--keep] [--megabytes 200]

Brings a lab up (3 hosts, ETCD_BENCH_PILLAR_DIR, default /tmp/etcd-formula-bench-defrag-pillar)
when none is, and takes it down at the end. Figures only.
"""

import argparse
import os
import subprocess
import sys
import time

from harness import ADMIN_TLS, bring_up, build, endpoint, lab, must, under_writer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "test"))
from lab_cli import last_json  # noqa: E402
from writer import formula_client  # noqa: E402

PILLAR_DIR = os.environ.get("ETCD_BENCH_PILLAR_DIR", "/tmp/etcd-formula-bench-defrag-pillar")
MEMBERS = ["h1", "h2", "h3"]
VALUE = "x" * 500000  # the history of one key: compacted, it leaves the db fragmented


def fragment(megabytes):
    """Grow the db to about ``megabytes`` with one key's history, then compact it all."""
    with formula_client([endpoint(h) for h in MEMBERS], ADMIN_TLS, timeout=30) as client:
        n = 0
        while client.status(endpoint("h1"))["db_size"] < megabytes * 1e6:
            for _ in range(40):
                n += 1
                client.put("/bench/defrag/blob", VALUE + str(n))
        client.compact(client.revision())
        return {h: client.status(endpoint(h)) for h in MEMBERS}


def by_hand():
    took = {}
    for host in MEMBERS:
        started = time.monotonic()
        subprocess.run(["etcdctl", "--endpoints=" + endpoint(host), "--cacert", ADMIN_TLS["ca_file"],
                        "--cert", ADMIN_TLS["cert_file"], "--key", ADMIN_TLS["key_file"],
                        "--command-timeout=600s", "defrag"], check=True, capture_output=True,
                       env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})
        took[host] = time.monotonic() - started
    return took


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="leave a lab this run brought up")
    parser.add_argument("--megabytes", type=int, default=200)
    args = parser.parse_args()
    owned = bring_up(PILLAR_DIR, 3, MEMBERS, ["defrag_min_bytes: 0",
                                              "quota_backend_bytes: 4294967296"])
    try:
        build(MEMBERS)
        before = fragment(args.megabytes)
        print("fragmented: " + ", ".join("{} {:.0f} MB ({:.0%} in use)".format(
            h, s["db_size"] / 1e6, s["db_size_in_use"] / s["db_size"]) for h, s in before.items()))

        def formula():
            res = lab("salt-run", "--out=json", "etcd.defrag")
            must(res, "salt-run etcd.defrag")
            return last_json(res.stdout)["done"]

        ours = under_writer("salt-run etcd.defrag", formula, MEMBERS)
        for line in ours["detail"]:
            print("    " + line)
        fragment(args.megabytes)
        hand = under_writer("etcdctl defrag by hand", by_hand, MEMBERS)
        for host, seconds in hand["detail"].items():
            print("    {}: {:.2f} s".format(host, seconds))
        print("ratio formula / by hand: {:.2f}".format(ours["took"] / hand["took"]))
    finally:
        if owned and not args.keep:
            lab("down")


if __name__ == "__main__":
    main()
