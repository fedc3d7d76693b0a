"""
etcd_cert with the master and the CA server faked: ``event.fire_master`` reaches a CA server
made here (real CAs, real signing with the identity the pillar gives the requester, as
``etcd_ca.sign`` does) whose answer lands in a fake mine that ``mine.get`` reads. Files are
real, in a temporary directory: when a key or certificate is made, what is asked of the CA
server (one request, no key in it), what is reported (true changes, never a key; test mode
writes and asks nothing), and that a failure keeps the old pair. The real thing, masterless,
runs in test/functional/states/test_etcd_cert_live.py. The states run with ``test=True``
and ``test=False`` (the ``testmode`` fixture) where both say something.
"""

import grp
import os
import pwd
import stat
from unittest import mock
from unittest.mock import Mock

import pytest
import salt.modules.config
import salt.modules.event
import salt.modules.file
import salt.modules.mine
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import etcd_ca
import etcd_cert
import etcd_errors as errors
import etcd_pki
from etcd_fakes import pillar, real_utils

ME = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
SPKI = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo


class FakeMine:
    """The master's mine: what each minion sent, by function name."""

    def __init__(self):
        self.entries = {}
        self.get = Mock(spec=salt.modules.mine.get, side_effect=self._get)
        self.send = Mock(spec=salt.modules.mine.send, side_effect=self._send)

    def _get(self, tgt, fun, tgt_type="glob", **kwargs):
        return {tgt: self.entries[(tgt, fun)]} if (tgt, fun) in self.entries else {}

    def _send(self, name, *args, mine_function=None, **kwargs):
        if mine_function == "file.read":
            with open(kwargs["path"]) as handle:
                self.entries[(etcd_cert.__opts__["id"], name)] = handle.read()
        return True


class FakeCAServer:
    """The master's reactor and the CA server behind it: signs each request with the
    identity the pillar gives the requester (``etcd_pki.identity``, as ``etcd_ca.sign``
    does), or refuses, and puts the answer in the mine. ``silent``: no answer ever comes;
    ``refuse``: {usage: why}; ``tamper``: answer for this other minion's identity."""

    def __init__(self, etcd_pillar, mine):
        self.pillar, self.mine = etcd_pillar, mine
        self.cas = {}
        for which in ("client", "peer"):
            key = etcd_pki.new_key("ec", 384)
            self.cas[which] = key, x509.load_pem_x509_certificate(
                etcd_pki.new_ca(key, "etcd CA " + which, 3650).encode())
        self.silent, self.refuse, self.tamper = False, {}, None
        self.requests = []
        self.fire_master = Mock(spec=salt.modules.event.fire_master, side_effect=self._fire)
        self.sign = Mock(spec=etcd_ca.sign, side_effect=self._sign)

    def ca_pem(self, which):
        return self.cas[which][1].public_bytes(serialization.Encoding.PEM).decode()

    def _fire(self, data, tag, preload=None):
        assert tag == "etcd/cert/request" and data["ca_server"] == "master"
        if not self.silent:
            # the master authenticated the requester: its id, not anything in data
            self._sign(etcd_cert.__opts__["id"], data["requests"], data["request_id"])
        return True

    def _sign(self, requester, requests, request_id=""):
        self.requests.append((requester, requests))
        certificates, refused = {}, {}
        for item in requests:
            usage = item["usage"]
            if usage in self.refuse:
                refused[usage] = self.refuse[usage]
                continue
            try:
                ident = etcd_pki.identity(self.pillar, self.tamper or requester, usage)
            except errors.EtcdUnsafe as exc:
                refused[usage] = str(exc)
                continue
            certificates[usage] = etcd_pki.sign(*self.cas[etcd_pki.ca_of(usage)], item["csr"], ident)
        self.mine.entries[("master", "etcd_issued_" + requester)] = {
            "request_id": request_id, "certificates": certificates, "refused": refused}
        return {"request_id": request_id, "issued": sorted(certificates), "refused": refused}


class FakeFiles:
    """file.managed on real files: writes contents and mode, honours test mode."""

    def managed(self, name, contents=None, user=None, group=None, mode=None, **kwargs):
        old = open(name).read() if os.path.exists(name) else None
        changes = {"diff": "New file" if old is None else "..."} if old != contents else {}
        if not etcd_cert.__opts__["test"]:
            with open(name, "w") as handle:
                handle.write(contents)
            os.chmod(name, int(mode, 8))
        result = None if changes and etcd_cert.__opts__["test"] else True
        return {"name": name, "result": result, "changes": changes, "comment": ""}


