#!/opt/etcd-formula/venv/bin/python
"""
Times adding a member on the lab, two ways in the same run on the same cluster (h1..h3, built
by highstate):

- ``salt-run state.orchestrate etcd.add_member`` for h4, end to end (preflight, learner add,
  highstate of h4 with its certificates, promote, endpoint refresh, health);
- the same steps by hand with etcdctl for h5: ``member add --learner``, write h5's config
  (h4's, renamed, with the initial cluster etcdctl printed and ``initial-cluster-state:
  existing``) and start etcd, ``member promote`` every 0.25 s until accepted, the etcdctl env
  of the members rewritten. h5's packages, certificates and unit are made beforehand, untimed
  (an admin doing it by hand has them ready): the orchestration's time includes them for h4.

For both, a watcher polls every 50 ms the learner's raft index and the leader's: the moment the
learner has caught up is when etcd would accept the promote; the delay from there to the
moment the member list shows it promoted is printed.

    bench/add_member.py [--keep]

Uses a lab that is up with this script's pillar dir (ETCD_BENCH_PILLAR_DIR, default
/tmp/etcd-formula-bench-pillar), from fresh hosts; with none up, brings one up
(``test/lab up --hosts 5 --pillar DIR``) and takes it down at the end (``--keep`` leaves it).
Figures only: nothing is asserted.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "test"))

from lab_cli import ADMIN_TLS as ADMIN  # noqa: E402
from lab_cli import LAB, salt  # noqa: E402
from lab_cli import lab as run_lab  # noqa: E402
from lab_pillar import ip, write_base, write_etcd  # noqa: E402

PILLAR_DIR = os.environ.get("ETCD_BENCH_PILLAR_DIR", "/tmp/etcd-formula-bench-pillar")
CONFIG = "/etc/etcd/etcd.conf.yml"
UNIT = "/etc/systemd/system/etcd.service"
ENV_FILE = "/etc/profile.d/etcdctl.sh"
PROMOTE_INTERVAL = 0.25  # s, as etcd.promote polls
WATCH_INTERVAL = 0.05


def client_url(host):
    return "https://{}:2379".format(ip(host))


def peer_url(host):
    return "https://{}:2380".format(ip(host))


def lab(*args, check=True, timeout=900):
    res = run_lab(*args, timeout=timeout)
    if check and res.returncode != 0:
        sys.exit("test/lab {}: exit {}\n{}\n{}".format(" ".join(args), res.returncode,
                                                      res.stdout, res.stderr))
    return res


def etcdctl(*args, check=True):
    """The machine's etcdctl with the master's admin certificate, at the lab's members."""
    res = subprocess.run(
        ["etcdctl", "--endpoints=" + ",".join(client_url(h) for h in ("h1", "h2", "h3")),
         "--cacert", ADMIN["ca_file"], "--cert", ADMIN["cert_file"], "--key", ADMIN["key_file"],
         *args],
        capture_output=True, text=True, env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})
    if check and res.returncode != 0:
        raise RuntimeError("etcdctl {}: {}".format(" ".join(args), res.stderr.strip()))
    return res


def write_pillar(members):
    write_etcd(PILLAR_DIR, members)


def refresh_pillar():
    salt("*", "saltutil.refresh_pillar", "wait=True")


def prepare_pillar_dir():
    write_base(PILLAR_DIR)
    write_pillar(["h1", "h2", "h3"])


def bring_up():
    """(whether this run brought the lab up): a lab up must be ours, with fresh h4 and h5."""
    status = json.loads(lab("status", "--json").stdout)
    if status["up"]:
        if status.get("pillar") != PILLAR_DIR or len(status["hosts"]) < 5:
            sys.exit("a lab is up with pillar {} and {} hosts; this bench needs 5 hosts and "
                     "pillar {}: test/lab down first".format(
                         status.get("pillar"), len(status["hosts"]), PILLAR_DIR))
        return False
    if status.get("leftovers"):
        lab("down")
    prepare_pillar_dir()
    started = time.monotonic()
    lab("up", "--hosts", "5", "--pillar", PILLAR_DIR)
    print("lab up: {:.1f} s".format(time.monotonic() - started))
    return True


