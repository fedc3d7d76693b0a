"""
etcd_cert and etcd_ca for real, masterless, with Salt's own loader on the checkout's
_utils/_modules/_states: this machine is the CA server (``master``: ``ca_managed`` makes
real CAs, ``etcd_ca.sign`` signs real requests) and member ``h1``, whose
``certificates_managed`` makes real keys and installs what the CA signed. Only the master's
two parts are played here, by hand: its reactor (the formula's own etcd/reactor/sign.sls,
rendered by Salt for the event h1 fires, and its ``local.etcd_ca.sign`` run on the CA
server) and its mine (h1 reads the CA server's local mine).
"""

import grp
import os
import pwd
import shutil
import stat
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from local_salt import SaltLoader

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
REACTOR = os.path.join(REPO, "etcd", "reactor", "sign.sls")
ME = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
SPKI = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo


def etcd_pillar(root):
    return {"pki": {"ca_server": "master", "ca_dir": os.path.join(root, "ca")},
            "clusters": {"etcd": {"members": {"h1": {"seq": 1, "address": "10.77.0.11"}},
                                  "clients": {"patroni": {"target": ["db1"]}}}}}


class Master:
    """What the salt-master does between h1 and the CA server: the reactor and the mine."""

    def __init__(self, ca):
        self.ca, self.events = ca, []

    def reactor(self, requester):
        def fire_master(data, tag, preload=None):
            self.events.append((tag, data))
            rendered = self.ca.modules["slsutil.renderer"](
                path=REACTOR, default_renderer="jinja|yaml",
                data={"id": requester, "tag": tag, "data": data})
            for step in rendered.values():
                for function, args in step.items():
                    assert function == "local.etcd_ca.sign"
                    args = {k: v for item in args for k, v in item.items()}
                    assert args["tgt"] == self.ca.opts["id"]
                    kwargs = {k: v for item in args["args"] for k, v in item.items()}
                    self.ca.modules["etcd_ca.sign"](**kwargs)
            return True

        return fire_master

    def mine_get(self, tgt, fun, tgt_type="glob", **kwargs):
        return self.ca.modules["mine.get"](tgt, fun, tgt_type=tgt_type)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cert"))


@pytest.fixture(scope="module")
def ca(root):
    """The CA server, its CAs made by etcd_cert.ca_managed through state.single."""
    loader = SaltLoader("master", etcd_pillar(root), os.path.join(root, "cache-master"))
    (ret,) = loader.modules["state.single"]("etcd_cert.ca_managed", name="etcd CA").values()
    assert ret["result"] is True and set(ret["changes"]) == {"client", "peer"}, ret
    return loader


@pytest.fixture(scope="module")
def master(ca):
    return Master(ca)


@pytest.fixture(scope="module")
def h1(root, ca, master):
    """Member h1, whose events and mine reads reach the CA server through ``master``."""
    loader = SaltLoader("h1", etcd_pillar(root), os.path.join(root, "cache-h1"))
    loader.modules["event.fire_master"] = master.reactor("h1")
    loader.modules["mine.get"] = master.mine_get
    return loader


def pki(root, *parts):
    return os.path.join(root, "h1-pki", *parts)


def ca_file(root, which="client"):
    return os.path.join(root, "ca", "ca.crt" if which == "client" else "peer-ca.crt")


def certificates(root, usages=("peer", "server", "client"), prefix=""):
    return [{"usage": u, "cert": pki(root, prefix + u + ".crt"), "key": pki(root, prefix + u + ".key"),
             "user": ME[0], "group": ME[1], **({"ca_file": ca_file(root, "peer")} if u == "peer" else {})}
            for u in usages]


def managed_args(root, **kwargs):
    args = dict(name="etcd member etcd-1", ca_server="master", ca_file=ca_file(root),
                certificates=certificates(root), timeout=10)
    args.update(kwargs)
    return args


def load(path):
    with open(path, "rb") as handle:
        return x509.load_pem_x509_certificate(handle.read())


