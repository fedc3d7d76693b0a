"""
Highstate on the lab: h1..h3 at once give a healthy 3-member mTLS cluster; re-applying changes
and restarts nothing; test=True writes nothing; a config change restarts one member at a time
under a writer that never fails; etcdctl works for root on every member.

The tests run in file order on one cluster (the module fixture builds it from fresh hosts).
Timings are printed at the end (pytest -s) and written to /tmp/etcd-formula-timings.json.
"""

import hashlib
import json
import os
import subprocess
import threading
import time
import urllib.request

import pytest

LAB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lab")
MEMBERS = ("h1", "h2", "h3")
TARGET = ("-L", ",".join(MEMBERS))
CONFIG = "/etc/etcd/etcd.conf.yml"
UNIT = "/etc/systemd/system/etcd.service"
TIMINGS_FILE = "/tmp/etcd-formula-timings.json"
TIMINGS = {}
# Plain HTTP to the lab's metrics ports only: never through a proxy from the environment.
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# -- helpers --------------------------------------------------------------------------------------


def apply(lab, *args):
    """state.apply ARGS on h1..h3 at once: {minion: {state id: return}} (fails on render errors)."""
    result = lab.salt(*TARGET, "state.apply", *args, "-t", "900")
    assert set(result) == set(MEMBERS), result
    by_id = {}
    for minion, states in result.items():
        assert isinstance(states, dict), "{}: {}".format(minion, states)
        by_id[minion] = {ret["__id__"]: ret for ret in states.values()}
    return by_id


def failed(result):
    return ["{} {}: {}".format(m, i, r["comment"]) for m, s in result.items() for i, r in s.items()
            if r["result"] is False]


def changed(result):
    return {"{} {}".format(m, i): r["changes"] for m, s in result.items() for i, r in s.items()
            if r["changes"]}


def etcd_pids(lab):
    return {h: lab.exec(h, "systemctl", "show", "-p", "MainPID", "--value", "etcd").stdout.strip()
            for h in MEMBERS}


def file_digest(lab, host, path):
    res = lab.exec(host, "cat", path)
    return hashlib.sha256(res.stdout.encode()).hexdigest() if res.returncode == 0 else None


def cluster_health(lab):
    return lab.salt("h1", "etcd_cluster.health")["h1"]