def build_cluster():
    started = time.monotonic()
    lab("sync")
    refresh_pillar()
    ret = salt("master", "state.apply", "etcd.ca,etcd.admin")
    if not all(s["result"] for s in ret["master"].values()):
        sys.exit("etcd.ca,etcd.admin failed: {}".format(ret))
    ret = salt("-L", "h1,h2,h3", "state.apply", "-t", "900")
    bad = [s.get("comment") for states in ret.values() for s in states.values()
           if not s["result"]] if all(isinstance(v, dict) for v in ret.values()) else [ret]
    if bad or len(ret) != 3:
        sys.exit("highstate of h1..h3 failed: {}".format(bad or ret))
    print("cluster h1..h3 by highstate: {:.1f} s".format(time.monotonic() - started))


class PromoteWatcher(threading.Thread):
    """Every 50 ms: the learner with ``peer`` caught up (its raft index >= the leader's, the
    leader's read first), and promoted (no longer a learner in the member list)."""

    def __init__(self, peer):
        super().__init__(daemon=True)
        sys.path.insert(0, os.path.join(REPO, "_utils"))
        import etcd_client

        self.client = etcd_client.connect([client_url(h) for h in ("h1", "h2", "h3")],
                                          timeout=1, **ADMIN)
        self.peer = peer
        self.caught_up_at = self.promoted_at = None
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set() and self.promoted_at is None:
            try:
                self._poll()
            except Exception:  # noqa: BLE001 - a learner not up yet, a busy member: poll again
                pass
            time.sleep(WATCH_INTERVAL)

    def _poll(self):
        members = self.client.members()
        learner = next((m for m in members if self.peer in m["peer_urls"]), None)
        if learner is None:
            return
        if not learner["is_learner"]:
            self.promoted_at = time.monotonic()
            return
        if self.caught_up_at is not None or not learner["started"]:
            return
        statuses = [self.client.status(client_url(h)) for h in ("h1", "h2", "h3")]
        leader = next(s for s in statuses if s["leader"] == s["id"])
        mine = self.client.status(learner["client_urls"][0])
        if mine["raft_index"] >= leader["raft_index"]:
            self.caught_up_at = time.monotonic()

    def stop(self):
        self.stopping.set()
        self.join(10)

    def delay(self):
        if self.caught_up_at is None or self.promoted_at is None:
            return None
        return self.promoted_at - self.caught_up_at


def by_orchestration(host):
    write_pillar(["h1", "h2", "h3", host])
    refresh_pillar()
    watcher = PromoteWatcher(peer_url(host))
    watcher.start()
    started = time.monotonic()
    res = lab("salt-run", "--out=json", "state.orchestrate", "etcd.add_member",
              "pillar=" + json.dumps({"etcd_member": host}), check=False)
    took = time.monotonic() - started
    watcher.stop()
    if res.returncode != 0:
        sys.exit("add_member {} failed:\n{}".format(host, res.stdout[-3000:]))
    steps = next(iter(json.loads(res.stdout)["data"].values()))
    step_times = {sid.split("_|-")[1]: s.get("duration", 0) / 1000.0 for sid, s in steps.items()}
    return took, watcher, step_times


def prepare_by_hand(host, template_host):
    """Untimed: h5's packages, dirs and certificates (the formula's own SLS), and h4's unit."""
    write_pillar(["h1", "h2", "h3", template_host, host])
    refresh_pillar()
    ret = salt(host, "state.apply", "etcd.install,etcd.dirs,etcd.pki", "-t", "600")
    if not all(s["result"] for s in ret[host].values()):
        sys.exit("preparing {} failed: {}".format(host, ret))
    unit = lab("exec", template_host, "--", "cat", UNIT).stdout
    subprocess.run([LAB, "exec", host, "--", "sh", "-c",
                    "cat > {} && systemctl daemon-reload".format(UNIT)],
                   input=unit, text=True, check=True, capture_output=True)
    return yaml.safe_load(lab("exec", template_host, "--", "cat", CONFIG).stdout)


