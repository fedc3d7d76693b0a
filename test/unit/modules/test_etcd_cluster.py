"""
The execution module's decisions (pure functions) and its use of the client, with the
client replaced by an autospec of the real one.
"""

from unittest import mock

import pytest
from salt.exceptions import CommandExecutionError, SaltInvocationError

import etcd_client
import etcd_cluster
import etcd_pillar

PILLAR = {
    "clusters": {
        "etcd": {
            "members": {
                "h1": {"seq": 1, "address": "10.77.0.11"},
                "h2": {"seq": 2, "address": "10.77.0.12"},
                "h3": {"seq": 3, "address": "10.77.0.13"},
            }
        }
    }
}


def member(mid, name=None, learner=False, started=True):
    return {
        "id": mid,
        "name": (name or "etcd-" + mid) if started else "",
        "peer_urls": ["https://10.77.0.{}:2380".format(10 + int(mid, 16))],
        "client_urls": ["https://10.77.0.{}:2379".format(10 + int(mid, 16))] if started else [],
        "is_learner": learner,
        "started": started,
    }


def status(mid, leader, raft_index=100):
    return {
        "endpoint": "https://10.77.0.{}:2379".format(10 + int(mid, 16)),
        "id": mid,
        "leader": leader,
        "raft_index": raft_index,
        "is_learner": False,
    }


def healthy(mid, ok=True):
    return {"endpoint": None, "healthy": ok, "error": None if ok else "down", "took": 0.01}


@pytest.fixture
def client():
    fake = mock.create_autospec(etcd_client.EtcdClient, instance=True)
    fake.last_retries = {"refusals": [], "waited": 0.0}
    fake.alarms.return_value = []
    return fake


@pytest.fixture
def connect(client):
    return mock.Mock(spec=etcd_client.connect, return_value=client)


@pytest.fixture
def configure_loader_modules(connect):
    utils = {"etcd_client.connect": connect}
    for name in ("cluster_of", "cluster_named", "client_urls", "client_tls_files",
                 "member_settings", "validate", "joining_initial_cluster"):
        utils["etcd_pillar." + name] = getattr(etcd_pillar, name)
    config_get = mock.Mock(spec=lambda key, default=None: None, return_value=PILLAR)
    return {
        etcd_cluster: {
            "__utils__": utils,
            "__salt__": {"config.get": config_get},
            "__opts__": {"id": "h1", "test": False},
        }
    }


@pytest.fixture(autouse=True)
def no_sleep():
    with mock.patch.object(etcd_cluster.time, "sleep"):
        yield


# -- pure decisions -----------------------------------------------------------------------------


def test_remove_is_safe_when_the_remaining_voters_keep_quorum():
    members = [member("1"), member("2"), member("3")]
    assert etcd_cluster._removal_refusal(members, "3", {"1", "2", "3"}) is None


def test_remove_refuses_when_quorum_would_be_lost():
    # 3 voters, 3 down: removing the healthy 1 leaves 2 and 3, one healthy of two
    members = [member("1"), member("2"), member("3")]
    why = etcd_cluster._removal_refusal(members, "1", {"1", "2"})
    assert "would lose quorum: 1 of the 2 remaining voting members are healthy, 2 are needed" in why


def test_remove_of_the_dead_member_is_safe():
    members = [member("1"), member("2"), member("3")]
    assert etcd_cluster._removal_refusal(members, "3", {"1", "2"}) is None


def test_remove_refuses_two_to_one():
    members = [member("1"), member("2")]
    assert "2-member cluster is unsafe" in etcd_cluster._removal_refusal(members, "2", {"1", "2"})


def test_remove_refuses_the_last_voter_but_not_a_learner():
    members = [member("1"), member("2", learner=True)]
    assert "last voting member" in etcd_cluster._removal_refusal(members, "1", {"1"})
    assert etcd_cluster._removal_refusal(members, "2", {"1"}) is None


def test_add_refuses_a_second_learner_and_an_unstarted_member():
    with_learner = [member("1"), member("2"), member("3"), member("4", learner=True)]
    why = etcd_cluster._add_refusal(with_learner, ["https://10.77.0.15:2380"], learner=True)
    assert why == "the cluster already has a learner, etcd-4: promote or remove it first"
    assert etcd_cluster._add_refusal(with_learner, ["https://10.77.0.15:2380"], learner=False) is None
    unstarted = [member("1"), member("4", started=False)]
    assert "never started" in etcd_cluster._add_refusal(
        unstarted, ["https://10.77.0.15:2380"], learner=True
    )


def test_add_of_the_same_peer_urls_is_no_refusal():
    members = [member("1"), member("4", learner=True, started=False)]
    assert etcd_cluster._add_refusal(members, ["https://10.77.0.14:2380"], learner=True) is None


def test_learner_caught_up_needs_it_to_answer_and_reach_the_leaders_index():
    assert etcd_cluster._learner_caught_up(100, None) is False
    assert etcd_cluster._learner_caught_up(100, {"raft_index": 99}) is False
    assert etcd_cluster._learner_caught_up(100, {"raft_index": 100}) is True


