"""
Snapshots of a real 3-member TLS cluster, taken through Salt's loader as the master loads
``etcd_snapshot``, checked by etcd's own tools and restored with the command a member runs
(``restore_argv``) into a one-member cluster that must give every key back. The tools:
this machine's etcdctl (3.4, no etcdutl), and the etcdutl/etcd of the Debian 13 image
(3.5) when it is there.
"""

import glob
import hashlib
import os
import shutil
import subprocess

import pytest
from local_etcd import ETCD_BIN, LocalCluster
from salt.exceptions import CommandExecutionError

IMAGE_BIN = next(iter(sorted(glob.glob("/var/cache/etcd-formula/images/trixie-*/usr/bin"))), "/nonexistent")


def tool_pair(tool, etcd, name):
    """(the snapshot tool, the etcd that runs what it restored)."""
    missing = [path for path in (tool, etcd) if not os.access(path, os.X_OK)]
    return pytest.param((tool, etcd), id=name,
                        marks=pytest.mark.skipif(bool(missing), reason="no {}".format(", ".join(missing))))


TOOLS = [
    tool_pair("/usr/bin/etcdctl", ETCD_BIN, "etcdctl"),
    tool_pair(os.path.join(IMAGE_BIN, "etcdutl"), os.path.join(IMAGE_BIN, "etcd"), "etcdutl-3.5"),
]


@pytest.fixture
def snapshots(salt_minion, monkeypatch, tmp_path):
    """``snapshots.<function>``: etcd_snapshot as Salt's loader gives it; ``use(tool)`` makes
    ``tool`` the one it finds; ``dir``: the cluster's backup dir (the temporary tree stands
    for a directory of the master's own: the path rule still applies below it)."""
    utils = salt_minion.utils
    module = utils["etcd_snapshot.take"].__globals__
    rules = module["etcd_validate"]
    real_rule = rules.path_problem

    def path_problem(value, *args, **kwargs):
        if isinstance(value, str) and value.startswith(str(tmp_path) + "/"):
            value = "/srv/functional" + value[len(str(tmp_path)):]
        return real_rule(value, *args, **kwargs)

    monkeypatch.setattr(rules, "path_problem", path_problem)

    class Snapshots:
        dir = str(tmp_path / "backups" / "test")
        bump = module["BUMP_REVISION"]

        def __getattr__(self, name):
            return utils["etcd_snapshot." + name]

        @staticmethod
        def use(tool):
            monkeypatch.setitem(module, "TOOLS", (tool,))

    return Snapshots()


@pytest.fixture
def client(salt_minion, etcd_cluster):
    with salt_minion.utils["etcd_client.connect"](etcd_cluster.endpoints, **etcd_cluster.tls) as found:
        yield found


def written_keys(client, count=60):
    """Keys written to the cluster (one with a history: its value changed twice)."""
    written = {"/app/key-{:03d}".format(i): "value {}".format(i) for i in range(count)}
    for key, value in written.items():
        client.put(key, value)
    for value in ("first", "last"):
        client.put("/app/key-000", value)
    written["/app/key-000"] = "last"
    return written


def restore_and_start(snapshots, entry, tool, etcd_bin, root):
    """The snapshot restored with ``tool`` as a member restores it, and a one-member
    cluster started on it: (the LocalCluster, its member)."""
    restored = LocalCluster(root, size=1, name="restored", etcd_bin=etcd_bin)
    member = restored.new_member()
    initial = restored.initial_cluster([member])
    argv = snapshots.restore_argv(entry["path"], member.name, initial, restored.token,
                                  member.peer_url, member.data_dir, found=tool)
    done = subprocess.run(argv, capture_output=True, text=True, env={"ETCDCTL_API": "3"})
    assert done.returncode == 0, done.stderr
    restored.start(member, initial, state="new")
    return restored, member


@pytest.mark.parametrize("tools", TOOLS)
def test_a_snapshot_of_a_real_cluster_gives_every_key_back(etcd_cluster, client, snapshots, salt_minion,
                                                           tools, tmp_path):
    tool, etcd_bin = tools
    snapshots.use(tool)
    written = written_keys(client)
    revision = client.revision()
    source = etcd_cluster.members[1]
    entry = snapshots.take(client, source.client_url, snapshots.dir, "test", source.name)
    assert (entry["revision"], entry["member"], entry["endpoint"]) == (revision, source.name, source.client_url)
    assert entry["keys"] >= len(written)
    assert os.stat(entry["path"]).st_mode & 0o777 == 0o600
    assert os.stat(snapshots.dir).st_mode & 0o777 == 0o700
    assert snapshots.resolve(snapshots.dir, "latest") == entry
    checked = snapshots.verify(entry["path"])
    assert (checked["sha256"], checked["revision"], checked["bytes"]) == (
        entry["sha256"], revision, os.path.getsize(entry["path"]))

    restored, member = restore_and_start(snapshots, entry, tool, etcd_bin, str(tmp_path / "restored"))
    try:
        restored.wait_healthy([member], timeout=30)
        with salt_minion.utils["etcd_client.connect"]([member.client_url], **restored.tls) as back:
            assert back.keys("/app/") == written
            assert len(back.members()) == 1
            if os.path.basename(tool) == "etcdutl":
                # bumped: a watcher (patroni) never sees a revision of the past again
                assert back.revision() >= revision + snapshots.bump
            else:
                assert revision <= back.revision() < snapshots.bump
    finally:
        restored.stop_all()


def test_a_truncated_or_corrupted_copy_is_refused(client, snapshots, etcd_cluster, tmp_path):
    snapshots.use("/usr/bin/etcdctl")
    written_keys(client, count=5)
    entry = snapshots.take(client, etcd_cluster.endpoints[0], snapshots.dir, "test", "test-1")
    size = os.path.getsize(entry["path"])
    truncated = str(tmp_path / "truncated.db")
    shutil.copyfile(entry["path"], truncated)
    os.truncate(truncated, size - 4096)
    os.chmod(truncated, 0o600)
    with pytest.raises(CommandExecutionError, match="truncated or corrupt"):
        snapshots.verify(truncated)
    corrupted = str(tmp_path / "corrupted.db")
    shutil.copyfile(entry["path"], corrupted)
    with open(corrupted, "r+b") as handle:
        handle.seek(size // 2)
        byte = handle.read(1)
        handle.seek(size // 2)
        handle.write(bytes([byte[0] ^ 0xFF]))
    os.chmod(corrupted, 0o600)
    with pytest.raises(CommandExecutionError, match="truncated or corrupt"):
        snapshots.verify(corrupted)


def test_what_is_no_etcd_database_is_refused_by_etcds_tool(snapshots, tmp_path):
    snapshots.use("/usr/bin/etcdctl")
    data = os.urandom(4 * 4096)
    path = str(tmp_path / "random.db")
    with open(path, "wb") as handle:
        handle.write(data + hashlib.sha256(data).digest())  # etcd's hash, of no database
    os.chmod(path, 0o600)
    snapshots.integrity(path)
    with pytest.raises(CommandExecutionError, match="random.db: etcdctl cannot read it: "):
        snapshots.verify(path)
