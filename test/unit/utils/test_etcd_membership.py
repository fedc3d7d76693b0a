"""
etcd_membership: the membership rules (pure decisions, tested directly) and the algorithms
that carry them out over the one client (an autospec of the real EtcdClient answered by
FakeEtcd, a cluster in memory).
"""

from unittest import mock

import pytest
from salt.exceptions import SaltInvocationError

import etcd_client
import etcd_errors as errors
import etcd_membership
import etcd_settings
from etcd_fakes import (
    PILLAR,
    REFUSED,
    answer,
    client_url,
    member,
    peer_url,
    refused,
    status,
)

VOTERS = [member(1), member(2), member(3)]
NEW_PEER = peer_url(4)


@pytest.fixture(autouse=True)
def instant_waits(clock):
    return clock



@pytest.fixture
def client(etcd):
    return etcd.connect([client_url(1), client_url(2), client_url(3)])


def healthy(*ids):
    return {mid: {"endpoint": None, "healthy": True, "error": None, "took": 0.0} for mid in ids}


# -- finding members ------------------------------------------------------------------------------


def test_find_knows_a_member_by_id_name_or_peer_url():
    assert etcd_membership.find(VOTERS, "a2")["name"] == "etcd-2"
    assert etcd_membership.find(VOTERS, "etcd-3")["id"] == "a3"
    assert etcd_membership.find(VOTERS, peer_url(1))["id"] == "a1"
    assert etcd_membership.find(VOTERS, "etcd-9") is None


def test_a_member_that_never_started_is_found_by_its_peer_urls():
    unstarted = member(4, learner=True, started=False)
    assert etcd_membership.find_by_peer_urls(VOTERS + [unstarted], NEW_PEER) is unstarted
    assert etcd_membership.find(VOTERS + [unstarted], NEW_PEER) is unstarted


def test_an_empty_name_finds_no_member_rather_than_one_that_never_started(etcd, client):
    etcd.members.append(member(4, learner=True, started=False))
    with pytest.raises(errors.EtcdMemberNotFound):
        etcd_membership.remove(client, "")
    client.member_remove.assert_not_called()


def test_require_names_the_members_when_there_is_no_such_member():
    with pytest.raises(errors.EtcdMemberNotFound, match=r"no etcd member etcd-9 \(members: etcd-1, "
                                                      r"etcd-2, a4 \(https://10.77.0.14:2380, never started\)\)"):
        etcd_membership.require(VOTERS[:2] + [member(4, started=False)], "etcd-9")


# -- adding ---------------------------------------------------------------------------------------


def test_add_refusal_lets_a_member_with_these_peer_urls_be_resumed():
    assert etcd_membership.add_refusal(VOTERS + [member(4, learner=True, started=False)],
                                       [NEW_PEER], learner=True) is None


@pytest.mark.parametrize("started", [True, False])
def test_add_refusal_refuses_beside_a_pending_learner_of_another_host(started):
    pending = member(5, learner=True, started=started)
    why = etcd_membership.add_refusal(VOTERS + [pending], [NEW_PEER], learner=True)
    assert why is not None and "salt-run etcd.remove_learner" in why


def test_add_refusal_names_a_member_added_but_never_started():
    why = etcd_membership.add_refusal(VOTERS + [member(5, started=False)], [NEW_PEER], learner=False)
    assert why.startswith("member a5 (https://10.77.0.15:2380, never started) was added but never started")


def test_add_refusal_allows_one_learner_at_a_time_only():
    with_learner = VOTERS + [member(5, learner=True)]
    assert "another learner is pending: etcd-5" in etcd_membership.add_refusal(
        with_learner, [NEW_PEER], learner=True)
    # a voter may be added beside a running learner: etcd's limit is on learners
    assert etcd_membership.add_refusal(with_learner, [NEW_PEER], learner=False) is None


def test_add_plan_adds_a_new_member_to_a_clean_host():
    assert etcd_membership.add_plan(VOTERS, NEW_PEER, {"entries": [], "member": False}) == "add"


def test_add_plan_resumes_its_own_learner_and_finishes_a_voter():
    data = {"entries": ["member"], "member": True}
    assert etcd_membership.add_plan(VOTERS + [member(4, learner=True)], NEW_PEER, data) == "resume"
    assert etcd_membership.add_plan(VOTERS + [member(4)], NEW_PEER, data) == "done"
    # added by an earlier run, never started: its data dir is still empty
    assert etcd_membership.add_plan(VOTERS + [member(4, learner=True, started=False)], NEW_PEER,
                                    {"entries": []}) == "resume"


@pytest.mark.parametrize("started", [True, False])
def test_add_plan_refuses_beside_a_pending_learner_of_another_host(started):
    with pytest.raises(errors.EtcdUnsafe, match="etcd.remove_learner"):
        etcd_membership.add_plan(VOTERS + [member(5, learner=True, started=started)], NEW_PEER,
                                 {"entries": []})