def test_new_leader_is_the_healthy_voter_furthest_ahead():
    members = [member("1"), member("2"), member("3"), member("4", learner=True)]
    statuses = {"2": {"raft_index": 90}, "3": {"raft_index": 95}, "4": {"raft_index": 99}}
    assert etcd_cluster._new_leader_candidate(members, "1", {"1", "2", "3", "4"}, statuses)["id"] == "3"
    assert etcd_cluster._new_leader_candidate(members, "1", {"1", "2", "4"}, statuses)["id"] == "2"
    assert etcd_cluster._new_leader_candidate(members, "1", {"1"}, statuses) is None


def test_health_summary_counts_quorum_and_names_leader_learners_alarms():
    members = [member("1"), member("2"), member("3"), member("4", learner=True)]
    health = {"1": healthy("1"), "2": healthy("2"), "3": healthy("3", ok=False), "4": healthy("4")}
    summary = etcd_cluster._summarise_health(
        members, health, [{"member_id": "2", "alarm": "NOSPACE"}], "1"
    )
    assert summary["quorum"] == {"voters": 3, "healthy_voters": 2, "needed": 2, "ok": True}
    assert summary["healthy"] is False
    assert summary["leader"] == "etcd-1"
    assert summary["learners"] == ["etcd-4"]
    assert summary["alarms"] == ["NOSPACE on 2"]
    assert summary["members"]["etcd-3"]["healthy"] is False


def test_health_summary_is_healthy_when_every_voter_is_and_there_is_a_leader():
    members = [member("1"), member("2"), member("3")]
    health = {m["id"]: healthy(m["id"]) for m in members}
    assert etcd_cluster._summarise_health(members, health, [], "1")["healthy"] is True
    assert etcd_cluster._summarise_health(members, health, [], None)["healthy"] is False


# -- connection defaults --------------------------------------------------------------------------


def test_endpoints_and_certificates_default_from_the_minions_pillar(client, connect):
    client.members.return_value = []
    etcd_cluster.members()
    connect.assert_called_once_with(
        ["https://10.77.0.11:2379", "https://10.77.0.12:2379", "https://10.77.0.13:2379"],
        ca_file="/etc/etcd/pki/ca.crt",
        cert_file="/etc/etcd/pki/client.crt",
        key_file="/etc/etcd/pki/client.key",
        timeout=5.0,
    )


def test_connection_arguments_override_the_defaults(client, connect):
    client.members.return_value = []
    etcd_cluster.members(endpoints="https://127.0.0.1:2379", ca_file="/ca", request_timeout=2)
    args, kwargs = connect.call_args
    assert args == ("https://127.0.0.1:2379",)
    assert kwargs["ca_file"] == "/ca"
    assert kwargs["timeout"] == 2.0


def test_a_minion_in_no_cluster_must_name_endpoints_or_cluster(client, connect):
    with mock.patch.dict(etcd_cluster.__opts__, {"id": "master"}):
        with pytest.raises(SaltInvocationError, match="pass endpoints= or cluster="):
            etcd_cluster.members()
        client.members.return_value = []
        etcd_cluster.members(cluster="etcd")
    assert connect.call_args[0][0][0] == "https://10.77.0.11:2379"


def test_an_unknown_cluster_or_argument_is_an_invocation_error():
    with pytest.raises(SaltInvocationError, match="no etcd cluster named 'nope'"):
        etcd_cluster.members(cluster="nope")
    with pytest.raises(SaltInvocationError, match="unknown argument"):
        etcd_cluster.members(endpoint="https://x:2379")


def test_settings_resolve_this_minions_member_and_are_empty_for_others():
    settings = etcd_cluster.settings()
    assert settings["member_name"] == "etcd-1"
    assert settings["peer_url"] == "https://10.77.0.11:2380"
    assert settings["initial_cluster"].startswith("etcd-1=https://10.77.0.11:2380,etcd-2=")
    assert settings["client_port"] == 2379
    assert etcd_cluster.settings(minion_id="master") == {}


def test_validate_raises_naming_every_problem():
    with mock.patch.dict(etcd_cluster.__salt__, {"config.get": mock.Mock(return_value={"clusters": {}})}):
        with pytest.raises(CommandExecutionError, match="pillar etcd has"):
            etcd_cluster.validate()


# -- member add -----------------------------------------------------------------------------------


def test_member_add_adds_a_learner_and_gives_the_initial_cluster(client):
    new = member("4", learner=True, started=False)
    client.members.side_effect = [[member("1"), member("2"), member("3")], [member("1"), member("2"), member("3"), new]]
    client.member_add.return_value = {"member": new, "members": []}
    result = etcd_cluster.member_add("etcd-4", "https://10.77.0.14:2380")
    client.member_add.assert_called_once_with(["https://10.77.0.14:2380"], learner=True, deadline=60.0)
    assert result["added"] is True
    assert result["id"] == "4"
    assert result["initial_cluster"].endswith(",etcd-4=https://10.77.0.14:2380")
    assert result["initial_cluster_state"] == "existing"