@pytest.fixture
def etcd_pillar(tmp_path):
    found = pillar()
    found["pki"]["ca_dir"] = str(tmp_path / "ca")
    found["clusters"]["etcd"]["clients"] = {"patroni": {"target": ["db1"]}}
    return found


@pytest.fixture
def mine():
    return FakeMine()


@pytest.fixture
def ca(etcd_pillar, mine):
    return FakeCAServer(etcd_pillar, mine)


@pytest.fixture
def dir_(tmp_path, ca):
    (tmp_path / "ca.crt").write_text(ca.ca_pem("client"))
    (tmp_path / "peer-ca.crt").write_text(ca.ca_pem("peer"))
    return tmp_path


@pytest.fixture
def configure_loader_modules(ca, mine, etcd_pillar, dir_):
    return {
        etcd_cert: {
            "__opts__": {"test": False, "id": "h1"},
            "__states__": {"file.managed": FakeFiles().managed},
            "__salt__": {
                "event.fire_master": ca.fire_master,
                "etcd_ca.sign": ca.sign,
                "mine.get": mine.get,
                "mine.send": mine.send,
                "file.file_exists": Mock(spec=salt.modules.file.file_exists, side_effect=os.path.exists),
                "file.read": Mock(spec=salt.modules.file.read,
                                  side_effect=lambda path, binary=False: open(path).read()),
                "config.get": Mock(spec=salt.modules.config.get,
                                   side_effect=lambda key, default="", **kw: etcd_pillar if key == "etcd" else default),
            },
            "__utils__": real_utils(),
        }
    }


@pytest.fixture(params=[False, True], ids=["applied", "test"])
def testmode(request):
    with mock.patch.dict(etcd_cert.__opts__, {"test": request.param}):
        yield request.param


def in_test_mode():
    return mock.patch.dict(etcd_cert.__opts__, {"test": True})


def as_minion(minion_id):
    return mock.patch.dict(etcd_cert.__opts__, {"id": minion_id})


def spec(dir_, usage, **kwargs):
    found = {"usage": usage, "cert": str(dir_ / (usage + ".crt")), "key": str(dir_ / (usage + ".key")),
             "user": ME[0], "group": ME[1]}
    if usage == "peer":
        found["ca_file"] = str(dir_ / "peer-ca.crt")
    found.update(kwargs)
    return found


def member(dir_, usages=("peer", "server", "client"), **kwargs):
    args = dict(name="etcd member etcd-1", ca_server="master", ca_file=str(dir_ / "ca.crt"),
                certificates=[spec(dir_, u) for u in usages], timeout=0)
    args.update(kwargs)
    return etcd_cert.certificates_managed(**args)


def load_cert(dir_, usage):
    return x509.load_pem_x509_certificate((dir_ / (usage + ".crt")).read_bytes())


def load_key(dir_, usage):
    return serialization.load_pem_private_key((dir_ / (usage + ".key")).read_bytes(), None)


def snapshot(dir_, usages=("peer", "server", "client")):
    return {u: ((dir_ / (u + ".key")).read_text(), (dir_ / (u + ".crt")).read_text()) for u in usages}


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def pair_matches(dir_, usage):
    return load_cert(dir_, usage).public_key().public_bytes(*SPKI) == \
        load_key(dir_, usage).public_key().public_bytes(*SPKI)


# -- first run: keys made here, certificates from the CA server in one request --------------------


def test_first_run_makes_the_keys_here_and_has_the_certificates_signed_in_one_request(dir_, ca, testmode):
    ret = member(dir_)
    wanted = {str(dir_ / (u + ".crt")): ["no certificate yet"] for u in ("peer", "server", "client")}
    assert ret["changes"] == {"issued": wanted}
    if testmode:
        assert ret["result"] is None
        assert ret["comment"] == "3 certificate(s) would be issued, 0 file(s) fixed"
        assert not [p for p in os.listdir(dir_) if p.endswith((".key", ".crt")) and "ca" not in p]
        ca.fire_master.assert_not_called()
        return
    assert ret["result"] is True, ret
    assert ret["comment"] == "3 certificate(s) issued by master, 0 file(s) fixed"
    assert ca.fire_master.call_count == 1
    ((requester, requests),) = ca.requests
    assert requester == "h1" and [r["usage"] for r in requests] == ["peer", "server", "client"]
    # the CA server gets requests, never a key
    assert "PRIVATE KEY" not in str(ca.fire_master.call_args)
    for usage in ("peer", "server", "client"):
        assert mode_of(dir_ / (usage + ".key")) == 0o600
        assert mode_of(dir_ / (usage + ".crt")) == 0o644
        assert pair_matches(dir_, usage)
        ident = etcd_pki.identity(ca.pillar, "h1", usage)
        assert etcd_pki.cert_identity(load_cert(dir_, usage)) == {
            "cn": ident["cn"], "sans": ident["sans"], "eku": sorted(ident["eku"])}
    load_cert(dir_, "peer").verify_directly_issued_by(ca.cas["peer"][1])
    load_cert(dir_, "server").verify_directly_issued_by(ca.cas["client"][1])
    # nothing half-written is left behind
    assert not [p for p in os.listdir(dir_) if p.endswith(".new")]


