"""
Never lose the cluster, drilled on the lab: verified snapshots; a restore after every
member lost its data (every key back, a real patroni on h5 leading again); a recovery from
the one survivor after two of three lost theirs (no acknowledged write lost); a snapshot and
a restore interrupted and run again; a corrupt snapshot refused before anything stops; one
operation at a time, and a killed one's lock expiring.

One lab of 5 hosts with this module's pillar; the tests run in file order on one cluster.
"""

import json
import os
import shutil
import signal
import subprocess
import time

import pytest
from lab_cli import ADMIN_TLS, LAB, lab, last_json, orchestrate, salt
from lab_patroni import leads, wait_for, write_base_config
from lab_pillar import BACKUP_DIR as BACKUPS
from lab_pillar import ip, write_base, write_etcd
from writer import Writer, formula_client

PILLAR_DIR = os.environ.get("ETCD_RECOVERY_PILLAR_DIR", "/tmp/etcd-formula-recovery-pillar")
OFFSITE = "/srv/etcd-formula-lab/offsite"
MEMBERS = ["h1", "h2", "h3"]
CLIENT = "h5"
SCOPE = "pg-drill"
DATA = "/var/lib/etcd/data"


def endpoint(host):
    return "https://{}:2379".format(ip(host))


def client(hosts=MEMBERS):
    return formula_client([endpoint(h) for h in hosts], ADMIN_TLS, timeout=3)


def write_pillar():
    write_etcd(PILLAR_DIR, MEMBERS, [
        "clients:",
        "  patroni:",
        "    target: [{}]".format(CLIENT),
        "    tgt_type: list",
    ])
    path = os.path.join(PILLAR_DIR, "etcd.sls")
    with open(path) as handle:
        text = handle.read()
    with open(path, "w") as handle:  # keep 3, and every snapshot copied offsite
        handle.write(text.replace("    dir: {}\n".format(BACKUPS), "    dir: {}\n    keep: 3\n"
                                  "    offsite_command: [cp, '{{file}}', {}/]\n".format(
                                      BACKUPS, OFFSITE)))


def run(*args, timeout=900):
    return lab("salt-run", "--out=json", *args, timeout=timeout)


def keys():
    with client() as c:
        return c.keys("")


def pids():
    return {h: lab("exec", h, "--", "systemctl", "show", "-p", "MainPID", "--value",
                   "etcd").stdout.strip() for h in MEMBERS}


def healthy():
    with client() as c:
        import etcd_membership

        return etcd_membership.health(c)["healthy"]


def cluster_ids():
    with client() as c:
        found = {}
        for host in MEMBERS:
            try:
                found[host] = c.status(endpoint(host))["cluster_id"]
            except Exception:  # noqa: BLE001 - a member down has none
                pass
        return found


def wipe(*hosts):
    """What a lost disk looks like: etcd stopped, its data dir gone."""
    for host in hosts:
        lab("exec", host, "--", "systemctl", "stop", "etcd")
        lab("exec", host, "--", "rm", "-rf", DATA)


def journals(hosts):
    """The tail of each host's etcd and salt-minion journal: what a failed bootstrap says."""
    return {h: lab("exec", h, "--", "journalctl", "--no-pager", "-o", "short-monotonic",
                   "-n", "60", "-u", "etcd", "-u", "salt-minion").stdout for h in hosts}


def latest():
    return last_json(run("etcd.snapshots").stdout)[-1]


@pytest.fixture(scope="module")
def rec_lab(lab):
    """5 fresh hosts; cluster h1..h3 by highstate; patroni (scope pg-drill) leading on h5."""
    write_base(PILLAR_DIR)
    write_pillar()
    lab.relaunch(hosts=5, pillar=PILLAR_DIR)
    shutil.rmtree(BACKUPS, ignore_errors=True)  # (test/lab down removes them too)
    shutil.rmtree(OFFSITE, ignore_errors=True)
    os.makedirs(OFFSITE, mode=0o700)
    assert lab.run("sync").returncode == 0
    salt("*", "saltutil.refresh_pillar", "wait=True")
    for sls in ("etcd.ca", "etcd.admin"):
        ret = salt("master", "state.apply", sls)
        assert all(s["result"] for s in ret["master"].values()), ret
    ret = salt("-L", ",".join(MEMBERS), "state.apply", "-t", "900")
    bad = ["{}: {}: {}".format(m, sid.split("_|-")[1], s.get("comment"))
           for m, states in ret.items() for sid, s in (states.items() if isinstance(states, dict)
                                                        else [("_|-?", {"comment": states})])
           if not s.get("result")]
    assert not bad, (bad, journals(MEMBERS))
    write_base_config(CLIENT, SCOPE)
    res = run("etcd.refresh_endpoints")
    assert res.returncode == 0, res.stdout
    assert lab.exec(CLIENT, "systemctl", "start", "patroni").returncode == 0
    wait_for("patroni leads " + SCOPE, lambda: leads(CLIENT), 120)
    yield lab
    shutil.rmtree(os.path.dirname(BACKUPS), ignore_errors=True)


