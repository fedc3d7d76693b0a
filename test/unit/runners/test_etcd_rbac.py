"""
etcd_rbac (salt-run etcd.auth): the users and roles etcd is given from the pillar, against a
fake of the client's auth calls: what is added, granted and revoked, what is left alone, and
which password changes wait until the client has its new password. The whole orchestration
runs on the lab (test/integration/test_trust.py) with a real patroni.
"""

import pytest
import salt.config

import etcd_rbac
import etcd_settings
from etcd_fakes import pillar, real_utils


@pytest.fixture
def configure_loader_modules():
    return {etcd_rbac: {"__utils__": real_utils(), "__opts__": {"id": "master"}, "__salt__": {},
                        "__context__": {}}}


class FakeAuth:
    """etcd's users and roles, and the passwords it takes."""

    def __init__(self, users=None, roles=None, passwords=None):
        self.user_roles = dict(users or {})
        self.role_perms = {r: list(p) for r, p in (roles or {}).items()}
        self.passwords = dict(passwords or {})
        self.calls = []

    def roles(self):
        return {r: sorted(p) for r, p in self.role_perms.items()}

    def users(self):
        return {u: sorted(r) for u, r in self.user_roles.items()}

    def role_add(self, name):
        self.calls.append(("role_add", name))
        self.role_perms[name] = []

    def role_grant(self, name, perm_type, key, range_end=""):
        self.calls.append(("role_grant", name, perm_type, key, range_end))
        self.role_perms[name].append((perm_type, key, range_end))

    def role_revoke(self, name, key, range_end=""):
        self.calls.append(("role_revoke", name, key, range_end))
        self.role_perms[name] = [p for p in self.role_perms[name] if p[1:] != (key, range_end)]

    def user_add(self, name, password):
        self.calls.append(("user_add", name))
        self.user_roles[name], self.passwords[name] = [], password

    def user_password(self, name, password):
        self.calls.append(("user_password", name))
        self.passwords[name] = password

    def user_grant(self, name, role):
        self.calls.append(("user_grant", name, role))
        self.user_roles[name].append(role)

    def password_works(self, name, password):
        return self.passwords.get(name) == password


def wanted(**patroni):
    cluster = etcd_settings.cluster_named(pillar(root_password="root-pw", clients={
        "patroni": dict({"target": ["pg1"], "scope": "pg-a", "password": "pg-pw"}, **patroni)}),
        "etcd")
    return etcd_settings.auth_users(cluster)


def test_a_cluster_without_users_gets_root_and_patronis_user_and_role():
    etcd = FakeAuth()
    done, pending = etcd_rbac._users_and_roles(etcd, *wanted(), auth_on=False)
    assert etcd.users() == {"root": ["root"], "patroni-pg-a": ["patroni-pg-a"]}
    assert etcd.roles() == {"root": [], "patroni-pg-a": [("READWRITE", "/service/pg-a/", "/service/pg-a0")]}
    assert etcd.passwords == {"root": "root-pw", "patroni-pg-a": "pg-pw"}
    assert pending == []
    assert "role patroni-pg-a: READWRITE on /service/pg-a/ (prefix) granted" in done
    assert not any("pw" in line for line in done)


def test_a_second_run_with_authentication_on_changes_nothing():
    etcd = FakeAuth()
    etcd_rbac._users_and_roles(etcd, *wanted(), auth_on=False)
    etcd.calls.clear()
    assert etcd_rbac._users_and_roles(etcd, *wanted(), auth_on=True) == ([], [])
    assert etcd.calls == []


def test_with_authentication_on_a_changed_password_waits_for_the_client():
    etcd = FakeAuth()
    etcd_rbac._users_and_roles(etcd, *wanted(), auth_on=False)
    etcd.calls.clear()
    done, pending = etcd_rbac._users_and_roles(etcd, *wanted(password="pg-pw-2"), auth_on=True)
    # not changed here: patroni is given it first, so its revoked token is renewed with it
    assert pending == ["patroni-pg-a"] and done == [] and etcd.calls == []


