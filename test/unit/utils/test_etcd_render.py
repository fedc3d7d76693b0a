"""
etcd_render: what a member's etcd config file says, the initial-cluster of a member joining a
running cluster, and which changes a member holding data may not take by a restart.
"""

import pytest

import etcd_render
import etcd_settings
from etcd_fakes import PILLAR, member, pillar

INITIAL = {
    "initial-cluster": "etcd-1=https://10.77.0.11:2380",
    "initial-cluster-state": "existing",
    "initial-cluster-token": "kept-token",
}


def config_of(etcd=PILLAR, minion_id="h2", initial=INITIAL, etcd_version=None):
    return etcd_render.member_config(etcd_settings.member_settings(etcd, minion_id), initial,
                                     etcd_version)


# -- the config file ------------------------------------------------------------------------------


def test_config_listens_on_the_address_and_loopback_and_advertises_the_address():
    config = config_of()
    assert config["name"] == "etcd-2"
    assert config["listen-client-urls"] == "https://10.77.0.12:2379,https://127.0.0.1:2379"
    assert config["advertise-client-urls"] == "https://10.77.0.12:2379"
    assert config["listen-peer-urls"] == config["initial-advertise-peer-urls"] == "https://10.77.0.12:2380"
    # plain HTTP, so no client certificate, hence loopback only unless the pillar says otherwise
    assert config["listen-metrics-urls"] == "http://127.0.0.1:2381"


def test_metrics_on_address_opens_metrics_to_a_prometheus_elsewhere():
    config = config_of(pillar(metrics_on_address=True))
    assert config["listen-metrics-urls"] == "http://10.77.0.12:2381,http://127.0.0.1:2381"


def test_config_requires_client_certs_on_both_ports_each_of_its_own_ca():
    # peer trust is not client trust: the peer port trusts the peers' CA only, so no client
    # certificate (signed by the clients' CA) opens it
    config = config_of()
    for side, cert, ca in (("client-transport-security", "server", "ca"),
                           ("peer-transport-security", "peer", "peer-ca")):
        assert config[side] == {
            "cert-file": "/etc/etcd/pki/{}.crt".format(cert),
            "key-file": "/etc/etcd/pki/{}.key".format(cert),
            "trusted-ca-file": "/etc/etcd/pki/{}.crt".format(ca),
            "client-cert-auth": True,
            "auto-tls": False,
        }


def test_config_takes_the_initial_settings_it_is_given():
    config = config_of()
    assert {key: config[key] for key in etcd_render.INITIAL_KEYS} == INITIAL


def test_config_carries_the_cluster_settings():
    config = config_of(pillar(
        heartbeat_interval=150, election_timeout=1500, quota_backend_bytes=4 * 1024**3,
        auto_compaction_mode="revision", auto_compaction_retention=1000, snapshot_count=5000,
        data_dir="/srv/etcd", client_port=12379, peer_port=12380, metrics_port=12381,
    ))
    assert (config["heartbeat-interval"], config["election-timeout"]) == (150, 1500)
    assert config["quota-backend-bytes"] == 4 * 1024**3
    assert config["auto-compaction-mode"] == "revision"
    # etcd's YAML field is a string: a bare number would not load
    assert config["auto-compaction-retention"] == "1000"
    assert config["snapshot-count"] == 5000
    assert config["data-dir"] == "/srv/etcd"
    assert config["listen-client-urls"] == "https://10.77.0.12:12379,https://127.0.0.1:12379"
    assert config["listen-metrics-urls"] == "http://127.0.0.1:12381"


def test_config_offers_aead_ciphers_only_and_tls12_at_least_where_etcd_knows_it():
    config = config_of(etcd_version="3.5.16-4")
    assert config["cipher-suites"] and all(
        "GCM" in suite or "CHACHA20" in suite for suite in config["cipher-suites"])
    assert not any("CBC" in suite or suite.endswith("_SHA") for suite in config["cipher-suites"])
    assert config["tls-min-version"] == "TLS1.2"
    # 3.4 (and 3.5 before 3.5.8) refuse to start with a key they do not know
    assert "tls-min-version" not in config_of(etcd_version="3.4.30")
    assert "tls-min-version" not in config_of(etcd_version="3.5.7")


