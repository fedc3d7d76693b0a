"""
etcd_cluster, the execution module: a thin CLI over the membership layer (whose real
functions are its ``__utils__``), and this host's own etcd (``local_state``, ``purge``,
``write_env``, ``restore``, ``force_new_cluster``). etcd is FakeEtcd behind an autospec of
the real client; systemd, pgrep, chown and file removal are Mocks specced on Salt's
functions, acting on a real temporary directory tree; etcd's restore tool and the transfer
from the master are fakes that write what the real ones write.
"""

import hashlib
import os
import shutil
import stat
import tarfile
from unittest import mock

import pytest
import salt.modules.aptpkg
import salt.modules.cmdmod
import salt.modules.config
import salt.modules.file
import salt.modules.match
import salt.modules.systemd_service
import yaml
from salt.exceptions import CommandExecutionError, SaltInvocationError

import etcd_cluster
import etcd_errors as errors
import etcd_settings
import etcd_snapshot
import etcd_transfer
import etcd_validate
from etcd_fakes import client_url, member, peer_url, pillar, real_utils

NEW_PEER = peer_url(4)


class Host:
    """This host's systemd unit, etcd processes and files, as cmd.run_all, service.* and
    file.remove see them."""

    def __init__(self):
        self.unit = "inactive"
        self.enabled = "enabled"
        self.pids = []
        self.stays_up = False
        self.removed = []
        self.run_all = mock.Mock(spec=salt.modules.cmdmod.run_all, side_effect=self._run_all)
        self.stop = mock.Mock(spec=salt.modules.systemd_service.stop, side_effect=self._stop)
        self.disable = mock.Mock(spec=salt.modules.systemd_service.disable, side_effect=self._disable)
        self.remove = mock.Mock(spec=salt.modules.file.remove, side_effect=self._remove)

    def _run_all(self, cmd, python_shell=None, ignore_retcode=False, output_loglevel="debug", **kwargs):
        assert python_shell is False, "a command line is never given to a shell"
        if cmd[0] == "systemctl":
            return {"retcode": 0, "stderr": "", "stdout": (
                "ActiveState={}\nSubState=x\nMainPID={}\nUnitFileState={}\n".format(
                    self.unit, self.pids[0] if self.pids else 0, self.enabled))}
        if cmd[:3] == ["pgrep", "-x", "etcd"]:
            return {"retcode": 0 if self.pids else 1, "stderr": "",
                    "stdout": "\n".join(str(p) for p in self.pids)}
        raise AssertionError("unexpected command {}".format(cmd))

    def _stop(self, name, no_block=None):
        if not self.stays_up:
            self.unit, self.pids = "inactive", []
        return True

    def _disable(self, name, no_block=False, root=None, **kwargs):
        self.enabled = "disabled"
        return True

    def _remove(self, path, **kwargs):
        self.removed.append(path)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
        return True


@pytest.fixture
def host():
    return Host()




@pytest.fixture
def root(tmp_path, monkeypatch):
    """The host's file tree, in a temporary directory: the formula's paths point there."""
    for key, path in etcd_settings.PATHS.items():
        monkeypatch.setitem(etcd_settings.PATHS, key, str(tmp_path) + path)
    os.makedirs(str(tmp_path) + "/etc/etcd/pki")
    return tmp_path


@pytest.fixture
def etcd_pillar(root):
    os.makedirs(str(root / "var/lib/etcd"))
    return pillar(data_dir=str(root / "var/lib/etcd/data"), clean=True)


@pytest.fixture
def utils(root):
    found = real_utils()
    real_rule = etcd_validate.path_problem

    def path_problem(value, *args, **kwargs):
        # the temporary tree stands for a directory of etcd's own: the rule still applies
        # to what is below it, and to every other path as it is
        if isinstance(value, str) and value.startswith(str(root) + "/"):
            value = "/srv/unit-test" + value[len(str(root)):]
        return real_rule(value, *args, **kwargs)

    found["etcd_validate.path_problem"] = path_problem
    return found


@pytest.fixture
def config_get(etcd_pillar):
    handed = {}
    values = {"etcd": etcd_pillar, "etcd_client": handed}
    return mock.Mock(spec=salt.modules.config.get,
                     side_effect=lambda key, default="", **kw: values.get(key, default))


@pytest.fixture
def matches():
    return {"glob": mock.Mock(spec=salt.modules.match.glob, return_value=False),
            "list": mock.Mock(spec=salt.modules.match.list_, return_value=True)}


