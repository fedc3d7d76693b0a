"""
The etcd_cluster execution module through Salt's loader, as minion ``m1`` of a real 3-member
TLS cluster: endpoints come from its pillar, certificates are passed (a real member's
default paths are /etc/etcd/pki).
"""

import re
import subprocess
import time

import pytest
from local_etcd import ETCD_BIN
from salt.exceptions import CommandExecutionError


@pytest.fixture
def mod(salt_minion, etcd_cluster):
    """``mod("members")`` calls ``etcd_cluster.members`` with the cluster's certificates."""

    def call(function, *args, **kwargs):
        kwargs = dict(etcd_cluster.tls, **kwargs)
        return salt_minion.modules["etcd_cluster." + function](*args, **kwargs)

    return call


def add_and_start_learner(etcd_cluster, mod):
    """A new member added as a learner and started; (local member, member_add result, start time)."""
    new = etcd_cluster.new_member()
    added = mod("member_add", new.name, new.peer_url)
    started = time.monotonic()
    etcd_cluster.start(new, added["initial_cluster"], state="existing")
    return new, added, started


def wait_started(mod, member_id, timeout=30):
    """Wait until etcd lists the member as started (it publishes its name once it runs)."""
    give_up_at = time.monotonic() + timeout
    while not [m for m in mod("members") if m["id"] == member_id and m["started"]]:
        assert time.monotonic() < give_up_at, "member {} did not start".format(member_id)
        time.sleep(0.1)


def test_members_health_and_status_describe_the_cluster(etcd_cluster, mod):
    assert sorted(m["name"] for m in mod("members")) == ["test-1", "test-2", "test-3"]
    health = mod("health")
    assert health["healthy"] is True
    assert health["quorum"] == {"voters": 3, "healthy_voters": 3, "needed": 2, "ok": True}
    assert health["leader"] in ("test-1", "test-2", "test-3")
    assert (health["learners"], health["alarms"]) == ([], [])
    status = mod("status")
    assert sorted(status) == ["test-1", "test-2", "test-3"]
    assert [n for n, s in status.items() if s["is_leader"]] == [health["leader"]]
    # the version the members report is the binary's under test (3.4 or 3.5: ETCD_BIN)
    binary = subprocess.run([ETCD_BIN, "--version"], capture_output=True, text=True).stdout
    for entry in status.values():
        assert entry["version"] == re.search(r"etcd Version: (\S+)", binary).group(1)
        assert entry["raft_index"] > 0 and entry["db_size"] > 0
        assert entry["error"] is None


def test_health_reports_a_dead_member_and_keeps_quorum(etcd_cluster, mod):
    etcd_cluster.stop(etcd_cluster.member_named("test-3"))
    health = mod("health")
    assert health["healthy"] is False
    assert health["quorum"]["ok"] is True
    assert health["quorum"]["healthy_voters"] == 2
    assert health["members"]["test-3"]["healthy"] is False
    assert "Connection refused" in health["members"]["test-3"]["error"]


def test_learner_added_started_and_promoted(etcd_cluster, mod):
    new, added, started = add_and_start_learner(etcd_cluster, mod)
    assert added["added"] is True
    assert added["initial_cluster"].count("=") == 4
    # a second add of the same peer URL finds it: no second member
    again = mod("member_add", new.name, new.peer_url)
    assert (again["added"], again["id"]) == (False, added["id"])

    promoted = mod("member_promote", added["id"])
    start_to_promote = time.monotonic() - started
    print("learner start -> promote accepted: {:.2f} s".format(start_to_promote))
    assert promoted["promoted"] is True
    assert promoted["name"] == new.name
    members = {m["name"]: m for m in mod("members")}
    assert members[new.name]["is_learner"] is False
    assert mod("health")["quorum"]["voters"] == 4
    # promoting a voter again changes nothing
    assert mod("member_promote", new.name)["promoted"] is False


def test_promote_refuses_a_learner_that_never_started(etcd_cluster, mod):
    new = etcd_cluster.new_member()
    added = mod("member_add", new.name, new.peer_url)
    with pytest.raises(CommandExecutionError, match="has not started"):
        mod("member_promote", added["id"], timeout=2)
    assert [m["is_learner"] for m in mod("members") if m["id"] == added["id"]] == [True]


