#!/opt/etcd-formula/venv/bin/python
"""
The formula's operations under a writer on one lab, one after another on one cluster
(h1..h3 by highstate): add_member h4, remove_member h4, a rolling config change of h1..h3
(highstate with another snapshot_count). For each: wall time, failed writes, worst stall
and p99 write latency, also as multiples of the election timeout (bench/harness.py).

    bench/operations.py [--keep]

Brings a lab up (5 hosts, ETCD_BENCH_PILLAR_DIR, default /tmp/etcd-formula-bench-ops-pillar)
when none is, and takes it down at the end (``--keep`` leaves it). Figures only.
"""

import argparse
import json
import os

from harness import bring_up, build, lab, orchestrate, salt, under_writer, write_etcd

PILLAR_DIR = os.environ.get("ETCD_BENCH_PILLAR_DIR", "/tmp/etcd-formula-bench-ops-pillar")
MEMBERS = ["h1", "h2", "h3"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="leave a lab this run brought up")
    args = parser.parse_args()
    owned = bring_up(PILLAR_DIR, 5, MEMBERS)
    try:
        build(MEMBERS)
        write_etcd(PILLAR_DIR, MEMBERS + ["h4"], [])
        salt("*", "saltutil.refresh_pillar", "wait=True")
        under_writer("add_member h4", lambda: orchestrate("etcd.add_member", "h4"), MEMBERS)
        under_writer("remove_member h4", lambda: orchestrate("etcd.remove_member", "h4"),
                     MEMBERS)
        write_etcd(PILLAR_DIR, MEMBERS, [])
        salt("*", "saltutil.refresh_pillar", "wait=True")
        change = "pillar=" + json.dumps({"etcd": {"clusters": {"etcd": {"snapshot_count": 12345}}}})
        under_writer("rolling config change", lambda: salt(
            "-L", ",".join(MEMBERS), "state.apply", change, "-t", "900"), MEMBERS)
    finally:
        if owned and not args.keep:
            lab("down")


if __name__ == "__main__":
    main()
