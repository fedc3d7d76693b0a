"""
etcd_cert with the CA server faked (x509_v2's create functions, answered by a CA made here)
and files in a temporary directory: when a key or certificate is made, what is asked of the
CA server (usages, SANs; the key never sent), and what is reported (true changes; test mode
writes nothing). The real thing, remote signing included, runs in
test/functional/states/test_etcd_cert.py.
"""

import contextlib
import datetime
import grp
import ipaddress
import os
import pwd
import stat
from unittest.mock import Mock

import pytest
import salt.modules.mine
import salt.modules.x509_v2
import salt.states.file
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from salt.exceptions import CommandExecutionError

import etcd_cert

ME = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
EKUS = {"serverAuth": ExtendedKeyUsageOID.SERVER_AUTH, "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH}


def pem(key):
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


class FakeCA:
    """The CA server: signs what is asked (unless a policy forces usages), counts requests."""

    def __init__(self):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "etcd CA")])
        self.cert = self.issue(self.key, "etcd CA", None, None, 3650)
        self.forced_usages = None
        self.failure = None

    def issue(self, key, cn, sans, usages, days, signer=None):
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=days))
        )
        if usages:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([EKUS[u.strip()] for u in usages.split(",")]), critical=False
            )
        if sans:
            names = []
            for entry in sans.split(","):
                kind, _, value = entry.strip().partition(":")
                names.append(x509.IPAddress(ipaddress.ip_address(value)) if kind == "IP" else x509.DNSName(value))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(signer or self.key, hashes.SHA256())

    def create_certificate(self, ca_server=None, signing_policy=None, private_key=None, **kwargs):
        if self.failure:
            raise CommandExecutionError(self.failure)
        with open(private_key, "rb") as handle:
            key = serialization.load_pem_private_key(handle.read(), None)
        cert = self.issue(key, kwargs["CN"], kwargs.get("subjectAltName"),
                          self.forced_usages or kwargs["extendedKeyUsage"], kwargs["days_valid"])
        return cert.public_bytes(serialization.Encoding.PEM).decode()


class FakeFiles:
    """file.managed on real files: writes contents and mode, honours test mode."""

    def __init__(self):
        self.calls = []

    def managed(self, name, contents=None, user=None, group=None, mode=None, show_changes=True, **kwargs):
        self.calls.append({"name": name, "show_changes": show_changes, "mode": mode})
        changes = {}
        old = open(name).read() if os.path.exists(name) else None
        if old != contents:
            changes["diff"] = ("New file" if old is None else "...") if show_changes else "<show_changes=False>"
        if old is not None and stat.S_IMODE(os.stat(name).st_mode) != int(mode, 8):
            changes["mode"] = mode
        if not etcd_cert.__opts__["test"]:
            with open(name, "w") as handle:
                handle.write(contents)
            os.chmod(name, int(mode, 8))
        result = None if changes and etcd_cert.__opts__["test"] else True
        return {"name": name, "result": result, "changes": changes, "comment": ""}


@pytest.fixture
def ca():
    return FakeCA()


@pytest.fixture
def files():
    return FakeFiles()


@pytest.fixture
def create_key():
    return Mock(
        spec=salt.modules.x509_v2.create_private_key,
        side_effect=lambda algo="rsa", keysize=None, **kw: pem(
            ec.generate_private_key({256: ec.SECP256R1(), 384: ec.SECP384R1()}[keysize])
            if algo == "ec" else rsa.generate_private_key(65537, keysize)
        ),
    )


@pytest.fixture
def create_certificate(ca):
    return Mock(spec=salt.modules.x509_v2.create_certificate, side_effect=ca.create_certificate)


@pytest.fixture
def mine_get():
    return Mock(spec=salt.modules.mine.get, return_value={})


@pytest.fixture
def mine_send():
    return Mock(spec=salt.modules.mine.send, return_value=True)


@pytest.fixture
def dir_(tmp_path, ca):
    (tmp_path / "ca.crt").write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
    return tmp_path