def test_add_plan_refuses_a_data_dir_that_is_not_this_running_member():
    with pytest.raises(errors.EtcdUnsafe, match=r"the data dir is not empty \(member\)"):
        etcd_membership.add_plan(VOTERS, NEW_PEER, {"entries": ["member"], "member": True})
    # added by an earlier run but never started: data there cannot be its own
    with pytest.raises(errors.EtcdUnsafe, match="can never rejoin"):
        etcd_membership.add_plan(VOTERS + [member(4, learner=True, started=False)], NEW_PEER,
                                 {"entries": ["x"], "member": False})


# -- removing -------------------------------------------------------------------------------------


def test_remove_is_safe_when_the_remaining_voters_keep_quorum():
    assert etcd_membership.removal_refusal(VOTERS, "a3", {"a1", "a2", "a3"}) is None


def test_removal_refusal_says_how_quorum_would_be_lost():
    # a3 is down: removing the healthy a1 leaves a2 and a3, one healthy of two
    why = etcd_membership.removal_refusal(VOTERS, "a1", {"a1", "a2"})
    assert why == ("removing etcd-1 would lose quorum: 1 of the 2 remaining voting members are "
                   "healthy, 2 are needed")


def test_remove_of_the_dead_member_is_safe():
    assert etcd_membership.removal_refusal(VOTERS, "a3", {"a1", "a2"}) is None


def test_remove_refuses_two_to_one():
    assert "2-member cluster is unsafe" in etcd_membership.removal_refusal(VOTERS[:2], "a2", {"a1", "a2"})


def test_remove_refuses_the_last_voter_but_never_a_learner():
    members = [member(1), member(2, learner=True)]
    assert "etcd-1 is the last voting member" in etcd_membership.removal_refusal(members, "a1", {"a1"})
    assert etcd_membership.removal_refusal(members, "a2", set()) is None


# -- promoting and leading ------------------------------------------------------------------------


def test_a_learner_is_caught_up_once_it_answers_with_the_leaders_index():
    assert etcd_membership.caught_up(100, None) is False
    assert etcd_membership.caught_up(100, {"raft_index": 99}) is False
    assert etcd_membership.caught_up(100, {"raft_index": 100}) is True


def test_the_next_leader_is_the_healthy_started_voter_furthest_ahead():
    members = VOTERS + [member(4, learner=True)]
    statuses = {"a2": {"raft_index": 90}, "a3": {"raft_index": 95}, "a4": {"raft_index": 99}}
    everyone = {"a1", "a2", "a3", "a4"}
    assert etcd_membership.leader_candidate(members, "a1", everyone, statuses)["id"] == "a3"
    assert etcd_membership.leader_candidate(members, "a1", {"a1", "a2", "a4"}, statuses)["id"] == "a2"
    assert etcd_membership.leader_candidate(members, "a1", {"a1", "a4"}, statuses) is None


# -- health, summarised ---------------------------------------------------------------------------


def test_summary_counts_quorum_and_names_leader_learners_and_alarms():
    members = VOTERS + [member(4, learner=True)]
    health = dict(healthy("a1", "a2", "a4"), a3={"healthy": False, "error": "down"})
    summary = etcd_membership.summarise(members, health, [{"member_id": "a2", "alarm": "NOSPACE"}], "a1")
    assert summary["quorum"] == {"voters": 3, "healthy_voters": 2, "needed": 2, "ok": True}
    assert summary["healthy"] is False
    assert (summary["leader"], summary["learners"]) == ("etcd-1", ["etcd-4"])
    assert summary["alarms"] == ["NOSPACE on a2"]
    assert summary["members"]["etcd-3"]["healthy"] is False


def test_a_nospace_alarm_keeps_the_quorum_but_not_the_health():
    # NOSPACE takes writes away, not the quorum: each member still serves reads
    nospace = {"healthy": False, "serving": True, "error": "Active Alarm(s): NOSPACE"}
    health = {"a1": nospace, "a2": nospace, "a3": {"healthy": False, "serving": False, "error": "down"}}
    summary = etcd_membership.summarise(VOTERS, health, [{"member_id": "a1", "alarm": "NOSPACE"}], "a1")
    assert summary["quorum"] == {"voters": 3, "healthy_voters": 2, "needed": 2, "ok": True}
    assert summary["healthy"] is False and summary["error"] is None
    assert summary["alarms"] == ["NOSPACE on a1"]


def test_summary_is_healthy_only_with_every_voter_a_leader_and_no_alarm():
    health = healthy("a1", "a2", "a3")
    assert etcd_membership.summarise(VOTERS, health, [], "a1")["healthy"] is True
    assert etcd_membership.summarise(VOTERS, health, [], None)["healthy"] is False
    assert etcd_membership.summarise([], {}, [], None)["healthy"] is False


