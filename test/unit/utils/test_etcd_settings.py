"""
etcd_settings: the names, URLs, paths and defaults every part of the formula derives from the
same pillar (the module on a minion, the runner on the master, the SLS files).
"""

import copy
import re

import pytest

import etcd_settings
from etcd_fakes import PILLAR, member, pillar

TOKEN_OF_INCARNATION_1 = etcd_settings.initial_cluster_token(etcd_settings.cluster_named(PILLAR, "etcd"))


def cluster(**settings):
    return etcd_settings.cluster_named(pillar(**settings), "etcd")


# -- clusters and their defaults -------------------------------------------------------------------


def test_a_cluster_gets_every_default_it_does_not_set():
    merged = cluster(peer_port=12380)
    assert merged["name"] == "etcd"
    assert (merged["client_port"], merged["peer_port"], merged["metrics_port"]) == (2379, 12380, 2381)
    assert merged["data_dir"] == "/var/lib/etcd/data"
    assert (merged["safeguard"], merged["clean"], merged["init"]) == (False, False, "auto")


def test_merging_never_changes_the_defaults_or_the_pillar():
    given = pillar(clients={"patroni": {"target": "pg*"}})
    before = copy.deepcopy(given)
    etcd_settings.clusters(given)["etcd"]["clients"]["patroni"]["target"] = "changed"
    assert given == before
    assert etcd_settings.CLUSTER_DEFAULTS["clients"] == {}


def test_pki_settings_default_the_ca_dir_and_the_key():
    settings = etcd_settings.pki({"pki": {"days_valid": 400}})
    assert settings["ca_dir"] == "/etc/pki/etcd-ca"
    assert (settings["key_algo"], settings["key_size"], settings["days_valid"]) == ("ec", 256, 400)
    assert etcd_settings.pki(None)["ca_server"] == "master"


def test_cluster_of_a_minion_is_the_one_listing_it():
    assert etcd_settings.cluster_of(PILLAR, "h2")["name"] == "etcd"
    assert etcd_settings.cluster_of(PILLAR, "master") is None


def test_an_unknown_cluster_name_is_refused_naming_the_known_ones():
    with pytest.raises(KeyError, match=r"no etcd cluster named 'pg' in pillar \(known: etcd\)"):
        etcd_settings.cluster_named(PILLAR, "pg")


# -- names and URLs ------------------------------------------------------------------------------


def test_member_names_are_cluster_dash_seq_and_urls_use_the_ports():
    merged = cluster(client_port=12379)
    assert etcd_settings.member_name(merged, "h2") == "etcd-2"
    assert etcd_settings.peer_url(merged, "h2") == "https://10.77.0.12:2380"
    assert etcd_settings.client_url(merged, "h2") == "https://10.77.0.12:12379"


def test_an_ipv6_address_is_bracketed_in_urls():
    assert etcd_settings.url("fd00::11", 2379) == "https://[fd00::11]:2379"
    assert etcd_settings.url("10.0.0.1", 2381, "http") == "http://10.0.0.1:2381"


def test_members_are_ordered_by_seq_not_by_pillar_order():
    given = pillar()
    given["clusters"]["etcd"]["members"] = {
        "h3": {"seq": 3, "address": "10.77.0.13"}, "h1": {"seq": 1, "address": "10.77.0.11"}}
    merged = etcd_settings.cluster_named(given, "etcd")
    assert etcd_settings.by_seq(merged) == ["h1", "h3"]
    assert etcd_settings.initial_cluster(merged) == (
        "etcd-1=https://10.77.0.11:2380,etcd-3=https://10.77.0.13:2380")


def test_the_minion_of_a_peer_url_is_found_from_the_pillar():
    merged = cluster()
    assert etcd_settings.minion_of(merged, ["https://10.77.0.13:2380"]) == "h3"
    assert etcd_settings.minion_of(merged, ["https://10.77.0.99:2380"]) is None


def test_voting_endpoints_never_list_a_learner_or_the_excluded_minion():
    merged = cluster()
    members = [member(1), member(2), member(3, learner=True)]
    assert etcd_settings.voting_minions(merged, members) == ["h1", "h2"]
    assert etcd_settings.voting_client_urls(merged, members, exclude=["h1"]) == [
        "https://10.77.0.12:2379"]


def test_voting_endpoints_fall_back_to_the_pillar_when_no_cluster_answers():
    merged = cluster()
    assert etcd_settings.voting_client_urls(merged, None, exclude=["h3"]) == [
        "https://10.77.0.11:2379", "https://10.77.0.12:2379"]
    # a membership naming no pillar member (another cluster's): every pillar member
    assert etcd_settings.voting_client_urls(merged, [dict(member(9))]) == etcd_settings.client_urls(merged)