@pytest.fixture
def configure_loader_modules(utils, config_get, host, matches, connect):
    return {
        etcd_cluster: {
            "__utils__": utils,
            "__salt__": {
                "config.get": config_get,
                "match.glob": matches["glob"],
                "match.list": matches["list"],
                "cmd.run_all": host.run_all,
                "service.stop": host.stop,
                "service.disable": host.disable,
                "file.remove": host.remove,
            },
            "__opts__": {"id": "h1", "test": False},
            "__context__": {},
        }
    }


# -- settings -------------------------------------------------------------------------------------


def test_settings_resolve_this_minions_member_and_are_empty_for_others(etcd_pillar):
    settings = etcd_cluster.settings()
    assert settings["member_name"] == "etcd-1" and settings["peer_url"] == peer_url(1)
    assert settings["data_dir"] == etcd_pillar["clusters"]["etcd"]["data_dir"]
    assert etcd_cluster.settings(minion_id="master") == {}


def test_settings_are_resolved_once_per_pillar_and_again_when_it_changes(etcd_pillar, config_get):
    first = etcd_cluster.settings()
    assert etcd_cluster.settings() is first
    etcd_pillar["clusters"]["etcd"]["heartbeat_interval"] = 150
    assert etcd_cluster.settings()["heartbeat_interval"] == 150


def test_client_settings_say_which_clients_this_minion_is(etcd_pillar, matches):
    etcd_pillar["clusters"]["etcd"]["clients"] = {
        "patroni": {"target": ["pg1", "pg2"], "tgt_type": "list"}}
    found = etcd_cluster.client_settings()
    assert found["kinds"]["patroni"]["here"] is True
    matches["list"].assert_called_with("pg1,pg2")
    # a kind the cluster has no client of targets nobody
    assert found["kinds"]["prometheus"]["here"] is False


def test_pki_settings_carry_the_masters_admin_certificate(etcd_pillar):
    etcd_pillar["pki"]["ca_dir"] = "/srv/ca"
    found = etcd_cluster.pki_settings()
    assert found["admin_dir"] == "/srv/ca/admin"
    assert found["admin_tls"]["cert_file"] == "/srv/ca/admin/client.crt"


def test_validate_raises_naming_every_problem_at_once(etcd_pillar):
    # validation applies the path rule itself: the temporary tree is no data dir to it
    etcd_pillar["clusters"]["etcd"]["data_dir"] = "/var/lib/etcd/data"
    etcd_pillar["clusters"]["etcd"]["init"] = "fresh"
    etcd_pillar["clusters"]["etcd"]["members"]["h2"]["seq"] = 1
    with pytest.raises(CommandExecutionError) as err:
        etcd_cluster.validate()
    assert str(err.value).startswith("pillar etcd has 2 problem(s):\n- ")
    assert len(err.value.info["errors"]) == 2


def test_validate_checks_the_minion_is_a_member_unless_told_not_to(etcd_pillar):
    etcd_pillar["clusters"]["etcd"]["data_dir"] = "/var/lib/etcd/data"
    with pytest.raises(CommandExecutionError, match="minion master is in no cluster"):
        etcd_cluster.validate(minion_id="master")
    assert etcd_cluster.validate(minion_id="") == {"valid": True, "warnings": []}


# -- reading the cluster ------------------------------------------------------------------------


def test_endpoints_and_certificates_default_from_the_minions_pillar(connect, root):
    assert [m["name"] for m in etcd_cluster.members()] == ["etcd-1", "etcd-2", "etcd-3"]
    connect.assert_called_once_with(
        [client_url(1), client_url(2), client_url(3)],
        ca_file=str(root) + "/etc/etcd/pki/ca.crt", cert_file=str(root) + "/etc/etcd/pki/client.crt",
        key_file=str(root) + "/etc/etcd/pki/client.key", timeout=5.0, retry_timeout=60,
        credentials=None)


def test_a_minion_in_no_cluster_must_name_endpoints_or_cluster(connect):
    with mock.patch.dict(etcd_cluster.__opts__, {"id": "master"}):
        with pytest.raises(SaltInvocationError, match="pass endpoints= or cluster="):
            etcd_cluster.members()
        etcd_cluster.members(cluster="etcd")
    assert connect.call_args.args[0][0] == client_url(1)


def test_health_is_the_layers_without_its_raw_views(etcd):
    etcd.down = {"a3"}
    found = etcd_cluster.health()
    assert found["healthy"] is False and found["members"]["etcd-3"]["healthy"] is False
    assert "views" not in found


def test_leader_is_the_member_entry_with_the_endpoint_that_leads(etcd):
    etcd.leader = "a2"
    found = etcd_cluster.leader()
    assert (found["name"], found["endpoint"]) == ("etcd-2", client_url(2))


