"""
Functional tests: real etcd processes on loopback (see local_etcd.py), and the formula's
Salt modules loaded by Salt's own loader from the checkout, as a minion loads them.
"""

import os
import shutil
import sys
import tempfile

import pytest
import salt._logging.impl

# As in test/unit: until Salt's logging is set up, Salt keeps WARNING records (a lock's lease
# that could not be revoked...) in a deferred handler and writes them at exit, to the stderr
# pytest has closed by then ("--- Logging error ---").
salt._logging.impl.shutdown_temp_handler()

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

from local_etcd import ETCD_BIN, LocalCluster  # noqa: E402
from local_salt import SaltLoader  # noqa: E402


def pytest_collection_modifyitems(config, items):
    # in CI a missing etcd is a failure, not a skip (test/setup installs it)
    if not os.access(ETCD_BIN, os.X_OK) and not os.environ.get("CI"):
        skip = pytest.mark.skip(reason="no etcd binary at {} (set ETCD_BIN)".format(ETCD_BIN))
        for item in items:
            if "functional" in str(item.fspath):
                item.add_marker(skip)


@pytest.fixture
def etcd_cluster():
    """A fresh 3-member TLS cluster for one test (membership tests change it)."""
    # short path: etcd's unix sockets and logs live under it
    root = tempfile.mkdtemp(prefix="etcd-ft-")
    try:
        with LocalCluster(root, size=3) as cluster:
            yield cluster
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def salt_minion(etcd_cluster, tmp_path):
    """Salt's loader for minion ``m1``, a member of ``etcd_cluster`` in its pillar (pass
    ``**etcd_cluster.tls``: the default certificate paths are a real member's)."""
    return SaltLoader("m1", etcd_cluster.pillar(), str(tmp_path))