@pytest.fixture
def configure_loader_modules(create_key, create_certificate, files, mine_get, mine_send, dir_):
    return {
        etcd_cert: {
            "__opts__": {"test": False, "id": "h1"},
            "__grains__": {"host": "h1-host"},
            "__states__": {"file.managed": files.managed},
            "__salt__": {
                "x509.create_private_key": create_key,
                "x509.create_certificate": create_certificate,
                "mine.get": mine_get,
                "mine.send": mine_send,
                "file.file_exists": os.path.exists,
                "file.read": lambda path: open(path).read(),
            },
        }
    }


@contextlib.contextmanager
def in_test_mode():
    etcd_cert.__opts__["test"] = True
    try:
        yield
    finally:
        etcd_cert.__opts__["test"] = False


def peer(dir_, **kwargs):
    args = dict(
        name=str(dir_ / "peer.crt"), key=str(dir_ / "peer.key"), usage="peer",
        ca_server="master", signing_policy="etcd-peer", ca_file=str(dir_ / "ca.crt"),
        common_name="etcd-1", address="10.77.0.11", user=ME[0], group=ME[1],
    )
    args.update(kwargs)
    return etcd_cert.managed(**args)


def load_cert(dir_, name="peer.crt"):
    return x509.load_pem_x509_certificate((dir_ / name).read_bytes())


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


# -- first run: a key made here, a certificate from the CA server ---------------------------------


def test_first_run_makes_the_key_here_and_has_the_certificate_signed(dir_, create_key, create_certificate):
    ret = peer(dir_, days_valid=400)
    assert ret["result"] is True, ret
    assert ret["changes"] == {
        "key": {"created": str(dir_ / "peer.key")},
        "certificate": {"issued": str(dir_ / "peer.crt"), "because": ["no certificate yet"]},
    }
    create_key.assert_called_once_with(algo="ec", keysize=256)
    kwargs = create_certificate.call_args.kwargs
    assert (kwargs["ca_server"], kwargs["signing_policy"]) == ("master", "etcd-peer")
    # the CA server gets the key's path, from which x509_v2 sends the public key only
    assert kwargs["private_key"] == str(dir_ / "peer.key")
    assert kwargs["days_valid"] == 400
    assert mode_of(dir_ / "peer.key") == 0o600 and mode_of(dir_ / "peer.crt") == 0o644


def test_peer_certificate_serves_both_directions_with_the_members_names(dir_, create_certificate):
    peer(dir_)
    kwargs = create_certificate.call_args.kwargs
    assert kwargs["extendedKeyUsage"] == "serverAuth, clientAuth"
    assert kwargs["subjectAltName"] == "IP:10.77.0.11, DNS:h1, DNS:h1-host, DNS:localhost, IP:127.0.0.1"
    assert kwargs["CN"] == "etcd-1"


def test_server_certificate_is_also_a_client_one_for_the_json_gateway(dir_, create_certificate):
    peer(dir_, usage="server", signing_policy="etcd-server")
    assert create_certificate.call_args.kwargs["extendedKeyUsage"] == "serverAuth, clientAuth"


def test_client_certificate_is_for_clients_only_without_sans(dir_, create_certificate):
    ret = peer(dir_, name=str(dir_ / "client.crt"), key=str(dir_ / "client.key"), usage="client",
               signing_policy="etcd-client", common_name=None)
    assert ret["result"] is True, ret
    kwargs = create_certificate.call_args.kwargs
    assert kwargs["extendedKeyUsage"] == "clientAuth" and kwargs["subjectAltName"] is None
    assert kwargs["CN"] == "h1"


def test_the_key_text_never_goes_into_the_changes(dir_, files):
    peer(dir_)
    key_writes = [call for call in files.calls if call["name"].endswith(".key")]
    assert key_writes and not any(call["show_changes"] for call in key_writes)


# -- later runs -----------------------------------------------------------------------------------


def test_second_run_asks_nothing_and_changes_nothing(dir_, create_key, create_certificate):
    peer(dir_)
    create_key.reset_mock()
    create_certificate.reset_mock()
    ret = peer(dir_)
    assert ret["result"] is True and ret["changes"] == {}, ret
    assert "are as wanted" in ret["comment"]
    create_key.assert_not_called()
    create_certificate.assert_not_called()


