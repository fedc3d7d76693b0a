"""
The pillar's validation: every kind of mistake is named, with the bad value and what was
expected, all at once; a good pillar (pillar.example included) passes clean.
"""

import copy
import pathlib

import pytest
import yaml

import etcd_pillar

REPO = pathlib.Path(__file__).resolve().parents[3]

GOOD = {
    "pki": {"ca_server": "master"},
    "clusters": {
        "etcd": {
            "members": {
                "h1": {"seq": 1, "address": "10.77.0.11"},
                "h2": {"seq": 2, "address": "10.77.0.12"},
                "h3": {"seq": 3, "address": "10.77.0.13"},
            }
        }
    },
}


def pillar(**cluster_settings):
    """GOOD with ``cluster_settings`` set on cluster etcd."""
    result = copy.deepcopy(GOOD)
    result["clusters"]["etcd"].update(cluster_settings)
    return result


def member(result, minion_id, **settings):
    result["clusters"]["etcd"]["members"].setdefault(minion_id, {}).update(settings)
    return result


def errors_of(etcd, **kwargs):
    errors, _ = etcd_pillar.validate(etcd, **kwargs)
    return errors


def one_error(etcd, **kwargs):
    errors = errors_of(etcd, **kwargs)
    assert len(errors) == 1, errors
    return errors[0]


def test_good_pillar_has_no_error_and_no_warning():
    assert etcd_pillar.validate(GOOD) == ([], [])
    assert etcd_pillar.validate(GOOD, minion_id="h2") == ([], [])


def test_pillar_example_is_valid():
    example = yaml.safe_load((REPO / "pillar.example").read_text())
    errors, warnings = etcd_pillar.validate(example["etcd"])
    assert (errors, warnings) == ([], [])


# -- seq ------------------------------------------------------------------------------------------


def test_missing_seq_is_named():
    etcd = copy.deepcopy(GOOD)
    del etcd["clusters"]["etcd"]["members"]["h2"]["seq"]
    error = one_error(etcd)
    assert "etcd:clusters:etcd:members:h2:seq: missing" in error


@pytest.mark.parametrize("bad", ["2", 2.0, True, 0, -1, None])
def test_non_integer_or_non_positive_seq_is_refused(bad):
    error = one_error(member(copy.deepcopy(GOOD), "h2", seq=bad))
    assert error.startswith("etcd:clusters:etcd:members:h2:seq: {!r}".format(bad))
    assert "expected a positive integer" in error


def test_duplicate_seq_names_both_minions():
    error = one_error(member(copy.deepcopy(GOOD), "h3", seq=1))
    assert "seq 1 is used by h1, h3" in error


# -- membership -----------------------------------------------------------------------------------


def test_minion_in_no_cluster_is_an_error_only_when_asked_about_it():
    assert errors_of(GOOD) == []
    error = one_error(GOOD, minion_id="h9")
    assert "minion h9 is in no cluster" in error
    assert "clusters: etcd" in error


def test_minion_in_two_clusters_is_refused():
    etcd = copy.deepcopy(GOOD)
    etcd["clusters"]["other"] = {
        "members": {"h1": {"seq": 1, "address": "10.77.0.21"}},
    }
    error = one_error(etcd)
    assert "minion h1 is a member of etcd, other" in error


def test_ca_server_that_is_a_member_is_refused():
    etcd = copy.deepcopy(GOOD)
    etcd["pki"]["ca_server"] = "h1"
    error = one_error(etcd)
    assert error.startswith("etcd:pki:ca_server: 'h1' is an etcd member")


def test_no_cluster_at_all_is_refused():
    error = one_error({"pki": {"ca_server": "master"}})
    assert error.startswith("etcd:clusters: None: expected a mapping")


def test_empty_members_is_refused():
    error = one_error(pillar(members={}))
    assert error.startswith("etcd:clusters:etcd:members: {}: expected a mapping")


# -- addresses and ports --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad", ["h1.example.com", "10.77.0.300", "0.0.0.0", "127.0.0.1", "::1", 10, None]
)
def test_bad_address_is_refused(bad):
    error = one_error(member(copy.deepcopy(GOOD), "h1", address=bad))
    assert error.startswith("etcd:clusters:etcd:members:h1:address: {!r}".format(bad))


def test_ipv6_address_is_accepted():
    assert errors_of(member(copy.deepcopy(GOOD), "h1", address="fd00::11")) == []


def test_missing_address_is_named():
    etcd = copy.deepcopy(GOOD)
    del etcd["clusters"]["etcd"]["members"]["h3"]["address"]
    assert one_error(etcd).startswith("etcd:clusters:etcd:members:h3:address: missing")