def test_a_snapshot_is_verified_kept_0600_and_shown_in_status(rec_lab):
    with client() as c:
        for n in range(50):
            c.put("/drill/{}".format(n), "value-{}".format(n))
    res = run("etcd.snapshot")
    assert res.returncode == 0, res.stdout
    taken = last_json(res.stdout)["snapshot"]
    assert taken["keys"] >= 50 and taken["revision"] > 0
    directory = os.path.join(BACKUPS, "etcd")
    assert oct(os.stat(directory).st_mode & 0o777) == "0o700"
    assert oct(os.stat(taken["path"]).st_mode & 0o777) == "0o600"
    assert latest()["file"] == taken["file"]
    status = lab("salt-run", "etcd.status").stdout
    assert "last good snapshot: {}".format(taken["file"]) in status, status


def test_the_schedule_takes_snapshots_ships_them_offsite_and_keeps_the_newest(rec_lab):
    ret = salt("master", "state.apply", "etcd.backup")["master"]
    assert all(s["result"] for s in ret.values()), ret
    listed = salt("master", "schedule.list", "return_yaml=False")["master"]
    job = listed["etcd-snapshot-etcd"]
    assert job["function"] == "saltutil.runner" and job["args"] == ["etcd.snapshot"], job
    shipped = len(os.listdir(OFFSITE))
    for n in range(1, 5):  # the scheduled job, run now, four times: keep is 3
        salt("master", "schedule.run_job", "etcd-snapshot-etcd", "force=True")
        wait_for("scheduled snapshot {}".format(n),
                 lambda n=n: len(os.listdir(OFFSITE)) == shipped + n, 60)
    entries = last_json(run("etcd.snapshots").stdout)
    assert len(entries) == 3
    files = sorted(f for f in os.listdir(os.path.join(BACKUPS, "etcd")) if f.endswith(".db"))
    assert files == sorted(e["file"] for e in entries)
    assert {e["file"] for e in entries} <= set(os.listdir(OFFSITE))