def test_summary_of_two_cluster_ids_is_a_split_naming_whose_endpoints_are_whose():
    views = {client_url(1): {"status": dict(status(1), name="etcd-1")},
             client_url(2): {"status": dict(status(2), name="etcd-2")},
             client_url(3): {"status": dict(status(3, leader="b3", cluster_id="c2"), id="b3")}}
    summary = etcd_membership.summarise(VOTERS, healthy("a1", "a2", "a3"), [], "a1", views)
    assert (summary["healthy"], summary["split"]) == (False, True)
    assert summary["clusters"] == {"c1": [client_url(1), client_url(2)], "c2": [client_url(3)]}
    assert summary["error"].startswith("SPLIT: the pillar's endpoints answer for 2 different clusters "
                                       "(cluster c1: etcd-1, etcd-2; cluster c2: https://10.77.0.13:2379)")


def test_summary_of_a_lost_quorum_says_how_many_voters_are_up_and_what_each_is():
    views = {client_url(1): {"status": status(1, leader="0")},
             client_url(2): {"error": "Connection refused", "refused": True},
             client_url(3): {"error": "timed out", "refused": False}}
    health = {"a1": {"healthy": False, "error": "up without a leader"}}
    summary = etcd_membership.summarise(VOTERS, health, [], None, views)
    assert summary["healthy"] is False and summary["split"] is False
    assert summary["error"].startswith(
        "quorum lost: 0 of 3 voters up, 2 needed (https://10.77.0.11:2379: up without a leader; "
        "https://10.77.0.12:2379: down (nothing listens); https://10.77.0.13:2379: unreachable: "
        "timed out). Start the members that are down")


# -- health, read -----------------------------------------------------------------------------------


def test_health_of_a_good_cluster_asks_every_endpoint(client):
    summary = etcd_membership.health(client)
    assert summary["healthy"] is True and summary["error"] is None
    assert summary["leader"] == "etcd-1"
    assert summary["clusters"] == {"c1": [client_url(1), client_url(2), client_url(3)]}
    asked = {c.args[0] for c in client.status.call_args_list}
    assert asked == {client_url(1), client_url(2), client_url(3)}


def test_health_of_a_split_is_unhealthy_and_says_so(etcd, client):
    etcd.foreign[client_url(3)] = dict(status(3, leader="b3", cluster_id="c2"), id="b3")
    summary = etcd_membership.health(client)
    assert (summary["healthy"], summary["split"]) == (False, True)
    assert "cluster c2: https://10.77.0.13:2379" in summary["error"]


def test_health_of_a_cluster_without_quorum_says_quorum_lost(etcd, client):
    etcd.down = {"a2", "a3"}
    etcd.leader = "0"
    summary = etcd_membership.health(client)
    assert summary["healthy"] is False
    assert summary["error"].startswith("quorum lost: 0 of 3 voters up, 2 needed")


def test_health_when_no_endpoint_answers_is_an_answer_not_an_exception(etcd, client):
    etcd.down = {"a1", "a2", "a3"}
    summary = etcd_membership.health(client)
    assert summary["healthy"] is False and summary["quorum"] == {"ok": False}
    assert summary["error"].startswith("no etcd endpoint answered (https://10.77.0.11:2379: down "
                                       "(nothing listens);")


def test_health_of_a_cluster_with_one_member_down_keeps_quorum_but_is_unhealthy(etcd, client):
    etcd.down = {"a3"}
    summary = etcd_membership.health(client)
    assert summary["healthy"] is False
    assert summary["quorum"]["ok"] is True
    assert summary["members"]["etcd-3"]["healthy"] is False


def test_wait_healthy_gives_a_restarting_member_time(etcd, client, clock):
    etcd.down = {"a3"}
    clock.while_sleeping = etcd.down.clear
    assert etcd_membership.wait_healthy(client, timeout=30)["healthy"] is True
    assert clock.slept > 0


def test_wait_healthy_gives_up_after_its_timeout_with_the_last_answer(etcd, client, clock):
    etcd.down = {"a3"}
    summary = etcd_membership.wait_healthy(client, timeout=15)
    assert summary["healthy"] is False and 15 <= clock.slept <= 16


def test_status_reports_each_member_by_name_with_an_error_for_one_that_is_down(etcd, client):
    etcd.down = {"a3"}
    etcd.alarm_list = [{"member_id": "a2", "alarm": "NOSPACE"}]
    report = etcd_membership.status(client)
    assert report["etcd-1"]["is_leader"] is True and report["etcd-2"]["is_leader"] is False
    assert report["etcd-2"]["alarms"] == ["NOSPACE"]
    assert report["etcd-3"]["error"] == "https://10.77.0.13:2379: Connection refused"


# -- adding, over the client -----------------------------------------------------------------------


def test_add_adds_a_learner_and_gives_the_initial_cluster_to_start_it_with(etcd, client):
    added = etcd_membership.add(client, "etcd-4", [NEW_PEER])
    client.member_add.assert_called_once_with([NEW_PEER], learner=True, deadline=60.0)
    assert (added["added"], added["is_learner"], added["started"]) == (True, True, False)
    assert added["initial_cluster"] == (
        "etcd-1=https://10.77.0.11:2380,etcd-2=https://10.77.0.12:2380,"
        "etcd-3=https://10.77.0.13:2380,etcd-4=https://10.77.0.14:2380")
    assert added["initial_cluster_state"] == "existing"


