"""
etcd_auth.root_credentials_managed: root's etcd credentials file on a member, from the pillar
(never shown), 0600 root, atomically replaced, removed when the pillar has none.
"""

import os
import stat
from unittest import mock

import pytest
import salt.modules.config

import etcd_auth
from etcd_fakes import pillar, real_utils

SECRET = "root-pw-not-to-show"


@pytest.fixture
def etcd_pillar():
    return pillar(root_password=SECRET)


@pytest.fixture
def configure_loader_modules(etcd_pillar):
    return {etcd_auth: {
        "__opts__": {"id": "h1", "test": False},
        "__salt__": {"config.get": mock.Mock(spec=salt.modules.config.get,
                                             side_effect=lambda key, default=None: etcd_pillar)},
        "__utils__": real_utils(),
    }}


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "root.credentials")


@pytest.fixture(params=[False, True], ids=["applied", "test"])
def testmode(request):
    with mock.patch.dict(etcd_auth.__opts__, {"test": request.param}):
        yield request.param


def test_the_file_is_written_0600_with_the_pillars_password_and_never_shows_it(path, testmode):
    ret = etcd_auth.root_credentials_managed(path)
    assert ret["changes"] == {"credentials": "written"}
    assert SECRET not in str(ret)
    if testmode:
        assert ret["result"] is None and not os.path.exists(path)
        return
    assert ret["result"] is True
    assert open(path).read() == "root:{}\n".format(SECRET)
    found = os.stat(path)
    assert (stat.S_IMODE(found.st_mode), found.st_uid, found.st_gid) == (0o600, 0, 0)


def test_a_second_run_changes_nothing(path):
    etcd_auth.root_credentials_managed(path)
    ret = etcd_auth.root_credentials_managed(path)
    assert ret == {"name": path, "changes": {}, "result": True,
                   "comment": "root's etcd credentials in {} are the pillar's".format(path)}


def test_a_new_password_in_pillar_is_written_and_a_wrong_mode_fixed(path, etcd_pillar):
    etcd_auth.root_credentials_managed(path)
    os.chmod(path, 0o644)
    assert etcd_auth.root_credentials_managed(path)["changes"] == {"credentials": "mode fixed"}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    etcd_pillar["clusters"]["etcd"]["root_password"] = "another-one"
    ret = etcd_auth.root_credentials_managed(path)
    assert ret["changes"] == {"credentials": "written"} and "another-one" not in str(ret)
    assert open(path).read() == "root:another-one\n"


def test_no_password_in_pillar_removes_the_file(path, etcd_pillar):
    etcd_auth.root_credentials_managed(path)
    etcd_pillar["clusters"]["etcd"]["root_password"] = None
    assert etcd_auth.root_credentials_managed(path)["changes"] == {"credentials": "removed"}
    assert not os.path.exists(path)
    assert etcd_auth.root_credentials_managed(path)["changes"] == {}


def test_a_minion_in_no_cluster_fails_naming_it(path):
    with mock.patch.dict(etcd_auth.__opts__, {"id": "pg1"}):
        ret = etcd_auth.root_credentials_managed(path)
    assert ret["result"] is False and ret["comment"] == "minion pg1 is in no cluster of pillar etcd:clusters"


def client_cert(path, cn):
    from cryptography import x509

    import etcd_pki

    ca_key = etcd_pki.new_key()
    ca = x509.load_pem_x509_certificate(etcd_pki.new_ca(ca_key, "ca", 10).encode())
    ident = {"cn": cn, "sans": ["URI:urn:etcd-formula:member:etcd:h1"], "eku": ["clientAuth"],
             "days_valid": 10}
    with open(path, "w") as handle:
        handle.write(etcd_pki.sign(ca_key, ca, etcd_pki.csr_pem(etcd_pki.new_key()), ident))


def test_a_client_certificate_without_cn_passes_the_check(tmp_path):
    path = str(tmp_path / "client.crt")
    client_cert(path, None)
    ret = etcd_auth.client_certificate_without_cn(path)
    assert ret["result"] is True and ret["changes"] == {}


def test_a_client_certificate_with_a_cn_fails_before_authentication_is_enabled(tmp_path):
    path = str(tmp_path / "client.crt")
    client_cert(path, "etcd-1")
    ret = etcd_auth.client_certificate_without_cn(path)
    assert ret["result"] is False and ret["changes"] == {}
    assert ret["comment"].startswith("{} carries CN 'etcd-1': etcd's gateway refuses it".format(path))


def test_a_dry_run_before_the_certificate_exists_predicts_the_check(tmp_path, testmode):
    ret = etcd_auth.client_certificate_without_cn(str(tmp_path / "none.crt"))
    assert ret["result"] is (None if testmode else False)
