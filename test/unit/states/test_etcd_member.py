"""
The etcd_member state with the execution module mocked by specs of its real functions.
"""

from unittest import mock

import pytest
from salt.exceptions import CommandExecutionError

import etcd_cluster
import etcd_member

PEER = "https://10.77.0.14:2380"


def member(mid, name, learner=False, started=True, peer=None):
    return {
        "id": mid,
        "name": name if started else "",
        "peer_urls": [peer or "https://10.77.0.1{}:2380".format(mid)],
        "client_urls": ["https://10.77.0.1{}:2379".format(mid)] if started else [],
        "is_learner": learner,
        "started": started,
    }


VOTERS = [member("1", "etcd-1"), member("2", "etcd-2"), member("3", "etcd-3")]


@pytest.fixture
def salt_mods():
    mods = {}
    for name in ("members", "member_add", "member_promote", "member_remove"):
        mods["etcd_cluster." + name] = mock.Mock(spec=getattr(etcd_cluster, name))
    mods["etcd_cluster.member_add"].return_value = {
        "id": "4",
        "initial_cluster": "etcd-1=...,etcd-4=" + PEER,
    }
    mods["etcd_cluster.member_promote"].return_value = {"id": "4", "promoted": True}
    mods["etcd_cluster.member_remove"].return_value = {"removed": True, "leader_moved_to": None}
    return mods


@pytest.fixture
def configure_loader_modules(salt_mods):
    return {etcd_member: {"__salt__": salt_mods, "__opts__": {"test": False}}}


def test_present_adds_a_learner_then_promotes_it(salt_mods):
    salt_mods["etcd_cluster.members"].return_value = VOTERS
    ret = etcd_member.present("etcd-4", PEER)
    assert ret["result"] is True
    assert ret["changes"]["membership"] == {"old": "absent", "new": "voter"}
    assert ret["changes"]["initial_cluster"].endswith("etcd-4=" + PEER)
    salt_mods["etcd_cluster.member_add"].assert_called_once_with("etcd-4", [PEER], learner=True)
    salt_mods["etcd_cluster.member_promote"].assert_called_once_with("4", timeout=120)
    assert ret["comment"] == "etcd member etcd-4 has been added as a learner and promoted to a voter"


def test_present_without_promote_leaves_a_learner(salt_mods):
    salt_mods["etcd_cluster.members"].return_value = VOTERS
    ret = etcd_member.present("etcd-4", PEER, promote=False)
    assert ret["changes"]["membership"] == {"old": "absent", "new": "learner"}
    salt_mods["etcd_cluster.member_promote"].assert_not_called()


def test_present_as_voter_adds_a_voter(salt_mods):
    salt_mods["etcd_cluster.members"].return_value = VOTERS
    etcd_member.present("etcd-4", PEER, learner=False)
    salt_mods["etcd_cluster.member_add"].assert_called_once_with("etcd-4", [PEER], learner=False)
    salt_mods["etcd_cluster.member_promote"].assert_not_called()


def test_present_is_idempotent_for_a_voter(salt_mods):
    salt_mods["etcd_cluster.members"].return_value = VOTERS + [member("4", "etcd-4", peer=PEER)]
    ret = etcd_member.present("etcd-4", PEER)
    assert ret == {
        "name": "etcd-4",
        "changes": {},
        "result": True,
        "comment": "etcd member etcd-4 is present as a voter",
    }
    salt_mods["etcd_cluster.member_add"].assert_not_called()


def test_present_in_test_mode_predicts_and_writes_nothing(salt_mods):
    salt_mods["etcd_cluster.members"].return_value = VOTERS
    with mock.patch.dict(etcd_member.__opts__, {"test": True}):
        ret = etcd_member.present("etcd-4", PEER)
    assert ret["result"] is None
    assert ret["changes"] == {"membership": {"old": "absent", "new": "voter"}}
    assert ret["comment"] == "etcd member etcd-4 would be added as a learner and promoted to a voter"
    salt_mods["etcd_cluster.member_add"].assert_not_called()
    salt_mods["etcd_cluster.member_promote"].assert_not_called()


def test_present_finishes_its_own_learner_left_half_way(salt_mods):
    left = member("4", "etcd-4", learner=True, peer=PEER)
    salt_mods["etcd_cluster.members"].return_value = VOTERS + [left]
    ret = etcd_member.present("etcd-4", PEER)
    assert ret["changes"]["membership"] == {"old": "learner", "new": "voter"}
    assert ret["comment"] == "etcd member etcd-4 has been promoted from learner to voter"
    salt_mods["etcd_cluster.member_add"].assert_not_called()
    salt_mods["etcd_cluster.member_promote"].assert_called_once_with("4", timeout=120)


def test_present_finds_its_unstarted_learner_by_peer_url(salt_mods):
    left = member("4", "etcd-4", learner=True, started=False, peer=PEER)
    salt_mods["etcd_cluster.members"].return_value = VOTERS + [left]
    with mock.patch.dict(etcd_member.__opts__, {"test": True}):
        ret = etcd_member.present("etcd-4", PEER, promote=False)
    assert ret["result"] is True
    assert ret["comment"] == "etcd member etcd-4 is present as a learner"


