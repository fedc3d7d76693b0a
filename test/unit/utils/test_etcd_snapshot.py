"""
Snapshots on the master: etcd's integrity hash, the checks before anything relies on one,
the manifest, retention, and the restore command. A snapshot here is what etcd streams: a
db, then the sha256 of it. etcd's tool (``status``, a process) is the one edge replaced:
a Mock specced on the real function, or on ``subprocess.run`` where ``status`` itself is
under test.
"""

import datetime
import hashlib
import json
import os
import subprocess
import types
from unittest import mock

import pytest

import etcd_errors as errors
import etcd_snapshot
import etcd_validate
from etcd_fakes import fake_client

NOW = datetime.datetime(2026, 3, 10, 12, 0, 0, tzinfo=datetime.timezone.utc)
READ = {"revision": 42, "keys": 7, "size": 12288, "hash": 1234}


def snapshot_bytes(db=None):
    """A snapshot as etcd streams it: the db (pages of 4 KiB), then its sha256."""
    db = db if db is not None else os.urandom(3 * 4096)
    return db + hashlib.sha256(db).digest()


def write_snapshot(path, data=None, mode=0o600):
    data = snapshot_bytes() if data is None else data
    with open(path, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)
    return str(path)


@pytest.fixture
def status(monkeypatch):
    """etcd's tool reading a snapshot (``snapshot status``), as the real function answers."""
    found = mock.Mock(spec=etcd_snapshot.status, return_value=dict(READ))
    monkeypatch.setattr(etcd_snapshot, "status", found)
    return found


@pytest.fixture
def backups(tmp_path, monkeypatch):
    """A cluster's backup directory. The temporary tree stands for a directory of the
    master's own (/srv/unit-test/...): the path rule still applies to every other path."""
    real_rule = etcd_validate.path_problem

    def path_problem(value, *args, **kwargs):
        if isinstance(value, str) and value.startswith(str(tmp_path) + "/"):
            value = "/srv/unit-test" + value[len(str(tmp_path)):]
        return real_rule(value, *args, **kwargs)

    monkeypatch.setattr(etcd_validate, "path_problem", path_problem)
    return str(tmp_path / "backups" / "etcd")


def entry(day, hour=0, name=None):
    taken = datetime.datetime(2026, 3, day, hour, tzinfo=datetime.timezone.utc)
    return {"file": name or "etcd-{}.db".format(taken.strftime("%Y%m%dT%H%M%S000000Z")),
            "taken_at": taken.strftime("%Y-%m-%dT%H:%M:%SZ"), "sha256": "ab" * 32}


def files(entries):
    return [e["file"] for e in entries]


# -- etcd's integrity hash -----------------------------------------------------------------------


def test_integrity_is_the_sha256_etcd_appended(tmp_path):
    db = os.urandom(2 * 4096)
    path = write_snapshot(tmp_path / "s.db", snapshot_bytes(db))
    assert etcd_snapshot.integrity(path) == hashlib.sha256(db).hexdigest()


@pytest.mark.parametrize("damage", [
    pytest.param(lambda data: data[:-1], id="last-byte-cut"),
    pytest.param(lambda data: data[:4096], id="truncated-to-a-page"),
    pytest.param(lambda data: data[:100] + bytes([data[100] ^ 1]) + data[101:], id="one-bit-flipped"),
    pytest.param(lambda data: data[:-32], id="no-hash"),
    pytest.param(lambda data: data + b"\0" * 32, id="padded"),
])
def test_a_truncated_or_corrupt_snapshot_is_refused(tmp_path, damage):
    path = write_snapshot(tmp_path / "s.db", damage(snapshot_bytes()))
    with pytest.raises(errors.EtcdUnsafe, match="integrity hash does not match its content "
                                                r"\(truncated or corrupt\): refused"):
        etcd_snapshot.integrity(path)


@pytest.mark.parametrize("size", [0, 1, 32])
def test_a_file_too_small_for_a_hash_is_no_snapshot(tmp_path, size):
    path = write_snapshot(tmp_path / "s.db", b"x" * size)
    with pytest.raises(errors.EtcdUnsafe, match="{} bytes: not an etcd snapshot".format(size)):
        etcd_snapshot.integrity(path)


# -- verify ---------------------------------------------------------------------------------------


def test_verify_gives_the_hash_what_etcds_tool_reads_and_the_size(tmp_path, status):
    data = snapshot_bytes()
    path = write_snapshot(tmp_path / "s.db", data)
    checked = etcd_snapshot.verify(path)
    assert checked == dict(READ, sha256=hashlib.sha256(data[:-32]).hexdigest(), bytes=len(data))
    status.assert_called_once_with(path)


