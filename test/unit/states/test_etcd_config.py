"""
etcd_config: which initial-* settings a member's config file gets (decided by the real
``etcd_membership.decide_initial`` over what the peer ports and the other members answer,
kept once the data dir holds a member), what a member holding data refuses, and the etcdctl
environment's voting endpoints. The host's files are a temporary tree; the peer ports
(``probe_peers``), Salt's peer publish and etcd (FakeEtcd behind the real client's autospec)
are faked; ``file.managed`` is a Mock specced on Salt's, writing the file unless in test mode.
"""

import os
from unittest import mock

import pytest
import salt.modules.file
import salt.modules.publish
import salt.states.file
import yaml

import etcd_cluster
import etcd_config
import etcd_membership
import etcd_render
import etcd_settings
from etcd_fakes import (
    REFUSED,
    answer,
    member,
    patch_connect,
    peer_url,
    pillar,
    real_utils,
)

PILLAR_INITIAL = (
    "etcd-1=https://10.77.0.11:2380,etcd-2=https://10.77.0.12:2380,etcd-3=https://10.77.0.13:2380")
NOTHING_HERE = {"data": False, "running": False}


class Host:
    """This member's files (a temporary tree) and what the others answer."""

    def __init__(self, root):
        self.root = root
        self.pillar = pillar(data_dir=str(root / "var/lib/etcd/data"))
        self.config = etcd_settings.PATHS["config_file"]
        self.version = "3.5.16-4"
        self.peers = {"h2": REFUSED, "h3": REFUSED}
        self.local_states = {"h2": NOTHING_HERE, "h3": NOTHING_HERE}
        self.file_managed = mock.Mock(spec=salt.states.file.managed, side_effect=self._managed)
        self.probe_peers = mock.Mock(spec=etcd_membership.probe_peers,
                                     side_effect=lambda peer_urls, **kw: dict(self.peers))
        self.publish = mock.Mock(spec=salt.modules.publish.publish,
                                 side_effect=lambda tgt, fun, **kw: dict(self.local_states))

    def _managed(self, name, contents=None, user=None, group=None, mode=None, source=None,
                 template=None, context=None, **kwargs):
        old = open(name).read() if os.path.exists(name) else None
        changes = {"diff": "New file" if old is None else "..."} if old != contents else {}
        if changes and not etcd_config.__opts__["test"]:
            os.makedirs(os.path.dirname(name), exist_ok=True)
            with open(name, "w") as handle:
                handle.write(contents if contents is not None else "")
        result = None if changes and etcd_config.__opts__["test"] else True
        return {"name": name, "changes": changes, "result": result, "comment": "file " + name}

    def written(self):
        with open(self.config) as handle:
            return yaml.safe_load(handle)

    def data_dir(self):
        return self.pillar["clusters"]["etcd"]["data_dir"]

    def holds_a_member(self, path=None):
        os.makedirs(os.path.join(path or self.data_dir(), "member", "wal"))

    def peer_certificate(self):
        for key in ("ca_file", "peer_ca_file", "peer_cert_file", "peer_key_file", "client_cert_file", "client_key_file"):
            open(etcd_settings.PATHS[key], "w").close()


@pytest.fixture
def root(tmp_path, monkeypatch):
    for key, path in etcd_settings.PATHS.items():
        monkeypatch.setitem(etcd_settings.PATHS, key, str(tmp_path) + path)
    os.makedirs(str(tmp_path) + "/etc/etcd/pki")
    return tmp_path


@pytest.fixture
def host(root):
    found = Host(root)
    found.peer_certificate()
    return found



@pytest.fixture(autouse=True)
def instant_waits(clock):
    return clock


