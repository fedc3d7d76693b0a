"""
etcd_versions.plan: etcd's own rules for a rolling upgrade (docs/operations.md "Rolling
upgrade", etcd-facts.md), each refusal naming the rule, and the plan when they allow it. The
3.6 and 3.7 rules are etcd's documented ones: no 3.6 binary runs here.
"""

import pytest
from salt.exceptions import CommandExecutionError

import etcd_versions

THREE = ("h1", "h2", "h3")


def running(*versions):
    return dict(zip(THREE, versions))


def test_a_patch_upgrade_names_the_members_that_do_not_run_it_yet():
    plan = etcd_versions.plan("3.5.30-2", running("3.5.16", "3.5.30", "3.5.16"), "3.5.0")
    assert plan == {"target": "3.5.30", "minor": False, "members": ["h1", "h3"]}


def test_the_next_minor_moves_the_cluster_version():
    plan = etcd_versions.plan("3.5.30", running("3.4.23", "3.4.23", "3.4.23"), "3.4.0")
    assert plan["minor"] is True and plan["members"] == list(THREE)


def test_an_interrupted_minor_upgrade_goes_on():
    plan = etcd_versions.plan("3.5.30", running("3.5.30", "3.4.23", "3.4.23"), "3.4.0")
    assert plan["members"] == ["h2", "h3"]


def test_nothing_to_do_when_every_member_runs_it():
    assert etcd_versions.plan("3.5.30", running("3.5.30", "3.5.30", "3.5.30"), "3.5.0")["members"] == []


@pytest.mark.parametrize("target, have, cluster, why", [
    ("3.4.23", ("3.5.16",) * 3, "3.5.0", "3.4.23 is older than 3.5.16 (which a member runs): a downgrade is refused"),
    ("3.5.16", ("3.5.30", "3.5.16", "3.5.16"), "3.5.0", "3.5.16 is older than 3.5.30 (which a member runs): a downgrade is refused"),
    ("3.6.11", ("3.4.23",) * 3, "3.4.0", "3.6.11 skips a minor version (the cluster is at 3.4): one minor at a time, upgrade to the newest 3.5 first"),
    ("4.0.0", ("3.5.30",) * 3, "3.5.0", "4.0.0 is another major version than the cluster's 3.5: refused"),
    ("3.6.11", ("3.5.30",) * 3, "3.5.0", "3.6.11 needs every member at 3.5.32 or later first (a member runs 3.5.30): upgrade to the newest 3.5 patch first"),
    ("3.7.0", ("3.6.10", "3.6.11", "3.6.11"), "3.6.0", "3.7.0 needs every member at 3.6.11 or later first (a member runs 3.6.10)"),
    ("3.5", ("3.5.16",) * 3, "3.5.0", "version: '3.5': expected an etcd version like 3.5.30"),
])
def test_etcds_rules_refuse(target, have, cluster, why):
    with pytest.raises(CommandExecutionError, match="^" + why.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        etcd_versions.plan(target, running(*have), cluster)


@pytest.mark.parametrize("bad, have", [("3.4.42", "3.4.23"), ("3.5.28", "3.5.16"), ("3.6.9", "3.6.5")])
def test_a_release_that_made_member_list_admin_only_is_refused_where_users_exist(bad, have):
    with pytest.raises(CommandExecutionError, match="etcd {} made MemberList admin-only".format(bad)):
        etcd_versions.plan(bad, running(have, have, have), have[:4] + "0", non_root_users=True)
    # a cluster with root alone: patroni has no user of its own to lose the list
    assert etcd_versions.plan(bad, running(have, have, have), have[:4] + "0")["members"]


def test_before_3_6_v2_is_off_and_its_store_checked():
    have = running("3.5.32", "3.5.32", "3.5.32")
    with pytest.raises(CommandExecutionError, match="etcd 3.6 has no v2 store: turn enable_v2 off"):
        etcd_versions.plan("3.6.11", have, "3.5.0", enable_v2=True, v2store_checked=True)
    with pytest.raises(CommandExecutionError, match="etcdutl check v2store must pass"):
        etcd_versions.plan("3.6.11", have, "3.5.0")
    assert etcd_versions.plan("3.6.11", have, "3.5.0", v2store_checked=True)["minor"] is True
    # within 3.6 the v2 rules are past
    assert etcd_versions.plan("3.6.12", running("3.6.11", "3.6.11", "3.6.11"), "3.6.0")["members"]


def test_the_package_version_given_is_installed_as_given_else_its_newest_package():
    assert etcd_versions.package_version("3.5.30-2") == "3.5.30-2"
    assert etcd_versions.package_version("3.5.30") == "3.5.30*"
