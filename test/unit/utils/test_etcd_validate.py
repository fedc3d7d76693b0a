"""
etcd_validate: every mistake of the pillar named at once, with the bad value and what was
expected; a good pillar (pillar.example included) passes clean. And the two rules every
destructive step checks again: a path the formula may delete, a plain minion id.
"""

import pathlib

import pytest
import yaml

import etcd_validate
from etcd_fakes import PILLAR, pillar

try:  # Salt 3008 masks pillar values (their repr); older lines hand plain dicts over
    from salt.utils.secret import REDACT_PLACEHOLDER, MaskedDict
except ImportError:
    REDACT_PLACEHOLDER = MaskedDict = None
masked_pillar = pytest.mark.skipif(MaskedDict is None, reason="Salt < 3008 has no masked pillar")

REPO = pathlib.Path(__file__).resolve().parents[3]


def member(result, minion_id, **settings):
    result["clusters"]["etcd"]["members"].setdefault(minion_id, {}).update(settings)
    return result


def errors_of(etcd, **kwargs):
    errors, _ = etcd_validate.validate(etcd, **kwargs)
    return errors


def one_error(etcd, **kwargs):
    errors = errors_of(etcd, **kwargs)
    assert len(errors) == 1, errors
    return errors[0]


def test_good_pillar_has_no_error_and_no_warning():
    assert etcd_validate.validate(PILLAR) == ([], [])
    assert etcd_validate.validate(PILLAR, minion_id="h2") == ([], [])


def test_pillar_example_is_valid():
    example = yaml.safe_load((REPO / "pillar.example").read_text())
    assert etcd_validate.validate(example["etcd"]) == ([], [])


# -- the path rule --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, why",
    [
        ("/", "expected a normalised path"),
        ("/var", "a system directory"),
        ("/var/lib", "a system directory"),
        ("/etc", "a system directory"),
        ("/etc/x", "a system directory (or inside one)"),
        ("/tmp/etcd", "a system directory (or inside one)"),
        ("/data", "a system directory"),
        ("/var/lib/etcd/..", "expected a normalised path (no '..', '.' or '//')"),
        ("/var/lib/./etcd", "expected a normalised path"),
        ("/var//lib/etcd", "expected a normalised path"),
        ("var/lib/etcd", "expected an absolute path"),
        ("data", "expected an absolute path"),
        ("", "expected an absolute path"),
        (None, "expected an absolute path"),
    ],
)
def test_path_problem_refuses_system_relative_and_unnormalised_paths(path, why):
    problem = etcd_validate.path_problem(path)
    assert problem.startswith(repr(path) + ": "), problem
    assert why in problem


@pytest.mark.parametrize("path", ["/var/lib/etcd/data", "/data/etcd", "/srv/etcd/data"])
def test_path_problem_accepts_a_directory_of_etcds_own(path):
    assert etcd_validate.path_problem(path) is None


def test_ca_dir_may_be_under_etc_but_not_etc_itself():
    assert errors_of(pillar(), minion_id=None) == []
    given = pillar()
    given["pki"]["ca_dir"] = "/etc/pki/etcd-ca"
    assert errors_of(given) == []
    given["pki"]["ca_dir"] = "/etc"
    assert one_error(given).startswith("etcd:pki:ca_dir: '/etc': a system directory")


@pytest.mark.parametrize("bad", ["/var/lib", "/tmp/etcd", "var/lib/etcd", "/var/lib/etcd/..", "", None])
def test_a_data_dir_the_formula_may_not_delete_is_refused(bad):
    error = one_error(pillar(data_dir=bad))
    assert error.startswith("etcd:clusters:etcd:data_dir: {!r}: ".format(bad)), error


# -- the minion id rule ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["*", "h*", "h1,h2", "a b", "h1\nh2", "h1\n", ["h1"], None, "", "-h1", "G@os:Debian"])
def test_minion_id_problem_refuses_anything_but_one_plain_id(bad):
    problem = etcd_validate.minion_id_problem(bad)
    # the value is shown as Python writes it, so a newline or a list is visible
    assert problem.startswith("etcd_member: {!r}: expected one plain minion id".format(bad)), problem


