"""
Snapshots: taking one (streamed from a member through the one client), checking it (etcd's
own sha256 at its end, then revision, keys and size as etcd's tool reads them), the
manifest of the verified ones in each cluster's backup directory on the master, retention;
and the command a member restores one with. The only place that runs etcd's tools
(``etcdutl``, or ``etcdctl`` before 3.5) on a snapshot file.

Files: ``<backup dir>/<cluster>/`` (0700) holds ``<cluster>-<UTC time>.db`` (0600) and
``manifest.json`` (0600): the verified snapshots, newest last.
"""

import datetime
import hashlib
import json
import os
import shutil
import subprocess
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.append(_HERE)

import etcd_errors as errors  # noqa: E402
import etcd_validate  # noqa: E402

__virtualname__ = "etcd_snapshot"

SHA256_SIZE = 32
MANIFEST = "manifest.json"
TOOLS = ("/usr/bin/etcdutl", "/usr/bin/etcdctl")
# etcd's revision jumps by this much on a restore (3.5+): watchers (patroni) see revisions
# keep going forward, never the past again.
BUMP_REVISION = 1000000000


def __virtual__():
    return __virtualname__


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def tool():
    """etcd's snapshot tool on this host: etcdutl (3.5+), else etcdctl; None when neither."""
    return next((t for t in TOOLS if os.access(t, os.X_OK)), None)


def integrity(path):
    """The sha256 etcd appended to the snapshot at ``path``, checked against its content
    (EtcdUnsafe when it does not match: truncated, corrupt, or not an etcd snapshot)."""
    size = os.path.getsize(path)
    if size <= SHA256_SIZE:
        raise errors.EtcdUnsafe("{}: {} bytes: not an etcd snapshot".format(path, size))
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        remaining = size - SHA256_SIZE
        while remaining:
            chunk = handle.read(min(remaining, 1 << 20))
            if not chunk:
                break
            digest.update(chunk)
            remaining -= len(chunk)
        trailer = handle.read(SHA256_SIZE)
    if digest.digest() != trailer:
        raise errors.EtcdUnsafe(
            "{}: its integrity hash does not match its content (truncated or corrupt): "
            "refused".format(path))
    return trailer.hex()


def status(path):
    """{revision, keys, size, hash} of the snapshot at ``path``, as etcd's tool reads it."""
    found = tool()
    if found is None:
        raise errors.EtcdUnsafe("no etcdutl or etcdctl on this host to read {} (install "
                                "etcd-client: etcd.admin does)".format(path))
    done = subprocess.run([found, "snapshot", "status", path, "-w", "json"],
                          capture_output=True, text=True, env={"ETCDCTL_API": "3",
                                                               "PATH": "/usr/bin:/bin"})
    if done.returncode != 0:
        raise errors.EtcdUnsafe("{}: {} cannot read it: {}".format(
            path, os.path.basename(found), (done.stderr or done.stdout).strip()[-300:]))
    read = json.loads(done.stdout)
    return {"revision": int(read["revision"]), "keys": int(read["totalKey"]),
            "size": int(read["totalSize"]), "hash": int(read["hash"])}


def verify(path):
    """Everything a snapshot is checked for before anything relies on it: its integrity
    hash, that etcd's tool reads it, and mode 0600. {sha256, revision, keys, size, bytes}."""
    if not os.path.isfile(path):
        raise errors.EtcdUnsafe("{}: no such snapshot file".format(path))
    sha256 = integrity(path)
    read = status(path)
    mode = os.stat(path).st_mode & 0o777
    if mode & 0o077:
        raise errors.EtcdUnsafe("{}: mode {:o}: a snapshot holds every secret in etcd: "
                                "expected 0600".format(path, mode))
    return dict(read, sha256=sha256, bytes=os.path.getsize(path))


def ensure_dir(directory):
    """The backup directory, made 0700 (and made so again when it is not)."""
    problem = etcd_validate.path_problem(directory, "/var/backups/etcd/<cluster>")
    if problem:
        raise errors.EtcdUnsafe("backup dir " + problem)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    return directory