def wait_healthy(lab, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        health = cluster_health(lab)
        if isinstance(health, dict) and health.get("healthy"):
            return
        assert time.monotonic() < deadline, health
        time.sleep(0.5)


def metrics_health(lab, host):
    """A member's /health on its plain-HTTP metrics port: True, False (no leader, or no
    answer within 1 s: etcd 3.5's /health waits for a leader while one is elected, so a
    member up and listening may not answer in time), None (down: nothing listens)."""
    try:
        with NO_PROXY.open("http://{}:2381/health".format(lab.ip(host)), timeout=1) as answer:
            return json.loads(answer.read().decode()).get("health") == "true"
    except OSError as exc:
        if isinstance(getattr(exc, "reason", exc), TimeoutError):
            return False
        return None


def record(name, seconds):
    TIMINGS[name] = round(seconds, 2)
    with open(TIMINGS_FILE, "w") as handle:
        json.dump(TIMINGS, handle, indent=2)


# -- the cluster ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(standard_lab):
    """h1..h3 purged, a dry run, then the highstate that builds the cluster, all timed."""
    lab = standard_lab
    lab.run("sync", check=True)
    if any(lab.exec(h, "test", "-e", UNIT).returncode == 0 for h in MEMBERS):
        purged = apply(lab, "etcd.purge")
        assert not failed(purged), failed(purged)
    ca = lab.salt_call("state.apply", "etcd.ca")["local"]
    assert all(r["result"] for r in ca.values()), ca

    dry = apply(lab, "test=True")
    after_dry = {h: {"config": lab.exec(h, "test", "-e", CONFIG).returncode == 0,
                     "unit": lab.exec(h, "test", "-e", UNIT).returncode == 0,
                     "key": lab.exec(h, "test", "-e", "/etc/etcd/pki/peer.key").returncode == 0,
                     "active": lab.exec(h, "systemctl", "is-active", "etcd").stdout.strip()}
                 for h in MEMBERS}

    started = time.monotonic()
    result = apply(lab)
    highstate_done = time.monotonic()
    assert not failed(result), failed(result)
    wait_healthy(lab)
    record("highstate_to_healthy_s", time.monotonic() - started)
    record("highstate_s", highstate_done - started)
    return {"dry": dry, "after_dry": after_dry, "result": result}


def test_dry_run_on_fresh_hosts_predicts_and_writes_nothing(built):
    assert not failed(built["dry"])
    for host in MEMBERS:
        predicted = {i for i, r in built["dry"][host].items() if r["result"] is None}
        assert {"etcd-config-file-managed", "etcd-service-running", "etcd-unit-file-managed",
                "etcd-pki-certificates-managed", "etcd-env-file-managed"} <= predicted, predicted
    assert built["after_dry"] == {
        h: {"config": False, "unit": False, "key": False, "active": "inactive"} for h in MEMBERS
    }


def test_highstate_builds_a_healthy_three_member_cluster(lab, built):
    assert not failed(built["result"])
    health = cluster_health(lab)
    assert health["healthy"] and health["quorum"]["voters"] == 3, health
    members = lab.salt("h2", "etcd_cluster.members")["h2"]
    assert sorted(m["name"] for m in members) == ["etcd-1", "etcd-2", "etcd-3"]
    assert not any(m["is_learner"] for m in members)
    # all start at once: a quorum bootstraps it (new); a member slower than that quorum
    # finds it running and joins it (existing)
    derived = [built["result"][h]["etcd-config-file-managed"]["comment"].split(
        "initial-cluster-state ")[1].split()[0] for h in MEMBERS]
    assert set(derived) <= {"new", "existing"} and derived.count("new") >= 2, derived


CURL = ["curl", "-sS", "--max-time", "5", "-X", "POST", "-d", '{"key": "YQ=="}']
PKI = "/etc/etcd/pki"


def test_member_answers_a_client_with_a_cert_of_the_cluster_ca(lab, built):
    res = lab.exec("h2", *CURL, "--cacert", PKI + "/ca.crt", "--cert", PKI + "/client.crt",
                   "--key", PKI + "/client.key", "https://{}:2379/v3/kv/range".format(lab.ip("h1")))
    assert res.returncode == 0 and '"header"' in res.stdout, res.stdout + res.stderr


def rejections(lab, host, since):
    """Why etcd on ``host`` rejected connections since epoch ``since`` (its own log lines)."""
    found = []
    deadline = time.monotonic() + 5
    while not found and time.monotonic() < deadline:
        log = lab.exec(host, "journalctl", "-u", "etcd", "-o", "cat", "--no-pager",
                       "--since", "@{}".format(int(since))).stdout
        # "rejected connection" (3.4), "rejected connection on client endpoint" (3.5)
        found = [json.loads(line).get("error", "") for line in log.splitlines()
                 if '"msg":"rejected connection' in line]
        time.sleep(0.2)
    return found


def test_member_refuses_a_client_without_a_cert(lab, built):
    since = time.time() - 1
    res = lab.exec("h2", *CURL, "--cacert", PKI + "/ca.crt",
                   "https://{}:2379/v3/kv/range".format(lab.ip("h1")))
    assert res.returncode != 0 and '"header"' not in res.stdout, res.stdout
    assert "tls: client didn't provide a certificate" in rejections(lab, "h1", since)


ROGUE_CLIENT = (
    "set -e; d=$(mktemp -d); cd $d; "
    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key "
    "-out ca.crt -subj /CN=rogue-ca -days 2 2>/dev/null; "
    "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout c.key -out c.csr "
    "-subj /CN=rogue 2>/dev/null; "
    "printf 'extendedKeyUsage=clientAuth\\n' > ext; "
    "openssl x509 -req -in c.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out c.crt -days 1 "
    "-extfile ext 2>/dev/null; "
    "curl -sS --max-time 5 -X POST -d '{{\"key\": \"YQ==\"}}' --cacert {pki}/ca.crt "
    "--cert c.crt --key c.key {url} || rc=$?; rm -rf $d; exit ${{rc:-0}}"
)


def test_member_refuses_a_client_cert_of_another_ca(lab, built):
    since = time.time() - 1
    url = "https://{}:2379/v3/kv/range".format(lab.ip("h1"))
    res = lab.exec("h2", "bash", "-c", ROGUE_CLIENT.format(pki=PKI, url=url))
    assert res.returncode != 0 and '"header"' not in res.stdout, res.stdout
    assert any("certificate signed by unknown authority" in why
               for why in rejections(lab, "h1", since)), res.stderr


def test_member_refuses_plain_http_on_the_client_port(lab, built):
    since = time.time() - 1
    res = lab.exec("h2", *CURL, "http://{}:2379/v3/kv/range".format(lab.ip("h1")))
    assert res.returncode != 0 and '"header"' not in res.stdout, res.stdout
    assert "tls: first record does not look like a TLS handshake" in rejections(lab, "h1", since)


def test_member_refuses_a_tls_1_1_handshake(lab, built):
    # etcd >= 3.5.8 by tls-min-version (TLS1.2); 3.4 because its only cipher suites (AEAD)
    # are TLS 1.2's: either way etcd says why, and the client really offered TLS 1.1
    since = time.time() - 1
    res = lab.exec("h2", "sh", "-c", "openssl s_client -connect {}:2379 -tls1_1 -cipher "
                   "DEFAULT@SECLEVEL=0 </dev/null 2>&1".format(lab.ip("h1")))
    assert res.returncode != 0 and "no protocols available" not in res.stdout, res.stdout
    why = rejections(lab, "h1", since)
    assert any("unsupported versions" in w or "no cipher suite supported" in w
               for w in why), (why, res.stdout[-1000:])


def test_etcdctl_env_works_for_root_on_every_member(lab, built):
    for host in MEMBERS:
        res = lab.exec(host, "bash", "-lic", "e put a 10; e get a; e del a")
        assert res.stdout.split() == ["OK", "a", "10", "1"], (host, res.stdout, res.stderr)
    env = lab.exec("h1", "cat", "/etc/profile.d/etcdctl.sh").stdout
    endpoints = ",".join("https://{}:2379".format(lab.ip(h)) for h in MEMBERS)
    assert "export ETCDCTL_ENDPOINTS={}\n".format(endpoints) in env
    # and for nobody else: another user has the same environment, but not the key
    res = lab.exec("h1", "runuser", "-u", "nobody", "--", "bash", "-lic", "e get a")
    assert res.returncode != 0 and "permission denied" in res.stderr, (res.stdout, res.stderr)


@pytest.mark.parametrize(
    "settings, why",
    [({}, "clean: false"), ({"safeguard": True, "clean": True}, "safeguard: true"),
     ({"clean": True}, "may hold or serve data")],
)
def test_clean_refuses_to_purge_a_running_member_unless_allowed(lab, built, settings, why):
    pids = etcd_pids(lab)
    override = json.dumps({"etcd": {"clusters": {"etcd": settings}}})
    result = lab.salt("h1", "state.apply", "etcd.clean", "pillar=" + override)["h1"]
    assert [r["result"] for r in result.values()] == [False], result
    assert why in next(iter(result.values()))["comment"]
    assert lab.exec("h1", "test", "-e", CONFIG).returncode == 0
    assert etcd_pids(lab) == pids


def test_reapply_changes_nothing_and_restarts_nothing(lab, built):
    pids = etcd_pids(lab)
    started = time.monotonic()
    result = apply(lab)
    record("reapply_s", time.monotonic() - started)
    assert not failed(result)
    assert changed(result) == {}
    assert etcd_pids(lab) == pids


# pillar given on the command line merges over the lab's: a real config change
CHANGE = 'pillar={"etcd": {"clusters": {"etcd": {"snapshot_count": 12000}}}}'


def test_dry_run_of_a_config_change_predicts_restarts_and_writes_nothing(lab, built):
    pids = etcd_pids(lab)
    before = {h: file_digest(lab, h, CONFIG) for h in MEMBERS}
    result = apply(lab, "test=True", CHANGE)
    assert not failed(result)
    for host in MEMBERS:
        assert result[host]["etcd-config-file-managed"]["result"] is None
        assert "snapshot-count" in result[host]["etcd-config-file-managed"]["changes"]["diff"]
        assert result[host]["etcd-service-running"]["result"] is None
    assert {h: file_digest(lab, h, CONFIG) for h in MEMBERS} == before
    assert etcd_pids(lab) == pids


class Monitor(threading.Thread):
    """Samples every member's metrics port: how many did not answer at once, at most."""

    def __init__(self, lab):
        super().__init__(daemon=True)
        self.lab = lab
        self.stop = threading.Event()
        self.max_down = 0
        self.samples = 0
        self.down_seen = set()

    def run(self):
        while not self.stop.is_set():
            answers = {}
            threads = [threading.Thread(target=lambda h=h, a=answers: a.update({h: metrics_health(self.lab, h)}))
                       for h in MEMBERS]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            down = {h for h, a in answers.items() if a is None}
            self.down_seen |= down
            self.max_down = max(self.max_down, len(down))
            self.samples += 1
            time.sleep(0.1)


# Writes through etcdctl on h1 (all voting endpoints, from the profile env) until told to stop.
# A write that fails is tried once more a second later; it counts as failed if that fails too.
WRITER = r"""
. /etc/profile.d/etcdctl.sh
ok=0; failed=0; retried=0; i=0
while [ ! -e /tmp/writer.stop ]; do
  i=$((i+1))
  if etcdctl --command-timeout=5s put /writer/$i $i >/dev/null 2>>/tmp/writer.err; then
    ok=$((ok+1))
  else
    retried=$((retried+1)); sleep 1
    if etcdctl --command-timeout=5s put /writer/$i $i >/dev/null 2>>/tmp/writer.err; then
      ok=$((ok+1)); else failed=$((failed+1)); fi
  fi
  sleep 0.05
done
rm -f /tmp/writer.stop
echo "ok=$ok failed=$failed retried=$retried"
"""


def test_config_change_restarts_one_member_at_a_time_under_a_writer(lab, built):
    pids = etcd_pids(lab)
    lab.exec("h1", "rm", "-f", "/tmp/writer.stop", "/tmp/writer.err")
    writer = subprocess.Popen([LAB, "exec", "h1", "--", "bash", "-c", WRITER],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    monitor = Monitor(lab)
    monitor.start()
    try:
        time.sleep(2)
        started = time.monotonic()
        result = apply(lab, CHANGE)
        record("rolling_change_s", time.monotonic() - started)
        time.sleep(2)
    finally:
        monitor.stop.set()
        monitor.join()
        lab.exec("h1", "touch", "/tmp/writer.stop")
        out, err = writer.communicate(timeout=60)
    counts = dict(part.split("=") for part in out.split())
    errors = lab.exec("h1", "cat", "/tmp/writer.err").stdout
    TIMINGS["writer"] = counts
    record("rolling_change_max_members_down", monitor.max_down)
    assert not failed(result)
    for host in MEMBERS:
        assert result[host]["etcd-service-running"]["changes"] == {"restarted": True}
    new_pids = etcd_pids(lab)
    assert all(new_pids[h] != pids[h] for h in MEMBERS), (pids, new_pids)
    # the monitor saw restarts (it can see a member down), and never two members down at once
    assert monitor.down_seen, monitor.samples
    assert monitor.max_down == 1, monitor.down_seen
    assert int(counts["ok"]) > 20 and int(counts["failed"]) == 0, (counts, errors)
    wait_healthy(lab)
