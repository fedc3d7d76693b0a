"""
The one-off mTLS transfer of a snapshot from the master to a member, over real sockets on
loopback: the server requires a client certificate of the cluster CA, the member pins the
server's certificate by its fingerprint and checks the file's sha256 before it keeps it.
The CA and certificates are a LocalCluster's (no etcd needs to run); the module is imported
as it is (it has no Salt dunders).
"""

import hashlib
import os
import shutil
import socket
import ssl
import sys
import time

import pytest
from local_etcd import LocalCluster

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
if os.path.join(REPO, "_utils") not in sys.path:
    sys.path.append(os.path.join(REPO, "_utils"))

import etcd_transfer  # noqa: E402

LOOPBACK = "127.0.0.1"


@pytest.fixture
def pki(tmp_path):
    """The cluster's CA and a client certificate of it (a member's)."""
    return LocalCluster(str(tmp_path / "pki"))


@pytest.fixture
def stranger(tmp_path):
    """A client certificate of another CA."""
    return LocalCluster(str(tmp_path / "other-pki"))


@pytest.fixture
def snapshot(tmp_path):
    path = str(tmp_path / "etcd-20260310T120000000000Z.db")
    with open(path, "wb") as handle:
        handle.write(os.urandom(3 * 1024 * 1024 + 17))
    os.chmod(path, 0o600)
    return path


@pytest.fixture
def member_dir(tmp_path):
    found = tmp_path / "member"
    found.mkdir()
    return str(found)


def fetch(served, destination, client, fingerprint=None, sha256=None, timeout=10):
    """The member's side, with ``client``'s certificate: what the runner hands it, unless told."""
    return etcd_transfer.fetch(LOOPBACK, served["port"], served["path"],
                               fingerprint or served["fingerprint"], sha256 or served["sha256"],
                               destination, client.client_cert, client.client_key, timeout=timeout)


def test_a_member_fetches_the_file_with_its_client_certificate(pki, snapshot, member_dir):
    destination = os.path.join(member_dir, "restore.db")
    with etcd_transfer.serve(snapshot, pki.ca.cert_file, host=LOOPBACK) as served:
        assert served["sha256"] == etcd_transfer.file_sha256(snapshot)
        assert fetch(served, destination, pki) == os.path.getsize(snapshot)
        assert served["served"] == [LOOPBACK]
    with open(snapshot, "rb") as source, open(destination, "rb") as fetched:
        assert fetched.read() == source.read()
    assert os.stat(destination).st_mode & 0o777 == 0o600
    assert os.listdir(member_dir) == ["restore.db"]


def test_the_server_is_gone_after_the_transfer(pki, snapshot):
    with etcd_transfer.serve(snapshot, pki.ca.cert_file, host=LOOPBACK) as served:
        port = served["port"]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((LOOPBACK, port), timeout=2).close()


def test_a_server_with_another_certificate_is_refused_and_nothing_kept(pki, snapshot, member_dir):
    destination = os.path.join(member_dir, "restore.db")
    with etcd_transfer.serve(snapshot, pki.ca.cert_file, host=LOOPBACK) as served:
        with pytest.raises(ValueError, match="presented another certificate .*: refusing it"):
            fetch(served, destination, pki, fingerprint="0" * 64)
        # refused before the request: the file never left the master
        assert served["served"] == []
    assert os.listdir(member_dir) == []


def test_a_file_of_another_sha256_is_not_kept(pki, snapshot, member_dir):
    destination = os.path.join(member_dir, "restore.db")
    with etcd_transfer.serve(snapshot, pki.ca.cert_file, host=LOOPBACK) as served:
        with pytest.raises(ValueError, match="expected {}: not kept".format("a" * 64)):
            fetch(served, destination, pki, sha256="a" * 64)
    assert os.listdir(member_dir) == []


def test_another_path_on_the_server_is_not_found(pki, snapshot, member_dir):
    with etcd_transfer.serve(snapshot, pki.ca.cert_file, host=LOOPBACK) as served:
        with pytest.raises(ValueError, match="the snapshot server answered HTTP/1.0 404"):
            etcd_transfer.fetch(LOOPBACK, served["port"], "/manifest.json", served["fingerprint"],
                                served["sha256"], os.path.join(member_dir, "x.db"),
                                pki.client_cert, pki.client_key, timeout=10)
        assert served["served"] == []


def test_a_client_certificate_of_another_ca_is_refused_by_the_server(pki, stranger, snapshot, member_dir):
    with etcd_transfer.serve(snapshot, pki.ca.cert_file, host=LOOPBACK) as served:
        with pytest.raises((OSError, ValueError)):
            fetch(served, os.path.join(member_dir, "restore.db"), stranger)
        assert served["served"] == []
    assert os.listdir(member_dir) == []


def test_a_client_without_a_certificate_is_refused_by_the_server(pki, snapshot):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with etcd_transfer.serve(snapshot, pki.ca.cert_file, host=LOOPBACK) as served:
        with pytest.raises(OSError):
            with socket.create_connection((LOOPBACK, served["port"]), timeout=10) as raw:
                with context.wrap_socket(raw) as tls:
                    tls.sendall("GET {} HTTP/1.0\r\n\r\n".format(served["path"]).encode())
                    if not tls.recv(1):  # TLS 1.3: the refusal comes with the first read
                        raise ConnectionResetError("closed without an answer")
        assert served["served"] == []


def test_a_client_that_sends_nothing_does_not_stall_the_transfer(pki, snapshot, member_dir):
    with etcd_transfer.serve(snapshot, pki.ca.cert_file, host=LOOPBACK) as served:
        silent = socket.create_connection((LOOPBACK, served["port"]))
        try:
            time.sleep(0.2)
            fetch(served, os.path.join(member_dir, "restore.db"), pki, timeout=3)
        finally:
            silent.close()  # else the server could not shut down


def test_a_transfer_that_breaks_off_keeps_nothing(pki, snapshot, member_dir, monkeypatch):
    def stalling_copy(source, target, length=0):
        # the server's copy of the file to the member: the first 64 KiB, then it stalls
        target.write(source.read(64 * 1024))
        target.flush()
        time.sleep(2)  # longer than the member waits: it gives up first

    monkeypatch.setattr(shutil, "copyfileobj", stalling_copy)
    destination = os.path.join(member_dir, "restore.db")
    with etcd_transfer.serve(snapshot, pki.ca.cert_file, host=LOOPBACK) as served:
        with pytest.raises(OSError):
            fetch(served, destination, pki, timeout=1)
    assert os.listdir(member_dir) == []


def test_the_fingerprint_is_the_sha256_of_the_server_certificate(pki, snapshot):
    with etcd_transfer.serve(snapshot, pki.ca.cert_file, host=LOOPBACK) as served:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.load_cert_chain(pki.client_cert, pki.client_key)
        with socket.create_connection((LOOPBACK, served["port"]), timeout=10) as raw:
            with context.wrap_socket(raw) as tls:
                presented = tls.getpeercert(binary_form=True)
    assert served["fingerprint"] == hashlib.sha256(presented).hexdigest()
