"""
etcd_config: which initial-cluster-state and initial-cluster a member's config file gets
(derived from what runs, forced by init, kept once the data dir holds a member), and the
etcdctl environment's voting endpoints. The cluster, the files and file.managed are faked;
the pillar resolution is the real etcd_pillar.
"""

import copy
import os
from unittest.mock import Mock

import pytest
import salt.states.file
import yaml
from salt.exceptions import CommandExecutionError

import etcd_config
import etcd_pillar

CONFIG = "/etc/etcd/etcd.conf.yml"
# the members of pillar.example: h1..h3 at 10.77.0.11..13
with open(os.path.join(os.path.dirname(etcd_pillar.__file__), "..", "pillar.example")) as _example:
    PILLAR = yaml.safe_load(_example)["etcd"]
PILLAR_INITIAL = (
    "etcd-1=https://10.77.0.11:2380,etcd-2=https://10.77.0.12:2380,etcd-3=https://10.77.0.13:2380"
)


def real_member(name, seq, learner=False):
    return {
        "id": "a{}".format(seq), "name": name, "is_learner": learner,
        "peer_urls": ["https://10.77.0.1{}:2380".format(seq)],
        "client_urls": ["https://10.77.0.1{}:2379".format(seq)] if name else [],
    }


class World:
    """Files on the member and the other members' answers."""

    def __init__(self):
        self.pillar = copy.deepcopy(PILLAR)
        self.files = {path: "" for path in etcd_pillar.client_tls_files().values()}
        self.dirs = set()
        self.running = None  # the real membership, when a cluster with a leader runs
        self.version = "3.4.23-1"
        self.written = None
        self.file_managed = Mock(spec=salt.states.file.managed, side_effect=self._write)

    def _write(self, name, contents=None, **kwargs):
        changed = self.files.get(name) != contents
        if not etcd_config.__opts__["test"]:
            self.files[name] = contents
        self.written = contents
        return {
            "name": name, "changes": {"diff": "..."} if changed else {},
            "result": None if changed and etcd_config.__opts__["test"] else True, "comment": "",
        }

    def leader(self, endpoints=None, request_timeout=None):
        assert "https://10.77.0.11:2379" not in endpoints, "asked itself"
        if self.running is None:
            raise CommandExecutionError("no etcd endpoint answered: connection refused")
        return self.running[0]

    def members(self, endpoints=None, request_timeout=None):
        if self.running is None:
            raise CommandExecutionError("no etcd endpoint answered: connection refused")
        return self.running

    def config(self):
        return yaml.safe_load(self.files[CONFIG])


@pytest.fixture
def world():
    return World()


@pytest.fixture
def configure_loader_modules(world):
    return {
        etcd_config: {
            "__opts__": {"test": False, "id": "h1"},
            "__salt__": {
                "etcd_cluster.settings": lambda: etcd_pillar.member_settings(world.pillar, "h1") or {},
                "etcd_cluster.leader": Mock(side_effect=world.leader),
                "etcd_cluster.members": Mock(side_effect=world.members),
                "file.file_exists": lambda path: path in world.files,
                "file.read": lambda path: world.files[path],
                "file.directory_exists": lambda path: path in world.dirs,
                "pkg.version": lambda name: world.version,
            },
            "__states__": {"file.managed": world.file_managed},
            "__utils__": {
                "etcd_pillar." + name: getattr(etcd_pillar, name)
                for name in (
                    "client_tls_files", "joining_initial_cluster", "member_config",
                    "initial_settings", "voting_client_urls",
                )
            },
        }
    }


def apply():
    return etcd_config.managed(CONFIG, package="etcd-server")


def test_fresh_member_with_no_cluster_running_bootstraps_new_from_pillar(world):
    ret = apply()
    assert ret["result"] is True, ret
    config = world.config()
    assert config["initial-cluster-state"] == "new"
    assert config["initial-cluster"] == PILLAR_INITIAL
    assert config["initial-cluster-token"] == etcd_pillar.initial_cluster_token(
        etcd_pillar.cluster_of(PILLAR, "h1")
    )
    assert "bootstrapping" in ret["comment"]


def test_fresh_member_joins_a_running_cluster_with_its_real_membership(world):
    world.pillar["clusters"]["etcd"]["members"]["h4"] = {"seq": 4, "address": "10.77.0.14"}
    # h1 was re-added (as etcd_member.present does) and never started: no name yet
    world.running = [real_member("etcd-2", 2), real_member("etcd-3", 3), real_member("", 1, learner=True)]
    ret = apply()
    assert ret["result"] is True, ret
    config = world.config()
    assert config["initial-cluster-state"] == "existing"
    # the real membership (h4 of the pillar was never added), this member by its name
    assert config["initial-cluster"] == (
        "etcd-2=https://10.77.0.12:2380,etcd-3=https://10.77.0.13:2380,etcd-1=https://10.77.0.11:2380"
    )