@pytest.fixture
def configure_loader_modules(host, monkeypatch, etcd):
    patch_connect(monkeypatch, etcd)
    utils = real_utils()
    utils["etcd_membership.probe_peers"] = host.probe_peers

    def read(path, binary=False):
        with open(path) as handle:
            return handle.read()

    return {
        etcd_config: {
            "__opts__": {"test": False, "id": "h1"},
            "__salt__": {
                "etcd_cluster.settings": mock.Mock(
                    spec=etcd_cluster.settings,
                    side_effect=lambda minion_id=None: etcd_settings.member_settings(host.pillar, "h1") or {}),
                "etcd_cluster.members": mock.Mock(
                    spec=etcd_cluster.members, side_effect=lambda **kw: etcd.client.members()),
                "file.file_exists": mock.Mock(spec=salt.modules.file.file_exists, side_effect=os.path.isfile),
                "file.read": mock.Mock(spec=salt.modules.file.read, side_effect=read),
                "file.directory_exists": mock.Mock(spec=salt.modules.file.directory_exists,
                                                   side_effect=os.path.isdir),
                "pkg.version": mock.Mock(spec=lambda *names, **kwargs: None,
                                         side_effect=lambda *names, **kw: host.version),
                "publish.publish": host.publish,
            },
            "__states__": {"file.managed": host.file_managed},
            "__utils__": utils,
        }
    }


@pytest.fixture(params=[False, True], ids=["applied", "test"])
def testmode(request):
    with mock.patch.dict(etcd_config.__opts__, {"test": request.param}):
        yield request.param


def apply(host):
    return etcd_config.managed(host.config, package="etcd-server")


def token(etcd_pillar):
    return etcd_settings.initial_cluster_token(etcd_settings.cluster_named(etcd_pillar, "etcd"))


def existing_config(host, initial=None, **changes):
    """The file as an earlier run wrote it (the pillar of then, ``changes`` on it)."""
    settings = etcd_settings.member_settings(host.pillar, "h1")
    config = etcd_render.member_config(settings, initial or etcd_render.initial(
        PILLAR_INITIAL, "new", token(host.pillar)), host.version)
    config.update(changes)
    with open(host.config, "w") as handle:
        handle.write(etcd_render.HEADER + yaml.safe_dump(config, sort_keys=False))
    return config


# -- a member with an empty data dir ----------------------------------------------------------------


def test_a_fresh_member_bootstraps_new_once_every_other_member_has_no_data(host, testmode):
    ret = apply(host)
    host.publish.assert_called_once_with("h2,h3", "etcd_cluster.local_state", tgt_type="list",
                                         timeout=etcd_config.LOCAL_STATE_TIMEOUT)
    if testmode:
        assert ret["result"] is None and ret["changes"]
        assert not os.path.exists(host.config)
        return
    assert ret["result"] is True, ret
    config = host.written()
    assert config["initial-cluster-state"] == "new"
    assert config["initial-cluster"] == PILLAR_INITIAL
    assert config["initial-cluster-token"] == token(host.pillar)
    assert "initial-cluster-state new (every other member answered" in ret["comment"]


def test_a_fresh_member_joins_a_running_cluster_with_its_real_membership(host, etcd, testmode):
    host.pillar["clusters"]["etcd"]["members"]["h4"] = {"seq": 4, "address": "10.77.0.14"}
    # h1 was re-added (etcd_member.present) and never started: no name yet
    running = [member(1, learner=True, started=False), member(2), member(3)]
    etcd.members, etcd.leader = running, "a2"
    host.peers = {"h2": answer(running), "h3": answer(running), "h4": REFUSED}
    ret = apply(host)
    host.publish.assert_not_called()
    if testmode:
        assert ret["result"] is None and not os.path.exists(host.config)
        return
    assert ret["result"] is True, ret
    config = host.written()
    assert config["initial-cluster-state"] == "existing"
    # the real membership (h4 of the pillar was never added), this member by its name
    assert config["initial-cluster"] == PILLAR_INITIAL


def test_the_member_writes_what_decide_initial_decided(host, configure_loader_modules):
    decided = etcd_render.initial("etcd-1=https://10.77.0.11:2380", "existing", "decided-token")
    decide_initial = mock.Mock(spec=etcd_membership.decide_initial, return_value=(decided, "as decided"))
    with mock.patch.dict(etcd_config.__utils__, {"etcd_membership.decide_initial": decide_initial}):
        ret = apply(host)
    assert ret["result"] is True
    assert {k: host.written()[k] for k in etcd_render.INITIAL_KEYS} == decided
    me = decide_initial.call_args.args[0]
    assert me == {"minion": "h1", "name": "etcd-1", "peer_url": peer_url(1), "initial_cluster": PILLAR_INITIAL}
    assert decide_initial.call_args.args[1] == {"h2": peer_url(2), "h3": peer_url(3)}