def test_a_corrupt_snapshot_is_refused_before_anything_stops(rec_lab):
    taken = latest()
    path = os.path.join(BACKUPS, "etcd", taken["file"])
    saved = path + ".good"
    shutil.copy2(path, saved)
    before = pids()
    try:
        with open(path, "r+b") as handle:
            handle.truncate(os.path.getsize(path) // 2)
        rc, errors, _, _, _ = orchestrate("etcd.restore", {"etcd_snapshot": "latest",
                                                     "etcd_confirm": "etcd"})
        assert rc != 0
        assert "truncated or corrupt" in errors["etcd-restore-preflight"], errors
        assert pids() == before and healthy()
    finally:
        os.replace(saved, path)


def test_a_restore_without_the_confirmation_changes_nothing(rec_lab):
    before = pids()
    rc, errors, _, _, _ = orchestrate("etcd.restore", {"etcd_snapshot": "latest"})
    assert rc != 0 and "confirm it with etcd_confirm: etcd" in errors["etcd-restore-preflight"]
    assert pids() == before


def test_restore_after_every_member_lost_its_data(rec_lab):
    wait_for("patroni leads", lambda: leads(CLIENT), 60)
    res = run("etcd.snapshot")
    assert res.returncode == 0, res.stdout
    snapshot_keys = {k: v for k, v in keys().items() if not k.startswith("/service/")}
    wipe(*MEMBERS)
    started = time.monotonic()
    rc, errors, _, _, res = orchestrate("etcd.restore", {"etcd_snapshot": "latest",
                                                   "etcd_confirm": "etcd"})
    took = time.monotonic() - started
    assert rc == 0, errors
    print("restore of 3 members: {:.1f} s".format(took))
    assert healthy()
    ids = cluster_ids()
    assert len(ids) == 3 and len(set(ids.values())) == 1, ids
    after = keys()
    assert {k: after.get(k) for k in snapshot_keys} == snapshot_keys
    # patroni, paused through it (its etcd was gone), leads again once resumed
    wait_for("patroni leads after the restore", lambda: leads(CLIENT), 120)


def test_recovery_from_the_survivor_loses_no_acknowledged_write(rec_lab):
    with Writer([endpoint(h) for h in MEMBERS], ADMIN_TLS, prefix="/recover/") as writer:
        time.sleep(3)
    assert writer.report()["failed"] == 0
    with client() as c:  # every member applied everything before the loss
        wait_for("members in step", lambda: len({c.status(endpoint(h))["raft_applied_index"]
                                                  for h in MEMBERS}) == 1, 30)
    wipe("h2", "h3")
    rc, errors, _, _, _ = orchestrate("etcd.recover", {"etcd_cluster": "etcd"})
    assert rc == 0, errors
    with client() as c:
        members = c.members()
        assert sorted(m["name"] for m in members) == ["etcd-1", "etcd-2", "etcd-3"]
        assert not any(m["is_learner"] for m in members)
        assert writer.lost(c) == []
    assert healthy()
    wait_for("patroni leads after the recovery", lambda: leads(CLIENT), 120)


def test_recovery_is_refused_while_the_cluster_has_its_quorum(rec_lab):
    before = pids()
    rc, errors, _, _, _ = orchestrate("etcd.recover", {"etcd_cluster": "etcd"})
    assert rc != 0 and "is healthy: nothing to recover" in errors["etcd-recover-preflight"]
    assert pids() == before


def test_a_leader_killed_during_the_snapshot_then_a_rerun_gives_a_verified_one(rec_lab):
    with client() as c:
        leader = c.status(endpoint("h1"))["leader"]
        host = next(h for h in MEMBERS if c.status(endpoint(h))["id"] == leader)
    snap = subprocess.Popen([LAB, "salt-run", "--out=json", "etcd.snapshot"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    lab("exec", host, "--", "systemctl", "kill", "-s", "KILL", "etcd")
    snap.communicate(timeout=300)
    wait_for("healthy again", healthy, 60)
    res = run("etcd.snapshot")
    assert res.returncode == 0, res.stdout
    assert last_json(res.stdout)["snapshot"]["file"] == latest()["file"]
    assert not [f for f in os.listdir(os.path.join(BACKUPS, "etcd")) if f.endswith(".part")]


def test_a_restore_killed_half_way_converges_on_rerun(rec_lab):
    snapshot_keys = {k: v for k, v in keys().items() if not k.startswith("/service/")}
    restore = subprocess.Popen(
        [LAB, "salt-run", "state.orchestrate", "etcd.restore",
         "pillar=" + json.dumps({"etcd_snapshot": "latest", "etcd_confirm": "etcd"})],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    seen = ""
    deadline = time.monotonic() + 300
    while "restored" not in seen and time.monotonic() < deadline:
        line = restore.stdout.readline()
        if not line:
            break
        seen += line
    os.killpg(restore.pid, signal.SIGKILL)  # the session: test/lab and its salt-run
    restore.wait()
    assert "[etcd] restoring h1" in seen, seen
    rc, errors, _, _, _ = orchestrate("etcd.restore", {"etcd_snapshot": "latest",
                                                 "etcd_confirm": "etcd"})
    assert rc == 0, errors
    ids = cluster_ids()
    assert len(ids) == 3 and len(set(ids.values())) == 1, ids
    after = keys()
    assert {k: after.get(k) for k in snapshot_keys} == snapshot_keys
    wait_for("patroni leads", lambda: leads(CLIENT), 120)


def test_one_operation_at_a_time_and_a_killed_ones_lock_expires(rec_lab):
    first = subprocess.Popen(
        [LAB, "salt-run", "state.orchestrate", "etcd.restore",
         "pillar=" + json.dumps({"etcd_snapshot": "latest", "etcd_confirm": "etcd"})],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        line = ""
        while "[etcd] " not in line:  # past its lock: patroni paused, members stopping
            line = first.stdout.readline()
            assert line, "the first restore ended early"
        res = run("etcd.snapshot")
        assert res.returncode != 0
        why = last_json(res.stdout)["Error"]
        assert "cluster etcd is busy: restore by" in why, why
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    # the killed run's lock: free on the master at once, in etcd once its lease expires;
    # the next run proceeds (and converges the interrupted restore)
    rc, errors, _, _, _ = orchestrate("etcd.restore", {"etcd_snapshot": "latest",
                                                 "etcd_confirm": "etcd"})
    assert rc == 0, errors
    assert healthy()
    wait_for("patroni leads", lambda: leads(CLIENT), 120)
