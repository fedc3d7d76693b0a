"""
The etcd runner (``salt-run etcd.*``) over the real membership layer: etcd is FakeEtcd behind
an autospec of the real client, the minions answer through an autospec of Salt's
LocalClient, the pillar through a Mock specced on ``pillar.show_pillar``. Each step checks
what it is given before any I/O, fails as ``{"Error": ..., "retcode": 1}``, and builds no
Salt loader.
"""

from unittest import mock

import pytest
import salt.client
import salt.loader
import salt.runners.pillar

import etcd_errors as errors
import etcd_pki
import etcd_runner as runner
from etcd_fakes import FakeMinions, client_url, failed, member, peer_url, pillar, real_utils

PURGED = {"name": "etcd-4", "mode": "retire", "archive": "/var/lib/etcd/data.removed-x.tar.gz",
          "done": ["etcd stopped and disabled", "data dir archived to /var/lib/etcd/data.removed-x.tar.gz (0600)",
                   "data dir /var/lib/etcd/data purged"], "notes": []}
EMPTY_HOST = {"data": False, "entries": [], "data_problem": None, "running": False}
STEPS = ["add_preflight", "add_learner", "promote", "remove_learner", "remove_preflight",
         "move_leader_off", "member_remove", "retire"]


@pytest.fixture
def minions(monkeypatch):
    return FakeMinions({"etcd_cluster.local_state": EMPTY_HOST, "etcd_cluster.purge": PURGED,
                        "etcd_cluster.write_env": {"changed": True, "endpoints": []}}
                       ).install(monkeypatch)


@pytest.fixture(autouse=True)
def instant_waits(clock):
    return clock


@pytest.fixture
def etcd_pillar():
    return pillar(members=4, clients={"patroni": {"target": ["pg1", "pg2"]}})


@pytest.fixture
def expiry_rows():
    return mock.Mock(spec=etcd_pki.expiry_rows, return_value=[])


@pytest.fixture
def configure_loader_modules(show_pillar, expiry_rows, connect, minions, master_opts):
    utils = real_utils()
    utils["etcd_pki.expiry_rows"] = expiry_rows
    return {runner: {
        "__salt__": {"pillar.show_pillar": show_pillar},
        "__utils__": utils,
        "__opts__": master_opts,
        "__context__": {},
    }}


def learner_of_h4(etcd, started=True):
    etcd.members.append(member(4, learner=True, started=started))
    return etcd.members[-1]


# -- what every step checks first -------------------------------------------------------------------


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("bad", ["*", "h*", "h1,h2", "a b", "h1\nh2", ["h1"]])
def test_every_step_refuses_a_member_that_is_no_plain_minion_id_before_any_io(
        step, bad, show_pillar, connect, minions):
    error = failed(getattr(runner, step)(bad))
    assert error.startswith("member: {!r}: expected one plain minion id".format(bad))
    show_pillar.assert_not_called()
    connect.assert_not_called()
    assert minions.calls == []


@pytest.mark.parametrize("step", ["refresh_endpoints", "health"])
def test_exclude_must_be_a_plain_minion_id_too(step, show_pillar, connect):
    assert failed(getattr(runner, step)(member="h1", exclude="h*")).startswith("exclude: 'h*': ")
    show_pillar.assert_not_called()
    connect.assert_not_called()


@pytest.mark.parametrize("step", ["remove_preflight", "member_remove"])
def test_force_must_be_true_or_false(step, connect):
    assert failed(getattr(runner, step)("h1", force="yes")) == "etcd_force: 'yes': expected true or false"
    connect.assert_not_called()


@pytest.mark.parametrize("step", STEPS)
def test_every_step_refuses_a_member_missing_from_the_pillar(step, connect):
    assert "minion h9 is in no cluster of its pillar" in failed(getattr(runner, step)("h9"))
    connect.assert_not_called()


def test_a_step_names_the_pillars_problems_and_does_nothing(etcd_pillar, connect):
    etcd_pillar["clusters"]["etcd"]["members"]["h4"]["seq"] = 1
    assert "seq 1 is used by h1, h4" in failed(runner.add_preflight("h4"))
    connect.assert_not_called()