def test_fresh_member_missing_from_the_running_cluster_is_refused(world):
    world.running = [real_member("etcd-2", 2), real_member("etcd-3", 3)]
    ret = apply()
    assert ret["result"] is False
    assert "cluster etcd runs: the running cluster has no member with peer URL https://10.77.0.11:2380" in ret["comment"]
    assert CONFIG not in world.files


def test_init_new_forces_a_bootstrap_without_asking_anyone(world):
    world.pillar["clusters"]["etcd"]["init"] = "new"
    world.running = [real_member("etcd-2", 2)]
    apply()
    assert world.config()["initial-cluster-state"] == "new"
    etcd_config.__salt__["etcd_cluster.leader"].assert_not_called()


def test_init_existing_with_nobody_answering_is_refused(world):
    world.pillar["clusters"]["etcd"]["init"] = "existing"
    ret = apply()
    assert ret["result"] is False
    assert ret["comment"].startswith("init is existing, but no other member of cluster etcd answers")


def test_initialised_member_keeps_its_initial_settings_whatever_runs_elsewhere(world):
    apply()
    first = world.files[CONFIG]
    etcd_config.__salt__["etcd_cluster.leader"].reset_mock()
    world.dirs.add("/var/lib/etcd/data/member")
    # membership changed since: a member was added and the cluster runs
    world.pillar["clusters"]["etcd"]["members"]["h4"] = {"seq": 4, "address": "10.77.0.14"}
    world.running = [real_member("etcd-2", 2), real_member("etcd-3", 3), real_member("etcd-4", 4)]
    ret = apply()
    assert ret["result"] is True and ret["changes"] == {}, ret
    assert world.files[CONFIG] == first
    etcd_config.__salt__["etcd_cluster.leader"].assert_not_called()


def test_initialised_member_of_another_incarnation_is_refused(world):
    apply()
    world.dirs.add("/var/lib/etcd/data/member")
    world.pillar["clusters"]["etcd"]["incarnation"] = 2
    ret = apply()
    assert ret["result"] is False
    assert "purge this member with etcd.clean" in ret["comment"]


def test_setting_change_rewrites_the_file_but_not_the_initial_settings(world):
    apply()
    world.dirs.add("/var/lib/etcd/data/member")
    world.pillar["clusters"]["etcd"]["heartbeat_interval"] = 150
    ret = apply()
    assert ret["changes"]
    assert world.config()["heartbeat-interval"] == 150
    assert world.config()["initial-cluster"] == PILLAR_INITIAL


def test_test_mode_predicts_and_writes_nothing(world):
    etcd_config.__opts__["test"] = True
    try:
        ret = apply()
    finally:
        etcd_config.__opts__["test"] = False
    assert ret["result"] is None and ret["changes"]
    assert CONFIG not in world.files


def test_no_client_certificate_yet_means_no_probe(world):
    world.files = {}
    world.running = [real_member("etcd-2", 2)]
    apply()
    assert world.config()["initial-cluster-state"] == "new"
    etcd_config.__salt__["etcd_cluster.leader"].assert_not_called()


def test_enable_v2_is_not_written_for_etcd_36(world):
    world.pillar["clusters"]["etcd"]["enable_v2"] = True
    apply()
    assert world.config()["enable-v2"] is True
    world.version = "3.6.1-1"
    apply()
    assert "enable-v2" not in world.config()


# -- etcdctl environment --------------------------------------------------------------------------

ENV = "/etc/profile.d/etcdctl.sh"


def env_endpoints(world):
    ret = etcd_config.env_managed(ENV, source="salt://etcd/files/etcdctl.sh.jinja")
    assert ret["result"] is True, ret
    return world.file_managed.call_args.kwargs["context"]["endpoints"]


def test_env_lists_the_voting_members_only(world):
    world.running = [real_member("etcd-1", 1), real_member("etcd-2", 2), real_member("etcd-3", 3, learner=True)]
    assert env_endpoints(world) == "https://10.77.0.11:2379,https://10.77.0.12:2379"


def test_env_lists_the_pillar_members_when_no_cluster_answers(world):
    assert env_endpoints(world) == (
        "https://10.77.0.11:2379,https://10.77.0.12:2379,https://10.77.0.13:2379"
    )