def test_add_of_a_member_that_is_there_already_adds_nothing(etcd, client):
    etcd.members.append(member(4, learner=True, started=False))
    added = etcd_membership.add(client, "etcd-4", [NEW_PEER])
    assert (added["added"], added["id"]) == (False, "a4")
    client.member_add.assert_not_called()


def test_add_that_etcd_says_happened_already_finds_the_member(etcd, client):
    def applied_but_timed_out(peer_urls, learner=True, deadline=None):
        etcd.members.append(member(4, learner=True, started=False))
        raise errors.EtcdAlreadyMember("etcdserver: Peer URLs already exists")

    client.member_add.side_effect = applied_but_timed_out
    added = etcd_membership.add(client, "etcd-4", [NEW_PEER])
    assert (added["added"], added["id"]) == (False, "a4")


def test_add_beside_another_pending_learner_is_refused_without_asking_etcd(etcd, client):
    etcd.members.append(member(5, learner=True))
    with pytest.raises(errors.EtcdUnsafe, match="another learner is pending: etcd-5"):
        etcd_membership.add(client, "etcd-4", [NEW_PEER])
    client.member_add.assert_not_called()
    client.member_remove.assert_not_called()


# -- promoting, over the client ----------------------------------------------------------------------


@pytest.fixture
def learner(etcd):
    etcd.members.append(member(4, learner=True))
    etcd.raft_index["a4"] = 40
    return etcd.members[-1]


def test_promote_waits_until_the_learner_has_the_leaders_raft_index(etcd, client, learner, clock):
    # while the layer waits, the learner catches up
    clock.while_sleeping = lambda: etcd.raft_index.update(a4=100)
    promoted = etcd_membership.promote(client, "etcd-4")
    assert promoted["promoted"] is True
    assert promoted["caught_up"] == {"learner": 100, "leader": 100}
    client.member_promote.assert_called_once()
    assert etcd.find("a4")["is_learner"] is False


def test_promote_of_a_learner_that_never_started_times_out_without_promoting(etcd, client):
    etcd.members.append(member(4, learner=True, started=False))
    with pytest.raises(errors.EtcdCatchUpTimeout, match="has not started"):
        etcd_membership.promote(client, "a4", timeout=0)
    client.member_promote.assert_not_called()


def test_promote_of_a_voter_changes_nothing(client):
    assert etcd_membership.promote(client, "etcd-2")["promoted"] is False
    client.member_promote.assert_not_called()


def test_promote_of_a_learner_promoted_meanwhile_by_someone_else_is_as_wanted(etcd, client, learner):
    etcd.raft_index["a4"] = 100

    def promoted_elsewhere(member_id, deadline=None):
        etcd.find(member_id)["is_learner"] = False
        raise errors.EtcdNotLearner("etcdserver: can only promote a learner member")

    client.member_promote.side_effect = promoted_elsewhere
    assert etcd_membership.promote(client, "a4")["promoted"] is False


def test_promote_that_etcd_still_finds_not_in_sync_at_the_deadline_is_a_catch_up_timeout(
        etcd, client, learner):
    etcd.raft_index["a4"] = 100
    client.member_promote.side_effect = errors.EtcdLearnerNotReady(
        "etcdserver: can only promote a learner member which is in sync with leader")
    with pytest.raises(errors.EtcdCatchUpTimeout, match="not in sync with the leader in time"):
        etcd_membership.promote(client, "a4")


def test_promote_or_roll_back_removes_a_learner_that_did_not_catch_up(etcd, client, learner):
    result = etcd_membership.promote_or_roll_back(client, "a4", timeout=0)
    assert result["rolled_back"] is True and result["promoted"] is False
    assert "has not caught up with the leader in time" in result["why"]
    client.member_remove.assert_called_once_with("a4")
    assert etcd.find("a4") is None


def test_promote_or_roll_back_reads_the_membership_again_and_keeps_a_learner_promoted_after_all(
        etcd, client, learner):
    etcd.raft_index["a4"] = 100

    def applied_but_refused(member_id, deadline=None):
        etcd.find(member_id)["is_learner"] = False
        raise errors.EtcdLearnerNotReady(
            "etcdserver: can only promote a learner member which is in sync with leader")

    client.member_promote.side_effect = applied_but_refused
    result = etcd_membership.promote_or_roll_back(client, "a4", timeout=5)
    assert result == {"id": "a4", "promoted": True, "promoted_after_all": True, "waited": 5.0}
    client.member_remove.assert_not_called()


