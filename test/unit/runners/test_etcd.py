"""
The etcd runner's decisions (pure functions) and its steps, with the etcd_cluster module
replaced by mocks specced on its real functions and the minions by a mocked salt.execute.
"""

import os
import sys
from unittest import mock

import pytest
from salt.exceptions import CommandExecutionError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(REPO, "_runners"))

import etcd as runner  # noqa: E402
import etcd_cluster  # noqa: E402
import etcd_pillar  # noqa: E402

PILLAR = {
    "pki": {"ca_server": "master", "ca_dir": "/srv/ca"},
    "clusters": {
        "etcd": {
            "members": {
                "h1": {"seq": 1, "address": "10.77.0.11"},
                "h2": {"seq": 2, "address": "10.77.0.12"},
                "h3": {"seq": 3, "address": "10.77.0.13"},
                "h4": {"seq": 4, "address": "10.77.0.14"},
            },
            "clients": {"patroni": {"target": "pg*"}},
        }
    },
}
PEER4 = "https://10.77.0.14:2380"


def member(seq, learner=False, started=True):
    return {
        "id": "{:x}".format(0xA0 + seq),
        "name": "etcd-{}".format(seq) if started else "",
        "peer_urls": ["https://10.77.0.1{}:2380".format(seq)],
        "client_urls": ["https://10.77.0.1{}:2379".format(seq)] if started else [],
        "is_learner": learner,
        "started": started,
    }


VOTERS = [member(1), member(2), member(3)]