def test_config_turns_the_json_gateway_on():
    # off by default when etcd reads a config file: the formula's client speaks it
    assert config_of()["enable-grpc-gateway"] is True


@pytest.mark.parametrize(
    "enable_v2, version, expected",
    [(False, None, False), (True, None, True), (True, "3.5.16-4", True), (True, "3.6.0", False)],
)
def test_enable_v2_is_written_only_when_set_and_before_36(enable_v2, version, expected):
    config = config_of(pillar(enable_v2=enable_v2), etcd_version=version)
    assert ("enable-v2" in config) is expected


def test_initial_settings_of_a_file_are_read_only_when_complete():
    assert etcd_render.initial_settings(dict(INITIAL, name="etcd-2")) == INITIAL
    partial = dict(INITIAL)
    del partial["initial-cluster-token"]
    assert etcd_render.initial_settings(partial) is None
    assert etcd_render.initial_settings("not a mapping") is None


# -- joining a running cluster --------------------------------------------------------------------

MEMBERS = [member(1), member(2), member(4, learner=True, started=False)]


def test_joining_member_gets_the_real_membership_with_its_own_name():
    assert etcd_render.joining_initial_cluster(MEMBERS, "etcd-4", "https://10.77.0.14:2380") == (
        "etcd-1=https://10.77.0.11:2380,etcd-2=https://10.77.0.12:2380,"
        "etcd-4=https://10.77.0.14:2380"
    )


def test_joining_member_that_was_never_added_is_refused():
    with pytest.raises(ValueError, match="no member with peer URL https://10.77.0.15:2380: add it first"):
        etcd_render.joining_initial_cluster(MEMBERS[:2], "etcd-5", "https://10.77.0.15:2380")


def test_joining_beside_another_never_started_member_is_refused():
    with pytest.raises(ValueError, match="a4 .* was added but never started"):
        etcd_render.joining_initial_cluster(MEMBERS, "etcd-1", "https://10.77.0.11:2380")


# -- what a member holding data may not change ----------------------------------------------------


def test_identity_changes_name_each_changed_identity_key_with_old_and_new():
    wanted = config_of()
    current = dict(wanted, **{"data-dir": "/data/etcd", "name": "etcd-9", "heartbeat-interval": 5})
    assert etcd_render.identity_changes(current, wanted) == {
        "data-dir": ("/data/etcd", "/var/lib/etcd/data"),
        "name": ("etcd-9", "etcd-2"),
    }


def test_a_moved_address_changes_the_peer_urls():
    before = config_of()
    after = config_of(pillar(members={
        "h1": {"seq": 1, "address": "10.77.0.11"}, "h2": {"seq": 2, "address": "10.77.0.22"}}))
    changes = etcd_render.identity_changes(before, after)
    assert set(changes) == {"initial-advertise-peer-urls", "listen-peer-urls"}
    assert changes["listen-peer-urls"] == ("https://10.77.0.12:2380", "https://10.77.0.22:2380")


@pytest.mark.parametrize("current", [{}, None, "garbage", {"heartbeat-interval": 5}])
def test_no_identity_changes_without_a_readable_file_or_identity_keys(current):
    assert etcd_render.identity_changes(current, config_of()) == {}


def test_identity_refusal_names_the_member_each_change_its_pillar_key_and_the_way_out():
    message = etcd_render.identity_refusal("etcd-2", {"data-dir": ("/data/etcd", "/var/lib/etcd/data")})
    assert message.startswith("member etcd-2 holds data")
    assert "data-dir /data/etcd -> /var/lib/etcd/data (pillar data_dir)" in message
    assert "nothing was changed" in message
    assert "etcd.remove_member" in message and "etcd.add_member" in message