def test_certificate_is_renewed_for_the_same_key_when_few_days_remain(dir_, create_key, create_certificate):
    peer(dir_, days_valid=20, days_remaining=10)
    key_before = (dir_ / "peer.key").read_text()
    create_key.reset_mock()
    ret = peer(dir_, days_remaining=30)
    assert ret["changes"]["certificate"]["because"][0].startswith("expires ")
    assert "fewer than 30 days left" in ret["changes"]["certificate"]["because"][0]
    create_key.assert_not_called()
    assert (dir_ / "peer.key").read_text() == key_before
    assert create_certificate.call_count == 2


@pytest.mark.parametrize(
    "change, because",
    [
        (dict(address="10.77.0.99"), "SANs differ from: IP:10.77.0.99"),
        (dict(common_name="etcd-9"), "CN etcd-1 instead of etcd-9"),
        (dict(usage="client", signing_policy="etcd-client"), "SANs differ from: none"),
    ],
)
def test_certificate_is_reissued_when_what_is_wanted_changes(dir_, create_certificate, change, because):
    peer(dir_)
    ret = peer(dir_, **change)
    assert any(because in why for why in ret["changes"]["certificate"]["because"]), ret
    assert create_certificate.call_count == 2


def test_certificate_of_another_ca_is_reissued(dir_, ca, create_certificate):
    peer(dir_)
    other = ec.generate_private_key(ec.SECP256R1())
    key = serialization.load_pem_private_key((dir_ / "peer.key").read_bytes(), None)
    forged = ca.issue(key, "etcd-1", "IP:10.77.0.11, DNS:h1, DNS:h1-host, DNS:localhost, IP:127.0.0.1",
                      "serverAuth, clientAuth", 825, signer=other)
    (dir_ / "peer.crt").write_bytes(forged.public_bytes(serialization.Encoding.PEM))
    ret = peer(dir_)
    assert ret["changes"]["certificate"]["because"] == ["not issued by the cluster CA"]


def test_key_of_another_algorithm_is_replaced_and_the_certificate_follows(dir_, create_key):
    peer(dir_)
    ret = peer(dir_, key_algo="rsa", key_size=2048)
    assert ret["changes"]["key"] == {"replaced": str(dir_ / "peer.key")}
    assert "not for the private key" in ret["changes"]["certificate"]["because"]
    assert isinstance(serialization.load_pem_private_key((dir_ / "peer.key").read_bytes(), None),
                      rsa.RSAPrivateKey)


def test_wrong_mode_is_fixed_without_a_new_key_or_certificate(dir_, create_key, create_certificate):
    peer(dir_)
    os.chmod(dir_ / "peer.key", 0o644)
    ret = peer(dir_)
    assert ret["changes"] == {"key": {"mode": "0600"}}
    assert mode_of(dir_ / "peer.key") == 0o600
    assert create_key.call_count == 1 and create_certificate.call_count == 1


# -- test mode ------------------------------------------------------------------------------------


def test_test_mode_predicts_key_and_certificate_and_writes_nothing(dir_, create_key, create_certificate):
    with in_test_mode():
        ret = peer(dir_)
    assert ret["result"] is None
    assert set(ret["changes"]) == {"key", "certificate"}
    assert "would be updated" in ret["comment"]
    assert not (dir_ / "peer.key").exists() and not (dir_ / "peer.crt").exists()
    create_key.assert_not_called()
    create_certificate.assert_not_called()


def test_test_mode_with_nothing_to_do_is_true(dir_):
    peer(dir_)
    with in_test_mode():
        ret = peer(dir_)
    assert ret["result"] is True and ret["changes"] == {}


def test_test_mode_predicts_a_renewal_and_asks_nothing(dir_, create_certificate):
    peer(dir_, days_valid=20, days_remaining=10)
    before = (dir_ / "peer.crt").read_text()
    with in_test_mode():
        ret = peer(dir_, days_remaining=30)
    assert ret["result"] is None and "certificate" in ret["changes"]
    assert (dir_ / "peer.crt").read_text() == before
    assert create_certificate.call_count == 1