def test_keys_are_put_read_and_deleted(etcd):
    assert etcd_cluster.put("a", 10) is True
    assert etcd_cluster.get("a") == "10"
    assert etcd_cluster.delete("a") == 1
    assert etcd_cluster.get("a") is None


# -- changing the membership ------------------------------------------------------------------------


def test_member_add_adds_a_learner_and_gives_the_initial_cluster(etcd):
    added = etcd_cluster.member_add("etcd-4", NEW_PEER)
    etcd.client.member_add.assert_called_once_with([NEW_PEER], learner=True, deadline=60.0)
    assert added["added"] is True
    assert added["initial_cluster"].endswith(",etcd-4=" + NEW_PEER)


@pytest.mark.parametrize("bad", ["10.77.0.14:2380", "", [], ["https://ok:2380", 5]])
def test_member_add_refuses_bad_peer_urls_before_connecting(bad, connect):
    with pytest.raises(SaltInvocationError, match="peer_urls"):
        etcd_cluster.member_add("etcd-4", bad)
    connect.assert_not_called()


def test_member_add_beside_a_pending_learner_fails_with_the_layers_refusal(etcd):
    etcd.members.append(member(5, learner=True, started=False))
    with pytest.raises(errors.EtcdUnsafe, match="never started"):
        etcd_cluster.member_add("etcd-4", NEW_PEER)
    etcd.client.member_add.assert_not_called()
    etcd.client.member_remove.assert_not_called()


def test_member_remove_refuses_two_to_one_unless_forced(etcd):
    etcd.members = [member(1), member(2)]
    with pytest.raises(CommandExecutionError, match="2-member cluster is unsafe.*force=True"):
        etcd_cluster.member_remove("etcd-2")
    etcd.client.member_remove.assert_not_called()
    assert etcd_cluster.member_remove("etcd-2", force=True)["removed"] is True


def test_member_promote_of_an_unknown_member_names_the_members():
    with pytest.raises(CommandExecutionError, match=r"no etcd member etcd-9 \(members: etcd-1, etcd-2, etcd-3\)"):
        etcd_cluster.member_promote("etcd-9")


def test_removal_check_changes_nothing(etcd):
    assert etcd_cluster.removal_check("etcd-3")["safe"] is True
    etcd.client.member_remove.assert_not_called()


# -- this host's etcd ---------------------------------------------------------------------------------


def data_dir(etcd_pillar):
    return etcd_pillar["clusters"]["etcd"]["data_dir"]


def holds_a_member(etcd_pillar):
    path = data_dir(etcd_pillar)
    os.makedirs(os.path.join(path, "member", "wal"))
    os.makedirs(os.path.join(path, "member", "snap"))
    with open(os.path.join(path, "member", "wal", "0.wal"), "w") as handle:
        handle.write("log")
    return path


def test_local_state_of_a_host_without_data_or_etcd(etcd_pillar):
    state = etcd_cluster.local_state()
    assert (state["data"], state["running"], state["entries"], state["data_problem"]) == (False, False, [], None)
    assert (state["minion"], state["member_name"]) == ("h1", "etcd-1")


def test_local_state_sees_the_member_and_the_token_of_its_config(etcd_pillar, root):
    holds_a_member(etcd_pillar)
    with open(etcd_settings.PATHS["config_file"], "w") as handle:
        handle.write("name: etcd-1\ninitial-cluster-token: etcd-1234abcd\n")
    state = etcd_cluster.local_state()
    assert state["data"] is True and state["entries"] == ["member"]
    assert state["token"] == "etcd-1234abcd"


@pytest.mark.parametrize("unit, pids", [("active", []), ("activating", []), ("deactivating", []),
                                        ("inactive", [4242]), ("failed", [4242])])
def test_local_state_is_running_while_the_unit_or_an_etcd_process_may_serve(host, unit, pids):
    host.unit, host.pids = unit, pids
    assert etcd_cluster.local_state()["running"] is True


def test_local_state_names_what_is_not_etcds_in_the_data_dir(etcd_pillar):
    path = holds_a_member(etcd_pillar)
    open(os.path.join(path, "notes.txt"), "w").close()
    assert "holds what is not etcd's data (notes.txt)" in etcd_cluster.local_state()["data_problem"]


def test_local_state_of_a_minion_in_no_cluster_is_an_invocation_error():
    with mock.patch.dict(etcd_cluster.__opts__, {"id": "master"}):
        with pytest.raises(SaltInvocationError, match="in no etcd cluster"):
            etcd_cluster.local_state()


# -- purge ----------------------------------------------------------------------------------------------