def test_the_key_text_never_goes_into_the_return(dir_):
    ret = member(dir_)
    for usage in ("peer", "server", "client"):
        body = (dir_ / (usage + ".key")).read_text().splitlines()[1]
        assert body not in str(ret)


def test_the_ca_servers_own_certificate_is_signed_there_without_an_event(dir_, ca):
    with as_minion("master"):
        ret = member(dir_, usages=("admin",))
    assert ret["result"] is True, ret
    ca.fire_master.assert_not_called()
    assert ca.sign.call_args.args[0] == "master"
    assert etcd_pki.cert_identity(load_cert(dir_, "admin"))["sans"] == ["URI:urn:etcd-formula:admin:master"]


def test_a_client_gets_its_kinds_certificate(dir_, ca):
    with as_minion("db1"):
        ret = member(dir_, usages=("patroni",))
    assert ret["result"] is True, ret
    assert etcd_pki.cert_identity(load_cert(dir_, "patroni")) == {
        "cn": None, "sans": ["URI:urn:etcd-formula:patroni:etcd:db1"], "eku": ["clientAuth"]}


# -- later runs -----------------------------------------------------------------------------------


def test_second_run_asks_nothing_and_changes_nothing(dir_, ca, testmode):
    with mock.patch.dict(etcd_cert.__opts__, {"test": False}):
        member(dir_)
    before = snapshot(dir_)
    ca.fire_master.reset_mock()
    ret = member(dir_)
    assert ret == {"name": "etcd member etcd-1", "changes": {}, "result": True,
                   "comment": "the certificates of h1 are as wanted"}
    ca.fire_master.assert_not_called()
    assert snapshot(dir_) == before


def before_key_path(dir_):
    return str(dir_) + "/server.key.before"


def test_certificate_is_renewed_when_few_days_remain(dir_, ca, etcd_pillar, testmode):
    etcd_pillar["pki"]["days_valid"] = 20
    with mock.patch.dict(etcd_cert.__opts__, {"test": False}):
        assert member(dir_, usages=("server",), days_remaining=10)["changes"]
    before = snapshot(dir_, ("server",))
    with open(before_key_path(dir_), "w") as handle:
        handle.write(open(dir_ / "server.key").read())
    etcd_pillar["pki"]["days_valid"] = 400
    assert member(dir_, usages=("server",), days_remaining=10)["changes"] == {}
    ret = member(dir_, usages=("server",), days_remaining=30)
    (because,) = ret["changes"]["issued"][str(dir_ / "server.crt")]
    assert because.startswith("expires ") and because.endswith("fewer than 30 days left")
    if testmode:
        assert ret["result"] is None and snapshot(dir_, ("server",)) == before
        assert ca.fire_master.call_count == 1
        return
    assert ret["result"] is True, ret
    left = load_cert(dir_, "server").not_valid_after_utc - load_cert(dir_, "server").not_valid_before_utc
    assert left.days >= 400
    assert pair_matches(dir_, "server")
    # the key of the wanted kind is kept: the certificate alone is replaced (atomically)
    assert open(dir_ / "server.key").read() == open(before_key_path(dir_)).read()


@pytest.mark.parametrize("change, usage, because", [
    ({"address": "10.77.0.99"}, "peer",
     "SANS ['DNS:etcd-1', 'DNS:h1', 'IP:10.77.0.11'] instead of ['DNS:etcd-1', 'DNS:h1', 'IP:10.77.0.99']"),
    ({"seq": 9}, "server", "CN etcd-1 instead of etcd-9"),
])
def test_certificate_is_reissued_when_the_pillar_gives_another_identity(dir_, ca, etcd_pillar, change,
                                                                      usage, because):
    member(dir_)
    etcd_pillar["clusters"]["etcd"]["members"]["h1"].update(change)
    ret = member(dir_)
    assert ret["result"] is True, ret
    assert because in ret["changes"]["issued"][str(dir_ / (usage + ".crt"))]
    assert ca.fire_master.call_count == 2
    ident = etcd_pki.identity(etcd_pillar, "h1", usage)
    assert etcd_pki.cert_identity(load_cert(dir_, usage))["cn"] == ident["cn"]
    assert etcd_pki.cert_identity(load_cert(dir_, usage))["sans"] == ident["sans"]
    assert member(dir_)["changes"] == {}


