"""
The backup runner (``salt-run etcd.snapshot``, the steps of etcd/restore.sls and
etcd/recover.sls) over the real layers: etcd is FakeEtcd behind an autospec of the real
client (its locks lock_fakes.EtcdLocks, its snapshot stream a test's bytes), the minions
answer through an autospec of Salt's LocalClient, the pillar through a Mock specced on
``pillar.show_pillar``, etcd's snapshot tool through a Mock specced on
``etcd_snapshot.status``. The operation lock file is real, and so is the other process
that holds it.
"""

import contextlib
import hashlib
import os
import types
from unittest import mock

import pytest

import etcd_backup as backup
import etcd_errors as errors
import etcd_operations
import etcd_settings
import etcd_snapshot
import etcd_transfer
import etcd_validate
from etcd_fakes import FakeMinions, client_url, failed, member, passed, peer_url, pillar, real_utils
from lock_fakes import EtcdLocks, OtherProcess

STOPPED = {"running": False, "data": True, "entries": ["member"], "data_problem": None,
           "unit": "inactive", "processes": []}
PURGED = {"name": "etcd-2", "mode": "retire", "archive": None, "done": ["etcd stopped and disabled"],
          "notes": []}
READ = {"revision": 42, "keys": 12, "size": 12288, "hash": 7}
SERVED = {"port": 45123, "path": "/Qx", "fingerprint": "fp" * 32, "sha256": "ab" * 32, "served": []}


@pytest.fixture
def minions(monkeypatch):
    found = FakeMinions({
        "etcd_cluster.local_state": STOPPED, "etcd_cluster.purge": PURGED,
        "config.get": "10.77.0.1",
        "etcd_cluster.restore": {"name": "etcd-x", "done": ["restored"]},
        "etcd_cluster.force_new_cluster": {"name": "etcd-1", "members": [],
                                           "done": ["etcd member etcd-1 is a cluster of one with its data"]},
        "cmd.run_all": {"retcode": 0, "stdout": "", "stderr": ""},
    })
    found.globs = {"pg*": ["pg1", "pg2"]}
    return found.install(monkeypatch)


@pytest.fixture(autouse=True)
def instant_waits(clock):
    return clock


@pytest.fixture(autouse=True)
def nothing_left_held():
    yield
    etcd_operations.end_all()
    etcd_operations._HELD.clear()


@pytest.fixture
def backups(tmp_path, monkeypatch):
    """The master's backup dir. The temporary tree stands for a directory of the master's own
    (/srv/unit-test/...): the path rule still applies to every other path."""
    real_rule = etcd_validate.path_problem

    def path_problem(value, *args, **kwargs):
        if isinstance(value, str) and value.startswith(str(tmp_path) + "/"):
            value = "/srv/unit-test" + value[len(str(tmp_path)):]
        return real_rule(value, *args, **kwargs)

    monkeypatch.setattr(etcd_validate, "path_problem", path_problem)
    return str(tmp_path / "backups")


@pytest.fixture
def etcd_pillar(backups):
    found = pillar(clients={"patroni": {"target": ["pg1", "pg2"]}})
    found["backup"] = {"dir": backups, "keep": 3}
    return found


@pytest.fixture
def cluster_dir(backups):
    return os.path.join(backups, "etcd")


@pytest.fixture
def locks(etcd):
    found = EtcdLocks()
    found.wire(etcd.client)
    return found


def snapshot_bytes():
    db = os.urandom(3 * 4096)
    return db + hashlib.sha256(db).digest()


@pytest.fixture
def stream(etcd, locks):
    """What a member streams as its snapshot (``data``); who was asked, and which locks in
    etcd were held meanwhile."""
    found = types.SimpleNamespace(data=snapshot_bytes(), endpoints=[], locked=[])

    def snapshot(endpoint, handle, timeout=600):
        found.endpoints.append(endpoint)
        found.locked.append(dict(locks.held))
        handle.write(found.data)
        return len(found.data)

    etcd.client.snapshot.side_effect = snapshot
    return found


@pytest.fixture(autouse=True)
def tool(monkeypatch):
    """etcd's snapshot tool (a process) reading any snapshot."""
    found = mock.Mock(spec=etcd_snapshot.status, return_value=dict(READ))
    monkeypatch.setattr(etcd_snapshot, "status", found)
    return found