@pytest.fixture
def left_the_cluster(etcd, root):
    """h1 is out of the membership, and this host can ask the others (its client cert)."""
    etcd.members = [member(2), member(3)]
    for key in ("ca_file", "client_cert_file", "client_key_file"):
        open(etcd_settings.PATHS[key], "w").close()


def archives_of(etcd_pillar):
    parent, name = os.path.split(data_dir(etcd_pillar))
    return sorted(os.path.join(parent, f) for f in os.listdir(parent) if f.startswith(name + ".removed-"))


def nothing_done(host, etcd_pillar):
    host.stop.assert_not_called()
    host.remove.assert_not_called()
    assert archives_of(etcd_pillar) == []


def test_clean_archives_then_purges_a_stopped_member_that_left(host, etcd_pillar, left_the_cluster):
    path = holds_a_member(etcd_pillar)
    archived_before_removal = []
    host.remove.side_effect = lambda p, **kw: (
        archived_before_removal.append((p, bool(archives_of(etcd_pillar)))), host._remove(p))[1]
    done = etcd_cluster.purge()
    (archive,) = archives_of(etcd_pillar)
    assert done["archive"] == archive
    assert stat.S_IMODE(os.stat(archive).st_mode) == 0o600
    with tarfile.open(archive) as tar:
        assert {"member", "member/wal", "member/wal/0.wal", "member/snap"} <= set(tar.getnames())
    assert (path, True) in archived_before_removal
    assert not os.path.exists(path)
    assert etcd_settings.PATHS["pki_dir"] in host.removed
    assert "data dir {} purged".format(path) in done["done"]


def test_clean_refuses_under_safeguard(host, etcd_pillar, left_the_cluster):
    holds_a_member(etcd_pillar)
    etcd_pillar["clusters"]["etcd"]["safeguard"] = True
    with pytest.raises(CommandExecutionError, match="safeguard: true: etcd.clean purges nothing"):
        etcd_cluster.purge()
    nothing_done(host, etcd_pillar)


def test_clean_refuses_without_clean_true(host, etcd_pillar, left_the_cluster):
    holds_a_member(etcd_pillar)
    etcd_pillar["clusters"]["etcd"]["clean"] = False
    with pytest.raises(CommandExecutionError, match="clean: false: etcd.clean purges nothing"):
        etcd_cluster.purge()
    nothing_done(host, etcd_pillar)


@pytest.mark.parametrize("unit, pids", [("activating", []), ("inactive", [4242])])
def test_clean_refuses_while_etcd_may_hold_or_serve_data(host, etcd_pillar, left_the_cluster, unit, pids):
    holds_a_member(etcd_pillar)
    host.unit, host.pids = unit, pids
    with pytest.raises(CommandExecutionError, match="may hold or serve data"):
        etcd_cluster.purge()
    nothing_done(host, etcd_pillar)


def test_clean_refuses_a_member_still_in_the_membership(host, etcd, etcd_pillar, left_the_cluster):
    holds_a_member(etcd_pillar)
    etcd.members.append(member(1))
    with pytest.raises(CommandExecutionError, match="is still in cluster etcd's membership: remove it first"):
        etcd_cluster.purge()
    nothing_done(host, etcd_pillar)


def test_clean_refuses_when_the_cluster_cannot_be_asked(host, etcd, etcd_pillar, left_the_cluster):
    holds_a_member(etcd_pillar)
    etcd.down = {"a2", "a3"}
    with pytest.raises(CommandExecutionError, match="cannot tell whether the cluster still lists it"):
        etcd_cluster.purge()
    nothing_done(host, etcd_pillar)


def test_clean_refuses_without_a_client_certificate_to_ask_with(host, etcd_pillar, left_the_cluster):
    holds_a_member(etcd_pillar)
    os.remove(etcd_settings.PATHS["client_cert_file"])
    with pytest.raises(CommandExecutionError, match="no client certificate here"):
        etcd_cluster.purge()
    nothing_done(host, etcd_pillar)


@pytest.mark.parametrize("mode", ["clean", "retire", "purge"])
def test_a_data_dir_holding_foreign_files_is_never_purged(host, etcd_pillar, left_the_cluster, mode):
    path = holds_a_member(etcd_pillar)
    open(os.path.join(path, "member", "keep.me"), "w").close()
    with pytest.raises(CommandExecutionError, match=r"holds what is not etcd's data \(member/keep.me\)"):
        etcd_cluster.purge(mode=mode)
    nothing_done(host, etcd_pillar)
    assert os.path.exists(os.path.join(path, "member", "keep.me"))


