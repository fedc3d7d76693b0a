"""
etcd_ca on the CA server: what it signs for whom (the identity the pillar gives the
requester, never what the request says), what it refuses and why, and the answer it keeps and
publishes in the mine (``issued``, ``certificates``). The CAs and the requests are real ones
made here; only the mine is a mock.
"""

import json
import os
from unittest.mock import Mock

import pytest
import salt.modules.config
import salt.modules.mine
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from salt.exceptions import CommandExecutionError, SaltInvocationError

import etcd_ca
import etcd_pki
from etcd_fakes import pillar, real_utils


@pytest.fixture
def ca_dir(tmp_path):
    """The two CAs, made as etcd_cert.ca_managed makes them."""
    for which, (key_name, cert_name) in etcd_pki.cas().items():
        key = etcd_pki.new_key("ec", 384)
        (tmp_path / key_name).write_text(etcd_pki.key_pem(key))
        (tmp_path / cert_name).write_text(etcd_pki.new_ca(key, "etcd CA " + which, 3650))
    return tmp_path


@pytest.fixture
def etcd_pillar(ca_dir):
    found = pillar()
    found["pki"]["ca_dir"] = str(ca_dir)
    found["clusters"]["etcd"]["clients"] = {"patroni": {"target": ["db1"]}}
    return found


@pytest.fixture
def mine_send():
    return Mock(spec=salt.modules.mine.send, return_value=True)


@pytest.fixture
def configure_loader_modules(etcd_pillar, mine_send):
    return {
        etcd_ca: {
            "__opts__": {"id": "master", "test": False},
            "__salt__": {
                "config.get": Mock(spec=salt.modules.config.get,
                                   side_effect=lambda key, default="", **kw: etcd_pillar if key == "etcd" else default),
                "mine.send": mine_send,
            },
            "__utils__": real_utils(),
        }
    }


def ca_cert(ca_dir, which):
    return x509.load_pem_x509_certificate((ca_dir / etcd_pki.cas()[which][1]).read_bytes())


def request(usage, key=None):
    return {"usage": usage, "csr": etcd_pki.csr_pem(key or etcd_pki.new_key())}


def issued_cert(answer, usage):
    return x509.load_pem_x509_certificate(answer["certificates"][usage].encode())


def test_a_member_gets_its_three_certificates_each_from_its_ca(ca_dir, etcd_pillar, mine_send):
    keys = {u: etcd_pki.new_key() for u in ("peer", "server", "client")}
    ret = etcd_ca.sign("h1", [request(u, k) for u, k in keys.items()], request_id="r1")
    assert ret == {"request_id": "r1", "issued": ["client", "peer", "server"], "refused": {}}
    answer = etcd_ca.issued("h1")
    assert answer["request_id"] == "r1" and answer["refused"] == {}
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    for usage, key in keys.items():
        cert = issued_cert(answer, usage)
        assert cert.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)
        ident = etcd_pki.identity(etcd_pillar, "h1", usage)
        assert etcd_pki.cert_identity(cert) == {"cn": ident["cn"], "sans": ident["sans"],
                                                "eku": sorted(ident["eku"])}
    # the peer port trusts the peers' CA only: no client certificate of the other CA passes it
    issued_cert(answer, "peer").verify_directly_issued_by(ca_cert(ca_dir, "peer"))
    for usage in ("server", "client"):
        issued_cert(answer, usage).verify_directly_issued_by(ca_cert(ca_dir, "client"))
        with pytest.raises(Exception):  # noqa: B017 - InvalidSignature or ValueError
            issued_cert(answer, usage).verify_directly_issued_by(ca_cert(ca_dir, "peer"))
    mine_send.assert_called_once_with("etcd_issued_h1", mine_function="etcd_ca.issued",
                                      requester="h1")


