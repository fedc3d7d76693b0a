"""
etcd_cert with Salt's x509_v2 states mocked: what it asks of them (the key stays on the
member, usages, SANs, renewal), and what it reports (true changes; test mode).
The real thing, remote signing included, runs in test/functional/test_etcd_cert.py.
"""

import contextlib
import datetime
import grp
import ipaddress
import os
import pwd
from unittest.mock import Mock

import pytest
import salt.modules.mine
import salt.states.x509_v2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import etcd_cert

KEY = "/etc/etcd/pki/peer.key"
CERT = "/etc/etcd/pki/peer.crt"
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


@contextlib.contextmanager
def _test_mode():
    etcd_cert.__opts__["test"] = True
    try:
        yield
    finally:
        etcd_cert.__opts__["test"] = False


def _ok(name, changes=None, comment="as wanted"):
    return {"name": name, "result": True, "changes": changes or {}, "comment": comment}


@pytest.fixture
def key_managed():
    return Mock(spec=salt.states.x509_v2.private_key_managed, side_effect=lambda **kw: _ok(kw["name"]))


@pytest.fixture
def certificate_managed():
    return Mock(
        spec=salt.states.x509_v2.certificate_managed, side_effect=lambda **kw: _ok(kw["name"])
    )


@pytest.fixture
def pem_managed():
    return Mock(spec=salt.states.x509_v2.pem_managed, side_effect=lambda **kw: _ok(kw["name"]))


@pytest.fixture
def mine_get():
    return Mock(spec=salt.modules.mine.get, return_value={})


@pytest.fixture
def mine_send():
    return Mock(spec=salt.modules.mine.send, return_value=True)


@pytest.fixture
def files():
    return {"/etc/pki/etcd-ca/ca.crt": PEM}


@pytest.fixture
def configure_loader_modules(key_managed, certificate_managed, pem_managed, mine_get, mine_send, files):
    return {
        etcd_cert: {
            "__opts__": {"test": False, "id": "h1"},
            "__grains__": {"host": "h1-host"},
            "__states__": {
                "x509.private_key_managed": key_managed,
                "x509.certificate_managed": certificate_managed,
                "x509.pem_managed": pem_managed,
            },
            "__salt__": {
                "mine.get": mine_get,
                "mine.send": mine_send,
                "file.file_exists": lambda path: path in files,
                "file.read": lambda path: files[path],
            },
        }
    }


def peer(**kwargs):
    args = dict(
        name=CERT, key=KEY, usage="peer", ca_server="master", signing_policy="etcd-peer",
        common_name="etcd-1", address="10.77.0.11", user="etcd", group="etcd",
    )
    args.update(kwargs)
    return etcd_cert.managed(**args)


def test_key_is_generated_on_the_member_0600_and_owned(key_managed):
    peer(key_algo="rsa", key_size=3072)
    key_managed.assert_called_once_with(
        name=KEY, algo="rsa", keysize=3072, user="etcd", group="etcd", mode="0600"
    )


def test_peer_cert_is_signed_remotely_for_both_directions_with_ip_sans(certificate_managed):
    peer(days_remaining=21, days_valid=400)
    kwargs = certificate_managed.call_args.kwargs
    assert kwargs["ca_server"] == "master" and kwargs["signing_policy"] == "etcd-peer"
    # the public key is derived from the member's key: the key itself is never sent
    assert kwargs["private_key"] == KEY and "signing_private_key" not in kwargs
    assert kwargs["extendedKeyUsage"] == "serverAuth, clientAuth"
    assert kwargs["subjectAltName"] == (
        "IP:10.77.0.11, DNS:h1, DNS:h1-host, DNS:localhost, IP:127.0.0.1"
    )
    assert kwargs["CN"] == "etcd-1"
    assert (kwargs["days_remaining"], kwargs["days_valid"]) == (21, 400)
    assert kwargs["mode"] == "0644"


def test_server_cert_is_also_a_client_cert_for_the_json_gateway(certificate_managed):
    peer(usage="server", signing_policy="etcd-server")
    assert certificate_managed.call_args.kwargs["extendedKeyUsage"] == "serverAuth, clientAuth"