@pytest.mark.parametrize("bad", ["/var/lib", "/", "/etc/etcd"])
def test_a_data_dir_the_formula_may_not_delete_is_refused(host, etcd_pillar, bad):
    etcd_pillar["clusters"]["etcd"]["data_dir"] = bad
    with pytest.raises(CommandExecutionError, match="data_dir '{}': .*nothing deleted".format(bad)):
        etcd_cluster.purge(mode="purge")
    host.stop.assert_not_called()
    host.remove.assert_not_called()


def test_retire_keeps_the_data_under_safeguard_but_archives_it(host, etcd_pillar, left_the_cluster):
    path = holds_a_member(etcd_pillar)
    etcd_pillar["clusters"]["etcd"]["safeguard"] = True
    for key in ("env_file", "unit_file", "config_file"):
        os.makedirs(os.path.dirname(etcd_settings.PATHS[key]), exist_ok=True)
        open(etcd_settings.PATHS[key], "w").close()
    host.unit = "active"
    done = etcd_cluster.purge(mode="retire")
    assert len(archives_of(etcd_pillar)) == 1
    assert os.path.exists(os.path.join(path, "member", "wal", "0.wal"))
    assert "data dir {} kept: safeguard is true".format(path) in done["done"]
    # etcd stopped and disabled; its etcdctl env goes; unit, config and pki stay for a re-add
    host.stop.assert_called_once_with("etcd")
    assert host.enabled == "disabled"
    assert host.removed == [etcd_settings.PATHS["env_file"]]


def test_retire_refuses_a_member_still_in_the_membership(host, etcd, etcd_pillar, left_the_cluster):
    holds_a_member(etcd_pillar)
    etcd.members.append(member(1))
    with pytest.raises(CommandExecutionError, match="still in cluster etcd's membership"):
        etcd_cluster.purge(mode="retire")
    nothing_done(host, etcd_pillar)


def test_purge_ignores_safeguard_and_membership_but_still_archives(host, etcd, etcd_pillar, root):
    path = holds_a_member(etcd_pillar)
    etcd_pillar["clusters"]["etcd"].update(safeguard=True, clean=False)
    host.unit, host.pids = "active", [4242]
    done = etcd_cluster.purge(mode="purge")
    host.stop.assert_called_once_with("etcd")
    assert len(archives_of(etcd_pillar)) == 1
    assert not os.path.exists(path)
    # without a client certificate the cluster was not asked: the note would say it still lists h1
    assert done["notes"] == []


def test_purge_notes_a_member_the_cluster_still_lists(host, etcd, etcd_pillar, left_the_cluster):
    holds_a_member(etcd_pillar)
    etcd.members.append(member(1))
    done = etcd_cluster.purge(mode="purge")
    assert done["notes"] == ["etcd-1 was still a voting member of cluster etcd: remove it from the "
                             "membership (etcd.remove_member) unless the whole cluster goes"]


def test_nothing_is_deleted_when_etcd_does_not_stop(host, etcd_pillar):
    path = holds_a_member(etcd_pillar)
    host.unit, host.stays_up = "active", True
    with pytest.raises(CommandExecutionError, match="still active after a stop .*nothing deleted"):
        etcd_cluster.purge(mode="purge")
    host.remove.assert_not_called()
    assert archives_of(etcd_pillar) == [] and os.path.exists(path)


def test_purge_in_test_mode_says_what_it_would_do_and_does_nothing(host, etcd_pillar, left_the_cluster):
    path = holds_a_member(etcd_pillar)
    planned = etcd_cluster.purge(test=True)
    assert planned["plan"]["archive"] == path and planned["plan"]["delete_data"] is True
    assert planned["plan"]["stop"] is True  # the unit is enabled
    nothing_done(host, etcd_pillar)
    assert os.path.exists(path)


def test_purge_of_a_host_without_data_makes_no_archive(host, etcd_pillar, left_the_cluster):
    host.enabled = "disabled"
    done = etcd_cluster.purge()
    assert done["archive"] is None and archives_of(etcd_pillar) == []
    host.stop.assert_not_called()


def test_an_unknown_mode_or_a_minion_in_no_cluster_is_refused(host):
    with pytest.raises(SaltInvocationError, match="mode: 'all': expected clean, retire or purge"):
        etcd_cluster.purge(mode="all")
    with mock.patch.dict(etcd_cluster.__opts__, {"id": "master"}):
        with pytest.raises(SaltInvocationError, match="its paths are unknown"):
            etcd_cluster.purge()
    host.stop.assert_not_called()


# -- the etcdctl environment ------------------------------------------------------------------------


ENDPOINTS = [client_url(1), client_url(2)]


@pytest.fixture
def env_file(root):
    os.makedirs(os.path.dirname(etcd_settings.PATHS["env_file"]))
    return etcd_settings.PATHS["env_file"]


