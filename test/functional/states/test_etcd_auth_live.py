"""
etcd_auth.root_credentials_managed through Salt's own loader (masterless): a member's root
credentials file from a root_password the pillar gives as an sdb URI, read with Salt's sdb
on the member (its ``env`` driver here: the profile in the minion's config), never shown.
"""

import os
import stat

from local_salt import minion_opts


def member(tmp_path, root_password, **opts):
    import salt.loader

    etcd_pillar = {"pki": {"ca_server": "master"}, "clusters": {"etcd": {
        "root_password": root_password, "members": {"h1": {"seq": 1, "address": "10.77.0.11"}}}}}
    member_opts = minion_opts("h1", etcd_pillar, str(tmp_path / "cache"))
    member_opts.update(opts)
    utils = salt.loader.utils(member_opts)
    return salt.loader.minion_mods(member_opts, utils=utils)


def apply(mods, path):
    (ret,) = mods["state.single"]("etcd_auth.root_credentials_managed", name=path).values()
    return ret


def test_a_root_password_from_sdb_is_written_0600_and_never_shown(tmp_path, monkeypatch):
    monkeypatch.setenv("ETCD_TEST_ROOT_PW", "root-pw-from-sdb")
    mods = member(tmp_path, "sdb://osenv/ETCD_TEST_ROOT_PW", osenv={"driver": "env"})
    path = str(tmp_path / "root.credentials")
    ret = apply(mods, path)
    assert ret["result"] is True and ret["changes"] == {"credentials": "written"}, ret
    assert "root-pw-from-sdb" not in str(ret)
    assert open(path).read() == "root:root-pw-from-sdb\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert apply(mods, path)["changes"] == {}


def test_an_sdb_uri_without_its_profile_fails_naming_it_and_writes_nothing(tmp_path):
    mods = member(tmp_path, "sdb://vault/etcd/root")
    path = str(tmp_path / "root.credentials")
    ret = apply(mods, path)
    assert ret["result"] is False and ret["changes"] == {}
    assert "vault" in ret["comment"] and not os.path.exists(path), ret["comment"]