@pytest.fixture
def utils(backups):
    found = real_utils()
    found["etcd_snapshot.offsite"] = mock.Mock(spec=etcd_snapshot.offsite, return_value=(0, "sent"))
    found["etcd_transfer.serve"] = mock.Mock(
        spec=etcd_transfer.serve, side_effect=lambda *args, **kwargs: contextlib.nullcontext(dict(SERVED)))
    return found


@pytest.fixture
def configure_loader_modules(show_pillar, connect, minions, utils, stream, master_opts):
    return {backup: {
        "__salt__": {"pillar.show_pillar": show_pillar},
        "__utils__": utils,
        "__opts__": master_opts,
        "__context__": {},
    }}


@pytest.fixture
def lock_dir():
    return backup._steps().lock_dir()


@pytest.fixture
def other_process(lock_dir):
    """Another operation on cluster etcd, in another process of this master."""
    found = OtherProcess(lock_dir, "add_member h4")
    yield found
    found.kill()


def in_orchestration(what="restore"):
    """The orchestration's first step: the cluster's operation, held until its last."""
    passed(backup.begin(what, cluster="etcd"))
    return etcd_operations.current("etcd")


# -- begin and end --------------------------------------------------------------------------------


def test_begin_locks_the_cluster_until_end(locks):
    ret = passed(backup.begin("restore", cluster="etcd"))
    assert ret["holder"].startswith("restore by ")
    assert locks.held == {"operation/etcd": ret["holder"]}
    assert ret["comment"] == "cluster etcd is locked for " + ret["holder"]
    assert passed(backup.end(cluster="etcd"))["comment"] == "cluster etcd: lock released (restore)"
    assert locks.held == {} and etcd_operations.current("etcd") is None


def test_begin_is_refused_while_another_process_holds_the_cluster(other_process, locks):
    error = failed(backup.begin("restore", cluster="etcd"))
    assert error.startswith("cluster etcd is busy: add_member h4 by ")
    assert "pid {} since".format(other_process.pid) in error
    assert locks.calls == []


def test_begin_on_a_cluster_that_does_not_answer_locks_the_master_only(etcd, locks):
    etcd.down = {"a1", "a2", "a3"}
    ret = passed(backup.begin("recover", cluster="etcd"))
    assert ret["comment"].endswith("; cluster etcd has no quorum to grant a lease: locked on this master only")
    assert etcd_operations.current("etcd") is not None


def test_end_without_a_lock_says_so():
    assert passed(backup.end(cluster="etcd"))["comment"] == "cluster etcd: no lock held by this run"


# -- snapshots ------------------------------------------------------------------------------------


def test_snapshot_is_taken_from_the_leader_verified_and_kept(etcd, stream, cluster_dir, locks):
    etcd.leader = "a2"
    ret = passed(backup.snapshot())
    entry = ret["snapshot"]
    assert stream.endpoints == [client_url(2)]
    assert (entry["member"], entry["endpoint"], entry["cluster"]) == ("h2", client_url(2), "etcd")
    assert (entry["revision"], entry["keys"], entry["bytes"]) == (42, 12, len(stream.data))
    assert entry["sha256"] == hashlib.sha256(stream.data[:-32]).hexdigest()
    assert ret["comment"].startswith("snapshot {} of cluster etcd verified: revision 42, 12 keys".format(entry["path"]))
    assert os.path.dirname(entry["path"]) == cluster_dir
    assert os.stat(entry["path"]).st_mode & 0o777 == 0o600
    assert os.stat(cluster_dir).st_mode & 0o777 == 0o700
    assert [e["file"] for e in etcd_snapshot.load(cluster_dir)] == [entry["file"]]
    # taken under the cluster's operation lock, released after
    assert list(stream.locked[0]) == ["operation/etcd"]
    assert locks.held == {} and etcd_operations.current("etcd") is None


def test_snapshot_from_a_named_source(stream):
    assert passed(backup.snapshot(source="h3"))["snapshot"]["member"] == "h3"
    assert stream.endpoints == [client_url(3)]


def test_snapshot_of_a_cluster_without_quorum_is_taken_from_the_member_with_the_most_data(etcd, stream):
    etcd.down = {"a1"}  # the leader
    etcd.raft_index = {"a2": 150, "a3": 300}
    etcd.members = [member(1), member(2), member(3)]
    passed(backup.snapshot())
    assert stream.endpoints == [client_url(3)]