def test_write_env_writes_the_file_highstate_writes_0644(env_file, etcd_pillar):
    previous = os.umask(0o077)
    try:
        assert etcd_cluster.write_env(ENDPOINTS) == {"changed": True, "endpoints": ENDPOINTS}
    finally:
        os.umask(previous)
    with open(env_file) as handle:
        text = handle.read()
    assert text == etcd_cluster.__utils__["etcd_render.env_file"](ENDPOINTS, etcd_cluster.settings()["paths"])
    assert "export ETCDCTL_ENDPOINTS={},{}\n".format(*ENDPOINTS) in text
    assert stat.S_IMODE(os.stat(env_file).st_mode) == 0o644


def test_write_env_takes_a_comma_separated_list(env_file):
    assert etcd_cluster.write_env(" {} , {} ".format(*ENDPOINTS))["endpoints"] == ENDPOINTS


def test_write_env_changes_nothing_when_the_file_is_as_wanted(env_file):
    etcd_cluster.write_env(ENDPOINTS)
    before = os.stat(env_file)
    assert etcd_cluster.write_env(ENDPOINTS)["changed"] is False
    after = os.stat(env_file)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_write_env_replaces_the_file_atomically_when_it_differs(env_file):
    etcd_cluster.write_env(ENDPOINTS)
    before = os.stat(env_file).st_ino
    assert etcd_cluster.write_env(ENDPOINTS[:1])["changed"] is True
    # a new file renamed over the old one: a login shell never reads half of it
    assert os.stat(env_file).st_ino != before
    assert os.listdir(os.path.dirname(env_file)) == [os.path.basename(env_file)]
    with open(env_file) as handle:
        assert "export ETCDCTL_ENDPOINTS={}\n".format(ENDPOINTS[0]) in handle.read()


@pytest.mark.parametrize("bad", ["10.77.0.11:2379", "", [], ["https://10.77.0.11:2379 x"],
                                 ["https://10.77.0.11:2379\nexport X=1"], [2379], "ftp://10.77.0.11:2379"])
def test_write_env_refuses_what_is_no_url_and_writes_nothing(env_file, bad):
    with pytest.raises(SaltInvocationError, match="expected one or more http\\(s\\)://host:port URLs"):
        etcd_cluster.write_env(bad)
    assert not os.path.exists(env_file)


@pytest.mark.parametrize("bad", ["https://10.77.0.11:2379;reboot", "https://$(reboot):2379",
                                 "https://`reboot`:2379", "https://", "https://10.77.0.11:port"])
def test_write_env_refuses_an_endpoint_that_is_no_host_and_port(env_file, bad):
    with pytest.raises(SaltInvocationError):
        etcd_cluster.write_env([client_url(1), bad])
    assert not os.path.exists(env_file)


def test_write_env_of_a_minion_in_no_cluster_is_refused(env_file):
    with mock.patch.dict(etcd_cluster.__opts__, {"id": "master"}):
        with pytest.raises(SaltInvocationError, match="minion master is in no etcd cluster"):
            etcd_cluster.write_env(ENDPOINTS)
    assert not os.path.exists(env_file)


# -- restore and recovery ----------------------------------------------------------------------------


def snapshot_bytes(db=b"restored db " * 400):
    return db + hashlib.sha256(db).digest()


@pytest.fixture
def member_host(host, root, etcd_pillar, utils, monkeypatch, etcd):
    """What restore and force_new_cluster use besides the host: systemd's start, chown, the
    package's version, etcd's restore tool (it writes a data dir), the transfer from the master."""
    tool = root / "usr" / "bin" / "etcdutl"
    os.makedirs(tool.parent)
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    monkeypatch.setattr(etcd_snapshot, "TOOLS", (str(tool),))
    for key in ("ca_file", "client_cert_file", "client_key_file"):
        open(etcd_settings.PATHS[key], "w").close()
    host.restored = []

    def run_all(cmd, **kwargs):
        if cmd[1:3] == ["snapshot", "restore"]:
            host.restored.append(cmd)
            if host.restore_fails:
                return {"retcode": 1, "stdout": "", "stderr": "Error: snapshot file has wrong checksum"}
            data_dir = cmd[cmd.index("--data-dir") + 1]
            os.makedirs(os.path.join(data_dir, "member", "snap"))
            os.makedirs(os.path.join(data_dir, "member", "wal"))
            with open(os.path.join(data_dir, "member", "snap", "db"), "wb") as handle:
                handle.write(b"restored")
            return {"retcode": 0, "stdout": "", "stderr": ""}
        return host._run_all(cmd, **kwargs)

    host.restore_fails = False
    host.run_all.side_effect = run_all
    host.fetched = snapshot_bytes()

    def fetch(server, port, url_path, fingerprint, sha256, destination, cert_file, key_file, timeout=30):
        with open(destination, "wb") as handle:
            handle.write(host.fetched)
        os.chmod(destination, 0o600)
        return len(host.fetched)

    host.fetch = mock.Mock(spec=etcd_transfer.fetch, side_effect=fetch)
    host.chown = mock.Mock(spec=salt.modules.file.chown, return_value=None)
    host.start = mock.Mock(spec=salt.modules.systemd_service.start, return_value=True)
    version = mock.Mock(spec=salt.modules.aptpkg.version, return_value="3.5.16")
    with mock.patch.dict(etcd_cluster.__utils__, {"etcd_transfer.fetch": host.fetch}), \
            mock.patch.dict(etcd_cluster.__salt__, {"service.start": host.start, "file.chown": host.chown,
                                                    "pkg.version": version}):
        yield host