def test_a_step_without_the_admin_certificate_says_how_to_get_it(etcd_pillar, connect):
    etcd_pillar["pki"]["ca_dir"] = "/srv/ca"
    with mock.patch.dict(runner.__opts__, {"etcd_admin_tls": None}):
        error = failed(runner.add_learner("h4"))
    assert "/srv/ca/admin/client.crt" in error and "salt master state.apply etcd.admin" in error
    connect.assert_not_called()


def test_a_step_builds_no_salt_loader(monkeypatch, etcd, minions):
    def no_loader(*args, **kwargs):
        raise AssertionError("a runner step built a Salt loader")

    for name in ("minion_mods", "utils", "runner", "states", "raw_mod"):
        monkeypatch.setattr(salt.loader, name, no_loader)
    monkeypatch.setattr(salt.loader, "LazyLoader", no_loader)
    ret = runner.add_preflight("h4")
    assert ret["result"] is True, ret
    assert runner.add_learner("h4")["result"] is True


# -- asking a minion ----------------------------------------------------------------------------------


def test_a_minion_that_does_not_answer_is_silent(minions):
    minions.silent.add("h4")
    with pytest.raises(runner.MinionSilent, match="minion h4 did not answer test.ping within 5 s"):
        runner._steps().on_minion("h4", "test.ping", timeout=5)


@pytest.mark.parametrize("answer", [
    {"ret": "ERROR: etcd_cluster.purge: refused", "retcode": 1},
    {"ret": {"anything": 1}, "retcode": 1},
    False,
    "'etcd_cluster.local_state' is not available.",
])
def test_a_minion_answering_an_error_fails_the_step(minions, answer):
    minions.per_minion[("h4", "etcd_cluster.local_state")] = answer
    with pytest.raises(runner.StepFailed, match="etcd_cluster.local_state on h4 failed") as err:
        runner._steps().on_minion("h4", "etcd_cluster.local_state", expect=dict)
    assert not isinstance(err.value, runner.MinionSilent)


def test_a_minions_return_is_given_with_its_arguments(minions):
    assert runner._steps().on_minion("h4", "etcd_cluster.purge", mode="retire", timeout=60) == PURGED
    assert minions.calls == [("h4", "etcd_cluster.purge", [], {"mode": "retire"}, "list")]


# -- add_member ----------------------------------------------------------------------------------------


def test_add_preflight_passes_for_a_clean_new_member(connect, minions):
    ret = runner.add_preflight("h4")
    assert ret["result"] is True and ret["plan"] == "add", ret
    # the cluster is asked without the new member's endpoint
    assert connect.call_args.args[0] == [client_url(1), client_url(2), client_url(3)]
    # the host's local state is its ping: one call, before etcd is asked
    assert minions.functions() == ["etcd_cluster.local_state"]


def test_add_preflight_refuses_a_minion_that_does_not_answer(minions, connect):
    minions.silent.add("h4")
    assert "minion h4 does not answer (5 s)" in failed(runner.add_preflight("h4"))
    connect.assert_not_called()


def test_add_preflight_refuses_an_unhealthy_cluster(etcd):
    etcd.down = {"a3"}
    error = failed(runner.add_preflight("h4"))
    assert error.startswith("cluster etcd is not healthy (etcd-3: https://10.77.0.13:2379: Connection refused)")
    assert error.endswith(": fix it before adding a member")


def test_add_preflight_refuses_a_data_dir_holding_an_old_member(minions):
    minions.answers["etcd_cluster.local_state"] = dict(EMPTY_HOST, data=True, entries=["member"])
    assert "the data dir is not empty (member)" in failed(runner.add_preflight("h4"))


def test_add_preflight_refuses_what_is_not_etcds_in_the_data_dir(minions):
    minions.answers["etcd_cluster.local_state"] = dict(
        EMPTY_HOST, entries=["lost+found"], data_problem="/var/lib/etcd/data holds what is not etcd's data (lost+found)")
    assert failed(runner.add_preflight("h4")).startswith("/var/lib/etcd/data holds what is not etcd's data")


def test_add_preflight_refuses_beside_another_hosts_pending_learner(etcd):
    etcd.members.append(member(5, learner=True, started=False))
    assert "etcd.remove_learner" in failed(runner.add_preflight("h4"))
    etcd.client.member_remove.assert_not_called()