def test_two_members_on_one_address_are_refused():
    error = one_error(member(copy.deepcopy(GOOD), "h2", address="10.77.0.11"))
    assert "address 10.77.0.11 is used by h1, h2" in error


@pytest.mark.parametrize("key", ["client_port", "peer_port", "metrics_port"])
@pytest.mark.parametrize("bad", [0, 65536, "2379", 23.79])
def test_bad_port_is_refused(key, bad):
    error = one_error(pillar(**{key: bad}))
    assert error.startswith("etcd:clusters:etcd:{}: {!r}: expected an integer from 1 to 65535".format(key, bad))


def test_port_clash_names_both_settings():
    error = one_error(pillar(metrics_port=2379))
    assert "port 2379 is set for client_port and metrics_port" in error


def test_port_clash_across_clusters_on_one_address_is_refused():
    etcd = copy.deepcopy(GOOD)
    etcd["clusters"]["other"] = {
        "members": {"h9": {"seq": 1, "address": "10.77.0.11"}},
        "client_port": 2380,
        "peer_port": 3380,
        "metrics_port": 3381,
    }
    error = one_error(etcd)
    assert "10.77.0.11:2380 is used by" in error
    assert "etcd:h1:peer_port" in error and "other:h9:client_port" in error


# -- member count ---------------------------------------------------------------------------------


def test_even_member_count_is_a_warning_not_an_error():
    etcd = member(copy.deepcopy(GOOD), "h4", seq=4, address="10.77.0.14")
    errors, warnings = etcd_pillar.validate(etcd)
    assert errors == []
    assert len(warnings) == 1 and "4 members" in warnings[0]


# -- timing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -5, "100"])
def test_heartbeat_below_one_ms_is_refused(bad):
    error = one_error(pillar(heartbeat_interval=bad))
    assert error.startswith("etcd:clusters:etcd:heartbeat_interval: {!r}".format(bad))


def test_election_below_five_heartbeats_is_refused():
    error = one_error(pillar(heartbeat_interval=200, election_timeout=999))
    assert "election_timeout: 999: expected at least 5 times heartbeat_interval (200)" in error
    assert errors_of(pillar(heartbeat_interval=200, election_timeout=1000)) == []


def test_election_above_50000_ms_is_refused():
    error = one_error(pillar(election_timeout=50001))
    assert error.startswith("etcd:clusters:etcd:election_timeout: 50001: expected an integer from 1 to 50000")
    assert errors_of(pillar(election_timeout=50000)) == []


# -- keys and values ------------------------------------------------------------------------------


def test_unknown_cluster_key_suggests_the_close_known_key():
    error = one_error(pillar(election_timout=2000))
    assert error == (
        "etcd:clusters:etcd: unknown key 'election_timout': did you mean 'election_timeout'?"
    )


def test_unknown_member_top_and_pki_keys_are_named():
    etcd = member(copy.deepcopy(GOOD), "h1", adress="10.77.0.11")
    etcd["pki"]["days_remain"] = 10
    etcd["cluster"] = {}
    errors = errors_of(etcd)
    assert "etcd:clusters:etcd:members:h1: unknown key 'adress': did you mean 'address'?" in errors
    assert "etcd:pki: unknown key 'days_remain': did you mean 'days_remaining'?" in errors
    assert "etcd: unknown key 'cluster': did you mean 'clusters'?" in errors
    assert len(errors) == 3


def test_unknown_key_without_close_match_lists_known_keys():
    error = one_error(pillar(zzz=1))
    assert "unknown key 'zzz': known keys: " in error and "heartbeat_interval" in error


@pytest.mark.parametrize("good", ["auto", "new", "existing"])
def test_init_values_etcd_knows_are_accepted(good):
    assert errors_of(pillar(init=good)) == []


@pytest.mark.parametrize("bad", ["fresh", "New", True, None])
def test_bad_init_value_is_refused(bad):
    error = one_error(pillar(init=bad))
    assert error == "etcd:clusters:etcd:init: {!r}: expected one of auto, new, existing (etcd_init)".format(bad)


@pytest.mark.parametrize("bad", ["var/lib/etcd", "data", "/", "", None])
def test_data_dir_not_absolute_is_refused(bad):
    error = one_error(pillar(data_dir=bad))
    assert error.startswith("etcd:clusters:etcd:data_dir: {!r}: expected an absolute path".format(bad))


@pytest.mark.parametrize("key", ["safeguard", "clean", "enable_v2"])
def test_flags_must_be_booleans(key):
    error = one_error(pillar(**{key: "yes"}))
    assert error == "etcd:clusters:etcd:{}: 'yes': expected true or false".format(key)