def test_verify_refuses_a_corrupt_snapshot_before_running_etcds_tool(tmp_path, status):
    path = write_snapshot(tmp_path / "s.db", snapshot_bytes()[:-10])
    with pytest.raises(errors.EtcdUnsafe, match="truncated or corrupt"):
        etcd_snapshot.verify(path)
    status.assert_not_called()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o666])
def test_verify_refuses_a_snapshot_others_may_read(tmp_path, status, mode):
    path = write_snapshot(tmp_path / "s.db", mode=mode)
    with pytest.raises(errors.EtcdUnsafe, match="mode {:o}: a snapshot holds every secret in etcd: "
                                                "expected 0600".format(mode)):
        etcd_snapshot.verify(path)


def test_verify_refuses_a_missing_file(tmp_path, status):
    with pytest.raises(errors.EtcdUnsafe, match="no such snapshot file"):
        etcd_snapshot.verify(str(tmp_path / "gone.db"))


def test_verify_refuses_what_etcds_tool_cannot_read(tmp_path, status):
    status.side_effect = errors.EtcdUnsafe("s.db: etcdutl cannot read it: invalid database")
    with pytest.raises(errors.EtcdUnsafe, match="cannot read it"):
        etcd_snapshot.verify(write_snapshot(tmp_path / "s.db"))


# -- etcd's tool ------------------------------------------------------------------------------------


def executable(path):
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return str(path)


def test_the_tool_is_etcdutl_where_there_is_one_else_etcdctl(tmp_path, monkeypatch):
    etcdutl, etcdctl = str(tmp_path / "etcdutl"), executable(tmp_path / "etcdctl")
    monkeypatch.setattr(etcd_snapshot, "TOOLS", (etcdutl, etcdctl))
    assert etcd_snapshot.tool() == etcdctl
    executable(tmp_path / "etcdutl")
    assert etcd_snapshot.tool() == etcdutl
    monkeypatch.setattr(etcd_snapshot, "TOOLS", (str(tmp_path / "none"),))
    assert etcd_snapshot.tool() is None


@pytest.fixture
def tool_run(tmp_path, monkeypatch):
    """``subprocess.run`` of etcd_snapshot, and an etcdutl to run."""
    monkeypatch.setattr(etcd_snapshot, "TOOLS", (executable(tmp_path / "etcdutl"),))
    run = mock.Mock(spec=subprocess.run)
    monkeypatch.setattr(etcd_snapshot, "subprocess", types.SimpleNamespace(run=run))
    return run


def test_status_reads_etcdutls_json(tool_run, tmp_path):
    tool_run.return_value = subprocess.CompletedProcess([], 0, stdout=json.dumps(
        {"hash": 3150094362, "revision": 21, "totalKey": 26, "totalSize": 20480}), stderr="")
    assert etcd_snapshot.status("/srv/s.db") == {"revision": 21, "keys": 26, "size": 20480,
                                                 "hash": 3150094362}
    argv = tool_run.call_args.args[0]
    assert argv == [str(tmp_path / "etcdutl"), "snapshot", "status", "/srv/s.db", "-w", "json"]
    # the caller's ETCDCTL_* variables do not reach it
    assert tool_run.call_args.kwargs["env"] == {"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"}


def test_status_refuses_what_the_tool_cannot_read_with_its_message(tool_run):
    tool_run.return_value = subprocess.CompletedProcess([], 1, stdout="", stderr="Error: invalid database\n")
    with pytest.raises(errors.EtcdUnsafe, match="/srv/s.db: etcdutl cannot read it: Error: invalid database$"):
        etcd_snapshot.status("/srv/s.db")


def test_status_without_a_tool_says_how_to_get_one(monkeypatch, tmp_path):
    monkeypatch.setattr(etcd_snapshot, "TOOLS", (str(tmp_path / "etcdutl"),))
    with pytest.raises(errors.EtcdUnsafe, match="no etcdutl or etcdctl on this host .*etcd.admin"):
        etcd_snapshot.status("/srv/s.db")


def test_offsite_runs_the_command_with_the_file(tool_run):
    tool_run.return_value = subprocess.CompletedProcess([], 0, stdout="sent\n", stderr="")
    assert etcd_snapshot.offsite(["rsync", "-a", "{file}", "b:/srv/{file}.x"], "/srv/s.db") == (0, "sent")
    assert tool_run.call_args.args[0] == ["rsync", "-a", "/srv/s.db", "b:/srv//srv/s.db.x"]


# -- the backup directory and taking one ----------------------------------------------------------


def test_the_backup_dir_is_made_0700_and_made_so_again(backups):
    etcd_snapshot.ensure_dir(backups)
    assert os.stat(backups).st_mode & 0o777 == 0o700
    os.chmod(backups, 0o755)
    etcd_snapshot.ensure_dir(backups)
    assert os.stat(backups).st_mode & 0o777 == 0o700