@pytest.mark.parametrize("good", ["h1", "db-1.example.com", "pg_2"])
def test_minion_id_problem_accepts_a_plain_id(good):
    assert etcd_validate.minion_id_problem(good) is None


def test_minion_id_problem_names_where_the_value_came_from():
    assert etcd_validate.minion_id_problem("h*", where="exclude").startswith("exclude: 'h*': ")


def test_a_member_that_is_no_plain_minion_id_is_refused():
    given = member(pillar(), "h 4", seq=4, address="10.77.0.14")
    assert one_error(given).startswith("etcd:clusters:etcd:members: 'h 4': expected a plain minion id")


def test_a_ca_server_that_is_a_target_expression_is_refused():
    given = pillar()
    given["pki"]["ca_server"] = "h*"
    assert one_error(given) == "etcd:pki:ca_server: 'h*': expected the minion id of the CA server"


# -- Salt 3008's masked pillar --------------------------------------------------------------------


@masked_pillar
def test_messages_show_the_values_of_a_masked_pillar():
    given = member(pillar(), "h2", seq=["x"])
    given["clusters"]["etcd"]["clients"] = ["patroni"]
    given["clusters"]["etcd"]["members"]["h3"] = ["10.77.0.13"]
    masked = MaskedDict(given)
    # as Salt 3008 hands the pillar over: its repr hides every value
    assert REDACT_PLACEHOLDER in repr(masked["clusters"]["etcd"]["clients"])
    errors = errors_of(masked)
    assert "etcd:clusters:etcd:members:h2:seq: ['x']: expected a positive integer (etcd_seq)" in errors
    assert any(e.startswith("etcd:clusters:etcd:clients: ['patroni']: expected a mapping") for e in errors)
    assert "etcd:clusters:etcd:members:h3: ['10.77.0.13']: expected {seq: N, address: IP}" in errors
    assert not any(REDACT_PLACEHOLDER in e for e in errors), errors


@masked_pillar
def test_an_empty_masked_members_mapping_is_shown_as_empty():
    assert one_error(MaskedDict(pillar(members={}))).startswith(
        "etcd:clusters:etcd:members: {}: expected a mapping")


@masked_pillar
def test_plain_makes_masked_containers_plain_again():
    plain = etcd_validate.plain(MaskedDict({"a": {"b": ["c"]}}))
    assert repr(plain) == "{'a': {'b': ['c']}}"


# -- seq ------------------------------------------------------------------------------------------


def test_missing_seq_is_named():
    given = pillar()
    del given["clusters"]["etcd"]["members"]["h2"]["seq"]
    assert "etcd:clusters:etcd:members:h2:seq: missing" in one_error(given)


@pytest.mark.parametrize("bad", ["2", 2.0, True, 0, -1, None])
def test_non_integer_or_non_positive_seq_is_refused(bad):
    error = one_error(member(pillar(), "h2", seq=bad))
    assert error.startswith("etcd:clusters:etcd:members:h2:seq: {!r}".format(bad))
    assert "expected a positive integer" in error


def test_duplicate_seq_names_both_minions():
    assert "seq 1 is used by h1, h3" in one_error(member(pillar(), "h3", seq=1))


# -- membership -----------------------------------------------------------------------------------


def test_minion_in_no_cluster_is_an_error_only_when_asked_about_it():
    assert errors_of(PILLAR) == []
    error = one_error(PILLAR, minion_id="h9")
    assert "minion h9 is in no cluster" in error and "clusters: etcd" in error


def test_minion_in_two_clusters_is_refused():
    given = pillar()
    given["clusters"]["other"] = {"members": {"h1": {"seq": 1, "address": "10.77.0.21"}}}
    assert "minion h1 is a member of etcd, other" in one_error(given)


def test_ca_server_that_is_a_member_is_refused():
    given = pillar()
    given["pki"]["ca_server"] = "h1"
    assert one_error(given).startswith("etcd:pki:ca_server: 'h1' is an etcd member")