@pytest.mark.parametrize("error", [
    errors.EtcdUnreachable("no etcd endpoint answered"),
    errors.EtcdPermissionDenied("etcdserver: permission denied"),
    errors.EtcdUnhealthyCluster("etcdserver: unhealthy cluster"),
])
def test_promote_or_roll_back_rolls_nothing_back_on_any_other_failure(etcd, client, learner, error):
    etcd.raft_index["a4"] = 100
    client.member_promote.side_effect = error
    with pytest.raises(type(error)):
        etcd_membership.promote_or_roll_back(client, "a4")
    client.member_remove.assert_not_called()
    assert etcd.find("a4")["is_learner"] is True


def test_rollback_of_a_voter_removes_nothing(client):
    assert etcd_membership.rollback_learner(client, "a2") == {
        "id": "a2", "promoted_after_all": True, "removed": False}
    client.member_remove.assert_not_called()


# -- removing and leading, over the client -------------------------------------------------------------


def test_removal_check_says_whether_it_is_safe_without_removing(etcd, client):
    etcd.down = {"a3"}
    check = etcd_membership.removal_check(client, "etcd-1")
    assert check["safe"] is False and "would lose quorum" in check["refusal"]
    assert etcd_membership.removal_check(client, "etcd-3")["safe"] is True
    client.member_remove.assert_not_called()


def test_remove_of_a_follower_does_not_move_the_leader(client):
    removed = etcd_membership.remove(client, "etcd-3")
    client.member_remove.assert_called_once_with("a3", deadline=60.0)
    client.move_leader.assert_not_called()
    assert removed["leader_moved_to"] is None and removed["removed"] is True


def test_remove_of_the_leader_moves_leadership_first(etcd, client):
    etcd.raft_index.update(a2=90, a3=95)
    removed = etcd_membership.remove(client, "etcd-1")
    # to the healthy voter furthest ahead, asked of the leader itself
    assert removed["leader_moved_to"] == "etcd-3"
    client.move_leader.assert_called_once_with("a3", client_url(1))
    names = [c[0] for c in client.mock_calls if c[0] in ("move_leader", "member_remove")]
    assert names == ["move_leader", "member_remove"]


def test_remove_refuses_two_to_one_unless_forced(etcd, client):
    etcd.members = [member(1), member(2)]
    with pytest.raises(errors.EtcdUnsafe, match=r"2-member cluster is unsafe.*force=True"):
        etcd_membership.remove(client, "etcd-2")
    client.member_remove.assert_not_called()
    etcd_membership.remove(client, "etcd-2", force=True)
    client.member_remove.assert_called_once_with("a2", deadline=60.0)


def test_remove_refuses_when_quorum_would_be_lost(etcd, client):
    etcd.down = {"a3"}
    with pytest.raises(errors.EtcdUnsafe, match="would lose quorum"):
        etcd_membership.remove(client, "etcd-2")
    client.member_remove.assert_not_called()


def test_move_leader_hands_leadership_to_the_named_member(etcd, client):
    assert etcd_membership.move_leader(client, "etcd-2") == {"old": "etcd-1", "new": "etcd-2", "moved": True}
    assert etcd.leader == "a2"


def test_move_leader_to_the_leader_does_nothing_and_to_a_learner_is_refused(etcd, client):
    assert etcd_membership.move_leader(client, "etcd-1")["moved"] is False
    etcd.members.append(member(4, learner=True))
    with pytest.raises(errors.EtcdUnsafe, match="etcd-4 cannot lead"):
        etcd_membership.move_leader(client, "etcd-4")
    client.move_leader.assert_not_called()


# -- bootstrapping: when a member with an empty data dir may start a cluster ------------------

ME = {"minion": "h1", "name": "etcd-1", "peer_url": peer_url(1),
      "initial_cluster": "etcd-1=https://10.77.0.11:2380,etcd-2=https://10.77.0.12:2380,"
                         "etcd-3=https://10.77.0.13:2380"}
OTHERS = {"h2": peer_url(2), "h3": peer_url(3)}
NOTHING_HERE = {"data": False, "running": False}


def decide(answers, local_states=None, init="auto", others=OTHERS):
    return etcd_membership.bootstrap_decision(ME, others, "token-1", init, answers, local_states)


def test_a_cluster_of_one_is_new_without_asking_anyone():
    decision = decide({}, others={})
    assert decision["kind"] == "new"
    assert decision["initial"] == {"initial-cluster": ME["initial_cluster"],
                                   "initial-cluster-state": "new", "initial-cluster-token": "token-1"}


def bootstrapping(initial_cluster=ME["initial_cluster"], token="token-1"):
    """What a member of a static bootstrap under way answers on its peer port: the initial
    members, none has run, under the IDs etcd gives them (the IDs of this lab's cluster etcd
    with its real token, as etcd printed them, are checked in the test below)."""
    ids = etcd_membership.static_bootstrap_ids(initial_cluster, token)
    members = [dict(member(seq, ran=False), id=ids["members"][peer_url(seq)]) for seq in (1, 2, 3)]
    return answer(members, cluster_id=ids["cluster_id"])