def test_certificate_of_another_ca_is_reissued(dir_, ca):
    member(dir_)
    other = FakeCAServer(ca.pillar, ca.mine)
    (dir_ / "ca.crt").write_text(other.ca_pem("client"))
    ca.cas["client"] = other.cas["client"]
    ret = member(dir_)
    assert ret["changes"] == {"issued": {str(dir_ / u): ["not issued by the cluster CA"]
                                         for u in ("server.crt", "client.crt")}}
    assert ret["result"] is True
    load_cert(dir_, "server").verify_directly_issued_by(other.cas["client"][1])


def publish(ca, mine, client, peer):
    """The CA server's bundles in the mine, as etcd.ca publishes them."""
    mine.entries[("master", "etcd_ca_cert")] = client
    mine.entries[("master", "etcd_peer_ca_cert")] = peer


def test_a_member_built_before_peers_had_their_own_ca_is_refused_before_any_file(
        dir_, ca, mine, testmode):
    # a member built before peers had a CA of their own: its running peers trust only the
    # clients' CA, so the peers' bundle alone (or a peer certificate of it) would cut it off
    peer_ca = ca.cas["peer"]
    ca.cas["peer"] = ca.cas["client"]
    (dir_ / "peer-ca.crt").write_text(ca.ca_pem("client"))
    with mock.patch.dict(etcd_cert.__opts__, {"test": False}):
        assert member(dir_, usages=("peer",))["result"] is True  # a peer certificate of the clients' CA
    ca.cas["peer"] = peer_ca
    publish(ca, mine, ca.ca_pem("client"), ca.ca_pem("peer"))
    ret = etcd_cert.peer_trust_kept(str(dir_ / "peer.crt"), "master")
    assert ret["result"] is False and ret["changes"] == {}
    assert ret["comment"].startswith("{} was issued by the clients' CA (etcd CA client [".format(
        dir_ / "peer.crt"))
    assert "salt-run etcd.rotate_ca" in ret["comment"] and ret["comment"].endswith(
        "Nothing was changed")


@pytest.mark.parametrize("bundle", ["client+peer", "peer+client"])
def test_a_peers_bundle_that_still_trusts_the_clients_ca_passes(dir_, ca, mine, bundle):
    # the rotation that gives such a cluster a CA for its peers: both trusted, either first
    (dir_ / "peer.crt").write_text(etcd_pki.sign(*ca.cas["client"], etcd_pki.csr_pem(
        etcd_pki.new_key()), etcd_pki.identity(ca.pillar, "h1", "peer")))
    first, second = bundle.split("+")
    publish(ca, mine, ca.ca_pem("client"), ca.ca_pem(first) + ca.ca_pem(second))
    ret = etcd_cert.peer_trust_kept(str(dir_ / "peer.crt"), "master")
    assert ret["result"] is True and ret["changes"] == {}, ret


def test_a_peer_certificate_of_the_clients_ca_is_reissued_by_the_peers_once_both_are_trusted(
        dir_, ca):
    # the rotation's reissue step for such a cluster: the peers' CA signs, the clients' CA
    # (what the other members' peer certificates still are) is trusted beside it
    (dir_ / "peer.crt").write_text(etcd_pki.sign(*ca.cas["client"], etcd_pki.csr_pem(
        etcd_pki.new_key()), etcd_pki.identity(ca.pillar, "h1", "peer")))
    (dir_ / "peer-ca.crt").write_text(ca.ca_pem("peer") + ca.ca_pem("client"))
    ret = member(dir_, usages=("peer",))
    assert ret["result"] is True, ret
    assert list(ret["changes"]["issued"]) == [str(dir_ / "peer.crt")]
    load_cert(dir_, "peer").verify_directly_issued_by(ca.cas["peer"][1])
    assert pair_matches(dir_, "peer")


@pytest.mark.parametrize("usage", [None, "peer"])
def test_a_member_without_a_peer_certificate_or_with_one_of_the_peers_ca_passes(
        dir_, ca, mine, usage):
    if usage:
        with mock.patch.dict(etcd_cert.__opts__, {"test": False}):
            assert member(dir_, usages=(usage,))["result"] is True
    publish(ca, mine, ca.ca_pem("client"), ca.ca_pem("peer"))
    ret = etcd_cert.peer_trust_kept(str(dir_ / "peer.crt"), "master")
    assert ret["result"] is True and ret["changes"] == {}, ret