def test_client_cert_has_client_usage_and_no_sans(certificate_managed):
    peer(usage="client", signing_policy="etcd-client", common_name=None)
    kwargs = certificate_managed.call_args.kwargs
    assert kwargs["extendedKeyUsage"] == "clientAuth"
    assert kwargs["subjectAltName"] is None
    assert kwargs["CN"] == "h1"


def test_sans_do_not_repeat_a_hostname_equal_to_the_minion_id():
    assert etcd_cert.subject_alt_names("server", "10.0.0.5", "db1", "db1") == (
        "IP:10.0.0.5, DNS:db1, DNS:localhost, IP:127.0.0.1"
    )


def test_unknown_usage_fails_without_touching_anything(key_managed, certificate_managed):
    ret = peer(usage="admin")
    assert ret["result"] is False and "usage 'admin'" in ret["comment"]
    key_managed.assert_not_called()
    certificate_managed.assert_not_called()


def test_nothing_to_do_is_true_without_changes():
    ret = peer()
    assert ret["result"] is True and ret["changes"] == {}
    assert "as wanted" in ret["comment"]


def test_renewed_certificate_is_reported_as_a_change(certificate_managed):
    certificate_managed.side_effect = lambda **kw: _ok(kw["name"], {"expiration": True})
    ret = peer()
    assert ret["result"] is True
    assert ret["changes"] == {"certificate": {"expiration": True}}
    assert "have been updated" in ret["comment"]


def test_owner_or_mode_fix_reported_by_file_sub_state_is_a_change(key_managed):
    fixed = _ok(KEY)
    fixed["sub_state_run"] = [{"result": True, "changes": {"mode": "0600"}, "comment": ""}]
    key_managed.side_effect = None
    key_managed.return_value = fixed
    ret = peer()
    assert ret["changes"] == {"key": {"file": {"mode": "0600"}}}


def test_test_mode_without_a_key_predicts_key_and_certificate(key_managed, certificate_managed):
    key_managed.side_effect = lambda **kw: dict(_ok(kw["name"], {"created": KEY}), result=None)
    with _test_mode():
        ret = peer()
    assert ret["result"] is None
    assert ret["changes"] == {"key": {"created": KEY}, "certificate": {"created": CERT}}
    assert "would be updated" in ret["comment"]
    # the x509 state would fail reading a key that is not there: not asked
    certificate_managed.assert_not_called()


def test_test_mode_with_nothing_to_do_is_true(certificate_managed):
    with _test_mode():
        ret = peer()
    assert ret["result"] is True and ret["changes"] == {}


def test_failure_of_the_ca_server_is_reported_with_its_reason(certificate_managed):
    certificate_managed.side_effect = lambda **kw: {
        "name": kw["name"], "result": False, "changes": {},
        "comment": "ca_server did not respond. Salt master must permit peers",
    }
    ret = peer()
    assert ret["result"] is False and ret["changes"] == {}
    assert ret["comment"].startswith("certificate {}: ca_server did not respond".format(CERT))


# -- the CA certificate through the mine ----------------------------------------------------------


def test_ca_bundle_is_written_from_the_ca_servers_mine_entry(mine_get, pem_managed):
    mine_get.return_value = {"master": PEM}
    pem_managed.side_effect = lambda **kw: _ok(kw["name"], {"diff": "New file"})
    ret = etcd_cert.ca_bundle_managed("/etc/etcd/pki/ca.crt", ca_server="master")
    mine_get.assert_called_once_with("master", "etcd_ca_cert")
    pem_managed.assert_called_once_with(
        name="/etc/etcd/pki/ca.crt", text=PEM, user="root", group="root", mode="0644"
    )
    assert ret["result"] is True and ret["changes"] == {"diff": "New file"}


def test_ca_bundle_without_a_published_ca_fails_saying_what_to_do(pem_managed):
    ret = etcd_cert.ca_bundle_managed("/etc/etcd/pki/ca.crt", ca_server="master")
    assert ret["result"] is False
    assert "master has published no CA certificate" in ret["comment"]
    assert "apply etcd.ca" in ret["comment"]
    pem_managed.assert_not_called()