@pytest.mark.parametrize("bad", ["/var/backups", "/tmp/etcd", "/etc/etcd/backups", "backups", "/srv/../etc/x"])
def test_a_backup_dir_the_formula_may_not_own_is_refused(bad):
    with pytest.raises(errors.EtcdUnsafe, match="backup dir '{}'".format(bad)):
        etcd_snapshot.ensure_dir(bad)


def streaming(data):
    """A client whose ``snapshot`` streams ``data`` (or raises it) from any endpoint."""
    client = fake_client()

    def snapshot(endpoint, handle, timeout=600):
        if isinstance(data, Exception):
            handle.write(b"x" * 100)
            raise data
        handle.write(data)
        return len(data)

    client.snapshot.side_effect = snapshot
    return client


def test_take_streams_verifies_and_records_a_snapshot(backups, status):
    data = snapshot_bytes()
    entry = etcd_snapshot.take(streaming(data), "https://10.77.0.11:2379", backups, "etcd", "h1", now=NOW)
    assert entry["file"] == "etcd-20260310T120000000000Z.db"
    assert entry["path"] == os.path.join(backups, entry["file"])
    assert (entry["cluster"], entry["member"], entry["endpoint"]) == ("etcd", "h1", "https://10.77.0.11:2379")
    assert entry["taken_at"] == "2026-03-10T12:00:00Z"
    assert (entry["revision"], entry["keys"], entry["bytes"]) == (42, 7, len(data))
    assert entry["sha256"] == hashlib.sha256(data[:-32]).hexdigest()
    with open(entry["path"], "rb") as handle:
        assert handle.read() == data
    assert os.stat(entry["path"]).st_mode & 0o777 == 0o600
    assert os.stat(backups).st_mode & 0o777 == 0o700
    assert etcd_snapshot.load(backups) == [entry]
    assert os.stat(os.path.join(backups, etcd_snapshot.MANIFEST)).st_mode & 0o777 == 0o600
    assert sorted(os.listdir(backups)) == sorted([entry["file"], etcd_snapshot.MANIFEST])


def test_a_snapshot_streamed_short_is_refused_and_nothing_kept(backups, status):
    etcd_snapshot.take(streaming(snapshot_bytes()), "https://e:2379", backups, "etcd", "h1", now=NOW)
    before = etcd_snapshot.load(backups)
    later = NOW + datetime.timedelta(hours=1)
    with pytest.raises(errors.EtcdUnsafe, match="truncated or corrupt"):
        etcd_snapshot.take(streaming(snapshot_bytes()[:-100]), "https://e:2379", backups, "etcd", "h1", now=later)
    assert etcd_snapshot.load(backups) == before
    assert sorted(os.listdir(backups)) == sorted([before[0]["file"], etcd_snapshot.MANIFEST])


def test_a_stream_that_breaks_leaves_no_partial_file(backups, status):
    with pytest.raises(errors.EtcdUnreachable):
        etcd_snapshot.take(streaming(errors.EtcdUnreachable("https://e:2379: Connection reset")),
                           "https://e:2379", backups, "etcd", "h1", now=NOW)
    assert os.listdir(backups) == []
    assert etcd_snapshot.load(backups) == []


def test_the_manifest_keeps_the_snapshots_oldest_first(backups, status):
    taken = [etcd_snapshot.take(streaming(snapshot_bytes()), "https://e:2379", backups, "etcd", "h1",
                                now=NOW + datetime.timedelta(hours=h)) for h in range(3)]
    assert files(etcd_snapshot.load(backups)) == files(taken)


# -- retention ------------------------------------------------------------------------------------


def test_retention_keeps_at_most_keep_the_newest():
    entries = [entry(day) for day in range(1, 8)]
    kept, dropped = etcd_snapshot.retention(entries, keep=3, max_age_days=30, now=NOW)
    assert files(kept) == files(entries[-3:])
    assert files(dropped) == files(entries[:-3])


def test_retention_keeps_none_older_than_max_age_days():
    entries = [entry(day) for day in range(1, 10)]  # midnights of March 1..9; now: March 10, noon
    kept, dropped = etcd_snapshot.retention(entries, keep=7, max_age_days=3, now=NOW)
    assert files(kept) == files([entry(8), entry(9)])  # younger than March 7, noon
    assert files(dropped) == files(entries[:-2])


def test_retention_always_keeps_the_newest_even_when_it_is_old():
    entries = [entry(1), entry(2)]
    kept, dropped = etcd_snapshot.retention(entries, keep=1, max_age_days=1, now=NOW)
    assert (files(kept), files(dropped)) == (files(entries[1:]), files(entries[:1]))


def test_retention_of_nothing_is_nothing():
    assert etcd_snapshot.retention([], keep=7, max_age_days=30, now=NOW) == ([], [])