def test_key_of_another_algorithm_is_replaced_and_the_certificate_follows(dir_):
    member(dir_, usages=("client",))
    ret = member(dir_, usages=("client",), key_algo="rsa", key_size=2048)
    assert ret["changes"] == {"issued": {str(dir_ / "client.crt"): ["not for the private key"]}}
    key = load_key(dir_, "client")
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    assert pair_matches(dir_, "client")
    assert member(dir_, usages=("client",), key_algo="rsa", key_size=2048)["changes"] == {}


def test_new_keys_whose_signing_fails_leave_the_old_pairs_in_place_and_matching(dir_, ca):
    # the first version's bug: a new key written before its certificate was signed
    member(dir_)
    before = snapshot(dir_)
    ca.refuse = {"peer": "the CA is in maintenance"}
    ret = member(dir_, key_algo="rsa", key_size=2048)
    assert ret["result"] is False and ret["changes"] == {}
    assert ret["comment"] == ("the CA server master refused: peer: the CA is in maintenance "
                              "[tried: peer (not for the private key), server (not for the "
                              "private key), client (not for the private key); nothing was "
                              "written]")
    assert snapshot(dir_) == before
    assert all(pair_matches(dir_, u) for u in ("peer", "server", "client"))
    assert isinstance(load_key(dir_, "peer"), ec.EllipticCurvePrivateKey)


def test_a_key_that_is_no_key_is_replaced(dir_):
    member(dir_, usages=("client",))
    (dir_ / "client.key").write_text("garbage")
    ret = member(dir_, usages=("client",))
    assert ret["changes"] == {"issued": {str(dir_ / "client.crt"): ["not for the private key"]}}
    assert isinstance(load_key(dir_, "client"), ec.EllipticCurvePrivateKey)


def test_wrong_mode_is_fixed_without_a_new_key_or_certificate(dir_, ca, testmode):
    with mock.patch.dict(etcd_cert.__opts__, {"test": False}):
        member(dir_)
    before = snapshot(dir_)
    os.chmod(dir_ / "server.key", 0o644)
    os.chmod(dir_ / "client.crt", 0o600)
    ret = member(dir_)
    assert ret["changes"] == {"attributes": [str(dir_ / "server.key"), str(dir_ / "client.crt")]}
    assert snapshot(dir_) == before
    assert ca.fire_master.call_count == 1
    if testmode:
        assert ret["result"] is None and ret["comment"] == "0 certificate(s) would be issued, 2 file(s) fixed"
        assert mode_of(dir_ / "server.key") == 0o644
        return
    assert ret["result"] is True and ret["comment"] == "0 certificate(s) issued by master, 2 file(s) fixed"
    assert mode_of(dir_ / "server.key") == 0o600 and mode_of(dir_ / "client.crt") == 0o644


def test_an_owner_that_does_not_exist_fails_naming_it(dir_):
    member(dir_, usages=("client",))
    ret = member(dir_, certificates=[spec(dir_, "client", user="no-such-user-here")])
    assert ret["result"] is False and ret["changes"] == {}
    assert ret["comment"].startswith("no such user or group: ")


# -- failures: reported with the reason, the old pair kept -----------------------------------------


def test_a_refusal_of_the_ca_server_is_reported_with_its_reason_and_the_old_pair_kept(dir_, ca, etcd_pillar):
    member(dir_)
    before = snapshot(dir_)
    etcd_pillar["clusters"]["etcd"]["members"]["h1"]["address"] = "10.77.0.99"
    ca.refuse = {"server": "the CA is in maintenance"}
    ret = member(dir_)
    assert ret["result"] is False and ret["changes"] == {}
    assert ret["comment"].startswith("the CA server master refused: server: the CA is in "
                                     "maintenance [tried: peer (SANS ['DNS:etcd-1', ")
    assert "IP:10.77.0.99" in ret["comment"] and ret["comment"].endswith("; nothing was written]")
    # not even the certificates the CA did sign are written: all or nothing
    assert snapshot(dir_) == before
    assert not [p for p in os.listdir(dir_) if p.endswith(".new")]


def test_a_ca_server_that_never_answers_is_reported_naming_the_reactor(dir_, ca):
    ca.silent = True
    ret = member(dir_, timeout=0)
    assert ret["result"] is False and ret["changes"] == {}
    assert ret["comment"] == ("the CA server master did not answer within 0 s (asked twice): is it "
                              "up, and does the master have the reactor for etcd/cert/request "
                              "(README)? [tried: peer (no certificate yet), server (no "
                              "certificate yet), client (no certificate yet); nothing was written]")
    assert not (dir_ / "peer.key").exists()
    assert ca.fire_master.call_count == 2


