"""
etcd_pki: who holds which certificate (``identity``, the table of the module doc), what the CA
signs (the identity, never what the request asks), when a certificate is kept (``problems``),
the CA pair check, and when the certificates a member serves, and the master's own, expire
(the certificate rows of ``salt-run etcd.status``). The TLS handshake is faked; keys and
certificates are real ones made here.
"""

import datetime
import socket

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import etcd_errors as errors
import etcd_pki
import etcd_settings
from etcd_fakes import pillar

NOW = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)


def certificate(not_after):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "etcd-1")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(not_after)
            .sign(key, hashes.SHA256()))


def test_an_expiry_row_says_the_date_and_the_days_left():
    row = etcd_pki.expiry_row("h1", "server", "https://10.77.0.11:2379",
                              NOW + datetime.timedelta(days=30, hours=1), now=NOW)
    assert row == ["h1", "server", "https://10.77.0.11:2379", "2025-01-31", "30"]


def test_the_admin_certificate_is_read_from_its_file(tmp_path):
    path = tmp_path / "client.crt"
    path.write_bytes(certificate(NOW + datetime.timedelta(days=400)).public_bytes(serialization.Encoding.PEM))
    assert etcd_pki.file_not_after(str(path)) == NOW + datetime.timedelta(days=400)


def test_a_member_that_does_not_answer_and_a_missing_file_are_rows_not_failures(tmp_path, monkeypatch):
    def unreachable(address, timeout=None):
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    rows = etcd_pki.expiry_rows([("h1", "https://10.77.0.11:2379", "https://10.77.0.11:2380")],
                                str(tmp_path / "missing.crt"))
    assert [row[:2] for row in rows] == [["h1", "server"], ["h1", "peer"], ["(master)", "admin client"]]
    assert rows[0][3:] == ["-", "unreachable: [Errno 111] Connection refused"]
    assert "No such file" in rows[2][4]


def test_the_served_certificate_is_read_from_the_handshake(monkeypatch):
    served = certificate(NOW + datetime.timedelta(days=100)).public_bytes(serialization.Encoding.DER)

    class Tls:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def getpeercert(self, binary_form=False):
            assert binary_form
            return served

    class Context:
        check_hostname = True
        verify_mode = None

        def wrap_socket(self, sock):
            return Tls()

    connections = []
    monkeypatch.setattr(etcd_pki.ssl, "create_default_context", Context)
    monkeypatch.setattr(socket, "create_connection",
                        lambda address, timeout=None: connections.append(address) or Tls())
    assert etcd_pki.served_not_after("https://[fd00::11]:2379") == NOW + datetime.timedelta(days=100)
    assert connections == [("fd00::11", 2379)]


def test_rows_cover_server_and_peer_of_each_member(monkeypatch, tmp_path):
    url = "https://10.77.0.11:2379"
    monkeypatch.setattr(etcd_pki, "served_not_after", lambda u, timeout=3: NOW + datetime.timedelta(days=10))
    rows = etcd_pki.expiry_rows([("h1", url, "https://10.77.0.11:2380")], str(tmp_path / "none"))
    assert [(row[1], row[2]) for row in rows[:2]] == [("server", url), ("peer", "https://10.77.0.11:2380")]
    assert rows[0][3] == "2025-01-11"


# -- who holds which certificate (the identity table of the module doc) ---------------------------




def with_clients(**clients):
    found = pillar()
    found["clusters"]["etcd"]["clients"] = clients
    return found


@pytest.mark.parametrize("usage, cn, sans, eku", [
    ("peer", "etcd-peer", ["DNS:etcd-1", "DNS:h1", "IP:10.77.0.11"], ["serverAuth", "clientAuth"]),
    ("server", "etcd-1", ["DNS:h1", "DNS:localhost", "IP:10.77.0.11", "IP:127.0.0.1"],
     ["serverAuth", "clientAuth"]),
    ("client", None, ["URI:urn:etcd-formula:member:etcd:h1"], ["clientAuth"]),
])
def test_a_member_holds_the_certificates_of_the_identity_table(usage, cn, sans, eku):
    assert etcd_pki.identity(pillar(), "h1", usage) == {
        "usage": usage, "cn": cn, "sans": sans, "eku": eku, "days_valid": 825}


