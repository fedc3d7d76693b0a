"""
The transfer's pure parts: the ephemeral certificate the master serves a snapshot with (its
fingerprint is what a member pins), and the file's sha256. The transfer itself, over real
sockets, is tested in test/functional/utils/test_etcd_transfer_live.py.
"""

import datetime
import hashlib
import os

from cryptography import x509
from cryptography.hazmat.primitives import serialization

import etcd_transfer


def test_the_ephemeral_pair_is_fingerprinted_by_the_sha256_of_its_certificate(tmp_path):
    cert_file, key_file, fingerprint = etcd_transfer._ephemeral_pair(str(tmp_path))
    with open(cert_file, "rb") as handle:
        cert = x509.load_pem_x509_certificate(handle.read())
    assert fingerprint == hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    with open(key_file, "rb") as handle:
        key = serialization.load_pem_private_key(handle.read(), password=None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    assert os.stat(key_file).st_mode & 0o777 == 0o600


def test_the_ephemeral_certificate_is_short_lived_and_new_each_time(tmp_path):
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    first_dir.mkdir()
    second_dir.mkdir()
    cert_file, _, first = etcd_transfer._ephemeral_pair(str(first_dir))
    _, _, second = etcd_transfer._ephemeral_pair(str(second_dir))
    assert first != second
    with open(cert_file, "rb") as handle:
        cert = x509.load_pem_x509_certificate(handle.read())
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime <= datetime.timedelta(hours=13)


def test_file_sha256_is_the_whole_files(tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 5)  # more than one read
    path = tmp_path / "s.db"
    path.write_bytes(data)
    assert etcd_transfer.file_sha256(str(path)) == hashlib.sha256(data).hexdigest()