def test_no_cluster_at_all_is_refused():
    assert one_error({"pki": {"ca_server": "master"}}).startswith("etcd:clusters: None: expected a mapping")


def test_empty_members_is_refused():
    assert one_error(pillar(members={})).startswith("etcd:clusters:etcd:members: {}: expected a mapping")


# -- addresses and ports --------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["h1.example.com", "10.77.0.300", "0.0.0.0", "127.0.0.1", "::1", 10, None])
def test_bad_address_is_refused(bad):
    error = one_error(member(pillar(), "h1", address=bad))
    assert error.startswith("etcd:clusters:etcd:members:h1:address: {!r}".format(bad))


def test_ipv6_address_is_accepted():
    assert errors_of(member(pillar(), "h1", address="fd00::11")) == []


def test_missing_address_is_named():
    given = pillar()
    del given["clusters"]["etcd"]["members"]["h3"]["address"]
    assert one_error(given).startswith("etcd:clusters:etcd:members:h3:address: missing")


def test_two_members_on_one_address_are_refused():
    assert "address 10.77.0.11 is used by h1, h2" in one_error(member(pillar(), "h2", address="10.77.0.11"))


@pytest.mark.parametrize("key", ["client_port", "peer_port", "metrics_port"])
@pytest.mark.parametrize("bad", [0, 65536, "2379", 23.79])
def test_bad_port_is_refused(key, bad):
    error = one_error(pillar(**{key: bad}))
    assert error.startswith("etcd:clusters:etcd:{}: {!r}: expected an integer from 1 to 65535".format(key, bad))


def test_port_clash_names_both_settings():
    assert "port 2379 is set for client_port and metrics_port" in one_error(pillar(metrics_port=2379))


def test_port_clash_across_clusters_on_one_address_is_refused():
    given = pillar()
    given["clusters"]["other"] = {
        "members": {"h9": {"seq": 1, "address": "10.77.0.11"}},
        "client_port": 2380, "peer_port": 3380, "metrics_port": 3381,
    }
    error = one_error(given)
    assert "10.77.0.11:2380 is used by" in error
    assert "etcd:h1:peer_port" in error and "other:h9:client_port" in error


def test_even_member_count_is_a_warning_not_an_error():
    errors, warnings = etcd_validate.validate(pillar(members=4))
    assert errors == []
    assert len(warnings) == 1 and "4 members" in warnings[0]


# -- timing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -5, "100"])
def test_heartbeat_below_one_ms_is_refused(bad):
    assert one_error(pillar(heartbeat_interval=bad)).startswith(
        "etcd:clusters:etcd:heartbeat_interval: {!r}".format(bad))


def test_election_below_five_heartbeats_is_refused():
    error = one_error(pillar(heartbeat_interval=200, election_timeout=999))
    assert "election_timeout: 999: expected at least 5 times heartbeat_interval (200)" in error
    assert errors_of(pillar(heartbeat_interval=200, election_timeout=1000)) == []


def test_election_above_50000_ms_is_refused():
    assert one_error(pillar(election_timeout=50001)).startswith(
        "etcd:clusters:etcd:election_timeout: 50001: expected an integer from 1 to 50000")
    assert errors_of(pillar(election_timeout=50000)) == []


# -- keys and values ------------------------------------------------------------------------------


def test_unknown_cluster_key_suggests_the_close_known_key():
    assert one_error(pillar(election_timout=2000)) == (
        "etcd:clusters:etcd: unknown key 'election_timout': did you mean 'election_timeout'?")


def test_unknown_member_top_and_pki_keys_are_named():
    given = member(pillar(), "h1", adress="10.77.0.11")
    given["pki"]["days_remain"] = 10
    given["cluster"] = {}
    errors = errors_of(given)
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
    assert one_error(pillar(init=bad)) == (
        "etcd:clusters:etcd:init: {!r}: expected one of auto, new, existing (etcd_init)".format(bad))


@pytest.mark.parametrize("key", ["safeguard", "clean", "enable_v2"])
def test_flags_must_be_booleans(key):
    assert one_error(pillar(**{key: "yes"})) == "etcd:clusters:etcd:{}: 'yes': expected true or false".format(key)