def test_a_permission_the_pillar_no_longer_gives_is_revoked_and_other_users_are_left_alone():
    etcd = FakeAuth(users={"someone": ["theirs"]}, roles={
        "theirs": [("READ", "/x", "")],
        "patroni-pg-a": [("READWRITE", "/service/pg-old/", "/service/pg-old0")]})
    done, _ = etcd_rbac._users_and_roles(etcd, *wanted(), auth_on=False)
    assert etcd.roles()["patroni-pg-a"] == [("READWRITE", "/service/pg-a/", "/service/pg-a0")]
    assert "role patroni-pg-a: READWRITE on /service/pg-old/ revoked" in done
    assert etcd.users()["someone"] == ["theirs"] and etcd.roles()["theirs"] == [("READ", "/x", "")]


def test_a_missing_password_is_named_before_anything_changes():
    cluster = etcd_settings.cluster_named(pillar(clients={
        "patroni": {"target": ["pg1"], "scope": "pg-a"}}), "etcd")
    with pytest.raises(etcd_rbac.StepFailed) as raised:
        etcd_rbac._wanted(etcd_rbac._steps(), cluster)
    assert str(raised.value) == ("cluster etcd: no password in pillar for etcd user(s) "
                                 "patroni-pg-a, root (root: root_password; a client: its password)")


def master_opts_with_sdb(monkeypatch):
    """A master's whole config (Salt 3006's and 3007's sdb loader needs more than an id) with
    Salt's own env sdb driver as profile ``osenv``."""
    opts = salt.config.master_config(None)
    opts.update(id="master", osenv={"driver": "env"})
    monkeypatch.setattr(etcd_rbac, "__opts__", opts, raising=False)


def test_passwords_given_as_sdb_uris_are_read_with_salts_sdb_on_the_master(monkeypatch):
    master_opts_with_sdb(monkeypatch)
    monkeypatch.setenv("ETCD_TEST_ROOT_PW", "root-from-sdb")
    monkeypatch.setenv("ETCD_TEST_PG_PW", "pg-from-sdb")
    cluster = etcd_settings.cluster_named(pillar(
        root_password="sdb://osenv/ETCD_TEST_ROOT_PW", clients={"patroni": {
            "target": ["pg1"], "scope": "pg-a", "password": "sdb://osenv/ETCD_TEST_PG_PW"}}), "etcd")
    steps = etcd_rbac._steps()
    users, _ = etcd_rbac._wanted(steps, cluster)
    assert {u: spec["password"] for u, spec in users.items()} == {
        "root": "root-from-sdb", "patroni-pg-a": "pg-from-sdb"}
    assert steps.secrets("root_credentials", cluster) == ("root", "root-from-sdb")


@pytest.mark.parametrize("uri, why", [
    ("sdb://osenv/ETCD_TEST_UNSET", "sdb://osenv/ETCD_TEST_UNSET: sdb gives no password there"),
    ("sdb://vault/etcd/root", "sdb://vault/etcd/root: SDB profile \"vault\" wasnt found"),
])
def test_an_sdb_uri_that_gives_nothing_fails_naming_the_uri(monkeypatch, uri, why):
    master_opts_with_sdb(monkeypatch)
    monkeypatch.delenv("ETCD_TEST_UNSET", raising=False)
    cluster = etcd_settings.cluster_named(pillar(root_password=uri), "etcd")
    with pytest.raises(etcd_rbac.StepFailed) as raised:
        etcd_rbac._wanted(etcd_rbac._steps(), cluster)
    assert str(raised.value).startswith(why)


@pytest.mark.parametrize("args, why", [
    (("a b", "/app/"), "name: 'a b': expected one plain minion id"),
    (("app", "app/"), "prefix: 'app/': expected a key prefix such as /app/"),
    (("app", "/"), "prefix: '/': expected a key prefix such as /app/"),
    (("app", "/app"), "prefix: '/app': expected a key prefix such as /app/"),
])
def test_credentials_refuse_a_bad_name_or_prefix_before_anything(args, why):
    ret = etcd_rbac.credentials(*args)
    assert ret["result"] is False and ret["Error"].startswith(why), ret


def test_credentials_refuse_a_permission_of_no_kind():
    ret = etcd_rbac.credentials("app", "/app/", permission="all")
    assert ret["Error"] == "permission: 'all': expected read or readwrite"