def take(client, endpoint, directory, cluster_name, member_name, now=None):
    """Stream a snapshot from ``endpoint`` into ``directory``, verify it, record it in the
    manifest: the manifest entry."""
    now = now or _now()
    ensure_dir(directory)
    name = "{}-{}.db".format(cluster_name, now.strftime("%Y%m%dT%H%M%S%fZ"))
    final = os.path.join(directory, name)
    partial = final + ".part"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            client.snapshot(endpoint, handle)
            handle.flush()
            os.fsync(handle.fileno())
        checked = verify(partial)
        os.replace(partial, final)
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        raise
    entry = dict(checked, file=name, path=final, cluster=cluster_name, member=member_name,
                 endpoint=endpoint, taken_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"))
    record(directory, entry)
    return entry


def load(directory):
    """The manifest's entries (verified snapshots, oldest first); [] when there is none."""
    path = os.path.join(directory, MANIFEST)
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return []


def _save(directory, entries):
    path = os.path.join(directory, MANIFEST)
    partial = path + ".part"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(entries, handle, indent=1)
    os.replace(partial, path)


def record(directory, entry):
    entries = [e for e in load(directory) if e["file"] != entry["file"]] + [entry]
    _save(directory, entries)


def retention(entries, keep, max_age_days, now=None):
    """(kept, dropped) of ``entries`` (oldest first): the newest ``keep`` younger than
    ``max_age_days``; the newest is always kept."""
    now = now or _now()
    if not entries:
        return [], []
    limit = now - datetime.timedelta(days=max_age_days)
    newest_first = list(reversed(entries))
    kept = [newest_first[0]]
    for entry in newest_first[1:]:
        taken = datetime.datetime.strptime(entry["taken_at"], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.timezone.utc)
        if len(kept) < keep and taken >= limit:
            kept.append(entry)
    kept_files = {e["file"] for e in kept}
    return ([e for e in entries if e["file"] in kept_files],
            [e for e in entries if e["file"] not in kept_files])


def prune(directory, keep, max_age_days, now=None):
    """Apply the retention: the dropped snapshots' files deleted (only files of the
    manifest, in ``directory``), the manifest rewritten. The dropped entries."""
    kept, dropped = retention(load(directory), keep, max_age_days, now)
    for entry in dropped:
        path = os.path.join(directory, os.path.basename(entry["file"]))
        if os.path.isfile(path):
            os.remove(path)
    if dropped:
        _save(directory, kept)
    return dropped


def resolve(directory, which):
    """The manifest entry of ``which``: ``latest``, or a file of the manifest (its name or
    path). EtcdUnsafe for anything else: a restore uses verified snapshots only."""
    entries = load(directory)
    if which in (None, "", "latest"):
        if not entries:
            raise errors.EtcdUnsafe("no verified snapshot in {}: take one first (salt-run "
                                    "etcd.snapshot)".format(directory))
        return entries[-1]
    name = os.path.basename(str(which))
    found = next((e for e in entries if e["file"] == name), None)
    if found is None or (os.path.isabs(str(which)) and os.path.dirname(str(which)) != directory):
        raise errors.EtcdUnsafe("{!r}: not a snapshot of the manifest in {} (latest, or one of: "
                                "{})".format(which, directory,
                                             ", ".join(e["file"] for e in entries) or "none"))
    return found


def taken_at_timestamp(entry):
    """When ``entry``'s snapshot was taken, as unix time."""
    return datetime.datetime.strptime(entry["taken_at"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def age_hours(entry, now=None):
    taken = datetime.datetime.strptime(entry["taken_at"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc)
    return ((now or _now()) - taken).total_seconds() / 3600.0


def offsite(command, path):
    """Run the configured offsite command (argv, ``{file}`` replaced) after a verified
    snapshot: (returncode, output)."""
    argv = [arg.replace("{file}", path) for arg in command]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    return done.returncode, (done.stdout + done.stderr).strip()[-500:]


def restore_argv(snapshot, member_name, initial_cluster, token, peer_url, data_dir, found=None):
    """The command that restores ``snapshot`` into ``data_dir`` for one member of the new
    cluster (etcdutl bumps the revision, so watchers never see the past again)."""
    found = found or tool()
    if found is None:
        raise errors.EtcdUnsafe("no etcdutl or etcdctl here to restore with")
    argv = [found, "snapshot", "restore", snapshot, "--name", member_name,
            "--initial-cluster", initial_cluster, "--initial-cluster-token", token,
            "--initial-advertise-peer-urls", peer_url, "--data-dir", data_dir]
    if os.path.basename(found) == "etcdutl":
        argv += ["--bump-revision", str(BUMP_REVISION), "--mark-compacted"]
    return argv


def copy_into(path, destination):
    """Copy a snapshot, 0600 (on a member, before its restore)."""
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out, open(path, "rb") as source:
        shutil.copyfileobj(source, out, 1 << 20)
    return destination