def test_snapshot_is_refused_while_another_process_holds_the_cluster(other_process, stream, cluster_dir):
    error = failed(backup.snapshot())
    assert error.startswith("cluster etcd is busy: add_member h4 by ")
    assert stream.endpoints == []
    assert not os.path.exists(cluster_dir)


def test_a_snapshot_that_fails_verification_is_not_kept(stream, cluster_dir):
    stream.data = stream.data[:-7]
    assert "truncated or corrupt" in failed(backup.snapshot())
    assert os.listdir(cluster_dir) == []
    assert etcd_operations.current("etcd") is None


def test_snapshots_beyond_keep_are_pruned_oldest_first(cluster_dir, clock):
    taken = [passed(backup.snapshot())["snapshot"] for _ in range(4)]
    assert taken[-1]["pruned"] == [taken[0]["file"]]
    assert [e["file"] for e in etcd_snapshot.load(cluster_dir)] == [t["file"] for t in taken[1:]]
    assert not os.path.exists(taken[0]["path"])


def test_an_offsite_command_that_fails_fails_the_step_but_keeps_the_snapshot(etcd_pillar, utils, cluster_dir):
    etcd_pillar["backup"]["offsite_command"] = ["rsync", "{file}", "vault:/srv/etcd/"]
    utils["etcd_snapshot.offsite"].return_value = (12, "rsync: connection refused")
    error = failed(backup.snapshot())
    (entry,) = etcd_snapshot.load(cluster_dir)
    assert error.startswith("snapshot {} is verified and kept, but the offsite command failed (12): "
                            "rsync: connection refused".format(entry["path"]))
    utils["etcd_snapshot.offsite"].assert_called_once_with(["rsync", "{file}", "vault:/srv/etcd/"], entry["path"])
    assert os.path.exists(entry["path"])


def test_snapshot_from_a_source_not_in_the_cluster_is_refused(stream):
    assert "h9" in failed(backup.snapshot(source="h9"))
    assert stream.endpoints == []


def test_snapshots_lists_the_verified_ones_with_their_age():
    first = passed(backup.snapshot())["snapshot"]
    (listed,) = backup.snapshots()
    assert listed["file"] == first["file"] and listed["age_hours"] == 0.0


# -- restore: preflight ---------------------------------------------------------------------------


@pytest.fixture
def taken():
    """A verified snapshot of cluster etcd on the master."""
    return passed(backup.snapshot())["snapshot"]


@pytest.mark.parametrize("confirm", [None, "", "pg", "ETCD", True])
def test_restore_preflight_refuses_without_the_confirmation_naming_the_cluster(taken, minions, confirm):
    error = failed(backup.restore_preflight("latest", confirm=confirm))
    assert error == ("a restore replaces the data of cluster etcd with the snapshot's: confirm it with "
                     "etcd_confirm: etcd (got {!r})".format(confirm))
    assert minions.calls == []


def test_restore_preflight_honours_safeguard_unless_forced(taken, etcd_pillar):
    etcd_pillar["clusters"]["etcd"]["safeguard"] = True
    assert failed(backup.restore_preflight("latest", confirm="etcd")) == (
        "cluster etcd has safeguard: true: a restore replaces its data; etcd_force: true overrides it")
    passed(backup.restore_preflight("latest", confirm="etcd", force=True))


def test_restore_preflight_refuses_force_that_is_not_true_or_false(taken):
    assert failed(backup.restore_preflight("latest", confirm="etcd", force="yes")) == (
        "etcd_force: 'yes': expected true or false")


def test_restore_preflight_refuses_while_a_member_does_not_answer(taken, minions):
    minions.silent.add("h2")
    assert failed(backup.restore_preflight("latest", confirm="etcd")).startswith("h2 do(es) not answer")


def test_restore_preflight_refuses_a_snapshot_changed_since_it_was_verified(taken):
    # another intact snapshot in its place: etcd's own hash alone would not tell
    with open(taken["path"], "wb") as handle:
        handle.write(snapshot_bytes())
    error = failed(backup.restore_preflight(taken["file"], confirm="etcd"))
    assert error.startswith("{} changed since it was verified".format(taken["file"]))
    assert error.endswith("manifest {}): refused".format(taken["sha256"]))


