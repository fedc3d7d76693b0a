"""
One operation at a time per cluster: the lock an orchestration (add, remove, snapshot,
restore, recover...) holds from its first step to its last.

It is two locks, both taken or none:

- a lock file on the salt-master (``flock``), which the kernel releases the moment the process
  that holds it ends: a second operation on the same master is refused at once, and a killed
  one frees it at once;
- the cluster's own lock in etcd (``etcd_client.lock``, a lease kept alive while held), for
  masters that share clusters; it frees itself when its lease expires. A cluster that cannot
  be asked (it lost its quorum: a recovery, a restore) is locked on the master only, and the
  operation says so.

The orchestration's steps run one after another in one ``salt-run`` process: the first step
(``begin``) registers the operation here, later steps find it (``current``) and check that it
still holds (``check``: a lost lease stops the work), the last one (``end``) releases it; a
failing step releases it too. A step run by hand, outside an orchestration, holds it for its
own duration (``held_for``).
"""

import contextlib
import datetime
import fcntl
import getpass
import os
import socket
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.append(_HERE)

import etcd_errors as errors  # noqa: E402
import etcd_settings  # noqa: E402

__virtualname__ = "etcd_operations"

# Seconds the etcd lock outlives a holder that died.
LOCK_TTL = 20
# The operations this process holds: cluster name -> Operation. Salt's loader runs this file
# anew for every runner step (each its own module object): its copies share the registry of
# the plain import, which lives as long as the process.
_HELD = {}
if __name__ != "etcd_operations":
    import etcd_operations as _plain  # noqa: E402

    _HELD = _plain._HELD


def __virtual__():
    return __virtualname__


class Operation:
    """A held operation lock: ``what`` (e.g. "add_member h4"), ``holder`` (who, where, since)."""

    def __init__(self, cluster, what, lock_dir):
        self.cluster = cluster
        self.what = what
        self.pid = os.getpid()
        self.holder = "{} by {}@{} pid {} since {}".format(
            what, _user(), socket.gethostname(), self.pid,
            datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
        self.lock_dir = lock_dir
        self.path = os.path.join(lock_dir, "{}.lock".format(cluster))
        self.context = {}  # what later steps must know (the snapshot a restore uses...)
        self.notes = []
        self._fd = None
        self._etcd = None  # (client, context manager, Held)

    def acquire_local(self):
        os.makedirs(self.lock_dir, mode=0o700, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            with os.fdopen(os.dup(fd)) as handle:
                holder = handle.read().strip() or "another process"
            os.close(fd)
            raise errors.EtcdLockHeld(
                "cluster {} is busy: {} (a second operation is refused; it ends, or is "
                "killed, first)".format(self.cluster, holder), holder=holder) from None
        os.ftruncate(fd, 0)
        os.write(fd, self.holder.encode())
        self._fd = fd

    def acquire_etcd(self, client):
        # the master's lock is ours already: a holder in etcd is on another master, or died
        # (its lease expires within LOCK_TTL): wait that long, no longer
        manager = client.lock(etcd_settings.operation_lock(self.cluster), ttl=LOCK_TTL,
                              wait=LOCK_TTL + 5, holder=self.holder)
        try:
            held = manager.__enter__()
        except errors.EtcdLockHeld as exc:
            raise errors.EtcdLockHeld(
                "cluster {} is busy: {} (its lock in etcd; a killed operation's lock expires "
                "{} s after it died)".format(self.cluster, exc.holder, LOCK_TTL),
                holder=exc.holder) from None
        self._etcd = (client, manager, held)

    def check(self):
        """Raise EtcdLockLost unless the lock still holds."""
        if self._etcd is not None:
            self._etcd[2].check()

    def release(self):
        if self._etcd is not None:
            client, manager, _ = self._etcd
            self._etcd = None
            try:
                manager.__exit__(None, None, None)
            finally:
                client.close()
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _user():
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def begin(cluster, what, lock_dir, client=None):
    """
    Hold cluster ``cluster``'s operation lock for ``what``: the master's lock file, and the
    lock in etcd through ``client`` (None: the cluster has no quorum to grant a lease; the
    operation says so). Any failure to take the lock in etcd through a client fails. EtcdLockHeld names the holder when it is taken. Idempotent within the process
    (a re-run step of the same operation finds it).
    """
    found = _HELD.get(cluster)
    if found is not None:
        found.check()
        return found
    operation = Operation(cluster, what, lock_dir)
    operation.acquire_local()
    try:
        if client is not None:
            operation.acquire_etcd(client)
        else:
            operation.notes.append(
                "cluster {} has no quorum to grant a lease: locked on this master only".format(
                    cluster))
    except BaseException:
        operation.release()
        if client is not None:
            client.close()
        raise
    _HELD[cluster] = operation
    return operation


def current(cluster):
    """The operation this process holds on ``cluster``, checked to still hold, or None."""
    found = _HELD.get(cluster)
    if found is not None:
        found.check()
    return found


def end(cluster):
    """Release this process's operation on ``cluster`` (nothing when it holds none, or when
    this process is a parallel step forked from the one that holds it)."""
    found = _HELD.get(cluster)
    if found is None or found.pid != os.getpid():
        return None
    del _HELD[cluster]
    found.release()
    return found


def end_all():
    """Release every operation this process holds (a failing step: nothing is left locked)."""
    return [op.what for op in (end(cluster) for cluster in list(_HELD)) if op is not None]


@contextlib.contextmanager
def held_for(cluster, what, lock_dir, client_factory):
    """The operation for the ``with`` block: the running one (an orchestration's), or one
    held for this block only (a step run by hand). ``client_factory()`` gives the client
    for the etcd lock, or None."""
    running = current(cluster)
    if running is not None:
        yield running
        return
    operation = begin(cluster, what, lock_dir, client_factory())
    try:
        yield operation
    finally:
        end(cluster)