def health(members, unhealthy=(), leader="etcd-1"):
    per = {
        m["name"] or m["id"]: {"id": m["id"], "healthy": m["name"] not in unhealthy and m["started"],
                               "error": "down" if m["name"] in unhealthy else None,
                               "is_learner": m["is_learner"]}
        for m in members
    }
    voters = [m for m in members if not m["is_learner"]]
    ok = sum(1 for m in voters if per[m["name"] or m["id"]]["healthy"])
    return {"healthy": not unhealthy, "error": None, "leader": leader, "alarms": [],
            "learners": [m["name"] for m in members if m["is_learner"]],
            "quorum": {"voters": len(voters), "healthy_voters": ok,
                       "needed": len(voters) // 2 + 1, "ok": ok >= len(voters) // 2 + 1},
            "members": per}


@pytest.fixture
def cluster_mods():
    mods = {}
    for name in ("members", "health", "status", "leader", "member_add", "member_promote",
                 "member_remove", "move_leader", "removal_check"):
        mods["etcd_cluster." + name] = mock.Mock(spec=getattr(etcd_cluster, name))
    mods["etcd_cluster.members"].return_value = list(VOTERS)
    mods["etcd_cluster.health"].return_value = health(VOTERS)
    return mods


@pytest.fixture
def salt_mods():
    return {
        "pillar.show_pillar": mock.Mock(return_value={"etcd": PILLAR}),
        "salt.execute": mock.Mock(),
    }


@pytest.fixture
def minion_files(salt_mods):
    """What the minions answer: {function: return} (a data dir that is empty by default)."""
    answers = {"file.directory_exists": True, "file.readdir": [".", ".."],
               "file.file_exists": True}

    def execute(tgt, fun, arg=(), kwarg=None, tgt_type="glob"):
        if fun == "state.apply":
            return {m: {"id": {"result": True}} for m in tgt.split(",")}
        return {tgt: answers.get(fun, True)}

    salt_mods["salt.execute"].side_effect = execute
    return answers


@pytest.fixture
def configure_loader_modules(salt_mods, cluster_mods, tmp_path):
    utils = {"etcd_pillar." + name: getattr(etcd_pillar, name) for name in dir(etcd_pillar)
             if callable(getattr(etcd_pillar, name)) and not name.startswith("_")}
    tls = {k: str(tmp_path / k) for k in ("ca_file", "cert_file", "key_file")}
    for path in tls.values():
        open(path, "w").close()
    return {runner: {"__salt__": salt_mods, "__utils__": utils,
                     "__opts__": {"etcd_admin_tls": tls}}}


@pytest.fixture(autouse=True)
def loaded_cluster_module(cluster_mods):
    with mock.patch.object(runner, "_cluster_module", return_value=cluster_mods):
        yield


# -- pure decisions --------------------------------------------------------------------------------


def test_add_plan_adds_a_new_member_to_a_clean_host():
    assert runner.add_plan(VOTERS, PEER4, [], False) == "add"


def test_add_plan_resumes_our_learner_and_finishes_a_voter():
    learner = member(4, learner=True)
    assert runner.add_plan(VOTERS + [learner], PEER4, ["member"], True) == "resume"
    assert runner.add_plan(VOTERS + [member(4)], PEER4, ["member"], True) == "done"


def test_add_plan_refuses_a_second_learner():
    other = member(5, learner=True)
    with pytest.raises(runner.StepFailed, match="another learner is pending: etcd-5"):
        runner.add_plan(VOTERS + [other], PEER4, [], False)


def test_add_plan_refuses_a_dirty_data_dir_that_is_not_this_member():
    with pytest.raises(runner.StepFailed, match="data dir is not empty \\(member\\)"):
        runner.add_plan(VOTERS, PEER4, ["member"], True)
    # added by an earlier run but never started: its data dir cannot be its own
    with pytest.raises(runner.StepFailed, match="can never rejoin"):
        runner.add_plan(VOTERS + [member(4, learner=True, started=False)], PEER4, ["x"], False)


def check(refusal=None):
    return {"id": "a1", "name": "etcd-1", "is_learner": False, "safe": refusal is None,
            "refusal": refusal}


def test_removal_plan_goes_on_when_safe_and_refuses_unsafe_unless_forced():
    assert runner.removal_plan(check())["safe"] is True
    with pytest.raises(runner.StepFailed, match="would lose quorum.*force=True removes it"):
        runner.removal_plan(check("removing etcd-1 would lose quorum"))
    assert runner.removal_plan(check("removing etcd-1 would lose quorum"), force=True)


def test_voting_endpoints_leave_out_learners_and_the_leaving_member():
    cluster = etcd_pillar.cluster_named(PILLAR, "etcd")
    members = VOTERS + [member(4, learner=True)]
    assert runner.voting_endpoints(cluster, members) == [
        "https://10.77.0.11:2379", "https://10.77.0.12:2379", "https://10.77.0.13:2379"]
    assert runner.voting_endpoints(cluster, members, exclude=["h1"]) == [
        "https://10.77.0.12:2379", "https://10.77.0.13:2379"]


def test_promote_deadline_grows_with_the_db_size():
    assert runner.promote_deadline(0) == runner.PROMOTE_BASE_SECONDS
    assert runner.promote_deadline(2 * 1024**3) == runner.PROMOTE_BASE_SECONDS + 512


def test_status_table_reads_like_etcdctl():
    table = runner.status_table({
        "etcd-1": {"endpoint": "https://10.77.0.11:2379", "id": "a1", "version": "3.4.23",
                   "db_size": 20480, "is_leader": True, "is_learner": False, "raft_term": 2,
                   "raft_index": 9, "raft_applied_index": 9, "alarms": [], "error": None},
        "etcd-2": {"id": "a2", "is_learner": False, "alarms": [], "error": "Connection refused"},
    })
    lines = table.splitlines()
    assert "ENDPOINT" in lines[1] and "RAFT APPLIED INDEX" in lines[1]
    assert "https://10.77.0.11:2379" in lines[3] and "20.5 kB" in lines[3] and "true" in lines[3]
    assert "Connection refused" in lines[4]


# -- steps -------------------------------------------------------------------------------------------


def test_add_preflight_passes_for_a_clean_new_member(minion_files, cluster_mods):
    ret = runner.add_preflight("h4")
    assert ret["result"] is True and ret["plan"] == "add", ret
    # the cluster was asked without the new member's endpoint
    endpoints = cluster_mods["etcd_cluster.members"].call_args.kwargs["endpoints"]
    assert "https://10.77.0.14:2379" not in endpoints


def test_add_preflight_refuses_a_host_not_in_pillar(minion_files):
    ret = runner.add_preflight("h9")
    assert ret["result"] is False and ret["retcode"] == 1
    assert "minion h9 is in no cluster of its pillar" in ret["Error"]


def test_add_preflight_refuses_an_unhealthy_cluster(minion_files, cluster_mods):
    cluster_mods["etcd_cluster.health"].return_value = health(VOTERS, unhealthy=["etcd-3"])
    ret = runner.add_preflight("h4")
    assert "cluster etcd is not healthy (unhealthy: etcd-3)" in ret["Error"]


def test_add_preflight_refuses_a_dirty_data_dir(minion_files):
    minion_files["file.readdir"] = [".", "..", "member"]
    ret = runner.add_preflight("h4")
    assert "the data dir is not empty (member)" in ret["Error"]


def test_add_preflight_names_pillar_problems(minion_files, salt_mods):
    broken = {"clusters": {"etcd": {"members": {"h1": {"seq": 1, "address": "10.77.0.11"},
                                                "h4": {"seq": 1, "address": "10.77.0.14"}}}}}
    salt_mods["pillar.show_pillar"].return_value = {"etcd": broken}
    ret = runner.add_preflight("h4")
    assert "seq 1 is used by h1, h4" in ret["Error"]


def test_add_learner_passes_the_pillar_name_and_peer_url(cluster_mods):
    cluster_mods["etcd_cluster.member_add"].return_value = {
        "id": "a4", "added": True, "is_learner": True, "initial_cluster": "x"}
    ret = runner.add_learner("h4")
    assert ret["result"] is True and ret["changes"] == {"added": "a4"}
    args = cluster_mods["etcd_cluster.member_add"].call_args
    assert args.args == ("etcd-4", PEER4) and args.kwargs["learner"] is True


def test_promote_gets_a_deadline_from_the_db_size(cluster_mods):
    cluster_mods["etcd_cluster.members"].return_value = VOTERS + [member(4, learner=True)]
    cluster_mods["etcd_cluster.status"].return_value = {"etcd-1": {"db_size": 400 * 1024**2}}
    cluster_mods["etcd_cluster.member_promote"].return_value = {"promoted": True, "waited": 0.3}
    ret = runner.promote("h4")
    assert ret["result"] is True
    assert cluster_mods["etcd_cluster.member_promote"].call_args.kwargs["timeout"] == 160


def test_promote_at_the_deadline_removes_the_learner_and_wipes_its_data(
        cluster_mods, minion_files, salt_mods):
    learner = member(4, learner=True)
    cluster_mods["etcd_cluster.members"].return_value = VOTERS + [learner]
    cluster_mods["etcd_cluster.member_promote"].side_effect = CommandExecutionError(
        "learner etcd-4 has not caught up with the leader in time")
    ret = runner.promote("h4", deadline=0)
    assert ret["result"] is False
    assert "did not catch up within 0 s" in ret["Error"]
    assert "the learner has been removed" in ret["Error"] and "wiped" in ret["Error"]
    cluster_mods["etcd_cluster.member_remove"].assert_called_once()
    assert cluster_mods["etcd_cluster.member_remove"].call_args.args == (learner["id"],)
    calls = [c.args[1] for c in salt_mods["salt.execute"].call_args_list]
    assert calls == ["service.stop", "file.remove"]


def test_promote_fails_without_rollback_before_the_deadline(cluster_mods):
    cluster_mods["etcd_cluster.members"].return_value = VOTERS + [member(4, learner=True)]
    cluster_mods["etcd_cluster.member_promote"].side_effect = CommandExecutionError(
        "no etcd endpoint answered")
    ret = runner.promote("h4", deadline=600)
    assert ret["Error"] == "no etcd endpoint answered"
    cluster_mods["etcd_cluster.member_remove"].assert_not_called()


def test_remove_preflight_refuses_2_to_1_and_changes_nothing(cluster_mods):
    cluster_mods["etcd_cluster.members"].return_value = VOTERS[:2]
    cluster_mods["etcd_cluster.health"].return_value = health(VOTERS[:2])
    cluster_mods["etcd_cluster.removal_check"].return_value = check(
        "removing a member of a 2-member cluster is unsafe")
    ret = runner.remove_preflight("h1")
    assert "2-member cluster is unsafe" in ret["Error"]
    assert cluster_mods["etcd_cluster.removal_check"].call_args.args == (VOTERS[0]["id"],)
    assert runner.remove_preflight("h1", force=True)["result"] is True
    for name in ("member_remove", "move_leader", "member_add", "member_promote"):
        cluster_mods["etcd_cluster." + name].assert_not_called()


def test_refresh_endpoints_excludes_the_leaving_member_everywhere(cluster_mods, salt_mods,
                                                                  minion_files):
    ret = runner.refresh_endpoints(member="h1", exclude="h1")
    assert ret["result"] is True
    assert ret["endpoints"] == ["https://10.77.0.12:2379", "https://10.77.0.13:2379"]
    applied = {c.args[0]: (c.kwargs["arg"], c.kwargs) for c in salt_mods["salt.execute"].call_args_list}
    assert applied["h2,h3"][0] == ["etcd.env"]
    assert applied["pg*"][0] == ["etcd.clients.patroni"]
    assert applied["pg*"][1]["kwarg"]["pillar"]["etcd_client"]["endpoints"] == ret["endpoints"]


def test_refresh_endpoints_fails_when_a_client_state_fails(cluster_mods, salt_mods):
    def execute(tgt, fun, arg=(), kwarg=None, tgt_type="glob"):
        if tgt == "pg*":
            return {"pg1": {"etcd-clients-patroni": {"result": False, "comment": "no such file"}}}
        return {m: {"id": {"result": True}} for m in tgt.split(",")}

    salt_mods["salt.execute"].side_effect = execute
    ret = runner.refresh_endpoints(member="h1")
    assert ret["result"] is False
    assert "pg1 (patroni): no such file" in ret["Error"]


def test_retire_refuses_a_member_still_in_the_cluster(cluster_mods, salt_mods):
    ret = runner.retire("h1")
    assert "etcd-1 is still a member" in ret["Error"]
    salt_mods["salt.execute"].assert_not_called()


def test_retire_archives_then_purges_only_without_safeguard(cluster_mods, salt_mods,
                                                            minion_files):
    minion_files["file.readdir"] = [".", "..", "member"]
    ret = runner.retire("h4")
    calls = [c.args[1] for c in salt_mods["salt.execute"].call_args_list]
    assert calls[:2] == ["service.stop", "service.disable"]
    assert calls.index("archive.tar") < calls.index("file.remove")
    assert ret["archive"].startswith("/var/lib/etcd/data.removed-")

    salt_mods["salt.execute"].reset_mock()
    guarded = {"clusters": {"etcd": dict(PILLAR["clusters"]["etcd"], safeguard=True)},
               "pki": PILLAR["pki"]}
    salt_mods["pillar.show_pillar"].return_value = {"etcd": guarded}
    ret = runner.retire("h4")
    calls = [c.args[1] for c in salt_mods["salt.execute"].call_args_list]
    assert "archive.tar" in calls and "file.remove" not in calls
    assert "kept: safeguard is true" in ret["comment"]


def test_a_step_without_the_admin_certificate_says_how_to_get_it(configure_loader_modules):
    with mock.patch.dict(runner.__opts__, {"etcd_admin_tls": None}):
        ret = runner.add_learner("h4")
    assert "/srv/ca/admin/client.crt" in ret["Error"]
    assert "state.apply etcd.admin" in ret["Error"]