def test_member_add_of_an_existing_member_returns_it_without_adding(client):
    existing = member("4", learner=True, started=False)
    client.members.return_value = [member("1"), existing]
    result = etcd_cluster.member_add("etcd-4", ["https://10.77.0.14:2380"])
    assert (result["added"], result["id"]) == (False, "4")
    client.member_add.assert_not_called()


@pytest.mark.parametrize(
    "message", ["etcdserver: Peer URLs already exists", "etcdserver: member ID already exist"]
)
def test_member_add_that_etcd_says_happened_already_finds_the_member(client, message):
    new = member("4", learner=True, started=False)
    client.members.side_effect = [[member("1")], [member("1"), new], [member("1"), new]]
    client.member_add.side_effect = etcd_client.EtcdError(message)
    result = etcd_cluster.member_add("etcd-4", "https://10.77.0.14:2380")
    assert (result["added"], result["id"]) == (False, "4")


def test_member_add_refuses_a_second_learner_without_asking_etcd(client):
    client.members.return_value = [member("1"), member("2"), member("3"), member("4", learner=True)]
    with pytest.raises(CommandExecutionError, match="already has a learner, etcd-4"):
        etcd_cluster.member_add("etcd-5", "https://10.77.0.15:2380")
    client.member_add.assert_not_called()


def test_member_add_refuses_bad_peer_urls():
    with pytest.raises(SaltInvocationError, match="peer_urls"):
        etcd_cluster.member_add("etcd-5", "10.77.0.15:2380")


# -- member promote -------------------------------------------------------------------------------


def test_promote_waits_until_the_learner_has_the_leaders_raft_index(client):
    learner = member("4", learner=True)
    members = [member("1"), member("2"), member("3"), learner]
    client.members.return_value = members
    client.status.side_effect = lambda url: {
        "https://10.77.0.11:2379": status("1", "1", raft_index=100),
        "https://10.77.0.14:2379": next(learner_indexes),
    }[url]
    learner_indexes = iter([status("4", "1", 40), status("4", "1", 100)])
    client.member_promote.return_value = [dict(learner, is_learner=False)]
    result = etcd_cluster.member_promote("etcd-4")
    client.member_promote.assert_called_once()
    assert result["promoted"] is True
    assert result["caught_up"] == {"learner": 100, "leader": 100}


def test_promote_of_a_learner_that_never_started_fails_without_promoting(client):
    client.members.return_value = [member("1"), member("4", learner=True, started=False)]
    with pytest.raises(CommandExecutionError, match="has not started"):
        etcd_cluster.member_promote("4", timeout=0)
    client.member_promote.assert_not_called()


def test_promote_of_a_voter_changes_nothing(client):
    client.members.return_value = [member("1"), member("2")]
    assert etcd_cluster.member_promote("etcd-2")["promoted"] is False
    client.member_promote.assert_not_called()


def test_promote_of_an_unknown_member_names_the_members(client):
    client.members.return_value = [member("1")]
    with pytest.raises(CommandExecutionError, match="no etcd member etcd-9 .members: etcd-1"):
        etcd_cluster.member_promote("etcd-9")


# -- member remove --------------------------------------------------------------------------------


def _id_at(url):
    """The member ID the helpers above give the member at client URL ``url``."""
    return "{:x}".format(int(url.split(":")[1].split(".")[-1]) - 10)


def _cluster_of_three(client, leader="1"):
    client.members.return_value = [member("1"), member("2"), member("3")]
    client.health.side_effect = healthy
    client.status.side_effect = lambda url: status(_id_at(url), leader)
    client.member_remove.return_value = []


def test_remove_of_a_follower_does_not_move_the_leader(client):
    _cluster_of_three(client, leader="1")
    result = etcd_cluster.member_remove("etcd-3")
    client.member_remove.assert_called_once_with("3", deadline=60.0)
    client.move_leader.assert_not_called()
    assert result["leader_moved_to"] is None


def test_remove_of_the_leader_moves_leadership_first(client):
    _cluster_of_three(client, leader="1")
    # once moved, etcd-2 says it leads
    client.move_leader.side_effect = lambda mid, endpoint: client.status.configure_mock(
        side_effect=lambda url: status(_id_at(url), mid)
    )
    result = etcd_cluster.member_remove("etcd-1")
    assert result["leader_moved_to"] in ("etcd-2", "etcd-3")
    calls = [c[0] for c in client.mock_calls if c[0] in ("move_leader", "member_remove")]
    assert calls == ["move_leader", "member_remove"]
    assert client.move_leader.call_args[0][1] == "https://10.77.0.11:2379"


def test_remove_refuses_two_to_one_unless_forced(client):
    client.members.return_value = [member("1"), member("2")]
    client.health.side_effect = healthy
    client.status.side_effect = lambda url: status("1", "1")
    client.member_remove.return_value = []
    with pytest.raises(CommandExecutionError, match="2-member cluster is unsafe.*force=True"):
        etcd_cluster.member_remove("etcd-2")
    client.member_remove.assert_not_called()
    etcd_cluster.member_remove("etcd-2", force=True)
    client.member_remove.assert_called_once_with("2", deadline=60.0)
