"""
etcd_member over the real membership layer (its ``__utils__``), etcd being FakeEtcd behind
an autospec of the real client. Each state runs with ``test=True`` (a prediction, nothing
asked of etcd that changes it) and ``test=False`` (the change made).
"""

from unittest import mock

import pytest
import salt.modules.config

import etcd_errors as errors
import etcd_member
import etcd_membership
from etcd_fakes import PILLAR, FakeClock, member, peer_url, real_utils

PEER = peer_url(4)
CHANGES = ("member_add", "member_promote", "member_remove", "move_leader")




@pytest.fixture(autouse=True)
def clock(monkeypatch, etcd):
    # the orchestration starts the new member's etcd while the state waits to promote it
    found = FakeClock(while_sleeping=lambda: etcd.find(PEER) and etcd.start(4))
    monkeypatch.setattr(etcd_membership, "time", found)
    return found


@pytest.fixture
def configure_loader_modules(connect):
    config_get = mock.Mock(spec=salt.modules.config.get,
                           side_effect=lambda key, default="", **kw: PILLAR if key == "etcd" else default)
    return {etcd_member: {"__salt__": {"config.get": config_get}, "__utils__": real_utils(),
                          "__opts__": {"test": False, "id": "h1"}}}


@pytest.fixture(params=[False, True], ids=["applied", "test"])
def testmode(request):
    with mock.patch.dict(etcd_member.__opts__, {"test": request.param}):
        yield request.param


def nothing_changed(etcd):
    for name in CHANGES:
        getattr(etcd.client, name).assert_not_called()


def test_present_adds_a_learner_then_promotes_it(etcd, testmode):
    ret = etcd_member.present("etcd-4", PEER)
    assert ret["changes"]["membership"] == {"old": "absent", "new": "voter"}
    if testmode:
        assert ret["result"] is None
        assert ret["changes"] == {"membership": {"old": "absent", "new": "voter"}}
        assert ret["comment"] == "etcd member etcd-4 would be added as a learner and promoted to a voter"
        nothing_changed(etcd)
        return
    assert ret["result"] is True, ret
    assert ret["changes"]["initial_cluster"].endswith(",etcd-4=" + PEER)
    etcd.client.member_add.assert_called_once_with([PEER], learner=True, deadline=60.0)
    assert ret["comment"] == "etcd member etcd-4 has been added as a learner and promoted to a voter"
    assert etcd.find(PEER)["is_learner"] is False


def test_present_without_promote_leaves_a_learner(etcd, testmode):
    ret = etcd_member.present("etcd-4", PEER, promote=False)
    assert ret["changes"]["membership"] == {"old": "absent", "new": "learner"}
    etcd.client.member_promote.assert_not_called()
    if not testmode:
        assert etcd.find(PEER)["is_learner"] is True


def test_present_as_voter_adds_a_voter(etcd, testmode):
    ret = etcd_member.present("etcd-4", PEER, learner=False)
    assert ret["changes"]["membership"] == {"old": "absent", "new": "voter"}
    if testmode:
        nothing_changed(etcd)
    else:
        etcd.client.member_add.assert_called_once_with([PEER], learner=False, deadline=60.0)
        etcd.client.member_promote.assert_not_called()


def test_present_is_idempotent_for_a_voter(etcd, testmode):
    etcd.members.append(member(4))
    assert etcd_member.present("etcd-4", PEER) == {
        "name": "etcd-4", "changes": {}, "result": True,
        "comment": "etcd member etcd-4 is present as a voter"}
    nothing_changed(etcd)


def test_present_finishes_its_own_learner_left_half_way(etcd, testmode):
    etcd.members.append(member(4, learner=True))
    ret = etcd_member.present("etcd-4", PEER)
    assert ret["changes"]["membership"] == {"old": "learner", "new": "voter"}
    etcd.client.member_add.assert_not_called()
    if testmode:
        assert ret["result"] is None
        etcd.client.member_promote.assert_not_called()
    else:
        assert ret["comment"] == "etcd member etcd-4 has been promoted from learner to voter"
        etcd.client.member_promote.assert_called_once()