def test_add_retries_through_unhealthy_cluster_right_after_a_promote(etcd_cluster, mod):
    _, added, started = add_and_start_learner(etcd_cluster, mod)
    mod("member_promote", added["id"])
    promoted_at = time.monotonic()
    # etcd refuses membership changes until it has been connected to every voter for 5 s
    other = etcd_cluster.new_member()
    result = mod("member_add", other.name, other.peer_url)
    accepted_at = time.monotonic()
    print(
        "unhealthy cluster after promote: {:.2f} s ({:.2f} s after the learner started), "
        "{} refusals".format(
            accepted_at - promoted_at, accepted_at - started, len(result["refusals"])
        )
    )
    assert result["added"] is True
    assert "etcdserver: unhealthy cluster" in result["refusals"]


def test_second_learner_is_refused(etcd_cluster, mod):
    first, added, _ = add_and_start_learner(etcd_cluster, mod)
    wait_started(mod, added["id"])
    health = mod("health")
    assert health["learners"] == [first.name]
    # a running learner is healthy: it serves serializable reads (and no alarm list)
    assert health["members"][first.name]["healthy"] is True, health["members"][first.name]
    assert health["quorum"]["voters"] == 3
    second = etcd_cluster.new_member()
    with pytest.raises(CommandExecutionError) as err:
        mod("member_add", second.name, second.peer_url)
    assert str(err.value).startswith(
        "another learner is pending: {} ({}); etcd allows one at a time".format(
            first.name, first.peer_url))
    # as a voter it may be added (and is: a 5th member, but it stays unstarted)
    assert mod("member_add", second.name, second.peer_url, learner=False)["is_learner"] is False


def test_remove_a_voter(etcd_cluster, mod):
    leader = mod("leader")["name"]
    follower = next(n for n in ("test-1", "test-2", "test-3") if n != leader)
    result = mod("member_remove", follower)
    assert (result["removed"], result["leader_moved_to"]) == (True, None)
    assert sorted(m["name"] for m in mod("members")) == sorted(
        n for n in ("test-1", "test-2", "test-3") if n != follower
    )
    # etcd stops a removed member by itself
    etcd_cluster.member_named(follower).process.wait(timeout=30)


def test_remove_the_leader_moves_leadership_first(etcd_cluster, mod):
    old = mod("leader")
    result = mod("member_remove", old["id"])
    assert result["leader_moved_to"] not in (None, old["name"])
    # the new leader leads at once (a put answers without an election), and it is the one
    # leadership was handed to, not one an election picked
    mod("put", "after-removal", "1", request_timeout=2)
    assert mod("leader")["name"] == result["leader_moved_to"]


def test_remove_refuses_two_to_one_unless_forced(etcd_cluster, mod):
    mod("member_remove", "test-3")
    with pytest.raises(CommandExecutionError) as err:
        mod("member_remove", "test-2")
    assert "removing a member of a 2-member cluster is unsafe" in str(err.value)
    assert len(mod("members")) == 2


def test_remove_refuses_to_lose_quorum_but_removes_the_dead_member(etcd_cluster, mod):
    assert mod("removal_check", "test-2")["safe"] is True
    etcd_cluster.stop(etcd_cluster.member_named("test-3"))
    check = mod("removal_check", "test-2")
    assert check["safe"] is False and "would lose quorum" in check["refusal"]
    with pytest.raises(CommandExecutionError) as err:
        mod("member_remove", "test-2")
    assert "would lose quorum: 1 of the 2 remaining voting members are healthy" in str(err.value)
    mod("member_remove", "test-3")
    assert sorted(m["name"] for m in mod("members")) == ["test-1", "test-2"]


def test_move_leader(etcd_cluster, mod):
    old = mod("leader")["name"]
    target = next(n for n in ("test-1", "test-2", "test-3") if n != old)
    assert mod("move_leader", target) == {"old": old, "new": target, "moved": True}
    assert mod("leader")["name"] == target
    assert mod("move_leader", target)["moved"] is False


def test_put_get_delete(etcd_cluster, mod):
    assert mod("put", "a", 10) is True
    assert mod("get", "a") == "10"
    assert mod("delete", "a") == 1
    assert mod("get", "a") is None
    assert mod("delete", "a") == 0


def test_an_unreachable_cluster_is_an_error_naming_the_endpoints(etcd_cluster, mod):
    etcd_cluster.stop_all()
    with pytest.raises(CommandExecutionError, match="no etcd endpoint answered"):
        mod("members")
    assert mod("health")["healthy"] is False