def test_a_minion_that_is_no_member_asking_for_a_peer_certificate_is_refused(mine_send):
    ret = etcd_ca.sign("db1", [request("peer"), request("patroni")], request_id="r2")
    assert ret["issued"] == ["patroni"]
    assert ret["refused"] == {
        "peer": "db1 is a member of no etcd cluster in pillar: no peer certificate for it"}
    answer = etcd_ca.issued("db1")
    assert set(answer["certificates"]) == {"patroni"} and answer["refused"] == ret["refused"]
    # refused or not, the requester learns it: the answer is in the mine
    mine_send.assert_called_once()


def test_a_request_carrying_another_identity_gets_only_the_requesters(ca_dir):
    key = etcd_pki.new_key()
    greedy = (x509.CertificateSigningRequestBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "etcd-peer")]))
              .add_extension(x509.SubjectAlternativeName([
                  x509.DNSName("h2"), x509.UniformResourceIdentifier("urn:etcd-formula:admin:master"),
                  x509.UniformResourceIdentifier("urn:etcd-formula:member:etcd:h2")]), critical=False)
              .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode())
    etcd_ca.sign("h1", [{"usage": "client", "csr": greedy}])
    cert = issued_cert(etcd_ca.issued("h1"), "client")
    assert etcd_pki.cert_identity(cert) == {
        "cn": None, "sans": ["URI:urn:etcd-formula:member:etcd:h1"], "eku": ["clientAuth"]}


@pytest.mark.parametrize("usage, why", [
    ("admin", "the admin certificate is the CA server's (master) only, not h1's"),
    ("patroni", "h1 is named by no patroni client"),
    ("bogus", "usage 'bogus': expected one of peer, server, client, patroni, vip_manager, admin"),
    (None, "usage None: expected one of"),
])
def test_a_usage_the_minion_may_not_hold_is_refused_naming_it(usage, why):
    ret = etcd_ca.sign("h1", [request(usage)])
    assert ret["issued"] == [] and ret["refused"][str(usage)].startswith(why)


@pytest.mark.parametrize("csr", ["", "-----BEGIN CERTIFICATE REQUEST-----\nxx\n-----END CERTIFICATE REQUEST-----\n"])
def test_what_is_no_certificate_request_is_refused(csr):
    ret = etcd_ca.sign("h1", [{"usage": "server", "csr": csr}, request("client")])
    assert ret["issued"] == ["client"]
    assert ret["refused"]["server"].startswith("not a certificate request: ")


def test_a_request_not_signed_by_its_key_is_refused():
    der = x509.load_pem_x509_csr(etcd_pki.csr_pem(etcd_pki.new_key()).encode()).public_bytes(
        serialization.Encoding.DER)
    forged = x509.load_der_x509_csr(der[:-1] + bytes([der[-1] ^ 1]))
    ret = etcd_ca.sign("h1", [{"usage": "client",
                               "csr": forged.public_bytes(serialization.Encoding.PEM).decode()}])
    assert ret["refused"] == {"client": "the certificate request's signature is not its key's: refused"}


@pytest.mark.parametrize("requester", ["h*", "h1,h2", "", None, ["h1"], "h 1"])
def test_a_requester_that_is_no_plain_minion_id_is_refused_naming_it(requester, mine_send, ca_dir):
    with pytest.raises(SaltInvocationError, match="requester: {}".format(
            repr(requester).replace("[", "\\[").replace("*", "\\*"))):
        etcd_ca.sign(requester, [request("client")])
    mine_send.assert_not_called()
    assert not (ca_dir / "issued").exists()


@pytest.mark.parametrize("requests", ["peer", {"usage": "peer"}, ["peer"], None])
def test_requests_that_are_no_list_of_mappings_are_refused(requests, mine_send):
    with pytest.raises(SaltInvocationError) as raised:
        etcd_ca.sign("h1", requests)
    assert str(raised.value) == "requests: {!r}: expected a list of {{usage, csr}}".format(requests)
    mine_send.assert_not_called()


def test_only_the_ca_server_signs(mine_send):
    with pytest.raises(CommandExecutionError,
                       match="h1 is not the CA server of pillar etcd:pki \\(master\\)"):
        with_id("h1", etcd_ca.sign, "h1", [request("client")])
    mine_send.assert_not_called()


