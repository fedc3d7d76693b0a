"""
Unit tests import the formula's Salt modules as plain modules (Salt's loader puts the dunders
in; pytest-salt-factories' ``configure_loader_modules`` does it here). The ``_utils`` modules
import each other by plain name, so one copy of each (and of its error classes) serves the
module under test and the test alike. ``etcd_fakes`` (here) holds the shared test data and
the fakes of the I/O edges.
"""

import os
import sys

UNIT = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(UNIT))
for path in [os.path.join(REPO, folder) for folder in ("_utils", "_modules", "_states", "_runners")] + [UNIT]:
    if path not in sys.path:
        sys.path.insert(0, path)

import salt._logging.impl  # noqa: E402

# Until Salt's logging is set up, Salt keeps WARNING records in a deferred handler and writes
# them at exit, to the stderr pytest has closed by then ("--- Logging error ---"): without it,
# records reach pytest's log capture, shown with a failing test.
salt._logging.impl.shutdown_temp_handler()

import pytest  # noqa: E402

from etcd_fakes import FakeClock, FakeEtcd, patch_connect  # noqa: E402


@pytest.fixture
def etcd():
    """A cluster in memory behind the client's spec (etcd_fakes.FakeEtcd)."""
    return FakeEtcd()


@pytest.fixture
def connect(monkeypatch, etcd):
    """Every path to etcd (etcd_client.connect) reaches ``etcd``."""
    return patch_connect(monkeypatch, etcd)


@pytest.fixture
def clock(monkeypatch):
    """The membership layer's waits, instant (a test module makes it autouse, or overrides
    it to change the cluster while the layer sleeps)."""
    import etcd_membership

    found = FakeClock()
    monkeypatch.setattr(etcd_membership, "time", found)
    return found
