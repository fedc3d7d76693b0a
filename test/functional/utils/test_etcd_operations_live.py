"""
The operation lock with the real lock in etcd (a real 3-member TLS cluster), through Salt's
loader as the master's runner loads ``etcd_operations``. The other operations are real
processes (forked): on the same master (its lock file refuses at once), on another master
(another lock dir: the lock in etcd refuses), killed (its lease expires). The lease TTL is
made short (``LOCK_TTL``) so that an expiry takes seconds.
"""

import multiprocessing
import os
import signal
import sys
import time

import pytest

FORK = multiprocessing.get_context("fork")
TTL = 2
KEY = "/etcd-formula/locks/operation/test"
# In a forked process: the operations of the process it was forked from, kept referenced
# until it ends (os._exit): dropped, the copy of a held lock would be finalized there and
# release the original's lock in etcd.
_INHERITED = []


@pytest.fixture
def operations(salt_minion, monkeypatch):
    """``operations.<function>``: etcd_operations as Salt's loader gives it, LOCK_TTL short."""
    utils = salt_minion.utils
    monkeypatch.setitem(utils["etcd_operations.begin"].__globals__, "LOCK_TTL", TTL)

    class Operations:
        def __getattr__(self, name):
            return utils["etcd_operations." + name]

    yield Operations()
    utils["etcd_operations.end_all"]()


@pytest.fixture
def connect(salt_minion, etcd_cluster):
    """A new client of the cluster's members (all three, as the pillar lists them, whether
    they run or not; read here: a forked process cannot ask the processes' state)."""
    endpoints = list(etcd_cluster.endpoints)

    def client(timeout=5):
        return salt_minion.utils["etcd_client.connect"](endpoints, timeout=timeout, **etcd_cluster.tls)

    return client


@pytest.fixture
def lock_dir(tmp_path):
    return str(tmp_path / "master1" / "locks")


class OtherOperation:
    """Another process (forked) that begins an operation on cluster test, with its own client
    and ``lock_dir``; ``outcome``: ("holds", its holder, its notes), or ("refused", the
    refusal, the holder it names)."""

    def __init__(self, operations, connect, lock_dir, what="add_member m4", hold=True):
        self._done = FORK.Event()
        self._leave = FORK.Event()
        self._outcome = FORK.Queue()
        self.process = FORK.Process(target=self._run, args=(operations, connect, lock_dir, what, hold),
                                    daemon=True)
        self.process.start()

    def _run(self, operations, connect, lock_dir, what, hold):
        # what the test process holds is not this one's
        registry = sys.modules["etcd_operations"]._HELD
        _INHERITED.append(dict(registry))
        registry.clear()
        try:
            operation = operations.begin("test", what, lock_dir, connect())
        except Exception as exc:  # handed to the test as it is
            self._outcome.put(("refused", str(exc), getattr(exc, "holder", None)))
            self._done.set()
            return
        self._outcome.put(("holds", operation.holder, operation.notes))
        self._done.set()
        if hold:
            self._leave.wait(60)

    def outcome(self, timeout=30):
        assert self._done.wait(timeout), "the other operation did not begin in time"
        return self._outcome.get(timeout=5)

    def kill(self):
        if self.process.is_alive():
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.join(10)


@pytest.fixture
def other(operations, connect):
    started = []

    def start(lock_dir, **kwargs):
        started.append(OtherOperation(operations, connect, lock_dir, **kwargs))
        return started[-1]

    yield start
    for found in started:
        found.kill()


def test_begin_and_end_hold_and_release_the_lock_in_etcd(operations, connect, lock_dir):
    observer = connect()
    operation = operations.begin("test", "snapshot", lock_dir, connect())
    assert operation.notes == []
    assert observer.get(KEY) == operation.holder
    # the plain import and every loader copy share the process's operations
    assert sys.modules["etcd_operations"].current("test") is operation
    time.sleep(TTL * 1.5)  # longer than its lease: kept alive while held
    assert observer.get(KEY) == operation.holder
    operations.current("test")  # still holds: nothing raised
    assert operations.end("test") is operation
    assert observer.get(KEY) is None
    assert operations.current("test") is None


def test_a_second_operation_on_the_same_master_is_refused_at_once_naming_the_holder(
        operations, connect, lock_dir, other):
    first = operations.begin("test", "restore", lock_dir, connect())
    started = time.monotonic()
    refused, message, holder = other(lock_dir).outcome()
    assert refused == "refused" and holder == first.holder
    assert message.startswith("cluster test is busy: restore by ")
    assert time.monotonic() - started < TTL


def test_an_operation_of_another_master_is_refused_by_the_lock_in_etcd_naming_the_holder(
        operations, connect, lock_dir, other, tmp_path):
    first = operations.begin("test", "restore", lock_dir, connect())
    refused, message, holder = other(str(tmp_path / "master2" / "locks")).outcome(timeout=TTL + 20)
    assert (refused, holder) == ("refused", first.holder)
    assert message.startswith("cluster test is busy: {} (its lock in etcd".format(first.holder))
    assert connect().get(KEY) == first.holder


def wait_gone(observer, key, timeout):
    give_up_at = time.monotonic() + timeout
    while observer.get(key) is not None:
        assert time.monotonic() < give_up_at, "{} still held after {} s".format(key, timeout)
        time.sleep(0.1)


def test_after_the_holder_is_killed_the_next_operation_begins_once_its_lease_expired(
        operations, connect, lock_dir, other):
    observer = connect()
    killed = other(lock_dir, what="restore")
    state, dead_holder, _ = killed.outcome()
    assert state == "holds"
    killed.kill()
    # the master's lock file is free at once; the lock in etcd outlives its holder, by its TTL
    assert observer.get(KEY) == dead_holder
    wait_gone(observer, KEY, timeout=TTL + 2)
    operation = operations.begin("test", "recover", lock_dir, connect())
    assert operation.notes == []
    assert observer.get(KEY) == operation.holder


def test_an_operation_that_waited_longer_than_the_ttl_holds_the_lock_in_etcd(
        operations, connect, lock_dir, other, tmp_path):
    observer = connect()
    operations.begin("test", "restore", lock_dir, connect())
    waiting = other(str(tmp_path / "master2" / "locks"), what="add_member m4")
    time.sleep(TTL * 2)  # within the waiter's wait (LOCK_TTL + 5 s), past its lease's TTL
    operations.end("test")
    state, holder, notes = waiting.outcome(timeout=TTL + 10)
    assert (state, notes) == ("holds", [])
    time.sleep(TTL * 1.5)  # and it keeps it
    assert observer.get(KEY) == holder


def test_a_cluster_without_quorum_is_locked_on_the_master_only(operations, connect, lock_dir, etcd_cluster, other):
    for member in etcd_cluster.members[1:]:
        etcd_cluster.stop(member)
    # the caller (etcd_steps.Steps.lock_client) finds no quorum and hands no client
    operation = operations.begin("test", "recover", lock_dir, None)
    (note,) = operation.notes
    assert note == "cluster test has no quorum to grant a lease: locked on this master only"
    # still one operation at a time on this master
    refused, message, _ = other(lock_dir).outcome()
    assert refused == "refused" and message.startswith("cluster test is busy: recover by ")