@pytest.mark.parametrize("usage", ["peer", "server", "client"])
def test_a_minion_that_is_no_member_holds_no_member_certificate(usage):
    with pytest.raises(errors.EtcdUnsafe, match="h9 is a member of no etcd cluster"):
        etcd_pki.identity(pillar(), "h9", usage)


def test_a_client_named_by_exact_id_gets_its_kinds_uri_and_no_cn():
    found = etcd_pki.identity(with_clients(patroni={"target": ["db1", "db2"]}), "db2", "patroni")
    assert (found["cn"], found["sans"], found["eku"]) == (
        None, ["URI:urn:etcd-formula:patroni:etcd:db2"], ["clientAuth"])


def test_a_comma_list_target_names_exact_ids_too():
    spec = {"target": "db1, db2", "tgt_type": "list"}
    assert etcd_pki.identity(with_clients(patroni=spec), "db1", "patroni")["sans"] == [
        "URI:urn:etcd-formula:patroni:etcd:db1"]


@pytest.mark.parametrize("spec, minion, kind", [
    ({"target": "db*"}, "db1", "patroni"),  # a glob names no exact id
    ({"target": ["db1"]}, "db2", "patroni"),  # not named
    ({"target": ["db1"]}, "db1", "vip_manager"),  # named for another kind
])
def test_a_client_certificate_goes_to_exactly_named_minions_only(spec, minion, kind):
    with pytest.raises(errors.EtcdUnsafe, match="{} is named by no {} client".format(minion, kind)):
        etcd_pki.identity(with_clients(patroni=spec), minion, kind)


def test_a_client_of_two_clusters_carries_both_uris():
    found = with_clients(patroni={"target": ["db1"]})
    found["clusters"]["other"] = {"members": {"o1": {"seq": 1, "address": "10.77.1.11"}},
                                  "clients": {"patroni": {"target": ["db1"]}}}
    assert etcd_pki.identity(found, "db1", "patroni")["sans"] == [
        "URI:urn:etcd-formula:patroni:etcd:db1", "URI:urn:etcd-formula:patroni:other:db1"]


def test_the_admin_certificate_is_the_ca_servers_only():
    assert etcd_pki.identity(pillar(), "master", "admin")["sans"] == [
        "URI:urn:etcd-formula:admin:master"]
    with pytest.raises(errors.EtcdUnsafe, match="CA server's \\(master\\) only, not h1's"):
        etcd_pki.identity(pillar(), "h1", "admin")


def test_an_unknown_usage_is_refused_naming_it():
    with pytest.raises(errors.EtcdUnsafe, match="usage 'bogus': expected one of peer, server"):
        etcd_pki.identity(pillar(), "h1", "bogus")


def test_only_peer_certificates_come_from_the_peer_ca():
    assert {u: etcd_pki.ca_of(u) for u in etcd_pki.USAGES} == {
        "peer": "peer", "server": "client", "client": "client", "patroni": "client",
        "vip_manager": "client", "admin": "client"}
    assert etcd_pki.cas() == {"client": ("ca.key", "ca.crt"), "peer": ("peer-ca.key", "peer-ca.crt")}


# -- signing, and what a certificate must be to be kept --------------------------------------------


@pytest.fixture(scope="module")
def ca():
    key = etcd_pki.new_key("ec", 384)
    return key, x509.load_pem_x509_certificate(etcd_pki.new_ca(key, "etcd CA", 3650).encode())


def ca_pem(ca):
    return ca[1].public_bytes(serialization.Encoding.PEM).decode()


def request_with_another_identity(key, minion="h2"):
    """A request that asks for more than its holder may have: the CA must ignore all but the key."""
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "root")]))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName(minion), x509.UniformResourceIdentifier("urn:etcd-formula:admin:master")]),
                critical=False)
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode())


def test_a_signed_certificate_has_the_identity_and_not_what_the_request_asked(ca):
    key = etcd_pki.new_key()
    ident = etcd_pki.identity(pillar(), "h1", "client")
    cert = x509.load_pem_x509_certificate(
        etcd_pki.sign(*ca, request_with_another_identity(key), ident).encode())
    assert etcd_pki.cert_identity(cert) == {"cn": None, "sans": ident["sans"], "eku": ["clientAuth"]}
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH]
    # no subject: RFC 5280 wants the SAN critical then
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    cert.verify_directly_issued_by(ca[1])
    assert etcd_pki.problems(cert.public_bytes(serialization.Encoding.PEM).decode(), key,
                             ca_pem(ca), ident, 30) == []


