"""What the runner files' tests share: the pillar as the master compiles it for a minion
(``pillar.show_pillar``, of each test module's ``etcd_pillar``), and the master's admin TLS
files (empty files: the fake client never reads them)."""

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