def key_of(path):
    with open(path, "rb") as handle:
        return serialization.load_pem_private_key(handle.read(), None)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_cas_are_made_once_with_their_keys_private_and_published(root, ca):
    before = {n: open(os.path.join(root, "ca", n)).read() for n in ("ca.crt", "peer-ca.crt")}
    (again,) = ca.modules["state.single"]("etcd_cert.ca_managed", name="etcd CA").values()
    assert again["result"] is True and again["changes"] == {}, again
    for which, (key_name, cert_name) in (("client", ("ca.key", "ca.crt")), ("peer", ("peer-ca.key", "peer-ca.crt"))):
        assert mode(os.path.join(root, "ca", key_name)) == 0o600
        assert open(os.path.join(root, "ca", cert_name)).read() == before[cert_name]
        assert load(os.path.join(root, "ca", cert_name)).extensions.get_extension_for_class(
            x509.BasicConstraints).value.ca
        mine = {"client": "etcd_ca_cert", "peer": "etcd_peer_ca_cert"}[which]
        assert ca.modules["mine.get"]("master", mine) == {"master": before[cert_name]}


# The CA server's own states first: Salt's loader contexts of two minions in one process
# (the CA server's and h1's, below) are not kept apart once h1's functions ran.



def test_the_ca_servers_own_admin_certificate_is_signed_there(root, ca):
    args = dict(name="admin", ca_server="master", ca_file=ca_file(root), certificates=[
        {"usage": "admin", "cert": os.path.join(root, "admin", "client.crt"),
         "key": os.path.join(root, "admin", "client.key"), "user": ME[0], "group": ME[1]}])
    (ret,) = ca.modules["state.single"]("etcd_cert.certificates_managed", **args).values()
    assert ret["result"] is True, ret["comment"]
    cert = load(os.path.join(root, "admin", "client.crt"))
    cert.verify_directly_issued_by(load(ca_file(root)))
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier) == ["urn:etcd-formula:admin:master"]
    (again,) = ca.modules["state.single"]("etcd_cert.certificates_managed", **args).values()
    assert again["result"] is True and again["changes"] == {}, again


def test_the_ca_bundle_is_written_from_the_mine(root, ca):
    bundle = os.path.join(root, "bundle", "peer-ca.crt")
    os.makedirs(os.path.dirname(bundle))
    args = dict(name=bundle, ca_server="master", mine_function="etcd_peer_ca_cert", user=ME[0], group=ME[1])
    (ret,) = ca.modules["state.single"]("etcd_cert.ca_bundle_managed", **args).values()
    assert ret["result"] is True and ret["changes"], ret
    assert open(bundle).read() == open(ca_file(root, "peer")).read()
    (again,) = ca.modules["state.single"]("etcd_cert.ca_bundle_managed", **args).values()
    assert again["result"] is True and again["changes"] == {}, again


def test_test_mode_predicts_the_certificates_and_writes_and_asks_nothing(root, ca):
    member = SaltLoader("h1", etcd_pillar(root), os.path.join(root, "cache-h1-test"))
    (ret,) = member.modules["state.single"]("etcd_cert.certificates_managed", test=True,
                                            **managed_args(root, certificates=certificates(root, prefix="t-"))).values()
    assert ret["result"] is None, ret
    assert set(ret["changes"]["issued"]) == {pki(root, "t-" + u + ".crt") for u in ("peer", "server", "client")}
    assert not os.path.exists(pki(root))
    assert not os.path.exists(os.path.join(root, "ca", "issued", "h1.json"))


def test_masterless_without_a_reactor_fails_saying_the_request_was_not_sent(root, ca):
    member = SaltLoader("h1", etcd_pillar(root), os.path.join(root, "cache-h1-alone"))
    (ret,) = member.modules["state.single"]("etcd_cert.certificates_managed",
                                            **managed_args(root, certificates=certificates(root, prefix="x-"))).values()
    assert ret["result"] is False
    assert ret["comment"].startswith(
        "the request to the CA server could not be sent (event.fire_master) [tried: peer ")
    assert not os.path.exists(pki(root, "x-peer.key"))