def test_add_preflight_resumes_its_own_learner(etcd, minions):
    learner_of_h4(etcd)
    minions.answers["etcd_cluster.local_state"] = dict(EMPTY_HOST, data=True, entries=["member"])
    ret = runner.add_preflight("h4")
    assert ret["plan"] == "resume"


def test_add_learner_adds_the_pillar_name_and_peer_url(etcd):
    ret = runner.add_learner("h4")
    assert ret["result"] is True and ret["added"] is True
    etcd.client.member_add.assert_called_once_with([peer_url(4)], learner=True, deadline=60.0)
    assert ret["changes"] == {"added": ret["id"]}
    assert ret["initial_cluster"].endswith(",etcd-4=" + peer_url(4))


def test_add_learner_again_changes_nothing(etcd):
    learner_of_h4(etcd, started=False)
    ret = runner.add_learner("h4")
    assert ret["result"] is True and ret["added"] is False and ret["changes"] == {}
    etcd.client.member_add.assert_not_called()


def test_promote_gets_a_deadline_from_the_db_size(etcd):
    learner_of_h4(etcd)
    etcd.db_size = 400 * 1024**2
    ret = runner.promote("h4")
    assert ret["result"] is True and ret["promoted"] is True
    assert ret["deadline"] == runner.PROMOTE_BASE_SECONDS + 100
    assert ret["changes"] == {"promoted": "a4"}


def test_promote_deadline_grows_with_the_db_size():
    assert runner.promote_deadline(0) == runner.PROMOTE_BASE_SECONDS
    assert runner.promote_deadline(None) == runner.PROMOTE_BASE_SECONDS
    assert runner.promote_deadline(2 * 1024**3) == runner.PROMOTE_BASE_SECONDS + 512


def test_promote_that_did_not_catch_up_removes_the_learner_and_purges_its_host(etcd, minions):
    learner_of_h4(etcd, started=False)
    error = failed(runner.promote("h4", deadline=0))
    assert error.startswith("etcd-4 did not catch up within 0 s (learner a4 (https://10.77.0.14:2380, "
                            "never started) has not caught up with the leader in time")
    assert "the learner has been removed from the cluster" in error
    assert "data dir /var/lib/etcd/data purged" in error
    etcd.client.member_remove.assert_called_once_with("a4")
    assert ("h4", "etcd_cluster.purge", [], {"mode": "retire"}, "list") in minions.calls


def test_promote_that_fails_otherwise_rolls_nothing_back(etcd, minions):
    learner_of_h4(etcd)
    etcd.client.member_promote.side_effect = errors.EtcdUnreachable("no etcd endpoint answered")
    assert failed(runner.promote("h4", deadline=600)) == "no etcd endpoint answered"
    etcd.client.member_remove.assert_not_called()
    assert "etcd_cluster.purge" not in minions.functions()


def test_promote_of_a_learner_promoted_after_all_keeps_it(etcd, minions):
    learner_of_h4(etcd)

    def applied_but_refused(member_id, deadline=None):
        etcd.find(member_id)["is_learner"] = False
        raise errors.EtcdLearnerNotReady("etcdserver: can only promote a learner member which is in sync with leader")

    etcd.client.member_promote.side_effect = applied_but_refused
    ret = runner.promote("h4", deadline=30)
    assert ret["result"] is True and ret["promoted"] is True
    assert "promoted after all" in ret["comment"]
    etcd.client.member_remove.assert_not_called()
    assert "etcd_cluster.purge" not in minions.functions()


def test_promote_of_a_voter_or_a_stranger(etcd):
    etcd.members.append(member(4))
    assert runner.promote("h4")["promoted"] is False
    etcd.members.pop()
    assert "etcd-4 is not a member: run add_member from the start" in failed(runner.promote("h4"))


def test_remove_learner_removes_a_learner_and_purges_its_host(etcd, minions):
    learner_of_h4(etcd)
    ret = runner.remove_learner("h4")
    assert ret["result"] is True and ret["changes"] == {"removed": "a4"}
    assert etcd.find("a4") is None
    assert "etcd_cluster.purge" in minions.functions()


def test_remove_learner_refuses_a_voter(etcd):
    etcd.members.append(member(4))
    assert "etcd-4 is a voting member: use the remove_member orchestration" in failed(runner.remove_learner("h4"))
    etcd.client.member_remove.assert_not_called()


# -- endpoint references --------------------------------------------------------------------------