def test_a_request_that_came_to_nothing_is_asked_once_more_half_way(dir_, ca):
    # the first event reaches no CA server (a reactor job lost on the way): the same
    # request, fired again half way through the wait, gets the certificates
    fire = ca.fire_master.side_effect
    ca.fire_master.side_effect = lambda data, tag, preload=None: (
        True if ca.fire_master.call_count == 1 else fire(data, tag))
    ret = member(dir_, timeout=1)
    assert ret["result"] is True, ret
    assert ca.fire_master.call_count == 2
    assert len({c.args[0]["request_id"] for c in ca.fire_master.call_args_list}) == 1
    assert pair_matches(dir_, "peer")


def test_an_old_answer_in_the_mine_is_not_taken_for_this_requests(dir_, ca):
    member(dir_, usages=("client",))
    before = snapshot(dir_, ("client",))
    (dir_ / "client.crt").write_text("expired")
    ca.silent = True  # the mine still holds the answer to the first request
    ret = member(dir_, usages=("client",))
    assert ret["result"] is False and "did not answer" in ret["comment"]
    assert (dir_ / "client.key").read_text() == before["client"][0]


def test_an_event_that_cannot_be_sent_is_reported(dir_, ca):
    ca.fire_master.side_effect = None
    ca.fire_master.return_value = False  # what event.fire_master says masterless
    ret = member(dir_)
    assert ret["result"] is False
    assert ret["comment"].startswith(
        "the request to the CA server could not be sent (event.fire_master) [tried: peer ")


def test_a_certificate_not_for_this_minion_is_not_installed(dir_, ca):
    member(dir_)
    before = snapshot(dir_)
    for usage in ("peer", "server", "client"):
        (dir_ / (usage + ".crt")).unlink()
    ca.tamper = "h2"
    ret = member(dir_)
    assert ret["result"] is False and ret["changes"] == {}
    assert ret["comment"].startswith("the CA server master answered a peer certificate that is not "
                                     "the one the pillar gives h1 (SANS ")
    assert ret["comment"].endswith("): nothing written [tried: peer (no certificate yet), "
                                   "server (no certificate yet), client (no certificate yet); "
                                   "nothing was written]")
    assert {u: (dir_ / (u + ".key")).read_text() for u in before} == {u: before[u][0] for u in before}
    assert not [p for p in os.listdir(dir_) if p.endswith(".crt") and "ca" not in p]


@pytest.mark.parametrize("usage, why", [
    ("bogus", "usage 'bogus': expected one of peer, server, client, patroni, vip_manager, admin"),
    ("admin", "the admin certificate is the CA server's (master) only, not h1's"),
    ("patroni", "h1 is named by no patroni client"),
])
def test_a_usage_this_minion_may_not_hold_fails_without_touching_anything(dir_, ca, usage, why, testmode):
    ret = member(dir_, usages=(usage,))
    assert ret["result"] is False and ret["changes"] == {}
    assert ret["comment"].startswith(why)
    ca.fire_master.assert_not_called()
    assert not (dir_ / (usage + ".key")).exists()


def test_a_minion_that_is_no_member_fails_before_asking(dir_, ca):
    with as_minion("h9"):
        ret = member(dir_)
    assert ret["result"] is False
    assert ret["comment"] == "h9 is a member of no etcd cluster in pillar: no peer certificate for it"
    ca.fire_master.assert_not_called()


@pytest.mark.parametrize("certificates", [[], None, {"usage": "peer"}])
def test_certificates_must_be_a_list(dir_, certificates):
    ret = member(dir_, certificates=certificates)
    assert ret["result"] is False
    assert ret["comment"] == "certificates: expected a list of {usage, cert, key}"


# -- the CA certificate through the mine ----------------------------------------------------------


def test_ca_bundle_is_written_from_the_ca_servers_mine_entry(dir_, ca, mine):
    mine.entries[("master", "etcd_peer_ca_cert")] = ca.ca_pem("peer")
    ret = etcd_cert.ca_bundle_managed(str(dir_ / "bundle.crt"), ca_server="master",
                                      mine_function="etcd_peer_ca_cert")
    mine.get.assert_called_once_with("master", "etcd_peer_ca_cert")
    assert ret["result"] is True and ret["changes"] == {"diff": "New file"}
    assert (dir_ / "bundle.crt").read_text() == ca.ca_pem("peer")


def test_ca_bundle_without_a_published_ca_fails_saying_what_to_do(dir_):
    ret = etcd_cert.ca_bundle_managed(str(dir_ / "bundle.crt"), ca_server="master")
    assert ret["result"] is False
    assert ret["comment"] == ("the CA server master has published no CA certificate in the mine "
                              "(etcd_ca_cert): apply etcd.ca on it first")
    assert not (dir_ / "bundle.crt").exists()