def test_a_fresh_member_the_running_cluster_lacks_is_refused_writing_nothing(host, testmode):
    host.peers = {"h2": answer([member(2), member(3)]), "h3": REFUSED}
    ret = apply(host)
    assert ret["result"] is False and ret["changes"] == {}
    assert "and not this member (https://10.77.0.11:2380): add it first" in ret["comment"]
    host.file_managed.assert_not_called()


def test_a_member_that_ran_and_lost_its_data_is_refused_writing_nothing(host, testmode):
    host.peers = {"h2": answer([member(1), member(2), member(3)]), "h3": REFUSED}
    ret = apply(host)
    assert ret["result"] is False
    assert "has run in cluster c1 before, and its data dir is empty" in ret["comment"]
    host.file_managed.assert_not_called()


def test_another_member_holding_data_is_refused_writing_nothing(host, testmode):
    host.local_states["h3"] = {"data": True, "running": False}
    ret = apply(host)
    assert ret["result"] is False and "h3 holds etcd data" in ret["comment"]
    host.file_managed.assert_not_called()


def test_a_silent_member_is_no_proof_and_nothing_is_written(host, testmode):
    del host.local_states["h3"]
    ret = apply(host)
    assert ret["result"] is False and "h3 did not say whether it holds etcd data" in ret["comment"]
    host.file_managed.assert_not_called()


def test_a_member_starting_elsewhere_is_waited_for_then_refused(host, clock):
    host.local_states["h2"] = {"data": False, "running": True}
    ret = apply(host)
    assert ret["result"] is False
    assert "etcd is starting on h2" in ret["comment"] and "nothing was written" in ret["comment"]
    assert clock.slept >= etcd_config.BOOTSTRAP_WAIT
    host.file_managed.assert_not_called()


def test_a_registered_member_waits_for_a_leader_before_joining(host, etcd, clock):
    running = [member(1, learner=True, started=False), member(2), member(3)]
    etcd.members = running
    etcd.leader = "0"
    host.peers = {"h2": answer(running), "h3": answer(running)}
    clock.while_sleeping = lambda: setattr(etcd, "leader", "a2")
    ret = apply(host)
    assert ret["result"] is True, ret
    assert host.written()["initial-cluster-state"] == "existing"
    assert clock.slept > 0


def test_init_new_bootstraps_when_no_member_answers(host):
    host.pillar["clusters"]["etcd"]["init"] = "new"
    host.peers = {"h2": REFUSED, "h3": {"error": "timed out"}}
    apply(host)
    assert host.written()["initial-cluster-state"] == "new"
    host.publish.assert_not_called()


def test_without_a_peer_certificate_test_mode_predicts_without_probing(host):
    os.remove(etcd_settings.PATHS["peer_cert_file"])
    with mock.patch.dict(etcd_config.__opts__, {"test": True}):
        ret = apply(host)
    assert ret["result"] is None and ret["changes"] == {"config": host.config}
    assert "decided when applied" in ret["comment"]
    host.probe_peers.assert_not_called()
    host.file_managed.assert_not_called()
    ret = apply(host)
    assert ret["result"] is False and ret["comment"].startswith("no peer certificate at ")
    host.file_managed.assert_not_called()


# -- a member whose data dir holds a member -------------------------------------------------------------


def test_a_member_with_data_keeps_its_initial_settings_whatever_runs_elsewhere(host, testmode):
    kept = etcd_render.initial("etcd-1=https://10.77.0.11:2380", "new", token(host.pillar))
    existing_config(host, kept)
    host.holds_a_member()
    host.pillar["clusters"]["etcd"]["heartbeat_interval"] = 150
    host.pillar["clusters"]["etcd"]["members"]["h4"] = {"seq": 4, "address": "10.77.0.14"}
    before = open(host.config).read()
    ret = apply(host)
    host.probe_peers.assert_not_called()
    host.publish.assert_not_called()
    if testmode:
        assert ret["result"] is None and ret["changes"]
        assert open(host.config).read() == before
        return
    assert ret["result"] is True
    config = host.written()
    assert config["heartbeat-interval"] == 150
    assert {k: config[k] for k in etcd_render.INITIAL_KEYS} == kept
    assert "initial-cluster-state new (kept: the data dir holds a member)" in ret["comment"]


