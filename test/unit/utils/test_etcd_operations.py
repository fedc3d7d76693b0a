"""
The operation lock (one operation at a time per cluster): a lock file on the master
(``flock``, held by real processes here: a forked child is the "other" operation) and the
lock in etcd (an autospec of the real client whose ``lock`` is lock_fakes.EtcdLocks).
"""

import fcntl
import importlib.util
import os
from unittest import mock

import pytest

import etcd_errors as errors
import etcd_operations
from etcd_fakes import fake_client
from lock_fakes import FORK, EtcdLocks, OtherProcess

LOCK = "operation/etcd"


@pytest.fixture(autouse=True)
def nothing_left_held():
    yield
    etcd_operations.end_all()
    etcd_operations._HELD.clear()


@pytest.fixture
def lock_dir(tmp_path):
    return str(tmp_path / "locks")


@pytest.fixture
def locks():
    return EtcdLocks()


@pytest.fixture
def client(locks):
    return locks.wire(fake_client(["https://10.77.0.11:2379"]))


def lock_file(lock_dir, cluster="etcd"):
    return os.path.join(lock_dir, "{}.lock".format(cluster))


def lock_file_is_free(lock_dir, cluster="etcd"):
    """Whether another open file description could take the lock file now (flock locks
    conflict between descriptions, also within one process)."""
    fd = os.open(lock_file(lock_dir, cluster), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


@pytest.fixture
def holder(lock_dir):
    holders = []

    def start(what="restore"):
        holders.append(OtherProcess(lock_dir, what))
        return holders[-1]

    yield start
    for found in holders:
        found.kill()


# -- taking it -------------------------------------------------------------------------------------


def test_begin_holds_the_lock_file_on_the_master_and_the_lock_in_etcd(lock_dir, client, locks):
    operation = etcd_operations.begin("etcd", "restore", lock_dir, client)
    assert locks.held == {LOCK: operation.holder}
    assert operation.holder.startswith("restore by ") and "pid {}".format(os.getpid()) in operation.holder
    with open(lock_file(lock_dir)) as handle:
        assert handle.read() == operation.holder
    assert not lock_file_is_free(lock_dir)
    assert os.stat(lock_file(lock_dir)).st_mode & 0o777 == 0o600
    assert operation.notes == []
    assert etcd_operations.current("etcd") is operation


def test_the_lock_in_etcd_waits_no_longer_than_a_dead_holders_lease(lock_dir, client, locks):
    etcd_operations.begin("etcd", "restore", lock_dir, client)
    (asked,) = locks.calls
    assert asked["ttl"] == etcd_operations.LOCK_TTL
    assert asked["wait"] == etcd_operations.LOCK_TTL + 5


def test_a_second_begin_from_another_process_is_refused_naming_the_holder(lock_dir, client, locks, holder):
    first = holder("restore")
    with pytest.raises(errors.EtcdLockHeld) as err:
        etcd_operations.begin("etcd", "snapshot", lock_dir, client)
    assert err.value.holder.startswith("restore by ")
    assert "pid {} since ".format(first.pid) in err.value.holder
    assert str(err.value).startswith("cluster etcd is busy: restore by ")
    # refused at once, on the master: etcd is not even asked
    assert locks.calls == []
    assert etcd_operations.current("etcd") is None


def test_the_lock_is_free_again_once_the_holder_ends(lock_dir, client, holder):
    holder().leave()
    assert etcd_operations.begin("etcd", "snapshot", lock_dir, client).what == "snapshot"


def test_a_killed_holder_frees_the_lock_file_at_once(lock_dir, client, holder):
    holder().kill()
    assert etcd_operations.begin("etcd", "snapshot", lock_dir, client).what == "snapshot"


def test_another_cluster_is_not_locked(lock_dir, holder):
    holder()
    assert etcd_operations.begin("pg", "snapshot", lock_dir).cluster == "pg"


def test_a_lock_held_in_etcd_by_another_master_is_refused_and_the_lock_file_freed(lock_dir, client, locks):
    locks.held[LOCK] = "add_member h4 by root@master2 pid 77 since 2026-01-01T00:00:00Z"
    with pytest.raises(errors.EtcdLockHeld) as err:
        etcd_operations.begin("etcd", "restore", lock_dir, client)
    assert err.value.holder == "add_member h4 by root@master2 pid 77 since 2026-01-01T00:00:00Z"
    assert "cluster etcd is busy: add_member h4 by root@master2" in str(err.value)
    assert "expires {} s after it died".format(etcd_operations.LOCK_TTL) in str(err.value)
    assert lock_file_is_free(lock_dir)
    assert etcd_operations.current("etcd") is None


def test_a_cluster_without_quorum_is_locked_on_the_master_only(lock_dir):
    operation = etcd_operations.begin("etcd", "recover", lock_dir, None)
    assert operation.notes == ["cluster etcd has no quorum to grant a lease: locked on this "
                               "master only"]
    assert not lock_file_is_free(lock_dir)
    assert etcd_operations.current("etcd") is operation


@pytest.mark.parametrize("refusal", [
    errors.EtcdPermissionDenied("etcdserver: permission denied"),
    errors.EtcdRefused("etcdserver: requested lease not found"),
])
def test_a_healthy_cluster_refusing_the_lock_is_no_reason_to_lock_the_master_only(lock_dir, client, locks, refusal):
    locks.unavailable = refusal
    with pytest.raises(errors.EtcdError):
        etcd_operations.begin("etcd", "restore", lock_dir, client)
    assert lock_file_is_free(lock_dir)


def test_a_cluster_that_cannot_be_asked_is_locked_on_the_master_only(lock_dir):
    operation = etcd_operations.begin("etcd", "recover", lock_dir, None)
    assert operation.notes == ["cluster etcd has no quorum to grant a lease: locked on this master only"]
    assert not lock_file_is_free(lock_dir)


def test_an_interrupted_begin_holds_nothing(lock_dir, client, locks):
    locks.unavailable = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        etcd_operations.begin("etcd", "restore", lock_dir, client)
    assert lock_file_is_free(lock_dir)
    assert etcd_operations.current("etcd") is None


def test_begin_again_in_the_process_finds_the_running_operation(lock_dir, client, locks):
    first = etcd_operations.begin("etcd", "restore", lock_dir, client)
    assert etcd_operations.begin("etcd", "restore", lock_dir, client) is first
    assert len(locks.calls) == 1


# -- holding it --------------------------------------------------------------------------------------


def test_a_lost_lease_stops_the_next_step(lock_dir, client, locks):
    etcd_operations.begin("etcd", "restore", lock_dir, client)
    locks.keepers[LOCK].check.side_effect = errors.EtcdLockLost("lock /etcd-formula/locks/operation/etcd is lost")
    with pytest.raises(errors.EtcdLockLost):
        etcd_operations.current("etcd")
    with pytest.raises(errors.EtcdLockLost):
        etcd_operations.begin("etcd", "restore", lock_dir, client)


def test_held_for_inside_a_running_operation_takes_no_new_lock(lock_dir, client, locks):
    running = etcd_operations.begin("etcd", "restore", lock_dir, client)
    factory = mock.Mock(return_value=client)
    with etcd_operations.held_for("etcd", "patroni pause", lock_dir, factory) as operation:
        assert operation is running
    factory.assert_not_called()
    assert len(locks.calls) == 1
    # the orchestration's lock outlives the step
    assert etcd_operations.current("etcd") is running and locks.held == {LOCK: running.holder}


def test_held_for_a_step_run_by_hand_holds_it_for_the_block_only(lock_dir, client, locks):
    factory = mock.Mock(return_value=client)
    with pytest.raises(RuntimeError):
        with etcd_operations.held_for("etcd", "snapshot", lock_dir, factory) as operation:
            assert operation.what == "snapshot" and locks.held == {LOCK: operation.holder}
            raise RuntimeError("the step failed")
    factory.assert_called_once_with()
    assert locks.held == {} and lock_file_is_free(lock_dir)
    assert etcd_operations.current("etcd") is None


def test_held_for_a_step_run_by_hand_is_refused_while_another_process_holds_it(lock_dir, client, holder):
    holder("restore")
    with pytest.raises(errors.EtcdLockHeld, match="cluster etcd is busy: restore by "):
        with etcd_operations.held_for("etcd", "snapshot", lock_dir, lambda: client):
            pytest.fail("two operations at once")


# -- releasing it ------------------------------------------------------------------------------------


def test_end_releases_both_locks(lock_dir, client, locks):
    operation = etcd_operations.begin("etcd", "restore", lock_dir, client)
    assert etcd_operations.end("etcd") is operation
    assert locks.held == {}
    client.close.assert_called_once_with()
    assert lock_file_is_free(lock_dir)
    with open(lock_file(lock_dir)) as handle:
        assert handle.read() == ""  # no stale holder for the next one to read
    assert etcd_operations.current("etcd") is None
    assert etcd_operations.end("etcd") is None


def test_end_in_a_process_forked_from_the_holder_releases_nothing(lock_dir, client, locks):
    running = etcd_operations.begin("etcd", "restore", lock_dir, client)

    def parallel_step():
        os._exit(0 if etcd_operations.end("etcd") is None and locks.held else 1)

    child = FORK.Process(target=parallel_step)
    child.start()
    child.join(10)
    assert child.exitcode == 0
    assert not lock_file_is_free(lock_dir)
    assert etcd_operations.current("etcd") is running


def test_end_all_releases_every_operation_of_the_process(lock_dir):
    etcd_operations.begin("etcd", "restore", lock_dir)
    etcd_operations.begin("pg", "snapshot", lock_dir)
    assert sorted(etcd_operations.end_all()) == ["restore", "snapshot"]
    assert lock_file_is_free(lock_dir, "etcd") and lock_file_is_free(lock_dir, "pg")
    assert etcd_operations.end_all() == []


# -- Salt's loader -----------------------------------------------------------------------------------


def test_a_salt_loader_copy_shares_the_registry_of_the_plain_import(lock_dir):
    # Salt's loader runs the file anew, under its own name, for every runner step
    spec = importlib.util.spec_from_file_location("salt.loaded.ext.utils.etcd_operations",
                                                  etcd_operations.__file__)
    copy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copy)
    assert copy is not etcd_operations
    begun = copy.begin("etcd", "restore", lock_dir)
    assert etcd_operations.current("etcd") is begun
    assert etcd_operations.end("etcd") is begun
    assert copy.current("etcd") is None
