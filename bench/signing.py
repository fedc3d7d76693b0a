#!/opt/etcd-formula/venv/bin/python
"""
Certificates at scale (issue 14): how long minions applying at once take to get their
certificates, on a salt-master with Salt's default worker_threads (5), in one run:

- A: highstate of 3 members alone (cluster etcd: h1..h3), from nothing;
- B: the same 3 members and 12 patroni client minions (h4..h15: ``etcd.client``), at once;
- B0: as B, but the clients apply a state that asks for no certificate
  (etcd.clients.prometheus): what
  15 minions applying at once cost this machine whatever they do (B's floor);
- C: two clusters of 3 (dcs-a: h1..h3, dcs-b: h4..h6) highstated at once.

Each on fresh hosts (the lab brought up anew for it), as wall time from the first apply to
the last return, and as a ratio to A; with the master log's ``Request timed out`` count, the
number of certificates the CA server issued, and the CPU time the machine was busy meanwhile
(``/proc/stat``, every process: the master, the minions, etcd, this machine's other tenants):
busy CPU seconds / cores is the least wall time that work could take here, so a scenario
whose wall time is near it waited on the CPU, not on the master. Figures only: nothing is
asserted.

    bench/signing.py

Needs the machine's one lab: refuses to run while one is up.
"""

import json
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "test"))

from lab_cli import lab, salt  # noqa: E402
from lab_pillar import BACKUP_DIR, CA_DIR, ip, write_base  # noqa: E402

PILLAR = "/run/etcd-formula-bench-signing"
MASTER_LOG = "/run/etcd-formula-lab/master/var/log/salt/master"
TIMED_OUT = "Request timed out"


def hosts(first, last):
    return ["h{}".format(n) for n in range(first, last + 1)]


def write_pillar(clusters, clients=()):
    """``clusters`` {name: [members]}; ``clients``: the patroni minions of the first cluster."""
    lines = ["etcd:", "  pki:", "    ca_server: master", "    ca_dir: " + CA_DIR,
             "  backup:", "    dir: " + BACKUP_DIR, "  clusters:"]
    for number, (name, members) in enumerate(sorted(clusters.items())):
        lines += ["    {}:".format(name), "      members:"]
        lines += ["        {}: {{seq: {}, address: {}}}".format(h, i + 1, ip(h))
                  for i, h in enumerate(members)]
        if clients and number == 0:
            lines += ["      clients:", "        patroni:",
                      "          target: [{}]".format(", ".join(clients))]
    write_base(PILLAR)
    with open(os.path.join(PILLAR, "etcd.sls"), "w") as handle:
        handle.write("\n".join(lines) + "\n")


def failures(ret, expected):
    if not isinstance(ret, dict) or sorted(ret) != sorted(expected):
        return ["answers from {} instead of {}".format(sorted(ret) if isinstance(ret, dict)
                                                       else ret, sorted(expected))]
    return ["{}: {}".format(m, s.get("comment")) for m, states in ret.items()
            for s in (states.values() if isinstance(states, dict) else [{"result": False,
                                                                          "comment": states}])
            if not s.get("result")]


def scenario(label, count, clusters, clients=(), client_sls="etcd.client"):
    """Fresh lab of ``count`` hosts, CA and admin cert, then every apply at once, timed
    (``client_sls``: what the client minions apply)."""
    write_pillar(clusters, clients)
    if lab("up", "--hosts", str(count), "--pillar", PILLAR).returncode != 0:
        sys.exit("test/lab up --hosts {} failed".format(count))
    try:
        lab("sync")
        salt("*", "saltutil.refresh_pillar", "wait=True")
        ret = salt("master", "state.apply", "etcd.ca,etcd.admin")
        if failures(ret, ["master"]):
            sys.exit("etcd.ca,etcd.admin: {}".format(failures(ret, ["master"])))
        before = count_in_log()
        members = [h for group in clusters.values() for h in group]
        applies = [(members, [])] + ([(list(clients), [client_sls])] if clients else [])
        results, threads = {}, []
        for targets, sls in applies:
            def run(targets=targets, sls=sls):
                results[",".join(targets)] = (targets, salt("-L", ",".join(targets),
                                                            "state.apply", *sls, "-t", "900"))
            threads.append(threading.Thread(target=run))
        started, cpu_before = time.monotonic(), busy_cpu_seconds()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        took, cpu = time.monotonic() - started, busy_cpu_seconds() - cpu_before
        bad = [f for targets, ret in results.values() for f in failures(ret, targets)]
        if bad:
            journals = {h: lab("exec", h, "--", "journalctl", "-u", "etcd", "-n", "25", "--no-pager",
                               "-o", "cat").stdout for h in members}
            sys.exit("{}: {}\n{}".format(label, bad[:5], "\n".join(
                "== {}\n{}".format(h, j) for h, j in journals.items())))
        issued = salt("master", "etcd_ca.certificates")["master"]
        return {"took": took, "cpu": cpu, "timeouts": count_in_log() - before,
                "certificates": sum(len(c) for c in issued.values())
                if isinstance(issued, dict) else issued}
    finally:
        lab("down")


def busy_cpu_seconds():
    """CPU seconds the whole machine has spent busy (not idle or waiting on I/O) since boot."""
    with open("/proc/stat") as handle:
        fields = [int(v) for v in handle.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def count_in_log():
    try:
        with open(MASTER_LOG, errors="replace") as handle:
            return handle.read().count(TIMED_OUT)
    except OSError:
        return 0


def main():
    if json.loads(lab("status", "--json").stdout)["up"]:
        sys.exit("a lab is up: test/lab down first (this bench brings up its own, 3 times)")
    figures = {
        "A: 3 members": scenario("A", 3, {"etcd": hosts(1, 3)}),
        "B: 3 members + 12 clients": scenario("B", 15, {"etcd": hosts(1, 3)}, hosts(4, 15)),
        # the floor of B on this machine: the same 15 minions applying at once, the 12
        # clients a state that asks for no certificate (etcd.clients.prometheus: the same
        # client settings rendered, a target file where prometheus is installed)
        "B0: as B, clients sign nothing": scenario("B0", 15, {"etcd": hosts(1, 3)}, hosts(4, 15),
                                                   client_sls="etcd.clients.prometheus"),
        "C: two clusters of 3": scenario("C", 6, {"dcs-a": hosts(1, 3), "dcs-b": hosts(4, 6)}),
    }
    base = figures["A: 3 members"]["took"]
    cores = os.cpu_count()
    for what, found in figures.items():
        print("{:<28} {:7.2f} s  {:4.2f} x A   CPU busy {:6.1f} s ({} cores: at least {:5.2f} s "
              "wall)   certificates issued {:>3}   '{}' in the master log: {}".format(
                  what, found["took"], found["took"] / base, found["cpu"], cores,
                  found["cpu"] / cores, found["certificates"], TIMED_OUT, found["timeouts"]))


if __name__ == "__main__":
    main()