def test_restore_preflight_refuses_a_corrupted_snapshot(taken):
    with open(taken["path"], "r+b") as handle:
        handle.truncate(4096)
    assert "truncated or corrupt" in failed(backup.restore_preflight("latest", confirm="etcd"))


@pytest.mark.parametrize("which", ["/etc/shadow", "etcd-20200101T000000000000Z.db"])
def test_restore_preflight_refuses_a_file_not_in_the_manifest(taken, which):
    assert "not a snapshot of the manifest" in failed(backup.restore_preflight(which, confirm="etcd"))


def test_restore_preflight_remembers_the_snapshot_for_the_orchestration(taken, minions):
    operation = in_orchestration()
    ret = passed(backup.restore_preflight("latest", confirm="etcd"))
    assert ret["snapshot"]["file"] == taken["file"]
    assert "will replace cluster etcd's data on h1, h2, h3" in ret["comment"]
    assert operation.context["snapshot"]["path"] == taken["path"]
    assert etcd_operations.current("etcd") is operation


def test_restore_preflight_pings_every_member_once(taken, minions):
    minions.calls.clear()
    passed(backup.restore_preflight("latest", confirm="etcd"))
    assert minions.called("test.ping") == ["h1", "h2", "h3"]


def test_a_refused_preflight_releases_the_orchestrations_lock(taken, locks):
    in_orchestration()
    assert failed(backup.restore_preflight("latest", confirm="pg")).endswith(
        "(got 'pg') (released the lock of restore)")
    assert locks.held == {} and etcd_operations.current("etcd") is None


# -- restore: patroni -----------------------------------------------------------------------------


def test_patroni_is_paused_on_its_clients_and_resumed(minions):
    operation = in_orchestration()
    ret = passed(backup.patroni_pause())
    # one pause acts for the whole patroni cluster: said once
    assert ret["done"] == ["patroni on pg1: paused"]
    assert [(c[0], c[2]) for c in minions.calls if c[1] == "cmd.run_all"] == [
        (pg, [["patronictl", "-c", "/etc/patroni/config.yml", "pause", "--wait"]]) for pg in ("pg1", "pg2")]
    assert operation.context["patroni_paused"] == ["patroni"]
    assert passed(backup.patroni_resume())["done"] == ["patroni on pg1: resumed"]


def test_patroni_is_not_paused_through_a_cluster_without_quorum(etcd, minions):
    operation = in_orchestration()
    etcd.down = {"a2", "a3"}
    ret = passed(backup.patroni_pause())
    assert ret["comment"].startswith("patroni not paused: etcd has no quorum")
    assert minions.called("cmd.run_all") == []
    assert passed(backup.patroni_resume())["comment"] == "nothing paused to resume"
    assert operation.context["patroni_paused"] == []


def test_patroni_that_could_not_pause_is_not_resumed(minions):
    operation = in_orchestration()
    minions.answers["cmd.run_all"] = {"retcode": 1, "stdout": "", "stderr": "DCS is not accessible"}
    ret = passed(backup.patroni_pause())
    assert ret["done"] == ["patroni (pg1,pg2) not paused: pg1: DCS is not accessible; pg2: DCS is not accessible"]
    assert operation.context["patroni_paused"] == []
    minions.calls.clear()
    assert passed(backup.patroni_resume())["comment"] == "nothing paused to resume"
    assert minions.called("cmd.run_all") == []


def test_patroni_that_was_paused_and_does_not_resume_fails_the_step(minions):
    in_orchestration()
    backup.patroni_pause()
    minions.answers["cmd.run_all"] = {"retcode": 1, "stdout": "", "stderr": "no"}
    assert failed(backup.patroni_resume()).startswith("patroni (pg1,pg2) not resumed: pg1: no; pg2: no")


# -- restore: the members -------------------------------------------------------------------------


@pytest.fixture
def chosen(taken):
    """An orchestration whose preflight chose ``taken``."""
    operation = in_orchestration()
    passed(backup.restore_preflight("latest", confirm="etcd"))
    return operation


def test_restore_members_refuses_without_a_chosen_snapshot(taken, minions, utils):
    error = "no verified snapshot chosen for this restore: run the whole orchestration"
    assert failed(backup.restore_members()).startswith(error)
    in_orchestration()
    assert failed(backup.restore_members()).startswith(error)
    assert minions.calls == []
    utils["etcd_transfer.serve"].assert_not_called()