def test_prune_deletes_the_dropped_snapshots_only(backups):
    etcd_snapshot.ensure_dir(backups)
    entries = [entry(day) for day in range(5, 10)]
    for found in entries:
        write_snapshot(os.path.join(backups, found["file"]))
        etcd_snapshot.record(backups, found)
    stranger = write_snapshot(os.path.join(backups, "notes.db"))
    dropped = etcd_snapshot.prune(backups, keep=2, max_age_days=30, now=NOW)
    assert files(dropped) == files(entries[:3])
    assert files(etcd_snapshot.load(backups)) == files(entries[3:])
    assert sorted(os.listdir(backups)) == sorted(files(entries[3:]) + [etcd_snapshot.MANIFEST, "notes.db"])
    assert os.path.exists(stranger)


# -- which snapshot a restore uses ------------------------------------------------------------------


@pytest.fixture
def manifest(backups):
    etcd_snapshot.ensure_dir(backups)
    entries = [entry(day) for day in (7, 8, 9)]
    for found in entries:
        etcd_snapshot.record(backups, found)
    return entries


def test_resolve_latest_is_the_newest_verified_snapshot(backups, manifest):
    assert etcd_snapshot.resolve(backups, "latest") == manifest[-1]
    assert etcd_snapshot.resolve(backups, None) == manifest[-1]


def test_resolve_a_snapshot_of_the_manifest_by_name_or_path(backups, manifest):
    assert etcd_snapshot.resolve(backups, manifest[0]["file"]) == manifest[0]
    assert etcd_snapshot.resolve(backups, os.path.join(backups, manifest[1]["file"])) == manifest[1]


@pytest.mark.parametrize("which", ["etcd-other.db", "/etc/passwd", "/srv/elsewhere/{first}"])
def test_resolve_refuses_a_file_not_in_the_manifest(backups, manifest, which):
    which = which.format(first=manifest[0]["file"])
    with pytest.raises(errors.EtcdUnsafe, match="not a snapshot of the manifest in .*latest, or one of: "
                                                + ", ".join(files(manifest))):
        etcd_snapshot.resolve(backups, which)


def test_resolve_latest_without_a_snapshot_says_take_one(backups):
    with pytest.raises(errors.EtcdUnsafe, match="no verified snapshot in .*salt-run etcd.snapshot"):
        etcd_snapshot.resolve(backups, "latest")


def test_age_hours():
    assert etcd_snapshot.age_hours(entry(9, 12), now=NOW) == 24.0


# -- restoring one --------------------------------------------------------------------------------


def restore_argv(tool):
    return etcd_snapshot.restore_argv("/var/lib/etcd/restore.db", "etcd-1",
                                      "etcd-1=https://10.77.0.11:2380,etcd-2=https://10.77.0.12:2380",
                                      "etcd-1a2b3c4d-r1", "https://10.77.0.11:2380",
                                      "/var/lib/etcd/data.restoring", found=tool)


def test_restore_with_etcdutl_bumps_the_revision_and_marks_it_compacted():
    argv = restore_argv("/usr/bin/etcdutl")
    assert argv[:4] == ["/usr/bin/etcdutl", "snapshot", "restore", "/var/lib/etcd/restore.db"]
    flags = dict(zip(argv[4::2], argv[5::2]))
    assert flags["--name"] == "etcd-1"
    assert flags["--initial-cluster"] == "etcd-1=https://10.77.0.11:2380,etcd-2=https://10.77.0.12:2380"
    assert flags["--initial-cluster-token"] == "etcd-1a2b3c4d-r1"
    assert flags["--initial-advertise-peer-urls"] == "https://10.77.0.11:2380"
    assert flags["--data-dir"] == "/var/lib/etcd/data.restoring"
    assert argv[-3:] == ["--bump-revision", str(etcd_snapshot.BUMP_REVISION), "--mark-compacted"]


def test_restore_with_etcdctl_has_no_flags_it_does_not_know():
    argv = restore_argv("/usr/bin/etcdctl")
    assert argv[0] == "/usr/bin/etcdctl"
    assert "--bump-revision" not in argv and "--mark-compacted" not in argv
    assert argv[-2:] == ["--data-dir", "/var/lib/etcd/data.restoring"]


def test_restore_without_a_tool_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(etcd_snapshot, "TOOLS", (str(tmp_path / "etcdutl"),))
    with pytest.raises(errors.EtcdUnsafe, match="no etcdutl or etcdctl here"):
        restore_argv(None)


def test_copy_into_is_0600_and_the_same_bytes(tmp_path):
    data = snapshot_bytes()
    source = write_snapshot(tmp_path / "s.db", data, mode=0o600)
    copied = etcd_snapshot.copy_into(source, str(tmp_path / "copy.db"))
    with open(copied, "rb") as handle:
        assert handle.read() == data
    assert os.stat(copied).st_mode & 0o777 == 0o600