# -- failures -------------------------------------------------------------------------------------


def test_a_policy_that_signs_an_unusable_certificate_fails_and_writes_nothing(dir_, ca):
    ca.forced_usages = "serverAuth"
    ret = peer(dir_)
    assert ret["result"] is False and ret["changes"] == {}
    assert "signed under policy etcd-peer a certificate an etcd member cannot use" in ret["comment"]
    assert "usages differ from: serverAuth, clientAuth" in ret["comment"]
    assert not (dir_ / "peer.crt").exists()


def test_failure_of_the_ca_server_is_reported_with_its_reason(dir_, ca):
    ca.failure = "ca_server did not respond. Salt master must permit peers to call the sign_remote_certificate function."
    ret = peer(dir_)
    assert ret["result"] is False and ret["changes"] == {}
    assert ret["comment"].startswith("ca_server did not respond")


def test_unknown_usage_fails_without_touching_anything(dir_, create_key):
    ret = peer(dir_, usage="admin")
    assert ret["result"] is False and "usage 'admin'" in ret["comment"]
    create_key.assert_not_called()
    assert not (dir_ / "peer.key").exists()


def test_sans_do_not_repeat_a_hostname_equal_to_the_minion_id():
    assert etcd_cert._subject_alt_names("server", "10.0.0.5", "db1", "db1") == (
        "IP:10.0.0.5, DNS:db1, DNS:localhost, IP:127.0.0.1"
    )


# -- the CA certificate through the mine ----------------------------------------------------------


def test_ca_bundle_is_written_from_the_ca_servers_mine_entry(dir_, ca, mine_get):
    text = ca.cert.public_bytes(serialization.Encoding.PEM).decode()
    mine_get.return_value = {"master": text}
    ret = etcd_cert.ca_bundle_managed(str(dir_ / "bundle.crt"), ca_server="master")
    mine_get.assert_called_once_with("master", "etcd_ca_cert")
    assert ret["result"] is True and ret["changes"] == {"diff": "New file"}
    assert (dir_ / "bundle.crt").read_text() == text


def test_ca_bundle_without_a_published_ca_fails_saying_what_to_do(dir_):
    ret = etcd_cert.ca_bundle_managed(str(dir_ / "bundle.crt"), ca_server="master")
    assert ret["result"] is False
    assert "master has published no CA certificate" in ret["comment"]
    assert "apply etcd.ca" in ret["comment"]
    assert not (dir_ / "bundle.crt").exists()


def test_ca_bundle_that_is_not_a_certificate_is_refused(dir_, mine_get):
    mine_get.return_value = {"master": "hello"}
    ret = etcd_cert.ca_bundle_managed(str(dir_ / "bundle.crt"), ca_server="master")
    assert ret["result"] is False and "published no PEM certificate" in ret["comment"]


def test_ca_published_sends_only_when_the_mine_differs(dir_, mine_get, mine_send):
    path = str(dir_ / "ca.crt")
    mine_get.return_value = {"h1": (dir_ / "ca.crt").read_text()}
    ret = etcd_cert.ca_published(path)
    assert ret["result"] is True and ret["changes"] == {}
    mine_send.assert_not_called()

    mine_get.return_value = {}
    ret = etcd_cert.ca_published(path)
    assert ret["result"] is True and ret["changes"]
    mine_send.assert_called_once_with("etcd_ca_cert", mine_function="file.read", path=path)


def test_ca_published_in_test_mode_sends_nothing(dir_, mine_send):
    with in_test_mode():
        ret = etcd_cert.ca_published(str(dir_ / "ca.crt"))
    assert ret["result"] is None and ret["changes"]
    mine_send.assert_not_called()


def test_ca_published_without_a_ca_file_fails(dir_, mine_send):
    ret = etcd_cert.ca_published(str(dir_ / "missing.crt"))
    assert ret["result"] is False and "no CA certificate at" in ret["comment"]
    mine_send.assert_not_called()