def test_present_finds_its_unstarted_learner_by_peer_url(etcd, testmode):
    etcd.members.append(member(4, learner=True, started=False))
    ret = etcd_member.present("etcd-4", PEER, promote=False)
    assert ret["result"] is True and ret["comment"] == "etcd member etcd-4 is present as a learner"
    nothing_changed(etcd)


@pytest.mark.parametrize("started", [True, False])
def test_present_refuses_beside_another_hosts_pending_learner_and_never_removes_it(
        etcd, testmode, started):
    etcd.members.append(member(5, learner=True, started=started))
    ret = etcd_member.present("etcd-4", PEER)
    assert ret["result"] is False and ret["changes"] == {}
    assert "salt-run etcd.remove_learner" in ret["comment"]
    nothing_changed(etcd)
    assert etcd.find(peer_url(5)) is not None


def test_present_keeps_the_add_in_changes_when_the_promote_fails(etcd, clock):
    clock.while_sleeping = None  # the new member never starts
    ret = etcd_member.present("etcd-4", PEER, timeout=5)
    assert ret["result"] is False
    # the learner was added: that is a change, and the next run finishes it
    assert ret["changes"]["id"] == etcd.find(PEER)["id"]
    assert "has not started" in ret["comment"]
    assert ret["comment"].endswith("(after adding it as a learner: run this state again to finish)")
    etcd.client.member_remove.assert_not_called()


def test_present_fails_with_etcds_refusal(etcd):
    etcd.client.member_add.side_effect = errors.EtcdPermissionDenied("etcdserver: permission denied")
    ret = etcd_member.present("etcd-4", PEER)
    assert (ret["result"], ret["changes"], ret["comment"]) == (False, {}, "etcdserver: permission denied")


def test_absent_when_not_a_member(etcd, testmode):
    ret = etcd_member.absent("etcd-4")
    assert (ret["result"], ret["changes"]) == (True, {})
    assert ret["comment"] == "etcd member etcd-4 is absent"


def test_absent_removes_the_member(etcd, testmode):
    ret = etcd_member.absent("etcd-3")
    assert ret["changes"]["membership"] == {"old": "voter", "new": "absent"}
    if testmode:
        assert ret["result"] is None and ret["comment"] == "etcd member etcd-3 would be removed"
        nothing_changed(etcd)
    else:
        assert ret["result"] is True and ret["comment"] == "etcd member etcd-3 has been removed"
        assert etcd.find("a3") is None


def test_absent_of_the_leader_reports_the_leader_move(etcd):
    ret = etcd_member.absent("etcd-1")
    assert ret["changes"]["leader"]["old"] == "etcd-1"
    assert ret["changes"]["leader"]["new"] in ("etcd-2", "etcd-3")
    names = [c[0] for c in etcd.client.mock_calls if c[0] in ("move_leader", "member_remove")]
    assert names == ["move_leader", "member_remove"]


def test_absent_finds_a_never_started_member_by_peer_urls(etcd, testmode):
    etcd.members.append(member(4, learner=True, started=False))
    ret = etcd_member.absent("etcd-4", peer_urls=PEER)
    assert ret["changes"]["membership"]["old"] == "learner"
    assert (etcd.find("a4") is None) is not testmode


def test_absent_that_the_safety_check_refuses_fails_without_changes(etcd):
    etcd.members = [member(1), member(2)]
    ret = etcd_member.absent("etcd-2")
    assert ret["result"] is False and ret["changes"] == {}
    assert "2-member cluster is unsafe" in ret["comment"]
    etcd.client.member_remove.assert_not_called()


def test_absent_in_test_mode_predicts_the_refusal_of_an_unsafe_removal(etcd):
    etcd.members = [member(1), member(2)]
    with mock.patch.dict(etcd_member.__opts__, {"test": True}):
        ret = etcd_member.absent("etcd-2")
    assert ret["result"] is False and "2-member cluster is unsafe" in ret["comment"]


def test_connection_arguments_reach_the_client(connect):
    etcd_member.present("etcd-4", PEER, endpoints=["https://127.0.0.1:2379"], ca_file="/ca",
                        request_timeout=3)
    args, kwargs = connect.call_args
    assert args == (["https://127.0.0.1:2379"],)
    assert (kwargs["ca_file"], kwargs["timeout"]) == ("/ca", 3.0)