def token():
    return etcd_cluster.settings()["initial_cluster_token"] + "-r20260310120000"


def restore(**kwargs):
    args = dict(host="10.77.0.1", port=45123, path="/secret", fingerprint="ab" * 32,
                sha256=hashlib.sha256(snapshot_bytes()).hexdigest(), token=token())
    args.update(kwargs)
    return etcd_cluster.restore(**args)


def config_file():
    with open(etcd_settings.PATHS["config_file"]) as handle:
        return yaml.safe_load(handle)


def left_beside(etcd_pillar):
    """What the restore left beside the data dir (the fetched copy must not stay)."""
    parent = os.path.dirname(data_dir(etcd_pillar))
    return sorted(f for f in os.listdir(parent) if not f.startswith("data"))


def test_restore_replaces_the_data_with_the_snapshot_for_the_new_token(member_host, etcd_pillar):
    path = holds_a_member(etcd_pillar)
    done = restore()
    assert done["name"] == "etcd-1"
    # the old data is archived, then replaced by what the tool restored
    (archive,) = archives_of(etcd_pillar)
    with tarfile.open(archive) as tar:
        assert "member/wal/0.wal" in tar.getnames()
    assert sorted(os.listdir(os.path.join(path, "member"))) == ["snap", "wal"]
    assert not os.path.exists(os.path.join(path, "member", "wal", "0.wal"))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    member_host.chown.assert_any_call(path, "etcd", "etcd")
    # fetched with this member's client certificate, restored for the pillar's membership
    fetched = member_host.fetch.call_args.args
    assert fetched[:5] == ("10.77.0.1", 45123, "/secret", "ab" * 32, hashlib.sha256(snapshot_bytes()).hexdigest())
    assert fetched[6:] == (etcd_settings.PATHS["client_cert_file"], etcd_settings.PATHS["client_key_file"])
    (argv,) = member_host.restored
    flags = dict(zip(argv[4::2], argv[5::2]))
    assert argv[3] == fetched[5]
    assert flags["--initial-cluster"] == etcd_cluster.settings()["initial_cluster"]
    assert (flags["--initial-cluster-token"], flags["--data-dir"]) == (token(), path + ".restoring")
    config = config_file()
    assert (config["initial-cluster-state"], config["initial-cluster-token"]) == ("new", token())
    assert "force-new-cluster" not in config
    assert left_beside(etcd_pillar) == []


def test_restore_refuses_while_etcd_runs_and_changes_nothing(member_host, etcd_pillar):
    path = holds_a_member(etcd_pillar)
    member_host.unit = "active"
    with pytest.raises(CommandExecutionError, match="may hold or serve data .*stop it first"):
        restore()
    member_host.fetch.assert_not_called()
    assert os.path.exists(os.path.join(path, "member", "wal", "0.wal"))
    assert archives_of(etcd_pillar) == []


def test_restore_refuses_a_token_that_is_not_the_clusters(member_host, etcd_pillar):
    holds_a_member(etcd_pillar)
    with pytest.raises(SaltInvocationError, match="token 'pg-1a2b3c4d-r1' is not one of cluster etcd's"):
        restore(token="pg-1a2b3c4d-r1")
    member_host.fetch.assert_not_called()
    assert archives_of(etcd_pillar) == []


def test_restore_refuses_a_fetched_file_that_is_no_intact_snapshot(member_host, etcd_pillar):
    path = holds_a_member(etcd_pillar)
    member_host.fetched = snapshot_bytes()[:-5]
    with pytest.raises(CommandExecutionError, match="truncated or corrupt"):
        restore()
    assert member_host.restored == [] and archives_of(etcd_pillar) == []
    assert os.path.exists(os.path.join(path, "member", "wal", "0.wal"))
    assert left_beside(etcd_pillar) == []


