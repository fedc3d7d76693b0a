#!/opt/etcd-formula/venv/bin/python
"""
Times highstate on the lab against the same etcd processes started by hand, in one run on
the same hosts (h1..h3, the lab's own pillar):

- highstate of h1..h3 at once on fresh hosts, until the cluster is healthy;
- a no-change re-apply;
- the three etcd processes of that highstate started by hand (its config file, a fresh data
  dir and token), until each member's /health says true.

    bench/highstate.py [--keep]

Brings a lab up (3 hosts) when none is; a lab that is up must have the lab's own pillar.
Figures only: nothing is asserted.
"""

import argparse
import json
import os
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "test"))

from lab_cli import lab, salt  # noqa: E402

MEMBERS = ("h1", "h2", "h3")
CONFIG = "/etc/etcd/etcd.conf.yml"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
BY_HAND = r"""
set -e
sed -e 's#^data-dir:.*#data-dir: /tmp/by-hand#' \
    -e 's#^initial-cluster-state:.*#initial-cluster-state: new#' \
    -e 's#^initial-cluster-token:.*#initial-cluster-token: by-hand#' """ + CONFIG + r""" > /tmp/by-hand.yml
rm -rf /tmp/by-hand
setsid /usr/bin/etcd --config-file /tmp/by-hand.yml > /tmp/by-hand.log 2>&1 < /dev/null &
echo $!
"""


def ip(host):
    return "10.77.0.{}".format(10 + int(host[1:]))


def member_healthy(host):
    try:
        with NO_PROXY.open("http://{}:2381/health".format(ip(host)), timeout=1) as answer:
            return json.loads(answer.read().decode()).get("health") == "true"
    except OSError:
        return False


def wait(check, what, timeout=120):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            sys.exit("{}: not within {} s".format(what, timeout))
        time.sleep(0.05)


def highstate():
    ret = salt("-L", ",".join(MEMBERS), "state.apply", "-t", "900")
    bad = [s["comment"] for states in ret.values() for s in states.values() if not s["result"]]
    if bad or len(ret) != 3:
        sys.exit("highstate failed: {}".format(bad or ret))
    return ret


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="leave a lab this run brought up")
    args = parser.parse_args()
    status = json.loads(lab("status", "--json").stdout)
    owned = not status["up"]
    if owned:
        lab("up", "--hosts", "3")
    figures = {}
    try:
        lab("sync")
        salt("master", "state.apply", "etcd.ca,etcd.admin")
        started = time.monotonic()
        highstate()
        wait(lambda: all(member_healthy(h) for h in MEMBERS), "healthy after highstate")
        figures["highstate -> healthy"] = time.monotonic() - started
        started = time.monotonic()
        ret = highstate()
        figures["no-change re-apply"] = time.monotonic() - started
        changed = sum(1 for states in ret.values() for s in states.values() if s["changes"])
        for host in MEMBERS:
            lab("exec", host, "--", "systemctl", "stop", "etcd")
        pids = {}
        started = time.monotonic()
        threads = [threading.Thread(target=lambda h=h: pids.update(
            {h: lab("exec", h, "--", "bash", "-c", BY_HAND).stdout.strip()})) for h in MEMBERS]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wait(lambda: all(member_healthy(h) for h in MEMBERS), "healthy by hand")
        figures["the same etcd by hand -> healthy"] = time.monotonic() - started
        for host, pid in pids.items():
            lab("exec", host, "--", "sh", "-c", "kill {0}; while kill -0 {0} 2>/dev/null; do "
                "sleep 0.1; done; rm -rf /tmp/by-hand /tmp/by-hand.yml".format(pid))
            lab("exec", host, "--", "systemctl", "start", "--no-block", "etcd")
    finally:
        if owned and not args.keep:
            lab("down")
    hand = figures["the same etcd by hand -> healthy"]
    for what, seconds in figures.items():
        print("{:<36} {:6.2f} s  ({:.1f} x by hand)".format(what, seconds, seconds / hand))
    print("changes in the re-apply: {}".format(changed))


if __name__ == "__main__":
    main()