def test_static_bootstrap_ids_are_etcds():
    # etcd 3.4.23 and 3.5 printed these for the lab's cluster etcd (token etcd-a661cfbd)
    ids = etcd_membership.static_bootstrap_ids(ME["initial_cluster"], "etcd-a661cfbd")
    assert ids == {"cluster_id": "be3eea25a2ae3f2f",
                   "members": {peer_url(1): "447986cb286f344b", peer_url(2): "d9de9e1aedf9d4bd",
                               peer_url(3): "a195004dbfb875cc"}}
    assert etcd_membership.static_bootstrap_ids(ME["initial_cluster"], "token-2")["cluster_id"] \
        != ids["cluster_id"]


def test_an_initial_member_of_a_bootstrap_under_way_starts_new_as_the_others_did():
    # the others started first: their peer ports list the initial members, none ever ran.
    # etcd refuses to join it as "existing" (no member has a cluster version before a quorum
    # elected a leader: "incompatible with current running cluster"), and the quorum needs
    # this member: it starts as they did
    decision = decide({"h2": bootstrapping(), "h3": REFUSED})
    assert decision["kind"] == "new" and decision["needs_leader"] is False
    assert decision["initial"] == {"initial-cluster": ME["initial_cluster"],
                                   "initial-cluster-state": "new", "initial-cluster-token": "token-1"}
    assert "an initial member of cluster " + bootstrapping()["answer"]["cluster_id"] in decision["why"]


@pytest.mark.parametrize("init", ["auto", "new", "existing"])
def test_a_bootstrap_under_way_of_other_settings_is_refused(init):
    # the same members with another token (another pillar, another incarnation): a "new"
    # start would make a second cluster, an "existing" one cannot join
    with pytest.raises(errors.EtcdUnsafe, match=r"is bootstrapping \(answered by h2, .* makes cluster"):
        decide({"h2": bootstrapping(token="token-2"), "h3": REFUSED}, init=init)


def test_a_registered_member_that_never_ran_joins_the_running_cluster_once_it_has_a_leader():
    running = [member(1, learner=True, started=False), member(2), member(3)]
    decision = decide({"h2": answer(running), "h3": answer(running)})
    assert decision["kind"] == "existing" and decision["needs_leader"] is True
    assert decision["members"] == running
    assert "a registered learner of cluster c1" in decision["why"]


@pytest.mark.parametrize("init", ["auto", "new", "existing"])
def test_never_new_when_a_peer_answers_for_a_cluster(init):
    running = [member(1, learner=True, started=False), member(2), member(3)]
    assert decide({"h2": answer(running), "h3": REFUSED}, init=init)["kind"] == "existing"


def test_a_cluster_that_runs_without_this_member_is_refused():
    with pytest.raises(errors.EtcdUnsafe, match=r"cluster c1 runs \(answered by h2\) with members "
                                                r"etcd-2, etcd-3 and not this member") as err:
        decide({"h2": answer([member(2), member(3)]), "h3": REFUSED}, init="new")
    assert "etcd.add_member" in err.value.message


def test_a_member_that_ran_before_and_lost_its_data_is_refused():
    with pytest.raises(errors.EtcdUnsafe, match="has run in cluster c1 before, and its data dir is empty"):
        decide({"h2": answer(VOTERS), "h3": REFUSED})


def test_two_clusters_answering_is_a_split_refused():
    with pytest.raises(errors.EtcdSplit, match=r"2 different clusters \(c1: h2; c2: h3\)") as err:
        decide({"h2": answer([member(1, ran=False), member(2)]),
                "h3": answer([member(1, ran=False), member(3)], cluster_id="c2")})
    assert err.value.clusters == {"c1": ["h2"], "c2": ["h3"]}


def test_any_unclear_answer_is_no_proof():
    with pytest.raises(errors.EtcdNoProof, match=r"h3 did not answer clearly \(h3: timed out\)"):
        decide({"h2": REFUSED, "h3": {"error": "timed out"}}, {"h2": NOTHING_HERE, "h3": NOTHING_HERE})


def test_no_answer_at_all_asks_the_members_whether_they_hold_data():
    assert decide({"h2": REFUSED, "h3": REFUSED})["kind"] == "ask"


def test_a_member_that_does_not_say_whether_it_holds_data_is_no_proof():
    with pytest.raises(errors.EtcdNoProof, match="h3 did not say whether it holds etcd data"):
        decide({"h2": REFUSED, "h3": REFUSED}, {"h2": NOTHING_HERE})


def test_another_member_holding_data_is_refused():
    with pytest.raises(errors.EtcdUnsafe, match="h2 holds etcd data but its etcd does not answer") as err:
        decide({"h2": REFUSED, "h3": REFUSED}, {"h2": {"data": True, "running": False}, "h3": NOTHING_HERE})
    assert not isinstance(err.value, errors.EtcdNoProof)


def test_a_member_whose_etcd_started_after_the_probe_with_its_data_means_look_again():
    # the members applied at once: its etcd started (making its data dir) between this
    # member's peer probe and its question; by the next probe its peer port answers
    decision = decide({"h2": REFUSED, "h3": REFUSED},
                      {"h2": {"data": True, "running": True}, "h3": NOTHING_HERE})
    assert decision["kind"] == "wait" and "etcd is starting on h2" in decision["why"]