def test_a_request_whose_signature_is_not_its_keys_is_refused(ca):
    der = x509.load_pem_x509_csr(etcd_pki.csr_pem(etcd_pki.new_key()).encode()).public_bytes(
        serialization.Encoding.DER)
    broken = x509.load_der_x509_csr(der[:-1] + bytes([der[-1] ^ 1]))
    with pytest.raises(errors.EtcdUnsafe, match="signature is not its key's"):
        etcd_pki.sign(*ca, broken.public_bytes(serialization.Encoding.PEM).decode(),
                      etcd_pki.identity(pillar(), "h1", "client"))


def test_the_request_names_nobody():
    request = x509.load_pem_x509_csr(etcd_pki.csr_pem(etcd_pki.new_key()).encode())
    assert list(request.subject) == [] and request.is_signature_valid


def test_problems_name_every_reason_to_reissue(ca):
    key = etcd_pki.new_key()
    peer = etcd_pki.identity(pillar(), "h1", "peer")
    text = etcd_pki.sign(*ca, etcd_pki.csr_pem(key), dict(peer, days_valid=20))
    moved = etcd_pki.identity(pillar(members={"h1": {"seq": 1, "address": "10.77.0.99"}}), "h1", "peer")
    other_ca = etcd_pki.new_key()
    other_pem = etcd_pki.new_ca(other_ca, "other", 10)
    found = etcd_pki.problems(text, etcd_pki.new_key(), other_pem, moved, 30)
    assert found[:2] == ["not for the private key", "not issued by the cluster CA"]
    assert found[2].startswith("expires ") and found[2].endswith("fewer than 30 days left")
    assert found[3] == ("SANS ['DNS:etcd-1', 'DNS:h1', 'IP:10.77.0.11'] instead of "
                        "['DNS:etcd-1', 'DNS:h1', 'IP:10.77.0.99']")
    assert len(found) == 4
    assert etcd_pki.problems(text, key, ca_pem(ca), peer, 10) == []
    assert etcd_pki.problems(text, key, ca_pem(ca), etcd_pki.identity(pillar(), "h1", "server"), 10) == [
        "CN etcd-peer instead of etcd-1",
        "SANS ['DNS:etcd-1', 'DNS:h1', 'IP:10.77.0.11'] instead of "
        "['DNS:h1', 'DNS:localhost', 'IP:10.77.0.11', 'IP:127.0.0.1']"]


def test_problems_of_no_or_no_pem_certificate():
    assert etcd_pki.problems(None, None, None, {}, 30) == ["no certificate yet"]
    assert etcd_pki.problems("hello", None, None, {}, 30) == ["not a PEM certificate"]


def test_a_key_of_another_algorithm_or_size_is_not_the_wanted_one():
    text = etcd_pki.key_pem(etcd_pki.new_key("ec", 256))
    assert etcd_pki.load_key(text, "ec", 256) is not None
    assert etcd_pki.load_key(text, "ec", 384) is None
    assert etcd_pki.load_key(text, "rsa", 2048) is None
    assert etcd_pki.load_key("not a key") is None
    with pytest.raises(errors.EtcdUnsafe, match="key_algo 'dsa': expected ec or rsa"):
        etcd_pki.new_key("dsa", 2048)


def test_a_ca_key_and_certificate_that_are_no_pair_are_named(ca):
    key_text = etcd_pki.key_pem(ca[0])
    assert etcd_pki.ca_problem(key_text, ca_pem(ca)) is None
    other = etcd_pki.key_pem(etcd_pki.new_key())
    assert etcd_pki.ca_problem(other, ca_pem(ca), "/x/ca.key", "/x/ca.crt").startswith(
        "the CA key /x/ca.key does not match the CA certificate /x/ca.crt")
    leaf_key = etcd_pki.new_key()
    leaf = etcd_pki.sign(*ca, etcd_pki.csr_pem(leaf_key), etcd_pki.identity(pillar(), "h1", "client"))
    assert etcd_pki.ca_problem(etcd_pki.key_pem(leaf_key), leaf) == (
        "ca.crt is no CA certificate (basicConstraints CA:true)")
    assert etcd_pki.ca_problem(None, ca_pem(ca)) == "ca.key is no private key"
    assert etcd_pki.ca_problem(key_text, "") == "ca.crt is no PEM certificate"