def test_present_removes_another_hosts_learner_that_never_started_and_says_so(salt_mods):
    stale = member("5", "", learner=True, started=False, peer="https://10.77.0.15:2380")
    salt_mods["etcd_cluster.members"].return_value = VOTERS + [stale]
    removed_before_add = []
    added = salt_mods["etcd_cluster.member_add"].return_value
    salt_mods["etcd_cluster.member_add"].side_effect = lambda *a, **k: (
        removed_before_add.append(salt_mods["etcd_cluster.member_remove"].called) or added
    )
    ret = etcd_member.present("etcd-4", PEER)
    salt_mods["etcd_cluster.member_remove"].assert_called_once_with("5")
    assert removed_before_add == [True]
    assert ret["changes"]["removed_stale_learner"] == "5"
    assert ret["comment"].startswith(
        "learner 5 (https://10.77.0.15:2380) never started and blocked the add: it has been removed"
    )
    assert ret["result"] is True


def test_present_refuses_while_another_hosts_learner_runs(salt_mods):
    pending = member("5", "etcd-5", learner=True)
    salt_mods["etcd_cluster.members"].return_value = VOTERS + [pending]
    ret = etcd_member.present("etcd-4", PEER)
    assert ret["result"] is False
    assert "learner etcd-5 is still pending" in ret["comment"]
    salt_mods["etcd_cluster.member_add"].assert_not_called()
    salt_mods["etcd_cluster.member_remove"].assert_not_called()


def test_present_keeps_the_add_in_changes_when_the_promote_fails(salt_mods):
    salt_mods["etcd_cluster.members"].return_value = VOTERS
    salt_mods["etcd_cluster.member_promote"].side_effect = CommandExecutionError(
        "learner 4 has not caught up with the leader in time: it has not started"
    )
    ret = etcd_member.present("etcd-4", PEER)
    assert ret["result"] is False
    # the learner was added: that is a change, and the next run finishes it
    assert ret["changes"]["id"] == "4"
    assert "has not started" in ret["comment"]
    assert "run this state again" in ret["comment"]


def test_absent_when_not_a_member(salt_mods):
    salt_mods["etcd_cluster.members"].return_value = VOTERS
    ret = etcd_member.absent("etcd-4")
    assert (ret["result"], ret["changes"]) == (True, {})
    assert ret["comment"] == "etcd member etcd-4 is absent"


def test_absent_in_test_mode_predicts_and_writes_nothing(salt_mods):
    salt_mods["etcd_cluster.members"].return_value = VOTERS
    with mock.patch.dict(etcd_member.__opts__, {"test": True}):
        ret = etcd_member.absent("etcd-3")
    assert ret["result"] is None
    assert ret["changes"]["membership"] == {"old": "voter", "new": "absent"}
    salt_mods["etcd_cluster.member_remove"].assert_not_called()


def test_absent_removes_and_reports_the_leader_move(salt_mods):
    salt_mods["etcd_cluster.members"].return_value = VOTERS
    salt_mods["etcd_cluster.member_remove"].return_value = {"removed": True, "leader_moved_to": "etcd-2"}
    ret = etcd_member.absent("etcd-1")
    salt_mods["etcd_cluster.member_remove"].assert_called_once_with("1", force=False)
    assert ret["changes"]["leader"] == {"old": "etcd-1", "new": "etcd-2"}
    assert ret["comment"] == "etcd member etcd-1 has been removed"


def test_absent_finds_a_never_started_member_by_peer_urls(salt_mods):
    never = member("4", "", learner=True, started=False, peer=PEER)
    salt_mods["etcd_cluster.members"].return_value = VOTERS + [never]
    ret = etcd_member.absent("etcd-4", peer_urls=PEER)
    salt_mods["etcd_cluster.member_remove"].assert_called_once_with("4", force=False)
    assert ret["changes"]["membership"]["old"] == "learner"


def test_absent_that_etcd_or_the_safety_check_refuses_fails_without_changes(salt_mods):
    salt_mods["etcd_cluster.members"].return_value = VOTERS[:2]
    salt_mods["etcd_cluster.member_remove"].side_effect = CommandExecutionError(
        "removing a member of a 2-member cluster is unsafe"
    )
    ret = etcd_member.absent("etcd-2")
    assert ret["result"] is False
    assert ret["changes"] == {}
    assert "2-member cluster is unsafe" in ret["comment"]


def test_connection_arguments_reach_every_module_call(salt_mods):
    stale = member("5", "", learner=True, started=False, peer="https://10.77.0.15:2380")
    salt_mods["etcd_cluster.members"].return_value = VOTERS + [stale]
    connection = {"endpoints": ["https://127.0.0.1:2379"], "ca_file": "/ca"}
    etcd_member.present("etcd-4", PEER, **connection)
    for name in ("members", "member_remove", "member_add", "member_promote"):
        assert salt_mods["etcd_cluster." + name].call_args[1]["endpoints"] == connection["endpoints"]
        assert salt_mods["etcd_cluster." + name].call_args[1]["ca_file"] == "/ca"