def test_data_and_a_running_etcd_that_never_answers_is_refused_in_the_end():
    probe = mock.Mock(return_value={"h2": REFUSED, "h3": REFUSED})
    ask = mock.Mock(return_value={"h2": {"data": True, "running": True}, "h3": NOTHING_HERE})
    with pytest.raises(errors.EtcdNoProof, match=r"etcd is starting on h2 .* for 0 s: nothing was written"):
        decide_initial(probe, ask, wait=0)


def test_another_members_etcd_starting_means_look_again():
    decision = decide({"h2": REFUSED, "h3": REFUSED},
                      {"h2": {"data": False, "running": True}, "h3": NOTHING_HERE})
    assert decision["kind"] == "wait" and "etcd is starting on h2" in decision["why"]


def test_new_only_when_every_other_member_has_no_data_and_runs_no_etcd():
    decision = decide({"h2": REFUSED, "h3": REFUSED}, {"h2": NOTHING_HERE, "h3": NOTHING_HERE})
    assert decision["kind"] == "new"
    assert decision["initial"]["initial-cluster-state"] == "new"
    assert decision["initial"]["initial-cluster"] == ME["initial_cluster"]


def test_init_new_bootstraps_when_no_member_answers_whatever_the_doubts():
    decision = decide({"h2": REFUSED, "h3": {"error": "timed out"}}, init="new")
    assert decision["kind"] == "new" and decision["why"] == "init: new (no member answers)"


def test_init_existing_with_nobody_answering_is_no_proof():
    with pytest.raises(errors.EtcdNoProof, match="init is existing, but no other member answers"):
        decide({"h2": REFUSED, "h3": REFUSED}, {"h2": NOTHING_HERE, "h3": NOTHING_HERE}, init="existing")


def decide_initial(probe, ask=None, leader_known=None, init="auto", wait=60):
    return etcd_membership.decide_initial(
        ME, OTHERS, "token-1", init, probe, ask or mock.Mock(return_value={}),
        leader_known or mock.Mock(return_value=True), wait=wait, poll=0)


def test_decide_initial_asks_the_members_when_no_peer_answers():
    ask = mock.Mock(return_value={"h2": NOTHING_HERE, "h3": NOTHING_HERE})
    initial, _ = decide_initial(mock.Mock(return_value={"h2": REFUSED, "h3": REFUSED}), ask)
    assert initial["initial-cluster-state"] == "new"
    ask.assert_called_once_with()


def test_decide_initial_waits_for_a_starting_etcd_then_refuses_saying_nothing_was_written():
    starting = mock.Mock(return_value={"h2": {"data": False, "running": True}, "h3": NOTHING_HERE})
    probe = mock.Mock(return_value={"h2": REFUSED, "h3": REFUSED})
    with pytest.raises(errors.EtcdNoProof, match=r"etcd is starting on h2 .* for 0 s: nothing was written"):
        decide_initial(probe, starting, wait=0)


def test_decide_initial_joins_a_starting_cluster_once_its_peer_answers():
    probe = mock.Mock(side_effect=[{"h2": REFUSED, "h3": REFUSED}] * 2 + [{"h2": bootstrapping(), "h3": REFUSED}])
    starting = mock.Mock(return_value={"h2": {"data": False, "running": True}, "h3": NOTHING_HERE})
    leader_known = mock.Mock(return_value=False)
    initial, _ = decide_initial(probe, starting, leader_known=leader_known)
    assert initial["initial-cluster-state"] == "new" and initial["initial-cluster-token"] == "token-1"
    leader_known.assert_not_called()  # a bootstrap has no leader before this member starts


def test_decide_initial_keeps_an_existing_member_waiting_until_the_cluster_has_a_leader():
    running = answer([member(1, learner=True, started=False), member(2), member(3)])
    leader_known = mock.Mock(side_effect=[False, False, True])
    initial, _ = decide_initial(mock.Mock(return_value={"h2": running, "h3": running}),
                                  leader_known=leader_known)
    assert initial["initial-cluster-state"] == "existing"
    assert leader_known.call_count == 3


def test_decide_initial_without_a_leader_in_time_refuses():
    running = answer([member(1, learner=True, started=False), member(2), member(3)])
    with pytest.raises(errors.EtcdNoProof, match="the cluster has no leader .* nothing was written"):
        decide_initial(mock.Mock(return_value={"h2": running}), leader_known=mock.Mock(return_value=False),
                       wait=0)


def test_decide_initial_raises_a_refusal_at_once():
    probe = mock.Mock(return_value={"h2": answer([member(2), member(3)])})
    with pytest.raises(errors.EtcdUnsafe, match="not this member"):
        decide_initial(probe)
    assert probe.call_count == 1


