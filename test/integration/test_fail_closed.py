"""
The formula fails closed on the lab (each test first sets up what an operator did when the
fault was found, then asserts the refusal and that nothing was lost):

- a highstate never starts a second cluster: not with the pillar grown while the cluster
  is down, not for a learner whose cluster lost its quorum or its leader;
- status sees a split (two clusters behind the pillar's endpoints) and exits non-zero;
- the safeguard holds (active, activating and stopped members), and the named purge
  archives before it purges;
- data_dir refuses system directories, and a change of it on a running cluster restarts
  nobody onto an empty directory;
- a dead host is removed green in seconds, and its etcd cannot rejoin; a replacement is
  added;
- orchestrations validate the whole pillar (a typo stops remove_member) and their arguments.

One lab of 5 hosts with this module's pillar; the tests run in file order on one cluster.
"""

import json
import os
import subprocess
import time

import pytest
from lab_cli import ADMIN_TLS, lab, orchestrate, salt
from lab_pillar import ip, write_base, write_etcd
from writer import Writer, formula_client

PILLAR_DIR = os.environ.get("ETCD_FAILCLOSED_PILLAR_DIR", "/tmp/etcd-formula-failclosed-pillar")
HOSTS = ["h1", "h2", "h3", "h4", "h5"]
CONFIG = "/etc/etcd/etcd.conf.yml"
DATA = "/var/lib/etcd/data"
LEADER_KEY = "/service/pg/leader"


def endpoint(host):
    return "https://{}:2379".format(ip(host))


def write_pillar(members, lines=(), refresh=True):
    write_etcd(PILLAR_DIR, members, list(lines))
    if refresh:
        salt("*", "saltutil.refresh_pillar", "wait=True")


def apply(*hosts, args=()):
    """state.apply on ``hosts``: {host: {state id: return}}."""
    ret = salt("-L", ",".join(hosts), "state.apply", *args, "-t", "600")
    assert set(ret) == set(hosts), ret
    out = {}
    for host, states in ret.items():
        assert isinstance(states, dict), "{}: {}".format(host, states)
        out[host] = {s["__id__"]: s for s in states.values()}
    return out


def failures(result):
    return {(h, i): s["comment"] for h, states in result.items() for i, s in states.items()
            if s["result"] is False}


def client(hosts=HOSTS):
    return formula_client([endpoint(h) for h in hosts], ADMIN_TLS)


def cluster_ids(hosts):
    """{host: cluster id} of the hosts whose etcd answers status."""
    ids = {}
    with client(hosts) as c:
        for host in hosts:
            try:
                ids[host] = c.status(endpoint(host))["cluster_id"]
            except Exception:  # noqa: BLE001 - a member that is down has no cluster id
                pass
    return ids


def members():
    with client() as c:
        return c.members()


def on(host, *cmd):
    return lab("exec", host, "--", *cmd)


def active(host):
    return on(host, "systemctl", "is-active", "etcd").stdout.strip()