def test_the_token_is_the_same_for_every_member_and_changes_with_the_incarnation():
    # members bootstrap independently: each must derive the same token from the pillar
    tokens = {etcd_settings.member_settings(PILLAR, m)["initial_cluster_token"] for m in ("h1", "h2", "h3")}
    assert tokens == {TOKEN_OF_INCARNATION_1}
    assert re.match(r"^etcd-[0-9a-f]{8}$", TOKEN_OF_INCARNATION_1)
    assert etcd_settings.initial_cluster_token(cluster(incarnation=2)) != TOKEN_OF_INCARNATION_1


# -- a member's settings -------------------------------------------------------------------------


def test_member_settings_carry_its_names_urls_cluster_and_paths():
    settings = etcd_settings.member_settings(PILLAR, "h2")
    assert settings["minion_id"] == "h2" and settings["member_name"] == "etcd-2"
    assert settings["peer_url"] == "https://10.77.0.12:2380"
    assert settings["client_url"] == "https://10.77.0.12:2379"
    assert settings["endpoints"] == [
        "https://10.77.0.11:2379", "https://10.77.0.12:2379", "https://10.77.0.13:2379"]
    assert settings["peer_urls"]["h3"] == "https://10.77.0.13:2380"
    assert settings["initial_cluster"].startswith("etcd-1=https://10.77.0.11:2380,etcd-2=")
    assert settings["initial_cluster_token"] == TOKEN_OF_INCARNATION_1
    assert settings["paths"]["config_file"] == "/etc/etcd/etcd.conf.yml"
    assert settings["pki"]["ca_dir"] == "/etc/pki/etcd-ca"


def test_member_settings_of_a_minion_in_no_cluster_are_none():
    assert etcd_settings.member_settings(PILLAR, "master") is None


@pytest.mark.parametrize(
    "broken",
    [
        {"clusters": {"etcd": {"members": {"h1": {"seq": "x", "address": "10.77.0.11"}, "h2": {"seq": 2, "address": "10.77.0.12"}}}}},
        {"clusters": {"etcd": {"members": {"h1": {"seq": 1}}}}},
        {"clusters": {"etcd": ["h1"]}},
        {"clusters": "etcd"},
    ],
)
def test_member_settings_of_a_broken_pillar_are_none_not_a_crash(broken):
    # SLS files render from them before etcd.assert runs: a crash there would hide its report
    assert etcd_settings.member_settings(broken, "h1") is None


def test_the_tls_files_of_a_member_and_of_the_master():
    assert etcd_settings.client_tls_files() == {
        "ca_file": "/etc/etcd/pki/ca.crt", "cert_file": "/etc/etcd/pki/client.crt",
        "key_file": "/etc/etcd/pki/client.key"}
    assert etcd_settings.peer_tls_files()["cert_file"] == "/etc/etcd/pki/peer.crt"
    assert etcd_settings.admin_tls_files({"ca_dir": "/srv/ca"}) == {
        "ca_file": "/srv/ca/admin/ca.crt", "cert_file": "/srv/ca/admin/client.crt",
        "key_file": "/srv/ca/admin/client.key"}


def test_locks_are_per_cluster_and_a_restart_never_takes_the_operation_lock():
    assert etcd_settings.restart_lock("etcd") != etcd_settings.restart_lock("pg")
    assert etcd_settings.restart_lock("etcd") != etcd_settings.operation_lock("etcd")


def test_the_digest_ignores_key_order_and_follows_values():
    assert etcd_settings.digest({"a": 1, "b": 2}) == etcd_settings.digest({"b": 2, "a": 1})
    assert etcd_settings.digest({"a": 1}) != etcd_settings.digest({"a": 2})


@pytest.mark.parametrize(
    "version, expected",
    [("3.5.16-4", (3, 5)), ("1:3.6.0", (3, 6)), ("3.4", (3, 4)), ("latest", None), (None, None)],
)
def test_version_tuple_reads_etcd_and_debian_versions(version, expected):
    assert etcd_settings.version_tuple(version) == expected


# -- the clients' settings -----------------------------------------------------------------------