def with_id(minion_id, function, *args):
    saved = etcd_ca.__opts__["id"]
    etcd_ca.__opts__["id"] = minion_id
    try:
        return function(*args)
    finally:
        etcd_ca.__opts__["id"] = saved


def test_a_ca_key_that_is_not_the_certificates_refuses_every_signing_naming_the_files(ca_dir):
    (ca_dir / "ca.key").write_text(etcd_pki.key_pem(etcd_pki.new_key()))
    ret = etcd_ca.sign("h1", [request("client"), request("peer")])
    assert ret["issued"] == ["peer"]
    assert ret["refused"]["client"].startswith(
        "the CA key {0}/ca.key does not match the CA certificate {0}/ca.crt".format(ca_dir))


def test_a_mine_that_did_not_store_the_answer_fails(mine_send):
    mine_send.return_value = False
    with pytest.raises(CommandExecutionError, match="the master did not store the answer for h1"):
        etcd_ca.sign("h1", [request("client")])


# -- what the CA server keeps and shows ------------------------------------------------------------


def test_issued_is_empty_for_a_minion_that_never_asked():
    assert etcd_ca.issued("h2") == {}


def test_the_last_answer_wins_and_the_listing_keeps_every_usages_latest(ca_dir):
    etcd_ca.sign("h1", [request("peer"), request("server")], request_id="a")
    first_server = etcd_ca.issued("h1")["certificates"]["server"]
    etcd_ca.sign("h1", [request("peer")], request_id="b")
    etcd_ca.sign("h2", [request("client")], request_id="c")
    answer = etcd_ca.issued("h1")
    assert answer["request_id"] == "b" and set(answer["certificates"]) == {"peer"}
    listing = etcd_ca.certificates()
    assert set(listing) == {"h1", "h2"}
    assert set(listing["h1"]) == {"peer", "server"} and listing["h1"]["server"] == first_server
    assert listing["h1"]["peer"] == answer["certificates"]["peer"]
    assert set(listing["h2"]) == {"client"}
    # kept under the CA directory, out of reach of other users
    assert os.stat(ca_dir / "issued").st_mode & 0o077 == 0
    assert json.loads((ca_dir / "issued" / "h1.json").read_text()) == answer


def test_certificates_is_empty_before_any_signing():
    assert etcd_ca.certificates() == {}


def test_the_mine_entry_is_named_after_the_requester():
    assert etcd_ca.mine_name("h1") == "etcd_issued_h1"


# -- a client outside Salt (salt-run etcd.credentials) ---------------------------------------------


def test_an_external_client_gets_the_pinned_identity_whatever_its_request_says(ca_dir):
    key = etcd_pki.new_key()
    greedy = (x509.CertificateSigningRequestBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "root")]))
              .add_extension(x509.SubjectAlternativeName([
                  x509.UniformResourceIdentifier("urn:etcd-formula:admin:master")]), critical=False)
              .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode())
    cert = x509.load_pem_x509_certificate(etcd_ca.sign_external("app", greedy, "etcd").encode())
    assert etcd_pki.cert_identity(cert) == {
        "cn": None, "sans": ["URI:urn:etcd-formula:external:etcd:app"], "eku": ["clientAuth"]}
    cert.verify_directly_issued_by(ca_cert(ca_dir, "client"))


@pytest.mark.parametrize("name, cluster, why", [
    ("a b", "etcd", "'a b': expected a client name"),
    ("*", "etcd", "'*': expected a client name"),
    ("app", "nope", "no cluster 'nope' in pillar etcd:clusters"),
])
def test_an_external_client_of_a_bad_name_or_cluster_is_refused(name, cluster, why):
    with pytest.raises(CommandExecutionError, match=why.replace("*", "\\*")):
        etcd_ca.sign_external(name, request("client")["csr"], cluster)


def test_a_minion_cannot_ask_for_an_external_certificate_by_event(mine_send):
    etcd_ca.sign("h1", [request("external")])
    answer = etcd_ca.issued("h1")
    assert answer["certificates"] == {} and "expected one of" in answer["refused"]["external"]


