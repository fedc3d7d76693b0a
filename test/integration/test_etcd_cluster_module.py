"""
The etcd_cluster execution module and the etcd runner as operators call them on the lab:
`salt h1 etcd_cluster.<function>` on a member (endpoints and certificates from its pillar), and
`salt-run etcd.status` on the master, against the 3-member cluster highstate builds on h1..h3.
"""

import time

import pytest

MEMBERS = ("h1", "h2", "h3")


def call(lab, host, function, *args):
    return lab.salt(host, "etcd_cluster." + function, *args)[host]


def wait_healthy(lab, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        health = call(lab, "h1", "health")
        if isinstance(health, dict) and health.get("healthy"):
            return health
        assert time.monotonic() < deadline, health
        time.sleep(0.5)


@pytest.fixture(scope="module")
def cluster(standard_lab):
    """A healthy cluster on h1..h3 (highstate builds it unless one runs), the master's admin
    certificate for the runner."""
    lab = standard_lab
    built = lab.exec("h1", "test", "-e", "/etc/etcd/pki/client.crt").returncode == 0
    health = call(lab, "h1", "health") if built else None
    if not (isinstance(health, dict) and health.get("healthy")):
        lab.run("sync", check=True)
        for sls in ("etcd.ca", "etcd.admin"):
            ret = lab.salt_call("state.apply", sls)["local"]
            assert all(r["result"] for r in ret.values()), ret
        ret = lab.salt("-L", ",".join(MEMBERS), "state.apply", "-t", "600")
        bad = [r["comment"] for states in ret.values() for r in states.values() if not r["result"]]
        assert not bad, bad
    else:
        ret = lab.salt_call("state.apply", "etcd.admin")["local"]
        assert all(r["result"] for r in ret.values()), ret
    wait_healthy(lab)
    return lab


def test_members_lists_every_member_with_hex_ids_from_a_members_own_pillar(cluster):
    members = call(cluster, "h2", "members")
    assert sorted(m["name"] for m in members) == ["etcd-1", "etcd-2", "etcd-3"]
    for member in members:
        assert len(member["id"]) <= 16 and int(member["id"], 16) > 0
        assert member["is_learner"] is False and member["started"] is True
        seq = member["name"].split("-")[1]
        assert member["peer_urls"] == ["https://10.77.0.1{}:2380".format(seq)]


def test_health_and_status_name_the_leader_and_quorum(cluster):
    health = call(cluster, "h3", "health")
    assert health["healthy"] is True and health["quorum"]["ok"] is True
    assert health["leader"] in ("etcd-1", "etcd-2", "etcd-3")
    status = call(cluster, "h3", "status")
    assert sorted(status) == ["etcd-1", "etcd-2", "etcd-3"]
    assert [n for n, s in status.items() if s["is_leader"]] == [health["leader"]]
    assert all(s["version"].startswith("3.") and s["raft_index"] > 0 for s in status.values())


def test_put_get_delete_on_every_member(cluster):
    for host in MEMBERS:
        key = "/test/module/" + host
        assert call(cluster, host, "put", key, "10") is True
        assert {h: call(cluster, h, "get", key) for h in MEMBERS} == {h: "10" for h in MEMBERS}
        assert call(cluster, host, "delete", key) == 1
        assert call(cluster, host, "get", key) is None


def test_move_leader_hands_leadership_to_the_member_asked(cluster):
    old = call(cluster, "h1", "leader")["name"]
    new = next(n for n in ("etcd-1", "etcd-2", "etcd-3") if n != old)
    assert call(cluster, "h1", "move_leader", new) == {"old": old, "new": new, "moved": True}
    assert call(cluster, "h2", "leader")["name"] == new


def test_remove_is_refused_when_it_would_lose_quorum(cluster):
    """With etcd-3 down, removing etcd-2 would leave 1 healthy of 2 voters: refused, and
    etcd's membership is unchanged."""
    cluster.exec("h3", "systemctl", "stop", "etcd", check=True)
    try:
        check = call(cluster, "h1", "removal_check", "etcd-2")
        assert check["safe"] is False and "would lose quorum" in check["refusal"], check
        res = cluster.run("salt", "h1", "etcd_cluster.member_remove", "etcd-2")
        assert res.returncode != 0
        assert "would lose quorum: 1 of the 2 remaining voting members are healthy" in res.stdout
        assert len(call(cluster, "h1", "members")) == 3
    finally:
        cluster.exec("h3", "systemctl", "start", "etcd", check=True)
    health = wait_healthy(cluster)
    assert health["quorum"]["healthy_voters"] == 3


def test_runner_status_prints_the_members_table_from_the_master(cluster):
    out = cluster.run("salt-run", "etcd.status")
    assert out.returncode == 0, out.stderr
    assert "cluster etcd: healthy" in out.stdout
    for seq in (1, 2, 3):
        assert "https://10.77.0.1{}:2379".format(seq) in out.stdout
        assert "etcd-{}".format(seq) in out.stdout
    assert "learners: none" in out.stdout