@pytest.mark.parametrize("after_the_stop", ["running", "silent"])
def test_restore_members_refuses_when_an_etcd_still_runs_after_the_stop(chosen, minions, utils, after_the_stop):
    if after_the_stop == "running":
        minions.per_minion[("h2", "etcd_cluster.local_state")] = dict(STOPPED, running=True, unit="deactivating")
    else:
        minions.on_call["service.stop"] = lambda minion, arg, kwarg: minions.silent.add("h2")
    error = failed(backup.restore_members())
    assert error.startswith("etcd is still running, or its host did not say, on h2 (stop answered: ")
    assert ": nothing restored" in error
    assert minions.called("service.stop") == ["h1", "h2", "h3"]
    assert minions.called("etcd_cluster.restore") == []
    utils["etcd_transfer.serve"].assert_not_called()


def test_restore_members_restores_every_member_from_the_same_file(chosen, minions, utils, taken):
    ret = passed(backup.restore_members())
    token = ret["token"]
    assert token.startswith(etcd_settings.initial_cluster_token(
        etcd_settings.cluster_named(pillar(), "etcd")) + "-r")
    assert minions.called("etcd_cluster.restore") == ["h1", "h2", "h3"]
    for call in minions.calls:
        if call[1] == "etcd_cluster.restore":
            assert call[2] == ["10.77.0.1", SERVED["port"], SERVED["path"], SERVED["fingerprint"],
                               SERVED["sha256"], token]
    utils["etcd_transfer.serve"].assert_called_once()
    assert utils["etcd_transfer.serve"].call_args.args[0] == taken["path"]
    assert ret["changes"] == {"restored": ["h1", "h2", "h3"]}


def test_restore_members_stops_at_the_first_member_that_fails(chosen, minions):
    minions.per_minion[("h2", "etcd_cluster.restore")] = "'etcd_cluster.restore' is not available."
    error = failed(backup.restore_members())
    assert error.startswith("etcd_cluster.restore on h2 failed: 'etcd_cluster.restore' is not available.")
    assert minions.called("etcd_cluster.restore") == ["h1", "h2"]


def test_restore_members_refuses_a_member_that_does_not_know_its_master(chosen, minions):
    minions.per_minion[("h1", "config.get")] = ""
    assert failed(backup.restore_members()).startswith(
        "h1 does not know its master's address (config.get master_ip)")
    assert minions.called("etcd_cluster.restore") == []


def test_restore_members_stops_at_a_lost_lock(chosen, minions, locks):
    locks.keepers["operation/etcd"].check.side_effect = errors.EtcdLockLost("lock operation/etcd is lost")
    assert failed(backup.restore_members()).startswith("lock operation/etcd is lost")
    assert minions.calls[-1][1] == "test.ping"  # nothing after the preflight's pings


def test_start_members_starts_every_member_at_once_and_checks_health(minions):
    ret = passed(backup.start_members())
    assert ret["comment"] == "cluster etcd is healthy: 3 voting members, leader etcd-1"
    assert [c[3] for c in minions.calls if c[1] == "service.start"] == [{"no_block": True}] * 3


def test_start_members_fails_naming_a_member_that_does_not_answer(minions):
    minions.silent.add("h3")
    assert failed(backup.start_members()) == "h3 did not answer the start"


# -- recovery from a lost quorum ------------------------------------------------------------------


@pytest.fixture
def five(etcd, etcd_pillar):
    """A 5-member cluster: h1..h5 in the pillar, etcd-1..etcd-5 in etcd, etcd-1 leads."""
    etcd_pillar["clusters"]["etcd"]["members"] = pillar(5)["clusters"]["etcd"]["members"]
    etcd.members = [member(seq) for seq in range(1, 6)]
    return etcd


def test_recover_preflight_refuses_a_healthy_cluster():
    assert failed(backup.recover_preflight()) == "cluster etcd is healthy: nothing to recover"


def test_recover_preflight_refuses_a_cluster_that_has_its_quorum(etcd):
    etcd.down = {"a3"}
    error = failed(backup.recover_preflight())
    assert error.startswith("cluster etcd has its quorum (")
    assert "recovery is for a lost quorum" in error