def test_the_member_gets_real_certificates_from_the_ca_in_one_request(root, ca, h1, master):
    ret = h1.states["etcd_cert.certificates_managed"](**managed_args(root))
    assert ret["result"] is True, ret["comment"]
    assert ret["comment"] == "3 certificate(s) issued by master, 0 file(s) fixed"
    ((tag, data),) = master.events
    assert tag == "etcd/cert/request" and [r["usage"] for r in data["requests"]] == ["peer", "server", "client"]
    assert "PRIVATE KEY" not in str(data)
    client_ca, peer_ca = load(ca_file(root)), load(ca_file(root, "peer"))
    for usage, issuer in (("peer", peer_ca), ("server", client_ca), ("client", client_ca)):
        cert = load(pki(root, usage + ".crt"))
        cert.verify_directly_issued_by(issuer)
        assert cert.public_key().public_bytes(*SPKI) == key_of(pki(root, usage + ".key")).public_key().public_bytes(*SPKI)
        assert mode(pki(root, usage + ".key")) == 0o600 and mode(pki(root, usage + ".crt")) == 0o644
    names = load(pki(root, "peer.crt")).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(names.get_values_for_type(x509.DNSName)) == ["etcd-1", "h1"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["10.77.0.11"]
    client = load(pki(root, "client.crt"))
    assert list(client.subject) == []
    assert client.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier) == ["urn:etcd-formula:member:etcd:h1"]
    # the CA server keeps what it issued
    issued = ca.modules["etcd_ca.certificates"]()["h1"]
    assert {u: issued[u] for u in issued} == {u: open(pki(root, u + ".crt")).read() for u in ("peer", "server", "client")}


def test_a_second_run_asks_nothing_and_changes_nothing(root, h1, master):
    h1.states["etcd_cert.certificates_managed"](**managed_args(root))
    events = len(master.events)
    serials = {u: load(pki(root, u + ".crt")).serial_number for u in ("peer", "server", "client")}
    ret = h1.states["etcd_cert.certificates_managed"](**managed_args(root))
    assert ret["result"] is True and ret["changes"] == {}, ret
    assert len(master.events) == events
    assert serials == {u: load(pki(root, u + ".crt")).serial_number for u in ("peer", "server", "client")}


def test_a_certificate_with_fewer_days_left_than_wanted_is_renewed(root, h1):
    # a CA server issuing for 20 days only (same CA, same mine), then the usual one
    short_pillar = etcd_pillar(root)
    short_pillar["pki"]["days_valid"] = 20
    short_ca = SaltLoader("master", short_pillar, os.path.join(root, "cache-master"))
    short = Master(short_ca)
    member = SaltLoader("h1", etcd_pillar(root), os.path.join(root, "cache-h1-short"))
    member.modules["event.fire_master"] = short.reactor("h1")
    member.modules["mine.get"] = short.mine_get
    args = managed_args(root, certificates=certificates(root, ("server",), prefix="r-"), days_remaining=10)
    first = member.states["etcd_cert.certificates_managed"](**args)
    assert first["result"] is True, first
    before = load(pki(root, "r-server.crt"))
    ret = h1.states["etcd_cert.certificates_managed"](**dict(args, days_remaining=30))
    (because,) = ret["changes"]["issued"][pki(root, "r-server.crt")]
    assert because.endswith("fewer than 30 days left"), ret
    cert = load(pki(root, "r-server.crt"))
    assert ret["result"] is True and cert.serial_number != before.serial_number
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days >= 825
    assert cert.public_key().public_bytes(*SPKI) == key_of(pki(root, "r-server.key")).public_key().public_bytes(*SPKI)


def test_a_mode_changed_by_hand_is_fixed_without_a_new_certificate(root, h1, master):
    h1.states["etcd_cert.certificates_managed"](**managed_args(root))
    os.chmod(pki(root, "client.key"), 0o640)
    serial = load(pki(root, "client.crt")).serial_number
    events = len(master.events)
    ret = h1.states["etcd_cert.certificates_managed"](**managed_args(root))
    assert ret["result"] is True and ret["changes"] == {"attributes": [pki(root, "client.key")]}, ret
    assert mode(pki(root, "client.key")) == 0o600
    assert load(pki(root, "client.crt")).serial_number == serial and len(master.events) == events


def test_a_usage_the_pillar_does_not_give_fails_before_asking(root, h1, master):
    events = len(master.events)
    ret = h1.states["etcd_cert.certificates_managed"](
        **managed_args(root, certificates=certificates(root, ("patroni",))))
    assert ret["result"] is False and ret["comment"].startswith("h1 is named by no patroni client")
    assert len(master.events) == events and not os.path.exists(pki(root, "patroni.key"))


def test_the_ca_server_refuses_a_non_member_a_peer_certificate(root, ca):
    key = ca.utils["etcd_pki.new_key"]()
    ret = ca.modules["etcd_ca.sign"]("h9", [{"usage": "peer", "csr": ca.utils["etcd_pki.csr_pem"](key)}], "r9")
    assert ret == {"request_id": "r9", "issued": [], "refused": {
        "peer": "h9 is a member of no etcd cluster in pillar: no peer certificate for it"}}
    assert ca.modules["mine.get"]("master", "etcd_issued_h9")["master"]["refused"] == ret["refused"]