def test_client_specs_get_their_kinds_defaults_and_a_name_may_differ_from_its_kind():
    specs = etcd_settings.client_specs(cluster(clients={
        "patroni": {"target": "pg*"},
        "vip": {"kind": "vip_manager", "target": "pg*", "version": 2}}))
    assert specs["patroni"]["config"] == "/etc/patroni/config.yml"
    assert specs["patroni"]["tgt_type"] == "glob"
    assert (specs["vip"]["kind"], specs["vip"]["version"], specs["vip"]["service"]) == (
        "vip_manager", 2, "vip-manager")


def test_client_settings_take_the_handed_voting_endpoints_else_every_member():
    given = pillar(clients={"patroni": {"target": "pg*"}})
    handed = etcd_settings.client_settings(given, endpoints=["https://10.77.0.12:2379"])
    assert handed["endpoints"] == ["https://10.77.0.12:2379"]
    assert handed["hosts"] == ["10.77.0.12:2379"]
    assert handed["clients"]["patroni"]["endpoints"] == ["https://10.77.0.12:2379"]
    assert len(etcd_settings.client_settings(given)["endpoints"]) == 3


def test_client_settings_give_each_kind_its_defaults_when_the_cluster_has_none():
    found = etcd_settings.client_settings(pillar(clients={"patroni": {"target": "pg*"}}))
    assert found["kinds"]["patroni"]["target"] == "pg*"
    assert found["kinds"]["prometheus"]["target"] is None
    assert found["kinds"]["prometheus"]["targets_file"] == "/etc/prometheus/etcd_targets.yml"
    assert found["kinds"]["vip_manager"]["metrics_port"] == 2381


def test_client_settings_pick_the_first_cluster_with_clients():
    given = pillar()
    given["clusters"]["aaa"] = {"members": {"h9": {"seq": 1, "address": "10.77.0.19"}}}
    given["clusters"]["etcd"]["clients"] = {"patroni": {"target": "pg*"}}
    assert etcd_settings.client_settings(given)["cluster"] == "etcd"
    assert etcd_settings.client_settings(given, cluster_name="aaa")["cluster"] == "aaa"
    assert etcd_settings.client_settings(given, cluster_name="nope") == {}


# -- etcd RBAC ------------------------------------------------------------------------------------


def test_auth_users_give_patroni_its_prefix_and_vip_manager_its_key_only():
    cluster = etcd_settings.cluster_named(pillar(root_password="r", clients={
        "patroni": {"target": ["pg1"], "scope": "pg-a", "password": "p"},
        "other": {"kind": "patroni", "target": ["pg9"], "scope": "pg-b", "namespace": "/db/",
                  "username": "pgb", "password": "q"},
        "vip": {"kind": "vip_manager", "target": ["pg1"], "version": 2,
                "trigger_key": "/service/pg-a/leader", "password": "v"},
        "old_vip": {"kind": "vip_manager", "target": ["pg1"], "version": 1},
        "prometheus": {"target": "mon*"}}), "etcd")
    users, roles = etcd_settings.auth_users(cluster)
    assert users == {
        "root": {"password": "r", "roles": ["root"]},
        "patroni-pg-a": {"password": "p", "roles": ["patroni-pg-a"]},
        "pgb": {"password": "q", "roles": ["pgb"]},
        "vip-manager-vip": {"password": "v", "roles": ["vip-manager-vip"]},
    }
    # etcdctl's --prefix: the range end is the prefix with its last byte plus one
    assert roles == {"root": [],
                     "patroni-pg-a": [("READWRITE", "/service/pg-a/", "/service/pg-a0")],
                     "pgb": [("READWRITE", "/db/pg-b/", "/db/pg-b0")],
                     "vip-manager-vip": [("READ", "/service/pg-a/leader", "")]}


def test_masked_hides_every_secret_and_keeps_the_rest():
    given = {"root_password": "r", "auth": True, "clients": {"patroni": {"password": "p",
                                                                        "scope": "pg"}},
             "list": [{"password": None}]}
    assert etcd_settings.masked(given) == {
        "root_password": "(hidden)", "auth": True,
        "clients": {"patroni": {"password": "(hidden)", "scope": "pg"}}, "list": [{"password": None}]}


def test_root_credentials_come_from_the_pillar_or_the_members_file(tmp_path):
    assert etcd_settings.root_credentials({"root_password": "r:1"}) == ("root", "r:1")
    assert etcd_settings.root_credentials({"root_password": None}) is None
    path = tmp_path / "root.credentials"
    assert etcd_settings.local_root_credentials(str(path)) is None
    path.write_text("root:r:1\n")
    assert etcd_settings.local_root_credentials(str(path)) == ("root", "r:1")
