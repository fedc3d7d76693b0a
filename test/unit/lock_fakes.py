"""
The operation lock's other parties, for its tests (``etcd_operations``, the runner steps):
the locks in etcd as the client's ``lock`` gives them (who holds which, a held one refused
at once naming its holder, a cluster that cannot grant a lease), and another process on
this master holding a cluster's operation (forked: it holds the real lock file).
"""

import contextlib
import multiprocessing
import os
import signal
from unittest import mock

import etcd_client
import etcd_errors as errors
import etcd_operations

FORK = multiprocessing.get_context("fork")
# In a forked process: the operations of the process it was forked from, kept referenced
# until it ends (os._exit): dropped, a copy would be finalized and release the original's.
_INHERITED = []


class EtcdLocks:
    """``held``: {lock name: holder}; ``unavailable``: what etcd answers a lease grant
    (an exception) when it cannot grant one; ``keepers``: {lock name: the ``Held`` given}."""

    def __init__(self):
        self.held = {}
        self.unavailable = None
        self.calls = []
        self.keepers = {}

    def wire(self, client):
        """``client`` (an autospec of EtcdClient) takes its locks here."""
        client.lock.side_effect = self.lock
        return client

    @contextlib.contextmanager
    def lock(self, name, ttl=60, wait=300, holder=None):
        self.calls.append({"name": name, "ttl": ttl, "wait": wait, "holder": holder})
        if self.unavailable is not None:
            raise self.unavailable
        if name in self.held:
            raise errors.EtcdLockHeld("lock {}{} is held by {} (waited {} s)".format(
                etcd_client.LOCK_PREFIX, name, self.held[name], wait), holder=self.held[name])
        self.held[name] = holder
        keeper = mock.create_autospec(etcd_client.Held, instance=True)
        keeper.holder = holder
        self.keepers[name] = keeper
        try:
            yield keeper
        finally:
            del self.held[name]


class OtherProcess:
    """Another process (forked) that holds cluster ``cluster``'s operation ``what``, on the
    master only, until it leaves or is killed."""

    def __init__(self, lock_dir, what="restore", cluster="etcd"):
        self._ready = FORK.Event()
        self._leave = FORK.Event()
        self.process = FORK.Process(target=self._hold, args=(lock_dir, what, cluster), daemon=True)
        self.process.start()
        if not self._ready.wait(10):
            raise RuntimeError("the other process did not take the lock")

    def _hold(self, lock_dir, what, cluster):
        # forked: what the test process holds is not this one's
        _INHERITED.append(dict(etcd_operations._HELD))
        etcd_operations._HELD.clear()
        etcd_operations.begin(cluster, what, lock_dir)
        self._ready.set()
        self._leave.wait(30)

    @property
    def pid(self):
        return self.process.pid

    def leave(self):
        self._leave.set()
        self.process.join(10)

    def kill(self):
        if self.process.is_alive():
            os.kill(self.pid, signal.SIGKILL)
        self.process.join(10)