def test_restore_whose_transfer_fails_changes_nothing(member_host, etcd_pillar):
    holds_a_member(etcd_pillar)
    member_host.fetch.side_effect = ValueError("the snapshot server at 10.77.0.1:45123 presented another certificate")
    with pytest.raises(CommandExecutionError, match="fetching the snapshot from 10.77.0.1:45123 failed: the "
                                                    "snapshot server .* nothing changed"):
        restore()
    assert member_host.restored == [] and archives_of(etcd_pillar) == []


def test_restore_whose_tool_fails_keeps_the_old_data(member_host, etcd_pillar):
    path = holds_a_member(etcd_pillar)
    member_host.restore_fails = True
    with pytest.raises(CommandExecutionError, match="snapshot restore failed: Error: snapshot file has wrong checksum"):
        restore()
    assert os.path.exists(os.path.join(path, "member", "wal", "0.wal"))
    assert left_beside(etcd_pillar) == []
    assert not os.path.exists(etcd_settings.PATHS["config_file"])


def test_restore_in_test_mode_fetches_nothing(member_host, etcd_pillar):
    holds_a_member(etcd_pillar)
    assert restore(test=True) == {"name": "etcd-1", "test": True, "archive": True}
    member_host.fetch.assert_not_called()


def test_restore_refuses_a_data_dir_holding_what_is_not_etcds(member_host, etcd_pillar):
    path = holds_a_member(etcd_pillar)
    open(os.path.join(path, "notes.txt"), "w").close()
    with pytest.raises(CommandExecutionError, match="holds what is not etcd's data"):
        restore()
    member_host.fetch.assert_not_called()


@pytest.fixture
def survivor(member_host, etcd, etcd_pillar, root):
    """h1 holds data, with its config file, and would be a cluster of one once started."""
    holds_a_member(etcd_pillar)
    os.makedirs(os.path.dirname(etcd_settings.PATHS["config_file"]), exist_ok=True)
    with open(etcd_settings.PATHS["config_file"], "w") as handle:
        yaml.safe_dump({"name": "etcd-1", "initial-cluster": "etcd-1=" + peer_url(1),
                        "initial-cluster-state": "existing", "initial-cluster-token": "etcd-old"}, handle)
    etcd.members = [member(1)]
    member_host.started_with = []
    member_host.start.side_effect = lambda name, no_block=False, **kw: (
        member_host.started_with.append(config_file()), True)[1]
    return member_host


def test_force_new_cluster_starts_once_with_the_flag_and_never_leaves_it(survivor):
    done = etcd_cluster.force_new_cluster()
    assert done["name"] == "etcd-1" and len(done["members"]) == 1
    survivor.stop.assert_called_once_with("etcd")
    (started,) = survivor.started_with
    assert started["force-new-cluster"] is True
    config = config_file()
    assert "force-new-cluster" not in config
    # the config it had, otherwise: its initial settings kept
    assert (config["initial-cluster-token"], config["initial-cluster-state"]) == ("etcd-old", "existing")


def test_force_new_cluster_that_does_not_become_healthy_leaves_no_flag(survivor, etcd):
    etcd.down = {"a1"}
    with pytest.raises(CommandExecutionError, match="etcd member etcd-1 is not healthy alone after "
                                                    "--force-new-cluster"):
        etcd_cluster.force_new_cluster(timeout=0)
    assert survivor.started_with[0]["force-new-cluster"] is True
    assert "force-new-cluster" not in config_file()


def test_force_new_cluster_whose_start_fails_leaves_no_flag(survivor):
    survivor.start.side_effect = CommandExecutionError("Job for etcd.service failed")
    with pytest.raises(CommandExecutionError, match="Job for etcd.service failed"):
        etcd_cluster.force_new_cluster()
    assert "force-new-cluster" not in config_file()


def test_force_new_cluster_refuses_while_etcd_does_not_stop(survivor):
    survivor.unit, survivor.stays_up = "active", True
    with pytest.raises(CommandExecutionError, match="may hold or serve data"):
        etcd_cluster.force_new_cluster()
    survivor.start.assert_not_called()
    assert "force-new-cluster" not in config_file()


def test_force_new_cluster_refuses_without_data(member_host):
    with pytest.raises(CommandExecutionError, match="etcd member etcd-1 holds no data: nothing to keep"):
        etcd_cluster.force_new_cluster()
    member_host.stop.assert_not_called()
    member_host.start.assert_not_called()