def test_recover_preflight_refuses_while_another_old_member_runs(five):
    five.down = {"a1", "a2", "a3"}
    five.raft_index = {"a4": 150, "a5": 300}
    assert failed(backup.recover_preflight()).startswith(
        "h4 still runs: recovery keeps h5's data alone and refuses while other old members run")


def test_recover_preflight_keeps_the_survivor_with_the_most_data(five):
    operation = in_orchestration("recover")
    five.down = {"a1", "a2", "a3", "a4"}
    five.raft_index = {"a4": 150, "a5": 300}
    ret = passed(backup.recover_preflight())
    assert ret["survivor"] == "h5"
    assert ret["comment"] == "h5 (raft index 300) survives: cluster etcd is rebuilt from its data"
    assert operation.context["survivor"] == "h5"


def test_recover_preflight_refuses_a_survivor_that_does_not_answer(five):
    five.down = {"a1", "a2", "a3", "a4"}
    assert failed(backup.recover_preflight(survivor="h4")) == "survivor h4 does not answer (up: h5)"


def test_recover_preflight_refuses_under_safeguard_unless_forced(five, etcd_pillar):
    etcd_pillar["clusters"]["etcd"]["safeguard"] = True
    five.down = {"a1", "a2", "a3", "a4"}
    assert "safeguard: true: a recovery purges the other members' old data" in failed(
        backup.recover_preflight())
    assert passed(backup.recover_preflight(force=True))["survivor"] == "h5"


def test_recover_preflight_refuses_when_nothing_survived(etcd):
    etcd.down = {"a1", "a2", "a3"}
    assert "nothing survived to recover from; restore the last snapshot" in failed(backup.recover_preflight())


@pytest.fixture
def survivor_h1(etcd):
    """A recovery whose preflight kept h1: now a cluster of one."""
    operation = in_orchestration("recover")
    operation.context["survivor"] = "h1"
    etcd.members = [member(1)]
    return operation


@pytest.mark.parametrize("step", ["survivor_snapshot", "force_new_cluster", "rejoin"])
def test_recovery_steps_refuse_without_a_chosen_survivor(step, minions):
    assert failed(getattr(backup, step)()).startswith("no survivor chosen")
    assert minions.calls == []


def test_survivor_snapshot_is_of_the_survivors_data(survivor_h1, stream):
    assert passed(backup.survivor_snapshot())["snapshot"]["member"] == "h1"
    assert stream.endpoints == [client_url(1)]


def test_force_new_cluster_runs_on_the_survivor_only(survivor_h1, minions):
    ret = passed(backup.force_new_cluster())
    assert minions.called("etcd_cluster.force_new_cluster") == ["h1"]
    assert ret["changes"] == {"force_new_cluster": "h1"}


def test_force_new_cluster_stops_at_a_lost_lock(survivor_h1, minions, locks):
    locks.keepers["operation/etcd"].check.side_effect = errors.EtcdLockLost("lock operation/etcd is lost")
    failed(backup.force_new_cluster())
    assert minions.calls == []


def test_rejoin_adds_the_others_back_and_leaves_a_silent_minion_for_later(survivor_h1, etcd, minions):
    minions.silent.add("h3")
    minions.on_call["state.apply"] = lambda minion, arg, kwarg: etcd.start(int(minion[1:]))
    ret = passed(backup.rejoin())
    assert (ret["rejoined"], ret["later"]) == (["h2"], ["h3"])
    assert ret["comment"] == ("rejoined: h2; not answering, to add later with etcd.add_member: h3")
    assert ret["changes"] == {"rejoined": ["h2"]}
    assert [c[3] for c in minions.calls if c[1] == "etcd_cluster.purge"] == [{"mode": "purge"}] * 2
    rejoined = etcd.find(peer_url(2))
    assert rejoined["is_learner"] is False and rejoined["name"] == "etcd-2"
    assert etcd.find(peer_url(3)) is None
    assert minions.called("state.apply") == ["h2"]


def test_rejoin_fails_naming_a_highstate_that_failed(survivor_h1, minions):
    minions.per_minion[("h2", "state.apply")] = {"ret": {"etcd-service-running": {
        "result": False, "comment": "etcd.service failed"}}, "retcode": 2}
    error = failed(backup.rejoin())
    assert error.startswith("highstate of h2 failed: etcd.service failed; done so far: nothing")