def test_the_reactor_ignores_a_request_naming_a_target_expression(ca):
    rendered = ca.modules["slsutil.renderer"](
        path=REACTOR, default_renderer="jinja|yaml",
        data={"id": "h1", "tag": "etcd/cert/request", "data": {"ca_server": "*", "requests": []}})
    assert not rendered


# -- a CA of your own (ca_provided: true), last: its CA server publishes other CAs in the
# mine that the tests above read

def openssl_ca(directory, prefix, subject):
    """A CA made as its owner would, with openssl (RSA, not the formula's EC default)."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
                    "-keyout", os.path.join(directory, prefix + "ca.key"),
                    "-out", os.path.join(directory, prefix + "ca.crt"), "-subj", subject,
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
                   check=True, capture_output=True)


def test_a_brought_ca_is_only_checked_and_signs_the_members_certificates(root):
    own = os.path.join(root, "own-ca")
    os.makedirs(own, mode=0o700)
    openssl_ca(own, "", "/O=Example/CN=Example etcd clients CA")
    openssl_ca(own, "peer-", "/O=Example/CN=Example etcd peers CA")
    files = {n: open(os.path.join(own, n), "rb").read()
             for n in ("ca.key", "ca.crt", "peer-ca.key", "peer-ca.crt")}
    pillar = etcd_pillar(root)
    pillar["pki"].update(ca_dir=own, ca_provided=True)
    server = SaltLoader("master", pillar, os.path.join(root, "cache-own-ca"))
    (ret,) = server.modules["state.single"]("etcd_cert.ca_managed", name="etcd CA").values()
    assert ret["result"] is True, ret
    assert {n: open(os.path.join(own, n), "rb").read() for n in files} == files
    assert server.modules["mine.get"]("master", "etcd_peer_ca_cert") == {
        "master": files["peer-ca.crt"].decode()}
    # it signs what the pillar gives h1, each usage with its CA
    keys = {u: server.utils["etcd_pki.new_key"]() for u in ("peer", "client")}
    answer = server.modules["etcd_ca.sign"]("h1", [
        {"usage": u, "csr": server.utils["etcd_pki.csr_pem"](k)} for u, k in keys.items()], "own")
    assert answer["issued"] == ["client", "peer"] and answer["refused"] == {}, answer
    issued = server.modules["mine.get"]("master", "etcd_issued_h1")["master"]["certificates"]
    for usage, ca_name in (("peer", "peer-ca.crt"), ("client", "ca.crt")):
        cert = x509.load_pem_x509_certificate(issued[usage].encode())
        cert.verify_directly_issued_by(load(os.path.join(own, ca_name)))
        assert cert.public_key().public_bytes(*SPKI) == keys[usage].public_key().public_bytes(*SPKI)


@pytest.mark.parametrize("broken, named", [
    ("missing", "ca_provided is true, but {own}/peer-ca.key is missing: put your CA there"),
    ("mismatched", "the CA key {own}/peer-ca.key does not match the CA certificate "
                   "{own}/peer-ca.crt"),
])
def test_a_brought_ca_that_is_incomplete_fails_naming_the_files(root, broken, named):
    own = os.path.join(root, "own-ca-" + broken)
    os.makedirs(own, mode=0o700)
    openssl_ca(own, "", "/CN=clients CA")
    openssl_ca(own, "peer-", "/CN=peers CA")
    if broken == "missing":
        os.remove(os.path.join(own, "peer-ca.key"))
    else:
        shutil.copy(os.path.join(own, "ca.key"), os.path.join(own, "peer-ca.key"))
    peer = {n: open(os.path.join(own, n), "rb").read() for n in os.listdir(own) if "peer" in n}
    pillar = etcd_pillar(root)
    pillar["pki"].update(ca_dir=own, ca_provided=True)
    server = SaltLoader("master", pillar, os.path.join(root, "cache-" + broken))
    (ret,) = server.modules["state.single"]("etcd_cert.ca_managed", name="etcd CA").values()
    assert ret["result"] is False and ret["changes"] == {}, ret
    assert ret["comment"].startswith(named.format(own=own)), ret["comment"]
    # no CA made in its place, nothing of the peers' CA written
    assert {n: open(os.path.join(own, n), "rb").read() for n in os.listdir(own) if "peer" in n} == peer