@pytest.mark.parametrize("version", ["3.6.0", "3.6.1-1", "1:3.7.0"])
def test_enable_v2_is_refused_for_etcd_36_and_later(version):
    assert one_error(pillar(enable_v2=True), etcd_version=version).startswith(
        "etcd:clusters:etcd:enable_v2: true: etcd {} has no v2 API".format(version))


def test_enable_v2_version_comes_from_pkg_version_too():
    given = pillar(enable_v2=True)
    given["pkg"] = {"version": "3.6.4-1"}
    assert "has no v2 API" in one_error(given)


@pytest.mark.parametrize("version", ["3.4.23-1", "3.5.16", None])
def test_enable_v2_is_accepted_before_36(version):
    assert errors_of(pillar(enable_v2=True), etcd_version=version) == []


def test_bad_package_settings_are_refused():
    given = pillar()
    given["pkg"] = {"version": "latest", "server": ""}
    errors = errors_of(given)
    assert any(e.startswith("etcd:pkg:version: 'latest': expected an etcd package version") for e in errors)
    assert "etcd:pkg:server: '': expected a package name" in errors


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
    errors, warnings = etcd_validate.validate(pillar(quota_backend_bytes=16 * 1024**3))
    assert errors == [] and len(warnings) == 1 and "8 GiB" in warnings[0]


def test_bad_cluster_name_is_refused():
    given = pillar()
    given["clusters"]["bad name"] = given["clusters"].pop("etcd")
    assert "bad cluster name 'bad name'" in one_error(given)


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
    given = pillar()
    given["pki"].update(settings)
    assert one_error(given).startswith(expected)


# -- clients --------------------------------------------------------------------------------------


def test_clients_with_targets_are_valid():
    assert errors_of(pillar(clients={
        "patroni": {"target": ["pg1", "pg2"]}, "prometheus": {"target": ["mon1"], "tgt_type": "list"},
        "vip": {"kind": "vip_manager", "target": ["pg1", "pg2"], "version": 2}})) == []


def test_clients_name_every_mistake():
    errors = errors_of(pillar(clients={
        "patroni": {"tgt_type": "glob", "hots": "x"}, "pgbouncer": {"target": "x"},
        "vip_manager": {"target": ["pg1", "pg2"], "version": 0}}))
    assert "etcd:clusters:etcd:clients:pgbouncer: 'pgbouncer': expected a client kind (patroni, prometheus, vip_manager)" in errors
    assert any(e.startswith("etcd:clusters:etcd:clients:patroni: unknown key 'hots'") for e in errors)
    assert "etcd:clusters:etcd:clients:patroni:target: None: expected a target expression naming the patroni minions" in errors
    assert any(e.startswith("etcd:clusters:etcd:clients:vip_manager:version: 0: expected 1") for e in errors)
    assert len(errors) == 4


def test_a_misspelt_client_kind_suggests_the_known_one():
    error = one_error(pillar(clients={"vip": {"kind": "vip-manager", "target": ["pg1", "pg2"], "version": 2}}))
    assert error.startswith("etcd:clusters:etcd:clients:vip:kind: 'vip-manager': expected a client kind")
    assert error.endswith("did you mean 'vip_manager'?")


@pytest.mark.parametrize("given", [{"target": "pg*"}, {"target": "pg1,pg2", "tgt_type": "pcre"},
                                   {"target": "G@role:pg", "tgt_type": "compound"}])
@pytest.mark.parametrize("kind", ["patroni", "vip_manager"])
def test_a_client_that_gets_a_certificate_must_be_named_by_exact_ids(kind, given):
    # the CA signs a client certificate for a minion id it was given, never for a pattern:
    # a new minion matching a glob would otherwise get DCS rights by its name alone
    spec = dict(given, version=2) if kind == "vip_manager" else dict(given)
    error = one_error(pillar(clients={kind: spec}))
    assert error.startswith("etcd:clusters:etcd:clients:{}:target: {!r} ({}): expected the exact "
                            "minion ids".format(kind, given["target"], given.get("tgt_type", "glob")))
    assert errors_of(pillar(clients={kind: dict(spec, target="pg1,pg2", tgt_type="list")})) == []