def test_removed_by_names_a_cluster_that_answers_without_the_member():
    assert etcd_membership.removed_by({"h2": answer([member(2), member(3)]), "h3": REFUSED}, peer_url(1)) == "c1"
    assert etcd_membership.removed_by({"h2": answer(VOTERS)}, peer_url(1)) is None
    assert etcd_membership.removed_by({"h2": REFUSED, "h3": {"error": "x"}}, peer_url(1)) is None


def test_probe_peers_tells_an_answer_from_nothing_listening_from_an_unknown_state(monkeypatch):
    answers = {peer_url(2): {"cluster_id": "c1", "members": VOTERS}, peer_url(3): refused(peer_url(3)),
               peer_url(4): errors.EtcdUnreachable("timed out", refused=False)}

    def peer_members(url, ca_file, cert_file, key_file, timeout=2):
        if isinstance(answers[url], Exception):
            raise answers[url]
        return answers[url]

    fake = mock.Mock(spec=etcd_client.peer_members, side_effect=peer_members)
    monkeypatch.setattr(etcd_client, "peer_members", fake)
    found = etcd_membership.probe_peers({"h2": peer_url(2), "h3": peer_url(3), "h4": peer_url(4)},
                                        "/ca", "/peer.crt", "/peer.key", timeout=1)
    assert found == {"h2": {"answer": answers[peer_url(2)]}, "h3": {"refused": True},
                     "h4": {"error": "timed out"}}
    fake.assert_any_call(peer_url(2), "/ca", "/peer.crt", "/peer.key", timeout=1)


# -- the client from Salt's connection arguments --------------------------------------------------



def test_client_for_defaults_to_the_minions_cluster_and_a_members_certificate(connect):
    etcd_membership.client_for(PILLAR, "h1")
    connect.assert_called_once_with(
        [client_url(1), client_url(2), client_url(3)], ca_file="/etc/etcd/pki/ca.crt",
        cert_file="/etc/etcd/pki/client.crt", key_file="/etc/etcd/pki/client.key",
        timeout=5.0, retry_timeout=60, credentials=None)


def test_a_member_logs_in_with_roots_credentials_from_its_file(connect, tmp_path, monkeypatch):
    path = tmp_path / "root.credentials"
    path.write_text("root:s3cr:et\n")  # a password may hold a colon: etcdctl splits at the first
    monkeypatch.setitem(etcd_settings.PATHS, "root_credentials_file", str(path))
    etcd_membership.client_for(PILLAR, "h1")
    assert connect.call_args.kwargs["credentials"] == ("root", "s3cr:et")
    etcd_membership.connect(["https://127.0.0.1:2379"], credentials=("patroni-pg", "pw"))
    assert connect.call_args.kwargs["credentials"] == ("patroni-pg", "pw")


def test_client_for_takes_the_connection_arguments_given(connect):
    etcd_membership.client_for(PILLAR, "h1", endpoints="https://127.0.0.1:2379", ca_file="/ca",
                               request_timeout=2, __pub_fun="etcd_cluster.members", key_file=None)
    args, kwargs = connect.call_args
    assert args == ("https://127.0.0.1:2379",)
    assert (kwargs["ca_file"], kwargs["key_file"], kwargs["timeout"]) == ("/ca", "/etc/etcd/pki/client.key", 2.0)


def test_client_for_a_minion_in_no_cluster_needs_endpoints_or_a_cluster(connect):
    with pytest.raises(SaltInvocationError, match="pass endpoints= or cluster="):
        etcd_membership.client_for(PILLAR, "master")
    etcd_membership.client_for(PILLAR, "master", cluster="etcd")
    assert connect.call_args.args[0][0] == client_url(1)


def test_client_for_refuses_an_unknown_cluster_or_argument(connect):
    with pytest.raises(SaltInvocationError, match="no etcd cluster named 'nope'"):
        etcd_membership.client_for(PILLAR, "h1", cluster="nope")
    with pytest.raises(SaltInvocationError, match=r"unknown argument\(s\): endpoint"):
        etcd_membership.client_for(PILLAR, "h1", endpoint="https://x:2379")
    connect.assert_not_called()


def test_decide_initial_pauses_longer_after_asking_the_members_than_after_a_probe(monkeypatch):
    # an ask is a peer publish (it holds a master worker): the members waiting for a starting
    # etcd must not ask every second
    slept = []
    monkeypatch.setattr(etcd_membership.time, "sleep", slept.append)
    probe = mock.Mock(side_effect=[{"h2": REFUSED, "h3": REFUSED}] * 2 + [{"h2": bootstrapping(), "h3": REFUSED}])
    starting = mock.Mock(return_value={"h2": {"data": False, "running": True}, "h3": NOTHING_HERE})
    etcd_membership.decide_initial(ME, OTHERS, "token-1", "auto", probe, starting,
                                   mock.Mock(return_value=True), wait=60, poll=1.0)
    assert starting.call_count == 1
    assert slept == [1.0 * etcd_membership.ASK_PAUSE_POLLS]
