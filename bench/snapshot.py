#!/opt/etcd-formula/venv/bin/python
"""
Snapshot and restore against db size, the formula's way and by hand, in one run on one lab
(cluster h1..h3 by highstate), for a db of about 10 MB and of about 200 MB:

- ``salt-run etcd.snapshot`` (streamed to the master, verified, recorded) beside a writer
  (bench/harness.py: failed writes, worst stall), against ``etcdctl snapshot save`` from
  the master by hand;
- ``salt-run state.orchestrate etcd.restore`` of the three members, against the same by
  hand: the file copied to each member, ``etcdctl snapshot restore`` there, etcd started on
  all three, until healthy.

    bench/snapshot.py [--keep] [--sizes 10,200]

Brings a lab up (5 hosts, ETCD_BENCH_PILLAR_DIR, default /tmp/etcd-formula-bench-snap-pillar)
when none is, and takes it down at the end. Figures only.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

from harness import (ADMIN_TLS, bring_up, build, endpoint, lab, must, under_writer,
                     write_etcd)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "test"))
from writer import formula_client  # noqa: E402

PILLAR_DIR = os.environ.get("ETCD_BENCH_PILLAR_DIR", "/tmp/etcd-formula-bench-snap-pillar")
BACKUPS = "/srv/etcd-formula-bench/backups"
MEMBERS = ["h1", "h2", "h3"]
VALUE = "x" * 100000  # 100 kB values: the db grows fast
DATA = "/var/lib/etcd/data"


def fill(megabytes):
    with formula_client([endpoint(h) for h in MEMBERS], ADMIN_TLS, timeout=10) as client:
        current = max((client.status(endpoint(h))["db_size"] for h in MEMBERS))
        n = 0
        while current < megabytes * 1e6:
            for _ in range(200):
                n += 1
                client.put("/bench/fill/{}/{}".format(megabytes, n), VALUE)
            current = client.status(endpoint("h1"))["db_size"]
        return current


def by_hand_save(path):
    started = time.monotonic()
    subprocess.run(["etcdctl", "--endpoints=" + endpoint("h1"), "--cacert", ADMIN_TLS["ca_file"],
                    "--cert", ADMIN_TLS["cert_file"], "--key", ADMIN_TLS["key_file"],
                    "snapshot", "save", path], check=True, capture_output=True,
                   env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})
    return time.monotonic() - started


BY_HAND_RESTORE = r"""
set -e
systemctl stop etcd
rm -rf {data}.hand
ETCDCTL_API=3 etcdctl snapshot restore /root/hand.db --name {name} --initial-cluster {initial} \
  --initial-cluster-token by-hand-{stamp} --initial-advertise-peer-urls https://{ip}:2380 \
  --data-dir {data}.hand >/dev/null 2>&1
rm -rf {data} && mv {data}.hand {data} && chown -R etcd:etcd {data} && chmod 700 {data}
rm -f /root/hand.db
"""


def by_hand_restore(path):
    initial = ",".join("etcd-{}=https://10.77.0.1{}:2380".format(h[1:], h[1:]) for h in MEMBERS)
    stamp = str(int(time.time()))
    started = time.monotonic()
    for host in MEMBERS:
        with open(path, "rb") as handle:
            subprocess.run(["test/lab", "exec", host, "--", "sh", "-c", "cat > /root/hand.db"],
                           stdin=handle, check=True, capture_output=True)
        must(lab("exec", host, "--", "sh", "-c", BY_HAND_RESTORE.format(
            data=DATA, name="etcd-" + host[1:], initial=initial, stamp=stamp,
            ip="10.77.0.1" + host[1:])), "restore by hand on " + host)
    for host in MEMBERS:
        lab("exec", host, "--", "systemctl", "start", "--no-block", "etcd")
    with formula_client([endpoint(h) for h in MEMBERS], ADMIN_TLS) as client:
        import etcd_membership

        while not etcd_membership.health(client)["healthy"]:
            time.sleep(0.1)
    return time.monotonic() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="leave a lab this run brought up")
    parser.add_argument("--sizes", default="10,200", help="db sizes in MB")
    args = parser.parse_args()
    owned = bring_up(PILLAR_DIR, 5, MEMBERS)
    write_etcd(PILLAR_DIR, MEMBERS, [])
    with open(os.path.join(PILLAR_DIR, "etcd.sls"), "a") as handle:
        handle.write("  backup:\n    dir: {}\n    keep: 2\n".format(BACKUPS))
    rows = []
    try:
        build(MEMBERS)
        for megabytes in [int(m) for m in args.sizes.split(",")]:
            size = fill(megabytes)
            snap = under_writer("snapshot, {} MB db".format(megabytes),
                                lambda: must(lab("salt-run", "--out=json", "etcd.snapshot"),
                                             "etcd.snapshot"), MEMBERS)
            hand_path = "/tmp/etcd-bench-hand.db"
            hand_save = by_hand_save(hand_path)
            started = time.monotonic()
            must(lab("salt-run", "--out=json", "state.orchestrate", "etcd.restore",
                     "pillar=" + json.dumps({"etcd_snapshot": "latest", "etcd_confirm": "etcd"})),
                 "etcd.restore")
            formula_restore = time.monotonic() - started
            hand_restore = by_hand_restore(hand_path)
            os.remove(hand_path)
            rows.append((megabytes, size, snap["took"], hand_save, snap["worst_stall_s"],
                         snap["failed"], formula_restore, hand_restore))
    finally:
        shutil.rmtree(os.path.dirname(BACKUPS), ignore_errors=True)
        if owned and not args.keep:
            lab("down")
    print()
    print("{:>6} {:>9} {:>10} {:>9} {:>6} {:>11} {:>8} {:>10} {:>8} {:>6}".format(
        "db MB", "db bytes", "snapshot", "by hand", "ratio", "worst stall", "failed",
        "restore", "by hand", "ratio"))
    for mb, size, snap, hand, stall, failed, restore, hand_restore in rows:
        print("{:>6} {:>9} {:>9.2f}s {:>8.2f}s {:>6.1f} {:>10.3f}s {:>8} {:>9.2f}s {:>7.2f}s {:>6.1f}"
              .format(mb, size, snap, hand, snap / hand, stall, failed, restore, hand_restore,
                      restore / hand_restore))


if __name__ == "__main__":
    main()