def test_a_prometheus_client_may_be_a_pattern():
    assert errors_of(pillar(clients={"prometheus": {"target": "mon*"}})) == []


@pytest.mark.parametrize("tgt_type", ["nodegroup", "range"])
def test_a_target_type_only_the_master_evaluates_is_refused(tgt_type):
    error = one_error(pillar(clients={"patroni": {"target": "pg", "tgt_type": tgt_type}}))
    assert error.startswith("etcd:clusters:etcd:clients:patroni:tgt_type: {!r}: expected one of glob".format(tgt_type))
    assert "nodegroup and range are the master's" in error


def test_vip_manager_1_needs_the_v2_api():
    assert errors_of(pillar(clients={"vip_manager": {"target": ["pg1", "pg2"], "version": 1}})) == [
        "etcd:clusters:etcd:clients:vip_manager:version: 1: vip-manager 1.x speaks etcd's v2 API "
        "only: expected enable_v2: true on the cluster (etcd < 3.6), or version: 2"]
    assert errors_of(pillar(clients={"vip_manager": {"target": ["pg1", "pg2"]}}, enable_v2=True)) == []


# -- all at once ----------------------------------------------------------------------------------


def test_every_problem_is_named_at_once():
    given = pillar(init="fresh", data_dir="relative", heartbeat_interval=0, peer_port=2379)
    member(given, "h1", seq="one")
    member(given, "h2", address="nowhere")
    given["pki"]["key_algo"] = "dsa"
    errors = errors_of(given, minion_id="h7")
    wanted = ["init", "data_dir", "heartbeat_interval", "port 2379", "h1:seq", "h2:address",
              "key_algo", "minion h7 is in no cluster"]
    for word in wanted:
        assert any(word in error for error in errors), (word, errors)
    assert len(errors) == len(wanted)


def test_not_a_mapping_is_refused():
    assert one_error(["clusters"]).startswith("etcd: ['clusters']: expected a mapping")


# -- etcd RBAC --------------------------------------------------------------------------------------

SECRET = "s3cret-not-to-show"


def auth_pillar(**cluster):
    given = dict(auth=True, root_password=SECRET, clients={
        "patroni": {"target": ["pg1"], "scope": "pg-a", "password": SECRET},
        "vip": {"kind": "vip_manager", "target": ["pg1"], "version": 2,
                "trigger_key": "/service/pg-a/leader", "password": SECRET}})
    given.update(cluster)
    return pillar(**given)


def test_auth_with_every_password_and_scope_is_valid():
    assert errors_of(auth_pillar()) == []


def test_auth_needs_roots_password_and_each_clients_user_and_never_shows_a_secret():
    errors = errors_of(auth_pillar(root_password=None, clients={
        "patroni": {"target": ["pg1"]},
        "vip": {"kind": "vip_manager", "target": ["pg1"], "version": 2, "password": 7}}))
    assert errors == [
        "etcd:clusters:etcd:root_password: missing: expected a password (a string; pillar or "
        "sdb) (auth: true needs it)",
        "etcd:clusters:etcd:clients:patroni:scope: missing: with auth: true patroni's etcd user "
        "gets readwrite on /<namespace>/<scope>/ only: name its scope",
        "etcd:clusters:etcd:clients:patroni:password: missing: expected a password (a string; "
        "pillar or sdb)",
        "etcd:clusters:etcd:clients:vip:password: (hidden) of type int: expected a non-empty "
        "one-line string",
        "etcd:clusters:etcd:clients:vip:trigger_key: missing: with auth: true vip-manager's etcd "
        "user may read its trigger key only: name it",
    ]


def test_a_secret_of_the_wrong_shape_is_named_but_not_shown():
    errors = errors_of(auth_pillar(root_password=SECRET + "\n" + SECRET))
    assert errors == ["etcd:clusters:etcd:root_password: (hidden) of type str: expected a "
                      "non-empty one-line string (auth: true needs it)"]
    assert SECRET not in str(errors)