def test_a_member_with_data_and_an_unchanged_pillar_changes_nothing(host, testmode):
    existing_config(host)
    host.holds_a_member()
    ret = apply(host)
    assert ret["result"] is True and ret["changes"] == {}


def test_a_data_dir_change_of_a_member_holding_data_is_refused(host, root, testmode):
    old = str(root / "srv/etcd/old")
    existing_config(host, **{"data-dir": old})
    host.holds_a_member(old)
    before = open(host.config).read()
    ret = apply(host)
    assert ret["result"] is False and ret["changes"] == {}
    assert ret["comment"].startswith("member etcd-1 holds data")
    assert "data-dir {} -> {} (pillar data_dir)".format(old, host.data_dir()) in ret["comment"]
    host.file_managed.assert_not_called()
    assert open(host.config).read() == before


def test_an_address_change_of_a_member_holding_data_is_refused(host, testmode):
    existing_config(host)
    host.holds_a_member()
    host.pillar["clusters"]["etcd"]["members"]["h1"]["address"] = "10.77.0.21"
    ret = apply(host)
    assert ret["result"] is False
    assert "listen-peer-urls https://10.77.0.11:2380 -> https://10.77.0.21:2380" in ret["comment"]
    host.file_managed.assert_not_called()


def test_a_member_of_another_incarnation_is_refused(host, testmode):
    existing_config(host)
    host.holds_a_member()
    host.pillar["clusters"]["etcd"]["incarnation"] = 2
    ret = apply(host)
    assert ret["result"] is False
    assert "the data dir holds a member of cluster token {}".format(
        token(pillar())) in ret["comment"]
    assert "purge this member (state.apply etcd.purge" in ret["comment"]
    host.file_managed.assert_not_called()


def test_enable_v2_is_not_written_for_etcd_36(host):
    host.pillar["clusters"]["etcd"]["enable_v2"] = True
    apply(host)
    assert host.written()["enable-v2"] is True
    host.version = "3.6.1-1"
    host.holds_a_member()
    apply(host)
    assert "enable-v2" not in host.written()


def test_a_minion_in_no_cluster_fails(host):
    host.pillar["clusters"]["etcd"]["members"].pop("h1")
    ret = apply(host)
    assert ret["result"] is False and "minion h1 is in no cluster" in ret["comment"]


# -- etcdctl environment --------------------------------------------------------------------------

ENV = "/etc/profile.d/etcdctl.sh"


def env_endpoints(host):
    ret = etcd_config.env_managed(ENV)
    assert ret["result"] is not False, ret
    contents = host.file_managed.call_args.kwargs["contents"]
    return next(line.split("=", 1)[1] for line in contents.splitlines()
                if line.startswith("export ETCDCTL_ENDPOINTS="))


def test_env_lists_the_voting_members_only(host, etcd, testmode):
    etcd.members = [member(1), member(2), member(3, learner=True)]
    assert env_endpoints(host) == "https://10.77.0.11:2379,https://10.77.0.12:2379"


def test_env_lists_the_pillar_members_when_no_cluster_answers(host, etcd, testmode):
    etcd.down = {"a1", "a2", "a3"}
    assert env_endpoints(host) == "https://10.77.0.11:2379,https://10.77.0.12:2379,https://10.77.0.13:2379"


def test_env_without_a_client_certificate_asks_nobody(root, host, etcd):
    os.remove(etcd_settings.PATHS["client_cert_file"])
    etcd.members = [member(1), member(2), member(3, learner=True)]
    assert env_endpoints(host).count(",") == 2
    etcd_config.__salt__["etcd_cluster.members"].assert_not_called()
