"""
etcd_clients.patroni_dcs_managed on a real patroni config in a temporary directory: only the
DCS section changes, every other key is kept, the other DCS section goes, and neither
PostgreSQL's passwords of the file nor the DCS password (from pillar) ever shows in the
return. Run with ``test=True`` and ``test=False`` (``testmode``) where both say something.
"""

import grp
import os
import pwd
import stat
from unittest import mock
from unittest.mock import Mock

import pytest
import salt.modules.config
import salt.modules.file
import yaml

import etcd_clients

SECRET_PG = "pg-superuser-s3cret"
SECRET_DCS = "etcd-r00t-pass"
DCS = {"hosts": ["10.77.0.11:2379", "10.77.0.12:2379"], "protocol": "https",
       "cacert": "/etc/patroni/etcd/ca.crt", "cert": "/etc/patroni/etcd/client.crt",
       "key": "/etc/patroni/etcd/client.key"}
PILLAR = {"etcd": {"clusters": {"etcd": {"clients": {"patroni": {"password": SECRET_DCS}}}}}}


def pillar_get(key, default="", **kwargs):
    found = PILLAR
    for part in key.split(":"):
        if not isinstance(found, dict) or part not in found:
            return default
        found = found[part]
    return found


@pytest.fixture
def configure_loader_modules():
    return {
        etcd_clients: {
            "__opts__": {"test": False},
            "__salt__": {"config.get": Mock(spec=salt.modules.config.get, side_effect=pillar_get)},
        }
    }


@pytest.fixture(params=[False, True], ids=["applied", "test"])
def testmode(request):
    with mock.patch.dict(etcd_clients.__opts__, {"test": request.param}):
        yield request.param


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "patroni" / "config.yml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({
        "scope": "pg", "name": "db1",
        "etcd": {"hosts": ["10.0.0.1:2379"], "protocol": "http"},
        "postgresql": {"authentication": {"superuser": {"username": "postgres", "password": SECRET_PG}}},
    }))
    os.chmod(path, 0o600)
    return path


def managed(config, section="etcd3", dcs=None, **kwargs):
    return etcd_clients.patroni_dcs_managed(str(config), section, DCS if dcs is None else dcs, **kwargs)


def read(config):
    return yaml.safe_load(config.read_text())


def test_the_dcs_section_is_replaced_and_everything_else_kept(config, testmode):
    before = config.read_text()
    ret = managed(config)
    assert ret["changes"] == {"dcs": {"old": {"etcd": {"hosts": ["10.0.0.1:2379"], "protocol": "http"}},
                                      "new": {"etcd3": DCS}}}
    assert SECRET_PG not in str(ret)
    if testmode:
        assert ret["result"] is None
        assert ret["comment"] == "{}: patroni's etcd3 section would be written".format(config)
        assert config.read_text() == before
        return
    assert ret["result"] is True
    assert ret["comment"] == "{}: patroni's etcd3 section has been written".format(config)
    found = read(config)
    # patroni would pick one of two DCS sections: the other one goes
    assert "etcd" not in found and found["etcd3"] == DCS
    assert found["postgresql"]["authentication"]["superuser"]["password"] == SECRET_PG
    assert (found["scope"], found["name"]) == ("pg", "db1")
    assert stat.S_IMODE(os.stat(config).st_mode) == 0o600
    assert (os.stat(config).st_uid, os.stat(config).st_gid) == (
        pwd.getpwnam("postgres").pw_uid, grp.getgrnam("postgres").gr_gid)
    assert not os.path.exists(str(config) + ".new")


def test_a_second_run_changes_nothing(config, testmode):
    with mock.patch.dict(etcd_clients.__opts__, {"test": False}):
        managed(config)
    before = config.read_text()
    ret = managed(config)
    assert ret == {"name": str(config), "changes": {}, "result": True,
                   "comment": "{}: patroni's etcd3 section is as wanted".format(config)}
    assert config.read_text() == before


def test_the_password_comes_from_pillar_and_never_shows(config):
    ret = managed(config, secrets={"password": "etcd:clusters:etcd:clients:patroni:password"})
    assert ret["result"] is True
    assert ret["changes"]["dcs"]["new"]["etcd3"]["password"] == "(hidden)"
    assert SECRET_DCS not in str(ret)
    assert read(config)["etcd3"] == dict(DCS, password=SECRET_DCS)
    assert managed(config, secrets={"password": "etcd:clusters:etcd:clients:patroni:password"})["changes"] == {}