# -- CA rotation --------------------------------------------------------------------------------


def _bundle(ca_dir, which="client"):
    return etcd_pki.bundle(str(ca_dir), which)


def _labels(text):
    return etcd_pki.ca_label(text)


def test_a_rotation_trusts_the_new_ca_before_it_signs_and_the_old_until_its_end(ca_dir):
    old = {w: (ca_dir / c).read_text() for w, (_, c) in etcd_pki.cas().items()}
    assert etcd_ca.rotation() == {"phase": None}
    record = etcd_ca.rotation_begin()
    assert record["phase"] == "trust-both" and set(record["new"]) == {"client", "peer"}
    for which, (key_name, _cert) in etcd_pki.cas().items():
        assert oct((ca_dir / "next" / key_name).stat().st_mode & 0o777) == "0o600"
        # the CA in place still signs (first), the next one is trusted beside it
        assert _bundle(ca_dir, which).startswith(old[which].strip())
        assert _labels(_bundle(ca_dir, which))[1] == record["new"][which]
    # run again: nothing new is made
    assert etcd_ca.rotation_begin() == etcd_ca.rotation()
    assert _labels(_bundle(ca_dir))[1] == record["new"]["client"]

    etcd_ca.rotation_switch()
    assert etcd_ca.rotation()["phase"] == "reissue" and not (ca_dir / "next").exists()
    for which in ("client", "peer"):
        labels = _labels(_bundle(ca_dir, which))
        assert labels == [record["new"][which], record["old"][which]]
    # the new CA signs now
    answer = etcd_ca.sign("h1", [request("server")])
    assert answer["refused"] == {}
    server = etcd_ca.issued("h1")["certificates"]["server"]
    assert etcd_pki.issuer_label(server, _bundle(ca_dir)) == record["new"]["client"]
    assert etcd_ca.rotation_switch()["phase"] == "reissue"  # again: nothing moves

    finished = etcd_ca.rotation_finish()
    assert finished["phase"] == "trust-new" and not (ca_dir / "previous").exists()
    archive = finished["retired"]
    assert (ca_dir / "retired" / os.path.basename(archive) / "ca.key").read_text()  # kept
    assert _labels(_bundle(ca_dir)) == [record["new"]["client"]]
    assert etcd_ca.rotation_end()["phase"] is None
    assert etcd_ca.rotation() == {"phase": None} and _bundle(ca_dir) == (
        ca_dir / "ca.crt").read_text()


def test_an_interrupted_switch_goes_on_where_it_stopped(ca_dir):
    record = etcd_ca.rotation_begin()
    # killed after the first rename: ca.key moved to previous, the rest in place
    (ca_dir / "previous").mkdir(mode=0o700)
    os.replace(ca_dir / "ca.key", ca_dir / "previous" / "ca.key")
    etcd_ca.rotation_switch()
    for name in ("ca.key", "ca.crt", "peer-ca.key", "peer-ca.crt"):
        assert (ca_dir / name).exists() and (ca_dir / "previous" / name).exists()
    assert _labels(_bundle(ca_dir)) == [record["new"]["client"], record["old"]["client"]]
    assert etcd_pki.ca_problem((ca_dir / "ca.key").read_text(), (ca_dir / "ca.crt").read_text()) is None


def test_a_switch_killed_before_its_record_is_finished_by_the_next_run(ca_dir):
    record = etcd_ca.rotation_begin()
    etcd_ca.rotation_switch()
    # as if killed after the moves, before "reissue" was recorded
    (ca_dir / "rotation.json").write_text(json.dumps(dict(record, phase="trust-both")))
    assert etcd_ca.rotation_switch()["phase"] == "reissue"
    assert _labels(_bundle(ca_dir)) == [record["new"]["client"], record["old"]["client"]]