def wait_until(what, check, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if last:
            return last
        assert time.monotonic() < deadline, "{}: not within {} s".format(what, timeout)
        time.sleep(0.5)


def healthy(hosts):
    """The formula's own verdict (one cluster, every voter up, a leader, no alarm)."""
    with client(hosts) as c:
        import etcd_membership  # on sys.path once formula_client ran

        return etcd_membership.health(c, [endpoint(h) for h in hosts])["healthy"]


def data_digest(host):
    """What is in a member's data dir (names and sizes of the WAL and snap files)."""
    return on(host, "sh", "-c", "find {} -type f | sort | xargs -r ls -l --time-style=+ | "
              "awk '{{print $5, $NF}}'".format(DATA)).stdout


@pytest.fixture(scope="module")
def fc_lab(lab):
    """5 fresh hosts with this module's pillar; a 1-member cluster on h1 built by highstate,
    holding patroni's leader key."""
    write_base(PILLAR_DIR)
    write_pillar(["h1"], refresh=False)
    lab.relaunch(hosts=5, pillar=PILLAR_DIR)
    assert lab.run("sync").returncode == 0
    salt("*", "saltutil.refresh_pillar", "wait=True")
    for sls in ("etcd.ca", "etcd.admin"):
        ret = salt("master", "state.apply", sls)
        assert all(s["result"] for s in ret["master"].values()), ret
    assert not failures(apply("h1"))
    with client(["h1"]) as c:
        c.put(LEADER_KEY, "the-original-primary")
    yield lab


# -- a highstate never starts a second cluster ----------------------------------------------------


def test_a_grown_pillar_with_the_cluster_down_starts_no_second_cluster(fc_lab):
    write_pillar(["h1", "h2", "h3"])
    # while h1 runs: h2 and h3 are not members yet
    result = apply("h2", "h3")
    for host in ("h2", "h3"):
        why = result[host]["etcd-config-file-managed"]["comment"]
        assert "runs" in why and "not this member" in why and "etcd.add_member" in why, why
    # h1 down for a moment: no answer is no proof; h1 says it holds data
    assert on("h1", "systemctl", "stop", "etcd").returncode == 0
    try:
        result = apply("h2", "h3")
        for host in ("h2", "h3"):
            why = result[host]["etcd-config-file-managed"]["comment"]
            assert result[host]["etcd-config-file-managed"]["result"] is False
            assert "h1 holds etcd data" in why and "must not start another one" in why, why
            assert on(host, "test", "-e", CONFIG).returncode != 0  # nothing written
            assert active(host) != "active"
            assert on(host, "test", "-e", DATA + "/member").returncode != 0
    finally:
        assert on("h1", "systemctl", "start", "etcd").returncode == 0
    # the right way converges: one cluster, the original data
    for host in ("h2", "h3"):
        rc, errors, _, _, _ = orchestrate("etcd.add_member", {"etcd_member": host})
        assert rc == 0, errors
    ids = cluster_ids(["h1", "h2", "h3"])
    assert len(ids) == 3 and len(set(ids.values())) == 1, ids
    with client(["h1", "h2", "h3"]) as c:
        assert c.get(LEADER_KEY) == "the-original-primary"


def test_a_learner_of_a_cluster_without_quorum_starts_nothing(fc_lab):
    write_pillar(["h1", "h2", "h3", "h4"])
    res = lab("salt-run", "--out=json", "etcd.add_learner", "h4")
    assert res.returncode == 0, res.stdout
    for host in ("h2", "h3"):
        assert on(host, "systemctl", "stop", "etcd").returncode == 0
    try:
        result = apply("h4")
        config = result["h4"]["etcd-config-file-managed"]
        assert config["result"] is False, config
        assert "no leader" in config["comment"] and "nothing was written" in config["comment"]
        assert on("h4", "test", "-e", CONFIG).returncode != 0
        assert active("h4") != "active"
    finally:
        for host in ("h2", "h3"):
            on(host, "systemctl", "start", "--no-block", "etcd")
    wait_until("h1..h3 healthy", lambda: healthy(["h1", "h2", "h3"]))
    # the learner's add converges once the cause is fixed
    rc, errors, _, _, _ = orchestrate("etcd.add_member", {"etcd_member": "h4"})
    assert rc == 0, errors
    ids = cluster_ids(["h1", "h2", "h3", "h4"])
    assert len(ids) == 4 and len(set(ids.values())) == 1, ids
    assert not any(m["is_learner"] for m in members())


def test_a_leader_killed_while_a_member_is_added_leaves_one_cluster(fc_lab):
    """The orchestration's learner add done, the leader's etcd killed (it restarts after
    systemd's 5 s): the new member's highstate meets the election, and joins the cluster
    that elects a leader; never one of its own."""
    write_pillar(HOSTS)
    peer = "https://{}:2380".format(ip("h5"))
    run = subprocess.Popen([os.path.join(os.path.dirname(os.path.dirname(__file__)), "lab"),
                            "salt-run", "--out=json", "state.orchestrate", "etcd.add_member",
                            "pillar=" + json.dumps({"etcd_member": "h5"})],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until("h5's learner", lambda: any(peer in m["peer_urls"] for m in members()), 120)
        with client(["h1", "h2", "h3", "h4"]) as c:
            leader_id = c.status(endpoint("h1"))["leader"]
            leader = next(h for h in ("h1", "h2", "h3", "h4")
                          if c.status(endpoint(h))["id"] == leader_id)
        on(leader, "systemctl", "kill", "-s", "KILL", "etcd")
        out, _ = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
    if run.returncode != 0:  # a step may fail during the election: the re-run finishes it
        rc, errors, _, _, _ = orchestrate("etcd.add_member", {"etcd_member": "h5"})
        assert rc == 0, errors
    wait_until("the killed leader back", lambda: active(leader) == "active")
    ids = cluster_ids(HOSTS)
    assert len(ids) == 5 and len(set(ids.values())) == 1, ids
    assert wait_until("healthy", lambda: healthy(HOSTS))


# -- status sees a split --------------------------------------------------------------------------

BY_HAND_CLUSTER = r"""
set -e
systemctl stop etcd
sed -e 's#^data-dir:.*#data-dir: /tmp/impostor#' \
    -e 's#^initial-cluster:.*#initial-cluster: etcd-5=https://{ip}:2380#' \
    -e 's#^initial-cluster-state:.*#initial-cluster-state: new#' \
    -e 's#^initial-cluster-token:.*#initial-cluster-token: impostor#' {config} > /tmp/impostor.yml
rm -rf /tmp/impostor
setsid /usr/bin/etcd --config-file /tmp/impostor.yml > /tmp/impostor.log 2>&1 < /dev/null &
echo $!
"""


def test_status_reports_a_split_loudly_and_exits_non_zero(fc_lab):
    pid = on("h5", "bash", "-c", BY_HAND_CLUSTER.format(ip=ip("h5"), config=CONFIG)).stdout.strip()
    assert pid.isdigit(), pid
    try:
        wait_until("the impostor answers", lambda: len(set(cluster_ids(HOSTS).values())) == 2, 30)
        res = lab("salt-run", "etcd.status")
        assert res.returncode != 0, res.stdout
        assert "UNHEALTHY: SPLIT" in res.stdout and "2 different clusters" in res.stdout, res.stdout
        ids = cluster_ids(HOSTS)
        for cluster_id in set(ids.values()):
            assert cluster_id in res.stdout
        health = salt("h1", "etcd_cluster.health")["h1"]
        assert health["healthy"] is False and health["split"] is True, health
    finally:
        on("h5", "sh", "-c", "kill {0}; while kill -0 {0} 2>/dev/null; do sleep 0.1; done; "
           "rm -rf /tmp/impostor /tmp/impostor.yml".format(pid))
        on("h5", "systemctl", "start", "etcd")
    wait_until("healthy again", lambda: healthy(HOSTS))
    assert lab("salt-run", "etcd.status").returncode == 0


# -- the safeguard holds --------------------------------------------------------------------------

GUARDED = json.dumps({"etcd": {"clusters": {"etcd": {"safeguard": True, "clean": True}}}})
CLEAN_ONLY = json.dumps({"etcd": {"clusters": {"etcd": {"clean": True}}}})


def clean(host, pillar):
    result = apply(host, args=("etcd.clean", "pillar=" + pillar))[host]
    return result["etcd-member-purged"]


def test_clean_refuses_an_active_an_activating_and_a_stopped_member(fc_lab):
    before = data_digest("h1")
    assert before
    # active, under safeguard
    state = clean("h1", GUARDED)
    assert state["result"] is False and "safeguard: true" in state["comment"], state
    # activating: the others stopped, h1 restarted waits for a quorum
    others = ["h2", "h3", "h4"]
    for host in others:
        on(host, "systemctl", "stop", "etcd")
    try:
        on("h1", "systemctl", "restart", "--no-block", "etcd")
        wait_until("h1 activating", lambda: active("h1") == "activating", 20)
        state = clean("h1", GUARDED)
        assert state["result"] is False and "safeguard: true" in state["comment"], state
        # without safeguard too: it may hold or serve data
        state = clean("h1", CLEAN_ONLY)
        assert state["result"] is False and "may hold or serve data" in state["comment"], state
    finally:
        for host in others:
            on(host, "systemctl", "start", "--no-block", "etcd")
    wait_until("healthy", lambda: healthy(HOSTS))
    # stopped, and still a member of the cluster
    on("h1", "systemctl", "stop", "etcd")
    try:
        state = clean("h1", CLEAN_ONLY)
        assert state["result"] is False and "still in cluster etcd's membership" in \
            state["comment"], state
        assert data_digest("h1") and on("h1", "test", "-e", CONFIG).returncode == 0
    finally:
        on("h1", "systemctl", "start", "etcd")
    wait_until("healthy", lambda: healthy(HOSTS))


def test_the_named_purge_archives_the_data_dir_before_it_purges(fc_lab):
    # h5 leaves the membership under safeguard: its data is archived and kept
    write_pillar(HOSTS, ["safeguard: true"])
    rc, errors, steps, _, _ = orchestrate("etcd.remove_member", {"etcd_member": "h5"})
    assert rc == 0, errors
    retired = next(s for sid, s in steps.items() if "retired" in sid)["changes"]["return"]
    assert "kept: safeguard is true" in retired["comment"], retired
    assert on("h5", "test", "-e", DATA + "/member/wal").returncode == 0
    state = clean("h5", GUARDED)
    assert state["result"] is False and "safeguard" in state["comment"]
    # the explicit override
    result = apply("h5", args=("etcd.purge",))["h5"]["etcd-member-purged"]
    assert result["result"] is True, result
    archive = result["changes"]["archive"]
    assert on("h5", "test", "-e", DATA).returncode != 0
    mode = on("h5", "stat", "-c", "%a", archive).stdout.strip()
    assert mode == "600", mode
    listing = on("h5", "tar", "tzf", archive).stdout
    assert "member/wal/" in listing and "member/snap/" in listing, listing
    write_pillar(HOSTS[:4])


# -- paths -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("data_dir", ["/var/lib", "/etc", "/var/lib/etcd/..", "/", "/tmp/etcd"])
def test_a_system_data_dir_is_refused_before_any_change(fc_lab, data_dir):
    override = json.dumps({"etcd": {"clusters": {"etcd": {"data_dir": data_dir}}}})
    pid = on("h1", "systemctl", "show", "-p", "MainPID", "--value", "etcd").stdout
    result = apply("h1", args=("pillar=" + override,))["h1"]
    assert result["etcd-pillar-valid"]["result"] is False
    assert "data_dir: {!r}".format(data_dir) in result["etcd-pillar-valid"]["comment"]
    assert [i for i, s in result.items() if s["changes"]] == []
    assert on("h1", "systemctl", "show", "-p", "MainPID", "--value", "etcd").stdout == pid


def test_a_data_dir_change_restarts_nobody_onto_an_empty_dir(fc_lab):
    hosts = HOSTS[:4]
    with client(hosts) as c:
        c.put("/before/change", "kept")
    pids = {h: on(h, "systemctl", "show", "-p", "MainPID", "--value", "etcd").stdout for h in hosts}
    override = json.dumps({"etcd": {"clusters": {"etcd": {"data_dir": "/var/lib/etcd/moved"}}}})
    result = apply(*hosts, args=("pillar=" + override,))
    for host in hosts:
        config = result[host]["etcd-config-file-managed"]
        assert config["result"] is False and "data-dir {} -> /var/lib/etcd/moved".format(DATA) \
            in config["comment"] and "nothing was changed" in config["comment"], config
    assert {h: on(h, "systemctl", "show", "-p", "MainPID", "--value", "etcd").stdout
            for h in hosts} == pids
    assert healthy(hosts)
    with client(hosts) as c:
        assert c.get("/before/change") == "kept"
        assert c.get(LEADER_KEY) == "the-original-primary"


# -- orchestrations validate first ----------------------------------------------------------------


def test_a_pillar_typo_makes_remove_member_refuse_before_any_change(fc_lab):
    write_pillar(HOSTS[:4], ["safegaurd: true"])
    try:
        before = members()
        rc, errors, _, _, _ = orchestrate("etcd.remove_member", {"etcd_member": "h4"})
        assert rc != 0
        # the first step (the lock) validates the whole pillar already
        assert list(errors) == ["etcd-remove-member-locked"], errors
        why = errors["etcd-remove-member-locked"]
        assert "unknown key 'safegaurd': did you mean 'safeguard'?" in why, why
        assert members() == before
        assert on("h4", "test", "-e", DATA + "/member/wal").returncode == 0
    finally:
        write_pillar(HOSTS[:4])


@pytest.mark.parametrize("value", ["*", "h*", "h1,h2", "G@os:Debian and h1", "h1\nh2", ["h1"]])
def test_an_orchestration_refuses_a_member_that_is_not_a_plain_minion_id(fc_lab, value):
    before = members()
    rc, errors, _, _, _ = orchestrate("etcd.add_member", {"etcd_member": value})
    assert rc != 0
    why = errors.get("etcd-add-member-locked") or ""
    assert "expected one plain minion id" in why and repr(value) in why, errors
    assert list(errors) == ["etcd-add-member-locked"], errors
    assert members() == before


# -- a dead host ----------------------------------------------------------------------------------


def test_a_dead_host_is_removed_in_seconds_and_replaced(fc_lab):
    hosts = HOSTS[:4]
    on("h4", "systemctl", "stop", "etcd", "salt-minion")
    with Writer([endpoint(h) for h in hosts[:3]], ADMIN_TLS) as writer:
        rc, errors, steps, took, _ = orchestrate("etcd.remove_member", {"etcd_member": "h4"})
        assert rc == 0, errors
        retired = next(s for sid, s in steps.items() if "retired" in sid)["changes"]["return"]
        assert retired.get("skipped") and "did not answer" in retired["comment"], retired
        assert took < 45, took
        print("dead host removed in {:.1f} s".format(took))
        # adding a host whose minion is down is refused within seconds
        rc, errors, _, took, _ = orchestrate("etcd.add_member", {"etcd_member": "h4"})
        assert rc != 0 and "minion h4 does not answer" in errors["etcd-add-member-preflight"]
        assert took < 20, took
        # a replacement
        write_pillar(["h1", "h2", "h3", "h5"])
        lab("exec", "h5", "--", "rm", "-f", "/etc/etcd/etcd.conf.yml")
        rc, errors, _, _, _ = orchestrate("etcd.add_member", {"etcd_member": "h5"})
        assert rc == 0, errors
    print("writer:", writer.report())
    assert writer.report()["failed"] == 0
    with client(["h1", "h2", "h3", "h5"]) as c:
        assert writer.lost(c) == []
    # the dead host comes back: its etcd, started, is refused by the cluster
    on("h4", "systemctl", "start", "salt-minion")
    on("h4", "systemctl", "start", "--no-block", "etcd")
    time.sleep(8)
    assert sorted(m["name"] for m in members()) == ["etcd-1", "etcd-2", "etcd-3", "etcd-5"]
    assert healthy(["h1", "h2", "h3", "h5"])
    # and its cleanup, once it answers
    wait_until("h4's minion answers", lambda: salt("h4", "test.ping").get("h4") is True, 60)
    write_pillar(["h1", "h2", "h3", "h4", "h5"])
    res = lab("salt-run", "--out=json", "etcd.retire", "h4")
    assert res.returncode == 0, res.stdout
    assert on("h4", "test", "-e", DATA).returncode != 0
    assert active("h4") != "active"
    write_pillar(["h1", "h2", "h3", "h5"])