def by_hand(host, template_host, template):
    """The SOP's steps with etcdctl: {step: seconds}, and the watcher."""
    name = "etcd-{}".format(host[1:])
    times = {}
    watcher = PromoteWatcher(peer_url(host))
    watcher.start()
    started = time.monotonic()

    out = etcdctl("member", "add", name, "--peer-urls=" + peer_url(host), "--learner").stdout
    env = dict(line.split("=", 1) for line in out.splitlines() if line.startswith("ETCD_"))
    member_id = out.split("Member ", 1)[1].split()[0]
    times["member add --learner"] = time.monotonic() - started

    mark = time.monotonic()
    config = dict(template)
    old, new = ip(template_host), ip(host)
    for key, value in template.items():
        if isinstance(value, str):
            config[key] = value.replace(old, new)
    config["name"] = name
    config["initial-cluster"] = env["ETCD_INITIAL_CLUSTER"].strip('"')
    config["initial-cluster-state"] = "existing"
    subprocess.run([LAB, "exec", host, "--", "sh", "-c",
                    "cat > {0} && chown root:etcd {0} && chmod 0640 {0} && "
                    "systemctl start etcd".format(CONFIG)],
                   input=yaml.safe_dump(config), text=True, check=True, capture_output=True)
    times["write config, start etcd"] = time.monotonic() - mark

    mark = time.monotonic()
    attempts = 0
    while True:
        attempts += 1
        if etcdctl("member", "promote", member_id, check=False).returncode == 0:
            break
        if time.monotonic() - mark > 120:
            sys.exit("by hand: {} not promoted within 120 s".format(name))
        time.sleep(PROMOTE_INTERVAL)
    times["member promote (polled, {} attempts)".format(attempts)] = time.monotonic() - mark

    mark = time.monotonic()
    endpoints = ",".join(client_url(h) for h in ("h1", "h2", "h3", template_host, host))
    for member in ("h1", "h2", "h3", template_host, host):
        sed = "s|^export ETCDCTL_ENDPOINTS=.*|export ETCDCTL_ENDPOINTS={}|".format(endpoints)
        if member == host:  # the new host has none yet: h4's, with the new list
            env_text = lab("exec", template_host, "--", "cat", ENV_FILE).stdout
            subprocess.run([LAB, "exec", host, "--", "sh", "-c",
                            "cat > {0} && sed -i '{1}' {0}".format(ENV_FILE, sed)],
                           input=env_text, text=True, check=True, capture_output=True)
        else:
            lab("exec", member, "--", "sed", "-i", sed, ENV_FILE)
    times["etcdctl env on the members"] = time.monotonic() - mark

    took = time.monotonic() - started
    watcher.stop()
    return took, times, watcher


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="leave a lab this run brought up")
    args = parser.parse_args()
    owned = bring_up()
    try:
        build_cluster()
        started = time.monotonic()
        lab("salt-run", "test.arg")
        bare = time.monotonic() - started
        orch_took, orch_watch, step_times = by_orchestration("h4")
        template = prepare_by_hand("h5", "h4")
        hand_took, hand_times, hand_watch = by_hand("h5", "h4", template)
        voters = [m["name"] for m in json.loads(etcdctl("member", "list", "-w", "json").stdout)
                  ["members"] if not m.get("isLearner")]
    finally:
        if owned and not args.keep:
            lab("down", check=False)

    print()
    print("add_member h4 by orchestration, end to end: {:.2f} s".format(orch_took))
    for step, seconds in step_times.items():
        print("    {:<40} {:6.2f} s".format(step, seconds))
    highstate = step_times.get("etcd-add-member-highstate", 0.0)
    print("the new member's highstate step alone:      {:.2f} s".format(highstate))
    print("the orchestration's own overhead:           {:.2f} s (end to end minus that step)"
          .format(orch_took - highstate))
    print("a bare salt-run (test.arg), for scale:      {:.2f} s".format(bare))
    print("the same steps by hand with etcdctl (h5):   {:.2f} s".format(hand_took))
    for step, seconds in hand_times.items():
        print("    {:<40} {:6.2f} s".format(step, seconds))
    print("ratio orchestration / by hand: {:.1f}".format(orch_took / hand_took))
    for label, watcher in (("orchestration", orch_watch), ("by hand", hand_watch)):
        delay = watcher.delay()
        print("{}: etcd would accept promote -> promoted: {}".format(
            label, "{:.2f} s".format(delay) if delay is not None else
            "not seen (caught up {}, promoted {})".format(watcher.caught_up_at,
                                                         watcher.promoted_at)))
    print("voting members at the end: {}".format(", ".join(sorted(voters))))


if __name__ == "__main__":
    main()