def test_the_steps_are_taken_in_order_only(ca_dir):
    with pytest.raises(CommandExecutionError, match="phase none, not trust-both or reissue"):
        etcd_ca.rotation_switch()
    with pytest.raises(CommandExecutionError, match="phase none, not reissue"):
        etcd_ca.rotation_finish()
    etcd_ca.rotation_begin()
    with pytest.raises(CommandExecutionError, match="phase trust-both, not trust-new or none"):
        etcd_ca.rotation_end()
    (ca_dir / "rotation.json").write_text('{"phase": "sideways"}')
    with pytest.raises(CommandExecutionError, match="phase 'sideways': expected one of"):
        etcd_ca.rotation()


def test_your_own_ca_is_not_rotated(ca_dir, etcd_pillar):
    etcd_pillar["pki"]["ca_provided"] = True
    with pytest.raises(CommandExecutionError, match="ca_provided is true"):
        etcd_ca.rotation_begin()
    assert not (ca_dir / "next").exists() and etcd_ca.rotation() == {"phase": None}


def test_bundles_name_each_trusted_ca_and_the_rotation(ca_dir):
    found = etcd_ca.bundles()
    assert found["rotation"] == {"phase": None} and len(found["labels"]["peer"]) == 1
    etcd_ca.rotation_begin()
    found = etcd_ca.bundles()
    assert found["rotation"]["phase"] == "trust-both" and len(found["labels"]["client"]) == 2


def test_a_split_rotation_starts_from_the_clients_ca_as_the_peers_and_ends_with_two_apart(ca_dir):
    # a CA server whose clusters were built before peers had a CA of their own: etcd.ca made
    # a peers' CA since, which no running member trusts
    client = {name: (ca_dir / name).read_text() for name in ("ca.key", "ca.crt")}
    unused = {name: (ca_dir / name).read_text() for name in ("peer-ca.key", "peer-ca.crt")}
    record = etcd_ca.rotation_begin(split=True)
    # the unused peers' CA is archived (never deleted), the clients' CA is the peers' too
    (archive,) = (ca_dir / "retired").iterdir()
    assert archive.name.endswith("-unused")
    assert {n: (archive / n).read_text() for n in unused} == unused
    assert oct((archive / "peer-ca.key").stat().st_mode & 0o777) == "0o600"
    assert (ca_dir / "peer-ca.key").read_text() == client["ca.key"]
    assert oct((ca_dir / "peer-ca.key").stat().st_mode & 0o777) == "0o600"
    assert record["old"]["peer"] == record["old"]["client"]
    # what the members' peer ports trust now comes first in the peers' bundle
    assert _bundle(ca_dir, "peer").startswith(client["ca.crt"].strip())
    assert etcd_ca.rotation_begin(split=True) == etcd_ca.rotation()  # again: nothing moves
    etcd_ca.rotation_switch()
    etcd_ca.rotation_finish()
    etcd_ca.rotation_end()
    # two CAs apart, neither the old one
    labels = {w: _labels(_bundle(ca_dir, w)) for w in ("client", "peer")}
    assert labels == {"client": [record["new"]["client"]], "peer": [record["new"]["peer"]]}
    assert labels["client"] != labels["peer"]
    assert record["old"]["client"] not in labels["client"] + labels["peer"]


def test_a_split_without_a_usable_clients_ca_changes_nothing(ca_dir):
    (ca_dir / "ca.key").write_text(etcd_pki.key_pem(etcd_pki.new_key()))
    peer = (ca_dir / "peer-ca.key").read_text()
    with pytest.raises(CommandExecutionError, match="cannot become the peers' too: the CA key"):
        etcd_ca.rotation_begin(split=True)
    assert (ca_dir / "peer-ca.key").read_text() == peer and not (ca_dir / "retired").exists()
    assert etcd_ca.rotation() == {"phase": None}


def test_the_answer_is_sent_to_the_mine_under_the_ca_servers_lock(ca_dir, mine_send):
    # the master stores a minion's mine as one record (read, update, write back by any
    # worker): two sends of the CA server at once could lose one answer
    import fcntl

    held = []

    def send(*args, **kwargs):
        with open(etcd_pki.mine_lock_file(str(ca_dir))) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held.append(True)
        return True

    mine_send.side_effect = send
    assert etcd_ca.sign("h1", [request("server")])["refused"] == {}
    assert held == [True]