def test_without_auth_passwords_are_optional_and_auth_must_be_a_bool():
    assert errors_of(pillar(clients={"patroni": {"target": ["pg1"]}})) == []
    assert errors_of(pillar(auth="yes")) == ["etcd:clusters:etcd:auth: 'yes': expected true or false"]


@pytest.mark.parametrize("key, value, expected", [
    ("scope", "pg/a", "expected patroni's scope"), ("namespace", "service", "expected patroni's namespace")])
def test_patroni_scope_and_namespace_must_make_a_prefix(key, value, expected):
    error = one_error(auth_pillar(clients={"patroni": {"target": ["pg1"], "scope": "pg-a",
                                                       "password": SECRET, key: value}}))
    assert error.startswith("etcd:clusters:etcd:clients:patroni:{}: {!r}: {}".format(key, value, expected))


def test_vip_manager_1_with_auth_is_a_warning_it_stays_unrestricted():
    errors, warnings = etcd_validate.validate(auth_pillar(enable_v2=True, clients={
        "vip": {"kind": "vip_manager", "target": ["pg1"], "version": 1}}))
    assert errors == []
    assert any("vip-manager 1.x reads etcd's v2 API" in w and "auth: true protects nothing of "
               "patroni's" in w for w in warnings), warnings


@pytest.mark.parametrize("key, value", [("defrag_in_use_ratio", 0), ("defrag_in_use_ratio", 1.5),
                                        ("nospace_margin", "0.2"), ("nospace_margin", True)])
def test_maintenance_fractions_are_between_0_and_1(key, value):
    assert one_error(pillar(**{key: value})) == (
        "etcd:clusters:etcd:{}: {!r}: expected a fraction between 0 and 1 (e.g. 0.5)".format(key, value))


def test_defrag_min_bytes_is_a_size():
    assert one_error(pillar(defrag_min_bytes=-1)).startswith("etcd:clusters:etcd:defrag_min_bytes: -1: expected an integer >= 0")
    assert errors_of(pillar(defrag_min_bytes=0, defrag_in_use_ratio=0.7, nospace_margin=0.1)) == []


def test_the_textfile_directory_is_an_absolute_path_or_null():
    given = pillar()
    given["monitoring"] = {"textfile_dir": "var/lib"}
    assert errors_of(given) == ["etcd:monitoring:textfile_dir: 'var/lib': expected an absolute "
                                "path (node_exporter's --collector.textfile.directory), or null"]
    given["monitoring"] = {"textfile_dir": None}
    assert errors_of(given) == []
    given["monitoring"] = {"textfile": "/x"}
    assert errors_of(given)[0].startswith("etcd:monitoring: unknown key 'textfile'")


def test_short_lived_client_certificates_must_outlive_the_renewal_window():
    given = pillar()
    given["pki"].update(client_days_valid=7, days_remaining=3)
    assert errors_of(given) == []
    given["pki"].update(days_remaining=30)
    assert errors_of(given) == ["etcd:pki:client_days_valid: 7: expected more than days_remaining "
                                "(30), or every run would renew the client certificates"]


# -- the version rule (salt-run etcd.upgrade: it reaches apt and a rendered SLS) ----------------


@pytest.mark.parametrize("bad", ["3.5", "latest", "3.5.30;reboot", "3.5.30 -y", "3.5.30\n", None,
                                 ["3.5.30"], "", "=3.5.30", "3.5.30*"])
def test_version_problem_refuses_anything_but_a_version(bad):
    problem = etcd_validate.version_problem(bad)
    assert problem.startswith("etcd_version: {!r}: expected an etcd version like 3.5.30".format(
        bad)), problem


@pytest.mark.parametrize("good", ["3.5.30", "3.5.30-2", "1:3.5.16-4+b1", "3.4.23-4+b4"])
def test_version_problem_accepts_etcd_and_package_versions(good):
    assert etcd_validate.version_problem(good) is None
