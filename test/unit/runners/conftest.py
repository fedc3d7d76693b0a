"""What the runner files' tests share: the pillar as the master compiles it for a minion
(``pillar.show_pillar``, of each test module's ``etcd_pillar``), the master's admin TLS
files (empty files: the fake client never reads them), and the master's ``__opts__``."""

from unittest import mock

import pytest
import salt.runners.pillar


@pytest.fixture
def show_pillar(etcd_pillar):
    return mock.Mock(spec=salt.runners.pillar.show_pillar, return_value={"etcd": etcd_pillar})


@pytest.fixture
def admin_tls(tmp_path):
    tls = {k: str(tmp_path / k) for k in ("ca_file", "cert_file", "key_file")}
    for path in tls.values():
        open(path, "w").close()
    return tls


@pytest.fixture
def master_opts(admin_tls, tmp_path):
    """The master's ``__opts__`` as a runner reads them: its admin certificate, its config
    file (for Salt's LocalClient, faked), its id and a cache dir of the test's."""
    return {"etcd_admin_tls": admin_tls, "conf_file": "/etc/salt/master", "id": "master",
            "cachedir": str(tmp_path / "cache")}