def test_a_changed_password_is_written_without_showing_either(config):
    managed(config, dcs=dict(DCS, password="old-one"))
    ret = managed(config, secrets={"password": "etcd:clusters:etcd:clients:patroni:password"})
    assert ret["changes"]["dcs"] == {"old": {"etcd3": dict(DCS, password="(hidden)")},
                                     "new": {"etcd3": dict(DCS, password="(hidden)")}}
    assert "old-one" not in str(ret) and SECRET_DCS not in str(ret)
    assert read(config)["etcd3"]["password"] == SECRET_DCS


def test_a_secret_missing_from_pillar_fails_naming_its_path(config):
    before = config.read_text()
    ret = managed(config, secrets={"password": "etcd:nowhere"})
    assert ret == {"name": str(config), "changes": {}, "result": False,
                   "comment": "no value at pillar etcd:nowhere (patroni's password)"}
    assert config.read_text() == before


def test_a_wrong_mode_alone_is_fixed(config, testmode):
    with mock.patch.dict(etcd_clients.__opts__, {"test": False}):
        managed(config)
    os.chmod(config, 0o644)
    ret = managed(config)
    assert ret["changes"] == {"attributes": {"user": "postgres", "group": "postgres", "mode": "0600"}}
    assert stat.S_IMODE(os.stat(config).st_mode) == (0o644 if testmode else 0o600)
    assert ret["result"] is (None if testmode else True)


def test_a_wrong_owner_alone_is_fixed(config):
    managed(config)
    os.chown(config, 0, 0)
    ret = managed(config)
    assert ret["result"] is True and ret["changes"] == {
        "attributes": {"user": "postgres", "group": "postgres", "mode": "0600"}}
    assert os.stat(config).st_uid == pwd.getpwnam("postgres").pw_uid


def test_an_owner_that_does_not_exist_fails_and_writes_nothing(config):
    before = config.read_text()
    ret = managed(config, user="no-such-user")
    assert ret["result"] is False and ret["changes"] == {}
    assert "no such user or group" in ret["comment"] and "no-such-user" in ret["comment"]
    assert config.read_text() == before


def test_a_missing_config_is_created_with_the_section_only(tmp_path):
    path = tmp_path / "new" / "config.yml"
    ret = managed(path, section="etcd")
    assert ret["result"] is True and ret["changes"] == {"dcs": {"old": {}, "new": {"etcd": DCS}}}
    assert read(path) == {"etcd": DCS}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


@pytest.mark.parametrize("section", ["consul", "etcd2", None])
def test_an_unknown_section_is_refused_naming_it(config, section):
    before = config.read_text()
    ret = managed(config, section=section)
    assert ret["result"] is False
    assert ret["comment"] == "section {!r}: expected etcd3 or etcd".format(section)
    assert config.read_text() == before


def test_a_file_that_is_no_mapping_is_not_overwritten(config):
    config.write_text("- just\n- a list\n")
    ret = managed(config)
    assert ret["result"] is False and ret["comment"] == "{} is no YAML mapping: not patroni's config".format(config)
    assert config.read_text() == "- just\n- a list\n"


def test_a_file_that_is_no_yaml_is_not_overwritten_and_not_shown(config):
    text = "postgresql: {password: %s\n  bad: [\n" % SECRET_PG
    config.write_text(text)
    ret = managed(config)
    assert ret["result"] is False and ret["changes"] == {}
    assert SECRET_PG not in ret["comment"]
    assert config.read_text() == text


# -- vip-manager 2.x ------------------------------------------------------------------------------

VIP = {"dcs-type": "etcd", "dcs-endpoints": ["https://10.0.0.1:2379"], "etcd-user": "vip-manager-vip",
       "trigger-key": "/service/pg/leader", "trigger-value": "db1"}


def test_vip_managers_keys_are_set_its_password_read_from_pillar_and_never_shown(tmp_path, testmode):
    path = tmp_path / "vip-manager.yml"
    path.write_text(yaml.safe_dump({"ip": "10.0.0.100", "interval": 500, "dcs-endpoints": ["old"]}))
    ret = etcd_clients.vip_manager_config_managed(
        str(path), VIP, user="root", group="root",
        secrets={"etcd-password": "etcd:clusters:etcd:clients:patroni:password"})
    assert SECRET_DCS not in str(ret)
    assert ret["changes"]["settings"]["new"]["etcd-password"] == "(hidden)"
    assert ret["changes"]["settings"]["old"] == {"dcs-endpoints": ["old"]}
    if testmode:
        assert ret["result"] is None
        return
    found = yaml.safe_load(path.read_text())
    assert found == dict(VIP, **{"ip": "10.0.0.100", "interval": 500, "etcd-password": SECRET_DCS})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = etcd_clients.vip_manager_config_managed(
        str(path), VIP, user="root", group="root",
        secrets={"etcd-password": "etcd:clusters:etcd:clients:patroni:password"})
    assert again["changes"] == {} and again["result"] is True