def test_client_certificates_may_live_shorter_than_the_members():
    given = pillar(clients={"patroni": {"target": ["pg1"]}})
    given["pki"].update(client_days_valid=7, days_remaining=3)
    assert etcd_pki.identity(given, "pg1", "patroni")["days_valid"] == 7
    assert etcd_pki.identity(given, "h1", "server")["days_valid"] == etcd_settings.PKI_DEFAULTS["days_valid"]


def test_issued_rows_list_every_certificate_the_soonest_first():
    ca_key = etcd_pki.new_key()
    ca_pem = etcd_pki.new_ca(ca_key, "ca", 10)
    ca = x509.load_pem_x509_certificate(ca_pem.encode())
    ident = {"cn": None, "sans": ["URI:urn:etcd-formula:patroni:etcd:pg1"], "eku": ["clientAuth"]}
    long_ = etcd_pki.sign(ca_key, ca, etcd_pki.csr_pem(etcd_pki.new_key()), dict(ident, days_valid=400))
    short = etcd_pki.sign(ca_key, ca, etcd_pki.csr_pem(etcd_pki.new_key()), dict(ident, days_valid=7))
    rows = etcd_pki.issued_rows({"pg1": {"patroni": short}, "h1": {"client": long_}}, ca_pem)
    assert [r[:2] for r in rows] == [["pg1", "patroni"], ["h1", "client"]]
    assert rows[0][3] in (6, 7) and rows[0][5] == "URI:urn:etcd-formula:patroni:etcd:pg1"
    # the issuer is named by the bundle's label of it ("another CA" for one not in it)
    assert rows[0][4] == etcd_pki.ca_label(ca_pem)[0] == rows[1][4]
    assert rows[0][4].startswith("ca [")
    assert etcd_pki.issued_rows({"pg1": {"patroni": short}}, ca_text="")[0][4] == "another CA"


def test_a_leaf_is_kept_only_when_the_bundles_first_ca_issued_it():
    old_key, new_key = etcd_pki.new_key(), etcd_pki.new_key()
    old_pem, new_pem = etcd_pki.new_ca(old_key, "old", 10), etcd_pki.new_ca(new_key, "new", 10)
    old_ca = x509.load_pem_x509_certificate(old_pem.encode())
    ident = {"cn": None, "sans": ["URI:urn:etcd-formula:patroni:etcd:pg1"], "eku": ["clientAuth"]}
    key = etcd_pki.new_key()
    leaf = etcd_pki.sign(old_key, old_ca, etcd_pki.csr_pem(key), dict(ident, days_valid=400))
    # trust-both: the old CA signs still, the next one is only trusted
    assert etcd_pki.problems(leaf, key, old_pem + new_pem, ident, 30) == []
    # reissue: the new CA signs; a leaf of the old one is issued again
    assert etcd_pki.problems(leaf, key, new_pem + old_pem, ident, 30) == [
        "issued by a CA that no longer signs (a CA rotation)"]
    assert etcd_pki.problems(leaf, key, new_pem, ident, 30) == ["not issued by the cluster CA"]


def test_the_bundle_holds_the_rotations_cas_only_while_it_is_recorded(tmp_path):
    texts = {}
    for where in ("", "next", "previous"):
        (tmp_path / where).mkdir(exist_ok=True)
        texts[where] = etcd_pki.new_ca(etcd_pki.new_key(), "ca " + where, 10)
        (tmp_path / where / "ca.crt").write_text(texts[where])
    # no rotation recorded: the CA in place alone, its file's text as it is
    assert etcd_pki.bundle(str(tmp_path), "client") == texts[""]
    (tmp_path / "rotation.json").write_text("{}")
    assert etcd_pki.bundle(str(tmp_path), "client") == texts[""] + texts["next"] + texts["previous"]
    assert etcd_pki.ca_label(etcd_pki.bundle(str(tmp_path), "client"))[0].startswith("ca  [")
    assert etcd_pki.bundle(str(tmp_path), "peer") == ""  # no peer CA files here