def test_refresh_endpoints_never_lists_a_learner_or_the_excluded_minion(etcd, minions):
    learner_of_h4(etcd)
    ret = runner.refresh_endpoints(member="h1", exclude="h1")
    assert ret["result"] is True, ret
    assert ret["endpoints"] == [client_url(2), client_url(3)]
    written = {call[0]: call for call in minions.published if call[1] == "etcd_cluster.write_env"}
    assert written["h2,h3"][2] == [[client_url(2), client_url(3)]] and written["h2,h3"][4] == "list"
    applied = {call[0]: call for call in minions.published if call[1] == "state.apply"}
    # the patroni hosts are a YAML list in the pillar: Salt targets them as a list
    assert applied["pg1,pg2"][2] == ["etcd.clients.patroni"] and applied["pg1,pg2"][4] == "list"
    handed = applied["pg1,pg2"][3]["pillar"]["etcd_client"]
    assert handed == {"cluster": "etcd", "endpoints": [client_url(2), client_url(3)]}


def test_refresh_endpoints_asks_the_cluster_without_the_excluded_member(connect):
    runner.refresh_endpoints(member="h1", exclude="h1")
    assert client_url(1) not in connect.call_args.args[0]


def test_refresh_endpoints_fails_naming_the_client_whose_state_failed(minions):
    minions.calls.clear()
    minions.per_minion[("pg2", "state.apply")] = {"ret": {"etcd-clients-patroni": {
        "result": False, "comment": "no such file"}}, "retcode": 2}
    assert "endpoint refresh failed on pg2 (patroni): no such file" in failed(runner.refresh_endpoints(member="h1"))


def test_refresh_endpoints_with_no_client_answering_fails(minions):
    minions.silent.update({"h1", "h2", "h3"})
    why = failed(runner.refresh_endpoints(member="h1"))
    assert "h1: did not answer; h2: did not answer; h3: did not answer" in why, why


# -- remove_member --------------------------------------------------------------------------------------


def test_remove_preflight_refuses_2_to_1_unless_forced_and_changes_nothing(etcd, etcd_pillar):
    etcd.members = [member(1), member(2)]
    assert "2-member cluster is unsafe" in failed(runner.remove_preflight("h1"))
    ret = runner.remove_preflight("h1", force=True)
    assert ret["result"] is True and ret["plan"] == "remove" and ret["id"] == "a1"
    for name in ("member_remove", "move_leader", "member_add", "member_promote"):
        getattr(etcd.client, name).assert_not_called()


def test_remove_preflight_of_a_dead_member_passes_without_its_minion(etcd, minions):
    etcd.down = {"a3"}
    minions.silent.add("h3")
    assert runner.remove_preflight("h3")["plan"] == "remove"
    assert minions.calls == []


def test_remove_preflight_of_a_member_already_gone_lets_the_cleanup_run(etcd):
    assert runner.remove_preflight("h4")["plan"] == "gone"


def test_move_leader_off_moves_leadership_only_from_the_leaving_leader(etcd):
    assert runner.move_leader_off("h2")["moved"] is False
    etcd.client.move_leader.assert_not_called()
    ret = runner.move_leader_off("h1")
    assert ret["moved"] is True and ret["changes"]["leader"]["old"] == "etcd-1"
    assert etcd.leader != "a1"


def test_member_remove_removes_and_is_done_when_gone(etcd):
    ret = runner.member_remove("h3")
    assert ret["result"] is True and ret["changes"] == {"removed": "a3"}
    assert runner.member_remove("h3") == {"result": True, "comment": "etcd-3 is not a member", "removed": False}


def test_member_remove_refuses_what_would_lose_quorum(etcd):
    etcd.down = {"a3"}
    assert "would lose quorum" in failed(runner.member_remove("h2"))
    etcd.client.member_remove.assert_not_called()


def test_retire_refuses_a_member_still_in_the_cluster(minions):
    assert "etcd-1 is still a member: remove it first" in failed(runner.retire("h1"))
    assert minions.calls == []


def test_retire_purges_the_removed_host_in_retire_mode(minions):
    ret = runner.retire("h4")
    assert ret["result"] is True and ret["changes"] == {"retired": "h4"}
    assert ret["archive"] == PURGED["archive"]
    assert minions.calls[-1] == ("h4", "etcd_cluster.purge", [], {"mode": "retire"}, "list")


