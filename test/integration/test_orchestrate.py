"""
The add_member / remove_member orchestrations on the lab, on one cluster that the tests
grow and shrink in file order: 1 -> 3 -> 5 -> 3 members, one member at a time, with a
writer running (through the formula's client, all five endpoints) and a checksum of every
key before and after; the refusals; an interrupted add re-run.

Needs a lab of 5 hosts with this module's pillar: the module fixture brings the session's lab
up again that way (a developer's lab that is up with another pillar makes it fail instead).
"""

import json
import os
import subprocess
import sys
import time

import pytest
from lab_cli import ADMIN_TLS as ADMIN
from lab_cli import LAB, lab, orchestrate, salt
from lab_pillar import ip, write_base, write_etcd
from writer import Writer

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PILLAR_DIR = os.environ.get("ETCD_ORCH_PILLAR_DIR", "/tmp/etcd-formula-orchestrate-pillar")
HOSTS = ["h1", "h2", "h3", "h4", "h5"]
ELECTION_TIMEOUT = 1.0  # s, the pillar default




def write_pillar(members):
    """The lab's pillar with cluster etcd of ``members``, refreshed on every minion."""
    write_pillar_file_only(members)
    salt("*", "saltutil.refresh_pillar", "wait=True")


def client(endpoints):
    sys.path.insert(0, os.path.join(REPO, "_utils"))
    import etcd_client

    return etcd_client.connect(endpoints, timeout=2, **ADMIN)


def members():
    return client([f"https://{ip(h)}:2379" for h in HOSTS]).members()


def all_keys():
    """Every key and value, read with etcdctl (what an admin sees)."""
    out = subprocess.run(
        ["etcdctl", "--endpoints=" + ",".join(f"https://{ip(h)}:2379" for h in HOSTS),
         "--cacert", ADMIN["ca_file"], "--cert", ADMIN["cert_file"], "--key", ADMIN["key_file"],
         "get", "", "--prefix", "-w", "json"],
        capture_output=True, text=True, check=True, env={"ETCDCTL_API": "3", "PATH": "/usr/bin"})
    return {kv["key"]: kv.get("value", "") for kv in json.loads(out.stdout).get("kvs", [])}


def writer():
    return Writer([f"https://{ip(h)}:2379" for h in HOSTS], ADMIN)


@pytest.fixture(scope="module")
def orch_lab(lab):
    """The session's lab, brought up again with 5 fresh hosts and this module's pillar, and
    a 1-member cluster on h1 built by highstate."""
    write_base(PILLAR_DIR)
    write_pillar_file_only(["h1"])
    lab.relaunch(hosts=5, pillar=PILLAR_DIR)
    assert lab.run("sync").returncode == 0
    write_pillar(["h1"])
    for sls in ("etcd.ca", "etcd.admin"):
        ret = salt("master", "state.apply", sls)
        assert all(s["result"] for s in ret["master"].values()), ret
    ret = salt("h1", "state.apply", "-t", "600")
    bad = [s["comment"] for s in ret["h1"].values() if not s["result"]]
    assert not bad, bad
    yield


def write_pillar_file_only(members):
    write_etcd(PILLAR_DIR, members, ["enable_v2: true"])


def test_removing_the_last_member_is_refused_and_changes_nothing(orch_lab):
    before = members()
    rc, errors, _, _, _ = orchestrate("etcd.remove_member", {"etcd_member": "h1"})
    assert rc != 0
    assert "etcd-1 is the last voting member" in errors["etcd-remove-member-preflight"]
    assert members() == before


def test_a_host_not_in_pillar_is_refused(orch_lab):
    rc, errors, _, _, _ = orchestrate("etcd.add_member", {"etcd_member": "h5"})
    assert rc != 0
    assert "minion h5 is in no cluster of its pillar" in errors[
        "etcd-add-member-locked"]
    assert len(members()) == 1


def test_grow_1_to_3_to_5_under_a_writer_loses_nothing(orch_lab):
    took = {}
    with writer() as w:
        for n, host in enumerate(HOSTS[1:], start=2):
            write_pillar(HOSTS[:n])
            rc, errors, _, took[host], _ = orchestrate("etcd.add_member", {"etcd_member": host})
            assert rc == 0, errors
            voters = [m for m in members() if not m["is_learner"]]
            assert len(voters) == n
    print("add_member wall times:", {h: round(t, 1) for h, t in took.items()})
    print("writer:", w.report(ELECTION_TIMEOUT))
    assert w.report()["failed"] == 0, w.report()
    assert w.lost(client([f"https://{ip(h)}:2379" for h in HOSTS])) == []
    env = lab("exec", "h1", "--", "cat", "/etc/profile.d/etcdctl.sh").stdout
    assert ",".join(f"https://{ip(h)}:2379" for h in HOSTS) in env