@pytest.mark.parametrize("version", ["3.6.0", "3.6.1-1", "1:3.7.0"])
def test_enable_v2_is_refused_for_etcd_36_and_later(version):
    error = one_error(pillar(enable_v2=True), etcd_version=version)
    assert error.startswith("etcd:clusters:etcd:enable_v2: true: etcd {} has no v2 API".format(version))


def test_enable_v2_version_comes_from_pkg_version_too():
    etcd = pillar(enable_v2=True)
    etcd["pkg"] = {"version": "3.6.4-1"}
    assert "has no v2 API" in one_error(etcd)


@pytest.mark.parametrize("version", ["3.4.23-1", "3.5.16", None])
def test_enable_v2_is_accepted_before_36(version):
    assert errors_of(pillar(enable_v2=True), etcd_version=version) == []


def test_bad_package_version_is_refused():
    etcd = copy.deepcopy(GOOD)
    etcd["pkg"] = {"version": "latest"}
    assert one_error(etcd).startswith("etcd:pkg:version: 'latest': expected an etcd package version")


@pytest.mark.parametrize(
    "settings, expected",
    [
        ({"auto_compaction_mode": "hourly"}, "auto_compaction_mode: 'hourly': expected one of periodic, revision"),
        ({"auto_compaction_retention": "1 hour"}, "auto_compaction_retention: '1 hour': expected a duration"),
        ({"auto_compaction_mode": "revision", "auto_compaction_retention": "1h"},
         "auto_compaction_retention: '1h': expected a number of revisions"),
        ({"quota_backend_bytes": 0}, "quota_backend_bytes: 0: expected a positive integer"),
        ({"snapshot_count": "10k"}, "snapshot_count: '10k': expected a positive integer"),
        ({"incarnation": 0}, "incarnation: 0: expected a positive integer"),
    ],
)
def test_bad_production_settings_are_refused(settings, expected):
    assert expected in one_error(pillar(**settings))


def test_quota_above_8_gib_is_a_warning():
    errors, warnings = etcd_pillar.validate(pillar(quota_backend_bytes=16 * 1024**3))
    assert errors == [] and len(warnings) == 1 and "8 GiB" in warnings[0]


def test_bad_cluster_name_is_refused():
    etcd = copy.deepcopy(GOOD)
    etcd["clusters"]["bad name"] = etcd["clusters"].pop("etcd")
    assert "bad cluster name 'bad name'" in one_error(etcd)


# -- pki ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings, expected",
    [
        ({"ca_server": ""}, "etcd:pki:ca_server: '': expected the minion id of the CA server"),
        ({"ca_dir": "pki"}, "etcd:pki:ca_dir: 'pki': expected an absolute path"),
        ({"days_valid": 0}, "etcd:pki:days_valid: 0: expected an integer >= 1"),
        ({"days_remaining": 825}, "etcd:pki:days_remaining: 825: expected fewer than days_valid (825)"),
        ({"ca_provided": "no"}, "etcd:pki:ca_provided: 'no': expected true or false"),
        ({"key_algo": "dsa"}, "etcd:pki:key_algo: 'dsa': expected one of ec, rsa"),
        ({"key_algo": "rsa", "key_size": 256}, "etcd:pki:key_size: 256: expected one of 2048, 3072, 4096"),
    ],
)
def test_bad_pki_settings_are_refused(settings, expected):
    etcd = copy.deepcopy(GOOD)
    etcd["pki"].update(settings)
    assert one_error(etcd).startswith(expected)


# -- all at once ----------------------------------------------------------------------------------


def test_every_problem_is_named_at_once():
    etcd = pillar(init="fresh", data_dir="relative", heartbeat_interval=0, peer_port=2379)
    member(etcd, "h1", seq="one")
    member(etcd, "h2", address="nowhere")
    etcd["pki"]["key_algo"] = "dsa"
    errors = errors_of(etcd, minion_id="h7")
    wanted = ["init", "data_dir", "heartbeat_interval", "port 2379", "h1:seq", "h2:address",
              "key_algo", "minion h7 is in no cluster"]
    for word in wanted:
        assert any(word in error for error in errors), (word, errors)
    assert len(errors) == len(wanted)


def test_not_a_mapping_is_refused():
    assert one_error(["clusters"]).startswith("etcd: ['clusters']: expected a mapping")


# -- the config file ------------------------------------------------------------------------------

INITIAL = {
    "initial-cluster": "etcd-1=https://10.77.0.11:2380",
    "initial-cluster-state": "existing",
    "initial-cluster-token": "kept-token",
}


def config_of(etcd=GOOD, minion_id="h2", initial=INITIAL, etcd_version=None):
    settings = etcd_pillar.member_settings(etcd, minion_id)
    return etcd_pillar.member_config(settings, initial, etcd_version)


