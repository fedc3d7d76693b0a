"""
What every benchmark of an operation shares: a lab brought up with the benchmark's own
pillar (or one that is up with it), and ``under_writer``: an operation run beside a writer
at a fixed rate (test/writer.py), its wall time, failed writes, worst stall and p99 write
latency, also as multiples of the election timeout. Figures only: nothing is asserted.
"""

import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "test"))

from lab_cli import ADMIN_TLS, lab, salt  # noqa: E402
from lab_pillar import ip, write_base, write_etcd  # noqa: E402
from writer import Writer  # noqa: E402

ELECTION_TIMEOUT = 1.0  # s, the pillar default


def endpoint(host):
    return "https://{}:2379".format(ip(host))


def must(res, what):
    if res.returncode != 0:
        sys.exit("{}: exit {}\n{}\n{}".format(what, res.returncode, res.stdout[-3000:],
                                              res.stderr[-2000:]))
    return res


def bring_up(pillar_dir, hosts, members, cluster_lines=()):
    """(whether this run brought the lab up). A lab that is up must have ``pillar_dir``."""
    status = json.loads(lab("status", "--json").stdout)
    if status["up"]:
        if status.get("pillar") != pillar_dir or len(status["hosts"]) < hosts:
            sys.exit("a lab is up with pillar {} and {} hosts; this bench needs {} hosts and "
                     "pillar {}: test/lab down first".format(
                         status.get("pillar"), len(status["hosts"]), hosts, pillar_dir))
        return False
    if status.get("leftovers"):
        lab("down")
    write_base(pillar_dir)
    write_etcd(pillar_dir, members, list(cluster_lines))
    must(lab("up", "--hosts", str(hosts), "--pillar", pillar_dir), "test/lab up")
    return True


def build(members):
    """CA, admin certificate and a cluster of ``members`` by highstate."""
    must(lab("sync"), "test/lab sync")
    salt("*", "saltutil.refresh_pillar", "wait=True")
    ret = salt("master", "state.apply", "etcd.ca,etcd.admin")
    if not all(s["result"] for s in ret["master"].values()):
        sys.exit("etcd.ca,etcd.admin failed: {}".format(ret))
    ret = salt("-L", ",".join(members), "state.apply", "-t", "900")
    bad = [s.get("comment") for states in ret.values() for s in states.values()
           if not s["result"]] if all(isinstance(v, dict) for v in ret.values()) else [ret]
    if bad or len(ret) != len(members):
        sys.exit("highstate of {} failed: {}".format(members, bad or ret))


def orchestrate(sls, member, **extra):
    res = lab("salt-run", "--out=json", "state.orchestrate", sls,
              "pillar=" + json.dumps(dict({"etcd_member": member}, **extra)))
    must(res, "{} {}".format(sls, member))
    steps = next(iter(json.loads(res.stdout)["data"].values()))
    return {sid.split("_|-")[1]: s.get("duration", 0) / 1000.0 for sid, s in steps.items()}


def under_writer(label, action, hosts, rate=20):
    """Run ``action()`` beside a writer through ``hosts``' endpoints: the figures, printed."""
    with Writer([endpoint(h) for h in hosts], ADMIN_TLS, rate=rate) as writer:
        started = time.monotonic()
        detail = action()
        took = time.monotonic() - started
    report = writer.report(ELECTION_TIMEOUT)
    print("{:<28} {:6.2f} s   failed writes {:>3}   worst stall {:5.3f} s ({:.2f} x election)"
          "   p99 {:6.4f} s ({:.3f} x)".format(label, took, report["failed"],
                                               report["worst_stall_s"], report["worst_stall_x"],
                                               report["p99_s"] or 0, report["p99_x"] or 0))
    for failure in report["first_failures"]:
        print("    failed write: {}".format(failure))
    return dict(report, took=took, detail=detail)
