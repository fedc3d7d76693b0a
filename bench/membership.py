#!/opt/etcd-formula/venv/bin/python
"""
Times the learner flow on a real 3-member TLS etcd on loopback (test/functional/local_etcd.py),
through the formula's own module loaded by Salt's loader:

- learner start -> promote accepted: ``etcd_cluster.member_promote`` called as soon as the
  learner's etcd is started (it waits for it to run and catch up, then promotes);
- the "unhealthy cluster" window after the promote: membership changes probed every 50 ms
  (single attempts, no retry) until etcd accepts one.

    bench/membership.py [--rounds 5] [--data-mb 0] [--etcd /usr/bin/etcd]

``--data-mb`` writes that much data before each learner is added (the snapshot it receives).
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "test", "functional"))

from conftest import SaltLoader  # noqa: E402
from local_etcd import LocalCluster, etcd_version  # noqa: E402

HEALTH_INTERVAL = 5.0  # etcd's: connected to every voter this long before membership changes


def write_data(client, megabytes):
    value = "x" * (256 * 1024)
    for index in range(megabytes * 4):
        client.put("/bench/{}".format(index), value)


def one_round(root, etcd_bin, data_mb):
    with LocalCluster(root, size=3, name="bench", etcd_bin=etcd_bin) as cluster:
        loader = SaltLoader("m1", cluster.pillar(), os.path.join(root, "cache"))
        tls = cluster.tls

        def mod(function, *args, **kwargs):
            return loader.modules["etcd_cluster." + function](*args, **dict(tls, **kwargs))

        client = loader.utils["etcd_client.connect"](cluster.endpoints, **tls)
        write_data(client, data_mb)
        # a new cluster refuses membership changes for its first 5 s: start from steady state
        time.sleep(HEALTH_INTERVAL + 0.5)

        learner = cluster.new_member()
        added = mod("member_add", learner.name, learner.peer_url)
        started_at = time.monotonic()
        cluster.start(learner, added["initial_cluster"], state="existing")
        mod("member_promote", added["id"], timeout=300)
        promoted_at = time.monotonic()

        probe = cluster.new_member()
        refusals = 0
        while True:
            try:
                client.member_add([probe.peer_url], deadline=0)
                break
            except Exception as exc:  # noqa: BLE001 - anything but the expected refusal ends the bench
                if getattr(exc, "message", None) != "etcdserver: unhealthy cluster":
                    raise
                refusals += 1
                time.sleep(0.05)
        accepted_at = time.monotonic()
        return {
            "start_to_promote": promoted_at - started_at,
            "unhealthy_after_promote": accepted_at - promoted_at,
            "unhealthy_after_start": accepted_at - started_at,
            "refusals": refusals,
        }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--data-mb", type=int, default=0)
    parser.add_argument("--etcd", default=os.environ.get("ETCD_BIN", "/usr/bin/etcd"))
    args = parser.parse_args()

    print("etcd {}, {} round(s), {} MB of data".format(
        ".".join(map(str, etcd_version(args.etcd))), args.rounds, args.data_mb
    ))
    results = []
    for number in range(args.rounds):
        root = tempfile.mkdtemp(prefix="etcd-bench-")
        try:
            result = one_round(root, args.etcd, args.data_mb)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        results.append(result)
        print("round {}: start->promote {:.2f} s; unhealthy cluster {:.2f} s after the promote "
              "({:.2f} s after the learner started, {} refusals)".format(
                  number + 1, result["start_to_promote"], result["unhealthy_after_promote"],
                  result["unhealthy_after_start"], result["refusals"]))
    for key in ("start_to_promote", "unhealthy_after_promote", "unhealthy_after_start"):
        values = [r[key] for r in results]
        print("{:24} median {:.2f} s, min {:.2f} s, max {:.2f} s".format(
            key, statistics.median(values), min(values), max(values)))


if __name__ == "__main__":
    main()