def test_config_listens_on_the_address_and_loopback_and_advertises_the_address():
    config = config_of()
    assert config["name"] == "etcd-2"
    assert config["listen-client-urls"] == "https://10.77.0.12:2379,https://127.0.0.1:2379"
    assert config["advertise-client-urls"] == "https://10.77.0.12:2379"
    assert config["listen-peer-urls"] == config["initial-advertise-peer-urls"] == "https://10.77.0.12:2380"
    assert config["listen-metrics-urls"] == "http://10.77.0.12:2381,http://127.0.0.1:2381"


def test_config_requires_client_certs_on_both_ports():
    config = config_of()
    for side, cert in (("client-transport-security", "server"), ("peer-transport-security", "peer")):
        assert config[side] == {
            "cert-file": "/etc/etcd/pki/{}.crt".format(cert),
            "key-file": "/etc/etcd/pki/{}.key".format(cert),
            "trusted-ca-file": "/etc/etcd/pki/ca.crt",
            "client-cert-auth": True,
            "auto-tls": False,
        }


def test_config_takes_the_initial_settings_it_is_given():
    config = config_of()
    assert {key: config[key] for key in etcd_pillar.INITIAL_KEYS} == INITIAL


def test_config_carries_the_cluster_settings():
    etcd = pillar(
        heartbeat_interval=150, election_timeout=1500, quota_backend_bytes=4 * 1024**3,
        auto_compaction_mode="revision", auto_compaction_retention=1000, snapshot_count=5000,
        data_dir="/srv/etcd", client_port=12379, peer_port=12380, metrics_port=12381,
    )
    config = config_of(etcd)
    assert (config["heartbeat-interval"], config["election-timeout"]) == (150, 1500)
    assert config["quota-backend-bytes"] == 4 * 1024**3
    assert config["auto-compaction-mode"] == "revision"
    # etcd's YAML field is a string: a bare number would not load
    assert config["auto-compaction-retention"] == "1000"
    assert config["snapshot-count"] == 5000
    assert config["data-dir"] == "/srv/etcd"
    assert config["listen-client-urls"] == "https://10.77.0.12:12379,https://127.0.0.1:12379"
    assert config["listen-metrics-urls"] == "http://10.77.0.12:12381,http://127.0.0.1:12381"


def test_config_turns_the_json_gateway_on():
    assert config_of()["enable-grpc-gateway"] is True


@pytest.mark.parametrize(
    "enable_v2, version, expected",
    [(False, None, False), (True, None, True), (True, "3.5.16-4", True), (True, "3.6.0", False)],
)
def test_enable_v2_is_written_only_when_set_and_before_36(enable_v2, version, expected):
    config = config_of(pillar(enable_v2=enable_v2), etcd_version=version)
    assert ("enable-v2" in config) is expected


MEMBERS = [
    {"id": "a1", "name": "etcd-1", "peer_urls": ["https://10.77.0.11:2380"]},
    {"id": "b2", "name": "etcd-2", "peer_urls": ["https://10.77.0.12:2380"]},
    {"id": "c4", "name": "", "peer_urls": ["https://10.77.0.14:2380"]},
]


def test_joining_member_gets_the_real_membership_with_its_own_name():
    assert etcd_pillar.joining_initial_cluster(MEMBERS, "etcd-4", "https://10.77.0.14:2380") == (
        "etcd-1=https://10.77.0.11:2380,etcd-2=https://10.77.0.12:2380,"
        "etcd-4=https://10.77.0.14:2380"
    )


def test_joining_member_that_was_never_added_is_refused():
    with pytest.raises(ValueError, match="no member with peer URL https://10.77.0.15:2380: add it first"):
        etcd_pillar.joining_initial_cluster(MEMBERS[:2], "etcd-5", "https://10.77.0.15:2380")


def test_joining_beside_another_never_started_member_is_refused():
    with pytest.raises(ValueError, match="c4 .* was added but never started"):
        etcd_pillar.joining_initial_cluster(MEMBERS, "etcd-1", "https://10.77.0.11:2380")


@pytest.mark.parametrize(
    "broken",
    [
        {"clusters": {"etcd": {"members": {"h1": {"seq": "x", "address": "10.77.0.11"}, "h2": {"seq": 2, "address": "10.77.0.12"}}}}},
        {"clusters": {"etcd": {"members": {"h1": {"seq": 1}}}}},
        {"clusters": {"etcd": ["h1"]}},
        {"clusters": "etcd"},
    ],
)
def test_member_settings_of_a_broken_pillar_is_none_not_a_crash(broken):
    # SLS files render from it before etcd.assert runs: a crash there would hide the report
    assert etcd_pillar.member_settings(broken, "h1") is None
    assert errors_of(broken, minion_id="h1")