def test_ca_published_sends_only_when_the_mine_differs(mine_get, mine_send):
    mine_get.return_value = {"h1": PEM}
    ret = etcd_cert.ca_published("/etc/pki/etcd-ca/ca.crt")
    assert ret["result"] is True and ret["changes"] == {}
    mine_send.assert_not_called()

    mine_get.return_value = {}
    ret = etcd_cert.ca_published("/etc/pki/etcd-ca/ca.crt")
    assert ret["result"] is True and ret["changes"]
    mine_send.assert_called_once_with(
        "etcd_ca_cert", mine_function="file.read", path="/etc/pki/etcd-ca/ca.crt"
    )


def test_ca_published_in_test_mode_sends_nothing(mine_send):
    with _test_mode():
        ret = etcd_cert.ca_published("/etc/pki/etcd-ca/ca.crt")
    assert ret["result"] is None and ret["changes"]
    mine_send.assert_not_called()


def test_ca_published_without_a_ca_file_fails(mine_send):
    ret = etcd_cert.ca_published("/etc/pki/etcd-ca/missing.crt")
    assert ret["result"] is False and "no CA certificate at" in ret["comment"]
    mine_send.assert_not_called()


# -- a certificate judged current here skips the CA server ----------------------------------------


def _issue(ca_key, ca_name, key, cn, sans, eku, days):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


@pytest.fixture
def pki(tmp_path):
    """A CA bundle, a member key and a writer of certificates for it, in tmp_path."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "etcd CA")])
    ca = _issue(ca_key, ca_name, ca_key, "etcd CA", None, [ExtendedKeyUsageOID.SERVER_AUTH], 3650)
    (tmp_path / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "peer.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
    )
    (tmp_path / "peer.key").chmod(0o600)
    wanted_sans = [
        x509.IPAddress(ipaddress.ip_address("10.77.0.11")), x509.DNSName("h1"),
        x509.DNSName("h1-host"), x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    both = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]

    def write(cn="etcd-1", sans=wanted_sans, eku=both, days=825, signer=ca_key, mode=0o644):
        cert = _issue(signer, ca_name, key, cn, sans, eku, days)
        path = tmp_path / "peer.crt"
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        path.chmod(mode)
        return cert

    return {"dir": tmp_path, "write": write}


def current_peer(pki):
    me = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    return peer(
        name=str(pki["dir"] / "peer.crt"), key=str(pki["dir"] / "peer.key"),
        ca_file=str(pki["dir"] / "ca.crt"), user=me[0], group=me[1],
    )


def test_key_and_certificate_found_as_wanted_are_not_sent_to_x509(pki, key_managed, certificate_managed):
    pki["write"]()
    ret = current_peer(pki)
    assert ret["result"] is True and ret["changes"] == {}
    key_managed.assert_not_called()
    certificate_managed.assert_not_called()


@pytest.mark.parametrize("why", ["mode", "algorithm"])
def test_key_with_any_difference_goes_to_x509(pki, key_managed, why):
    pki["write"]()
    if why == "mode":
        (pki["dir"] / "peer.key").chmod(0o640)
    else:
        (pki["dir"] / "peer.key").write_bytes(
            rsa.generate_private_key(65537, 2048).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption())
        )
    current_peer(pki)
    key_managed.assert_called_once()


@pytest.mark.parametrize(
    "why",
    ["expiring", "other_address", "other_cn", "client_only", "other_ca", "mode"],
)
def test_certificate_with_any_difference_goes_to_x509(pki, certificate_managed, why):
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    changes = {
        "expiring": dict(days=20),
        "other_address": dict(sans=[x509.IPAddress(ipaddress.ip_address("10.77.0.99"))]),
        "other_cn": dict(cn="etcd-9"),
        "client_only": dict(eku=[ExtendedKeyUsageOID.CLIENT_AUTH]),
        "other_ca": dict(signer=ec.generate_private_key(ec.SECP256R1())),
        "mode": dict(mode=0o600),
    }[why]
    pki["write"](**changes)
    current_peer(pki)
    certificate_managed.assert_called_once()
