#!/opt/etcd-formula/venv/bin/python
"""
CA rotation, the formula's way, beside a by-hand rolling restart of the same members, in one
run on one lab (a cluster by highstate, 3 members, then 5 in a second lab):

- ``salt-run etcd.rotate_ca`` beside a writer (bench/harness.py): wall time, failed writes,
  worst stall (also as a multiple of the election timeout);
- ``systemctl restart etcd`` on each member by hand, one at a time, each healthy again before
  the next (what a rolling restart by hand is; a rotation does two), beside the same writer.

    bench/rotate_ca.py [--members 3 5] [--keep]

Brings its own lab up (ETCD_BENCH_PILLAR_DIR, default /tmp/etcd-formula-bench-rotate-pillar)
when none is, and takes it down at the end. Figures only.
"""

import argparse
import os
import sys
import time

from harness import bring_up, build, endpoint, lab, must, under_writer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "test"))
from lab_cli import ADMIN_TLS, last_json  # noqa: E402
from writer import formula_client  # noqa: E402

PILLAR_DIR = os.environ.get("ETCD_BENCH_PILLAR_DIR", "/tmp/etcd-formula-bench-rotate-pillar")


def healthy(members):
    with formula_client([endpoint(h) for h in members], ADMIN_TLS, timeout=2) as client:
        return all(client.health(endpoint(h))["healthy"] for h in members)


def rolling_restart(members):
    took = {}
    for host in members:
        started = time.monotonic()
        must(lab("exec", host, "--", "systemctl", "restart", "etcd"), "restart on " + host)
        while not healthy(members):
            time.sleep(0.1)
        took[host] = time.monotonic() - started
    return took


def one(count, keep):
    members = ["h{}".format(n) for n in range(1, count + 1)]
    owned = bring_up(PILLAR_DIR, count, members)
    try:
        build(members)

        def formula():
            res = lab("salt-run", "--out=json", "etcd.rotate_ca")
            must(res, "salt-run etcd.rotate_ca")
            return last_json(res.stdout)["done"]

        print("{} members:".format(count))
        ours = under_writer("salt-run etcd.rotate_ca", formula, members)
        hand = under_writer("rolling restart by hand", lambda: rolling_restart(members), members)
        print("    ratio rotation / one rolling restart by hand: {:.1f} (a rotation does two)"
              .format(ours["took"] / hand["took"]))
        print("    worst stall rotation / by hand: {:.2f}".format(
            ours["worst_stall_s"] / max(hand["worst_stall_s"], 1e-3)))
    finally:
        if owned and not keep:
            lab("down")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, nargs="+", default=[3, 5])
    parser.add_argument("--keep", action="store_true", help="leave the last lab up")
    args = parser.parse_args()
    for i, count in enumerate(args.members):
        one(count, args.keep and i == len(args.members) - 1)


if __name__ == "__main__":
    main()
