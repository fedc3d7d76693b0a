"""
Files the formula writes whole: replaced atomically (a temporary file renamed over the old
one, its mode set first), and only when their text changes, so a reader (etcdctl's shell,
node_exporter's textfile collector) never sees half a file and a re-run changes nothing.
"""

import contextlib
import fcntl
import os

__virtualname__ = "etcd_files"


def __virtual__():
    return __virtualname__


def replace(path, text, mode=0o644):
    """``text`` into ``path`` unless it holds it already; whether it changed."""
    try:
        with open(path) as handle:
            if handle.read() == text:
                return False
    except OSError:
        pass
    # not the file's own suffix: a collector reading *.prom never reads the temporary
    temporary = "{}.{}.new".format(path, os.getpid())
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(temporary, mode)
    os.replace(temporary, path)
    return True


@contextlib.contextmanager
def exclusive(path):
    """Held by one process of this host at a time (``flock`` on ``path``, made 0600 if
    missing, in a 0700 directory made if missing; the kernel releases it with the
    process)."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