def test_ca_bundle_that_is_not_a_certificate_is_refused(dir_, mine):
    mine.entries[("master", "etcd_ca_cert")] = "hello"
    ret = etcd_cert.ca_bundle_managed(str(dir_ / "bundle.crt"), ca_server="master")
    assert ret["result"] is False and "published no PEM certificate" in ret["comment"]
    assert not (dir_ / "bundle.crt").exists()


def test_ca_published_sends_nothing_when_the_mine_has_it(dir_, mine, testmode):
    mine.entries[("h1", "etcd_ca_cert")] = (dir_ / "ca.crt").read_text()
    ret = etcd_cert.ca_published(str(dir_ / "ca.crt"))
    assert ret["result"] is True and ret["changes"] == {}
    mine.send.assert_not_called()


def test_ca_published_sends_when_the_mine_differs(dir_, mine, testmode):
    path = str(dir_ / "ca.crt")
    ret = etcd_cert.ca_published(path)
    assert ret["changes"] == {"published": {"old": False, "new": "etcd_ca_cert"}}
    if testmode:
        assert ret["result"] is None
        mine.send.assert_not_called()
    else:
        assert ret["result"] is True
        mine.send.assert_called_once_with("etcd_ca_cert", mine_function="file.read", path=path)


def test_ca_published_without_a_ca_file_fails(dir_, mine):
    ret = etcd_cert.ca_published(str(dir_ / "missing.crt"))
    assert ret["result"] is False and "no CA certificate at" in ret["comment"]
    mine.send.assert_not_called()


# -- the CAs themselves, on the CA server ---------------------------------------------------------


def ca_files(ca_dir):
    return {name: (ca_dir / name).read_text() for name in ("ca.key", "ca.crt", "peer-ca.key", "peer-ca.crt")}


def test_ca_managed_creates_both_cas_once_and_publishes_them(tmp_path, mine, testmode):
    ca_dir = tmp_path / "ca"
    with as_minion("master"):
        ret = etcd_cert.ca_managed("etcd CA")
    assert set(ret["changes"]) == {"client", "peer"}
    assert ret["changes"]["peer"]["created"] == [str(ca_dir / "peer-ca.key"), str(ca_dir / "peer-ca.crt")]
    if testmode:
        assert ret["result"] is None
        assert ret["comment"] == "The CAs in {} would be updated: client, peer".format(ca_dir)
        assert not ca_dir.exists()
        mine.send.assert_not_called()
        return
    assert ret["result"] is True, ret
    assert mode_of(ca_dir) == 0o700
    for key_name, cert_name in etcd_pki.cas().values():
        assert mode_of(ca_dir / key_name) == 0o600
        key = load_key(ca_dir, key_name[:-4])
        assert isinstance(key, ec.EllipticCurvePrivateKey) and key.key_size == 384  # ca_key_size
        cert = x509.load_pem_x509_certificate((ca_dir / cert_name).read_bytes())
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert etcd_pki.ca_problem((ca_dir / key_name).read_text(), (ca_dir / cert_name).read_text()) is None
    assert (ca_dir / "ca.crt").read_text() != (ca_dir / "peer-ca.crt").read_text()
    assert mine.entries[("master", "etcd_ca_cert")] == (ca_dir / "ca.crt").read_text()
    assert mine.entries[("master", "etcd_peer_ca_cert")] == (ca_dir / "peer-ca.crt").read_text()


def test_ca_managed_never_reissues_an_existing_ca(tmp_path, mine, testmode):
    with as_minion("master"), mock.patch.dict(etcd_cert.__opts__, {"test": False}):
        etcd_cert.ca_managed("etcd CA")
    before = ca_files(tmp_path / "ca")
    mine.send.reset_mock()
    with as_minion("master"):
        ret = etcd_cert.ca_managed("etcd CA", common_name="another name")
    assert ret == {"name": "etcd CA", "changes": {}, "result": True,
                   "comment": "The CAs in {} are as wanted and published".format(tmp_path / "ca")}
    assert ca_files(tmp_path / "ca") == before
    mine.send.assert_not_called()


def test_ca_managed_republishes_a_ca_the_mine_lost(tmp_path, mine):
    with as_minion("master"):
        etcd_cert.ca_managed("etcd CA")
        before = ca_files(tmp_path / "ca")
        del mine.entries[("master", "etcd_peer_ca_cert")]
        ret = etcd_cert.ca_managed("etcd CA")
    assert ret["changes"] == {"peer": {"published": {"old": False, "new": "etcd_peer_ca_cert"}}}
    assert ca_files(tmp_path / "ca") == before