def test_shrink_5_to_3_under_a_writer_loses_nothing(orch_lab):
    before = all_keys()
    assert before
    with writer() as w:
        for host in ("h5", "h4"):
            rc, errors, _, _, _ = orchestrate("etcd.remove_member", {"etcd_member": host})
            assert rc == 0, errors
            assert lab("exec", host, "--", "systemctl", "is-active", "etcd").stdout.strip() != "active"
            archived = lab("exec", host, "--", "sh", "-c",
                           "stat -c '%a %n' /var/lib/etcd/data.removed-*.tar.gz").stdout
            assert archived.startswith("600 /var/lib/etcd/data.removed-"), archived
    write_pillar(HOSTS[:3])
    assert sorted(m["name"] for m in members()) == ["etcd-1", "etcd-2", "etcd-3"]
    print("writer:", w.report(ELECTION_TIMEOUT))
    assert w.report()["failed"] == 0, w.report()
    assert w.lost(client([f"https://{ip(h)}:2379" for h in HOSTS[:3]])) == []
    after = all_keys()
    assert {k: after.get(k) for k in before} == before


def test_an_add_interrupted_after_the_learner_add_converges_on_re_run(orch_lab):
    write_pillar(HOSTS[:4])
    # the orchestration killed after step 2: a learner that never started
    lab("salt-run", "etcd.add_learner", "h4")
    assert [m["is_learner"] for m in members() if not m["started"]] == [True]
    # a dirty data dir left by h4's removal above is refused, with no change
    lab("exec", "h4", "--", "sh", "-c", "mkdir -p /var/lib/etcd/data/member/wal")
    rc, errors, _, _, _ = orchestrate("etcd.add_member", {"etcd_member": "h4"})
    assert rc != 0
    assert "the data dir is not empty" in errors["etcd-add-member-preflight"]
    lab("exec", "h4", "--", "rm", "-rf", "/var/lib/etcd/data")
    # a second learner is refused
    write_pillar(HOSTS)
    rc, errors, _, _, _ = orchestrate("etcd.add_member", {"etcd_member": "h5"})
    assert rc != 0
    why = errors["etcd-add-member-preflight"]
    assert "was added but never started" in why and "etcd.remove_learner" in why, why
    # re-run for h4: resumes its learner, never two
    rc, errors, _, _, _ = orchestrate("etcd.add_member", {"etcd_member": "h4"})
    assert rc == 0, errors
    assert sum(1 for m in members() if m["is_learner"]) == 0
    assert len(members()) == 4


def test_an_add_killed_mid_run_with_the_new_member_stopped_converges_on_re_run(orch_lab):
    """The orchestration's process killed once h5's learner exists, h5's etcd stopped (a
    crashed new member): the same command again finishes the job, never two learners."""
    write_pillar(HOSTS)
    peer = "https://{}:2380".format(ip("h5"))
    run = subprocess.Popen(
        [LAB, "salt-run", "state.orchestrate", "etcd.add_member",
         "pillar=" + json.dumps({"etcd_member": "h5"})],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not any(peer in m["peer_urls"] for m in members()):
            assert run.poll() is None, "the orchestration ended before h5's learner was added"
            assert time.monotonic() < deadline, "h5's learner never appeared"
            time.sleep(0.1)
    finally:
        os.killpg(run.pid, 9)  # the session it leads: test/lab and the salt-run it started
        run.wait()
    assert [m["is_learner"] for m in members() if peer in m["peer_urls"]] == [True]
    # the minion's highstate job outlives the killed runner: let it end, then stop h5's etcd
    deadline = time.monotonic() + 300
    while lab("salt", "h5", "saltutil.running", "--out=json").stdout.count('"jid"'):
        assert time.monotonic() < deadline, "h5's highstate job never ended"
        time.sleep(1)
    lab("exec", "h5", "--", "systemctl", "stop", "etcd")
    rc, errors, _, _, _ = orchestrate("etcd.add_member", {"etcd_member": "h5"})
    assert rc == 0, errors
    now = members()
    assert len(now) == 5 and not any(m["is_learner"] for m in now), now
    assert lab("exec", "h5", "--", "systemctl", "is-active", "etcd").stdout.strip() == "active"
