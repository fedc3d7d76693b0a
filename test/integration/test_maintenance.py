"""
Keep it healthy, on the lab (docs/operations.md, "Maintenance"): a fragmented cluster
defragmented under a writer (followers first, the leader last, 0 failed writes), a second
run that skips every member, a refusal while a member is frozen, and a NOSPACE drill: a
32 MiB quota filled by history until etcd takes no write, then `salt-run etcd.nospace`
brings writes back with no acknowledged write lost.

Needs a lab of 3 hosts with this module's pillar (the module fixture brings the session's lab
up again that way).
"""

import os
import subprocess
import time

import pytest
from lab_cli import ADMIN_TLS, LAB, build_cluster, lab, last_json, salt
from lab_pillar import ip, write_base, write_etcd
from writer import Writer, formula_client

PILLAR_DIR = os.environ.get("ETCD_MAINTENANCE_PILLAR_DIR", "/tmp/etcd-formula-maintenance-pillar")
MEMBERS = ["h1", "h2", "h3"]
QUOTA = 32 * 1024 * 1024
BLOB = "x" * (512 * 1024)  # one value: the history of one key fills the quota


def endpoints():
    return ["https://{}:2379".format(ip(h)) for h in MEMBERS]


def salt_run(*args):
    res = lab("salt-run", "--out=json", *args)
    return res.returncode, last_json(res.stdout)


@pytest.fixture(scope="module")
def cluster(lab):
    write_base(PILLAR_DIR)
    write_etcd(PILLAR_DIR, MEMBERS, ["quota_backend_bytes: {}".format(QUOTA),
                                     "defrag_min_bytes: 0"])
    lab.relaunch(hosts=3, pillar=PILLAR_DIR)
    build_cluster(lab, MEMBERS)
    client = formula_client(endpoints(), ADMIN_TLS, timeout=10)
    yield client
    client.close()


def fragment(client, count=24):
    """History of one key, then compacted: the db keeps its size, little of it in use."""
    for n in range(count):
        client.put("/fill/blob", BLOB + str(n))
    client.delete("/fill/blob")
    client.compact(client.revision())


def leader_name(client):
    members = {m["id"]: m["name"] for m in client.members()}
    return members[client.status(endpoints()[0])["leader"]]


def test_defrag_under_a_writer_takes_the_followers_first_and_the_leader_last(cluster):
    fragment(cluster)
    leader = leader_name(cluster)
    with Writer(endpoints(), ADMIN_TLS) as writer:
        rc, ret = salt_run("etcd.defrag")
    report = writer.report()
    print("etcd.defrag under a writer: {}; {}".format(report, ret.get("done")))
    assert rc == 0 and ret["result"] is True, ret
    assert report["failed"] == 0, report["first_failures"]
    assert writer.lost(cluster) == []
    lines = ret["done"]
    assert len(lines) == 3 and all("MB ->" in line for line in lines), lines
    assert lines[-1].startswith("{} (leader)".format(leader))
    for line in lines:
        before, after = (float(x.split(" MB")[0]) for x in line.split(": ", 1)[1].split(" -> "))
        assert after < before / 2, line


def test_a_second_defrag_skips_every_member_saying_why(cluster):
    rc, ret = salt_run("etcd.defrag")
    assert rc == 0 and ret["result"] is True, ret
    assert all("skipped" in line and "in use" in line for line in ret["done"]), ret["done"]


def test_defrag_refuses_while_a_member_is_frozen_and_the_cluster_is_fine_after(cluster):
    pid = int(lab("exec", "h2", "--", "systemctl", "show", "-p", "MainPID", "--value",
                  "etcd").stdout.strip())
    lab("exec", "h2", "--", "kill", "-STOP", str(pid))
    try:
        rc, ret = salt_run("etcd.defrag", "force=True")
    finally:
        lab("exec", "h2", "--", "kill", "-CONT", str(pid))
    assert rc != 0 and ret["result"] is False
    assert ret["Error"].startswith("not defragmenting: cluster etcd is not healthy"), ret
    rc, ret = salt_run("etcd.health")
    assert rc == 0, ret


def test_a_member_down_is_an_event_on_the_bus_and_its_return_another(cluster):
    # what the members' schedule (etcd/health.sls) runs, called here so as not to wait for it
    assert "etcd-health-watch" in str(salt("h1", "schedule.list")["h1"])
    salt("h1", "etcd_health.watch")
    listener = subprocess.Popen([LAB, "salt-run", "state.event", "etcd/etcd/health/unhealthy",
                                 "count=1"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(3)  # the listener is on the bus
        lab("exec", "h3", "--", "systemctl", "stop", "etcd")
        ret = salt("h1", "etcd_health.watch")["h1"]
        assert "etcd-3" in ret["facts"]["members_down"] and ret["facts"]["healthy"] is False
        # fired by this call, or by the schedule just before it: on the bus either way
        seen = listener.communicate(timeout=60)[0]
        assert "etcd/etcd/health/unhealthy" in seen and "etcd-3" in seen, seen
    finally:
        listener.kill()
        lab("exec", "h3", "--", "systemctl", "start", "etcd")
    rc, ret = salt_run("etcd.health")
    assert rc == 0, ret
    back = salt("h1", "etcd_health.watch")["h1"]
    assert back["facts"]["healthy"] is True and back["facts"]["members_down"] == []


def test_nospace_brings_writes_back_and_loses_no_acknowledged_write(cluster):
    import etcd_errors

    with Writer(endpoints(), ADMIN_TLS, rate=10) as writer:
        with pytest.raises(etcd_errors.EtcdNoSpace):
            for n in range(400):
                cluster.put("/fill/blob", BLOB + str(n))
        assert "NOSPACE" in str(salt_run("etcd.alarms")[1])
        rc, ret = salt_run("etcd.nospace")
        assert rc == 0 and ret["result"] is True, ret
    assert any(line.startswith("NOSPACE disarmed on") for line in ret["done"]), ret["done"]
    cluster.put("/after/nospace", "1")
    assert cluster.get("/after/nospace") == "1"
    assert cluster.alarms() == []
    assert writer.lost(cluster) == []
    print("NOSPACE drill: writer {}; {}".format(writer.report(), ret["done"]))