def test_ca_managed_with_a_provided_ca_only_checks_it(tmp_path, etcd_pillar, mine, testmode):
    etcd_pillar["pki"]["ca_provided"] = True
    ret = etcd_cert.ca_managed("etcd CA")
    assert ret["result"] is False and ret["changes"] == {}
    assert ret["comment"] == ("ca_provided is true, but {0}/ca.key and {0}/ca.crt is missing: put "
                              "your CA there".format(tmp_path / "ca"))
    assert not (tmp_path / "ca").exists()
    mine.send.assert_not_called()


def test_ca_managed_never_makes_a_key_for_an_old_certificate(tmp_path, testmode):
    with mock.patch.dict(etcd_cert.__opts__, {"test": False}):
        etcd_cert.ca_managed("etcd CA")
    (tmp_path / "ca" / "peer-ca.key").unlink()
    before = (tmp_path / "ca" / "peer-ca.crt").read_text()
    ret = etcd_cert.ca_managed("etcd CA")
    assert ret["result"] is False and ret["changes"] == {}
    assert ret["comment"].startswith("{0}/peer-ca.crt exists without {0}/peer-ca.key: the formula never "
                                     "makes a new CA key".format(tmp_path / "ca"))
    assert not (tmp_path / "ca" / "peer-ca.key").exists()
    assert (tmp_path / "ca" / "peer-ca.crt").read_text() == before


def test_ca_managed_names_both_files_of_a_pair_that_does_not_match(tmp_path, testmode):
    with mock.patch.dict(etcd_cert.__opts__, {"test": False}):
        etcd_cert.ca_managed("etcd CA")
    ca_dir = tmp_path / "ca"
    (ca_dir / "ca.key").write_text(etcd_pki.key_pem(etcd_pki.new_key()))
    before = ca_files(ca_dir)
    ret = etcd_cert.ca_managed("etcd CA")
    assert ret["result"] is False
    assert ret["comment"].startswith("the CA key {0}/ca.key does not match the CA certificate "
                                     "{0}/ca.crt".format(ca_dir))
    assert ca_files(ca_dir) == before


# -- expiry for prometheus ------------------------------------------------------------------------


def test_each_certificates_not_after_is_exported_for_node_exporter(dir_, etcd_pillar, tmp_path, testmode):
    with mock.patch.dict(etcd_cert.__opts__, {"test": False}):
        member(dir_, usages=("peer", "server"))
    textfiles = tmp_path / "textfiles"
    textfiles.mkdir()
    etcd_pillar["monitoring"] = {"textfile_dir": str(textfiles)}
    certs = [{"certificate": u, "cert": str(dir_ / (u + ".crt"))} for u in ("peer", "server")]
    ret = etcd_cert.expiry_exported("etcd_formula_certificates_member.prom", certs, "etcd")
    assert ret["changes"] == {"exported": ["peer", "server"]}
    path = textfiles / "etcd_formula_certificates_member.prom"
    if testmode:
        assert ret["result"] is None and not path.exists()
        return
    text = path.read_text()
    for usage in ("peer", "server"):
        expected = 'etcd_formula_certificate_expiry_timestamp_seconds{{certificate="{}",etcd_cluster="etcd",minion="h1"}} {!r}'.format(
            usage, float(load_cert(dir_, usage).not_valid_after_utc.timestamp()))
        assert expected in text.splitlines()
    again = etcd_cert.expiry_exported("etcd_formula_certificates_member.prom", certs, "etcd")
    assert again["result"] is True and again["changes"] == {}


def test_without_node_exporters_directory_nothing_is_exported_and_nothing_fails(dir_, etcd_pillar, tmp_path):
    member(dir_, usages=("client",))
    etcd_pillar["monitoring"] = {"textfile_dir": str(tmp_path / "absent")}
    ret = etcd_cert.expiry_exported("x.prom", [{"certificate": "client", "cert": str(dir_ / "client.crt")}], "etcd")
    assert ret["result"] is True and ret["changes"] == {} and "nothing exported" in ret["comment"]


def test_a_missing_certificate_fails_the_export_naming_it(dir_, tmp_path):
    ret = etcd_cert.expiry_exported("x.prom", [{"certificate": "client", "cert": str(tmp_path / "none.crt")}], "etcd")
    assert ret["result"] is False and ret["comment"].startswith("{}: no certificate to export".format(tmp_path / "none.crt"))


def test_a_dry_run_before_the_certificates_exist_predicts_the_export(dir_):
    with in_test_mode():
        ret = etcd_cert.expiry_exported("x.prom", [{"certificate": "peer", "cert": str(dir_ / "peer.crt")}], "etcd")
    assert ret["result"] is None and ret["changes"] == {"exported": ["peer"]}