def test_retire_of_a_silent_minion_is_skipped_and_says_so(minions):
    minions.silent.add("h4")
    ret = runner.retire("h4")
    assert ret["result"] is True and ret["skipped"] is True
    assert "salt-run etcd.retire h4" in ret["comment"]
    assert "etcd_cluster.purge" not in minions.functions()


def test_retire_that_the_host_refuses_fails(minions):
    minions.per_minion[("h4", "etcd_cluster.purge")] = {"ret": "ERROR: still active after a stop", "retcode": 1}
    assert "etcd_cluster.purge on h4 failed: ERROR: still active after a stop" in failed(runner.retire("h4"))


# -- status and health --------------------------------------------------------------------------------


def test_status_of_a_healthy_cluster_is_the_text(etcd, expiry_rows):
    text = runner.status()
    assert text.splitlines()[0] == "cluster etcd: healthy"
    assert "retcode" not in runner.__context__
    # the certificates of every pillar member, by seq, and the master's own
    members = expiry_rows.call_args.args[0]
    assert [m[0] for m in members] == ["h1", "h2", "h3", "h4"]
    assert members[0] == ("h1", client_url(1), peer_url(1))


def test_status_says_when_etcds_authentication_is_not_what_the_pillar_says(etcd, etcd_pillar):
    assert "authentication" not in runner.status()
    etcd_pillar["clusters"]["etcd"].update(auth=True, root_password="r")
    etcd_pillar["clusters"]["etcd"]["clients"]["patroni"].update(scope="pg", password="p")
    ret = runner.status()
    assert isinstance(ret, str), ret
    assert "WARNING: authentication is off in etcd, on in pillar: run salt-run etcd.auth" in \
        ret.splitlines()
    etcd.auth_on = True
    assert "authentication" not in runner.status()
    assert runner.status(table=False)["auth"] is True


def test_status_of_an_unhealthy_cluster_fails_so_salt_run_exits_1(etcd):
    etcd.down = {"a3"}
    error = failed(runner.status())
    assert error.splitlines()[0].startswith("cluster etcd: UNHEALTHY")


def test_status_of_a_split_says_so_loudly(etcd):
    etcd.foreign[client_url(4)] = dict(etcd._status(client_url(1)), id="b4", cluster_id="c2",
                                       endpoint=client_url(4))
    error = failed(runner.status())
    assert "SPLIT: the pillar's endpoints answer for 2 different clusters" in error.splitlines()[0]


def test_status_as_data_of_an_unhealthy_cluster_still_exits_1(etcd):
    etcd.down = {"a3"}
    ret = runner.status(table=False)
    assert ret["health"]["healthy"] is False
    assert runner.__context__.get("retcode") == 1 or ret.get("retcode") == 1


def test_status_needs_a_cluster_name_when_the_pillar_has_several(etcd_pillar):
    etcd_pillar["clusters"]["pg"] = {"members": {"p1": {"seq": 1, "address": "10.77.1.11"}}}
    assert failed(runner.status()) == "pillar etcd has 2 clusters (etcd, pg): name one"
    assert "no etcd cluster named 'nope'" in failed(runner.status(cluster="nope"))


def test_health_step_waits_for_a_restarting_member(etcd, clock):
    etcd.down = {"a3"}
    clock.while_sleeping = etcd.down.clear
    ret = runner.health(member="h1")
    assert ret["result"] is True
    assert ret["comment"] == "cluster etcd is healthy: 3 voting members, leader etcd-1"
    assert "views" not in ret["health"]


def test_health_step_fails_with_the_table_when_a_voter_stays_down(etcd):
    etcd.down = {"a3"}
    error = failed(runner.health(member="h1"))
    assert error.startswith("cluster etcd is not healthy (etcd-3: https://10.77.0.13:2379: Connection refused)")
    table = error.split("\n", 1)[1]
    assert "ENDPOINT" in table.splitlines()[2]
    assert any(line.startswith("| " + client_url(3)) and "down (nothing listens)" in line
               for line in table.splitlines())


def test_health_step_without_the_excluded_member(connect):
    ret = runner.health(member="h1", exclude="h3")
    assert ret["result"] is True
    assert client_url(3) not in connect.call_args.args[0]
