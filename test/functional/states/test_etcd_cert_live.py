"""
etcd_cert for real: Salt's own x509_v2 creating keys and certificates, through salt-call on
this machine (masterless). The CA server is this same minion: a ``publish`` module of the
test answers the remote-signing call locally, as the CA minion would through the master.
"""

import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SALT_CALL = os.path.join(os.path.dirname(sys.executable), "salt-call")
MINION = "h1"

# Remote signing without a master: x509.create_certificate(ca_server=...) publishes
# x509.sign_remote_certificate to the CA server; here the CA server is this minion.
LOCAL_PUBLISH = '''
def publish(tgt, fun, arg=None, tgt_type="glob", returner="", timeout=5, via_master=None):
    return {tgt: __salt__[fun](*(arg or []), __pub_id=__opts__["id"])}
'''


class Minion:
    def __init__(self, root):
        self.root = root
        self.pki = os.path.join(root, "member")
        self.ca_dir = os.path.join(root, "ca")
        extra = os.path.join(root, "extra")
        os.makedirs(os.path.join(extra, "_modules"))
        with open(os.path.join(extra, "_modules", "publish.py"), "w") as handle:
            handle.write(LOCAL_PUBLISH)
        os.makedirs(os.path.join(root, "pillar"))
        policy = lambda eku: [  # noqa: E731
            {"minions": "h*"},
            {"signing_private_key": os.path.join(self.ca_dir, "ca.key")},
            {"signing_cert": os.path.join(self.ca_dir, "ca.crt")},
            {"basicConstraints": "critical, CA:false"},
            {"keyUsage": "critical, digitalSignature, keyEncipherment"},
            {"extendedKeyUsage": eku},
        ]
        pillar = {
            "etcd": {"pki": {"ca_server": MINION, "ca_dir": self.ca_dir}},
            "x509_signing_policies": {
                "etcd-peer": policy("serverAuth, clientAuth"),
                "etcd-server": policy("serverAuth, clientAuth"),
                "etcd-client": policy("clientAuth"),
            },
        }
        with open(os.path.join(root, "pillar", "top.sls"), "w") as handle:
            handle.write("base:\n  '*':\n    - etcd\n")
        with open(os.path.join(root, "pillar", "etcd.sls"), "w") as handle:
            yaml.safe_dump(pillar, handle)
        self.config = os.path.join(root, "conf")
        os.makedirs(self.config)
        with open(os.path.join(self.config, "minion"), "w") as handle:
            yaml.safe_dump(
                {
                    "id": MINION,
                    "root_dir": os.path.join(root, "salt"),
                    "file_client": "local",
                    "file_roots": {"base": [REPO, extra]},
                    "pillar_roots": {"base": [os.path.join(root, "pillar")]},
                    "log_file": os.path.join(root, "minion.log"),
                },
                handle,
            )
        self.call("saltutil.sync_all")

    def call(self, *args):
        proc = subprocess.run(
            [SALT_CALL, "-c", self.config, "--local", "--out=json", *args],
            capture_output=True, text=True, timeout=120, check=False,
        )
        assert proc.stdout, proc.stderr
        return json.loads(proc.stdout)["local"]

    def state(self, function, test=False, **kwargs):
        args = ["state.single", function] + ["{}={}".format(k, v) for k, v in kwargs.items()]
        if test:
            args.append("test=True")
        result = self.call(*args)
        return next(iter(result.values()))

    def peer(self, test=False, **kwargs):
        args = dict(
            name=os.path.join(self.pki, "peer.crt"), key=os.path.join(self.pki, "peer.key"),
            usage="peer", ca_server=MINION, signing_policy="etcd-peer", common_name="etcd-1",
            address="10.77.0.11", ca_file=os.path.join(self.ca_dir, "ca.crt"),
        )
        args.update(kwargs)
        return self.state("etcd_cert.managed", test=test, **args)


@pytest.fixture(scope="module")
def minion(tmp_path_factory):
    minion = Minion(str(tmp_path_factory.mktemp("cert")))
    os.makedirs(minion.pki)
    ret = minion.state("etcd_cert.ca_managed", name="etcd CA")
    assert ret["result"] is True, ret
    return minion


def load(path):
    with open(path, "rb") as handle:
        return x509.load_pem_x509_certificate(handle.read())


def ext(cert, cls):
    return cert.extensions.get_extension_for_class(cls).value


def test_ca_is_created_once_and_published_in_the_mine(minion):
    ca = load(os.path.join(minion.ca_dir, "ca.crt"))
    assert ext(ca, x509.BasicConstraints).ca is True
    assert stat.S_IMODE(os.stat(os.path.join(minion.ca_dir, "ca.key")).st_mode) == 0o600
    again = minion.state("etcd_cert.ca_managed", name="etcd CA")
    assert again["result"] is True and again["changes"] == {}
    assert load(os.path.join(minion.ca_dir, "ca.crt")).serial_number == ca.serial_number
    published = minion.call("mine.get", MINION, "etcd_ca_cert")[MINION]
    with open(os.path.join(minion.ca_dir, "ca.crt")) as handle:
        assert published == handle.read()


def test_test_mode_predicts_key_and_certificate_and_writes_nothing(minion):
    ret = minion.peer(test=True, name=os.path.join(minion.pki, "t.crt"), key=os.path.join(minion.pki, "t.key"))
    assert ret["result"] is None
    assert set(ret["changes"]) == {"key", "certificate"}
    assert not os.path.exists(os.path.join(minion.pki, "t.crt"))
    assert not os.path.exists(os.path.join(minion.pki, "t.key"))


def test_peer_certificate_is_signed_by_the_ca_for_both_directions(minion):
    ret = minion.peer()
    assert ret["result"] is True and set(ret["changes"]) == {"key", "certificate"}, ret
    cert = load(os.path.join(minion.pki, "peer.crt"))
    ca = load(os.path.join(minion.ca_dir, "ca.crt"))
    cert.verify_directly_issued_by(ca)
    usages = set(ext(cert, x509.ExtendedKeyUsage))
    assert usages == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    sans = ext(cert, x509.SubjectAlternativeName)
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} == {"10.77.0.11", "127.0.0.1"}
    assert {MINION, "localhost"} <= set(sans.get_values_for_type(x509.DNSName))
    key_mode = stat.S_IMODE(os.stat(os.path.join(minion.pki, "peer.key")).st_mode)
    assert key_mode == 0o600


def test_second_run_changes_nothing(minion):
    minion.peer()
    before = load(os.path.join(minion.pki, "peer.crt")).serial_number
    ret = minion.peer()
    assert ret["result"] is True and ret["changes"] == {}, ret
    assert load(os.path.join(minion.pki, "peer.crt")).serial_number == before


def test_certificate_is_renewed_when_fewer_days_than_wanted_remain(minion):
    paths = dict(name=os.path.join(minion.pki, "short.crt"), key=os.path.join(minion.pki, "short.key"))
    assert minion.peer(days_valid=20, days_remaining=10, **paths)["result"] is True
    with open(paths["key"]) as handle:
        key_before = handle.read()
    before = load(paths["name"]).serial_number
    # 20 days issued, 30 wanted left: renew now
    ret = minion.peer(days_valid=60, days_remaining=30, **paths)
    assert ret["result"] is True and "certificate" in ret["changes"], ret
    assert load(paths["name"]).serial_number != before
    with open(paths["key"]) as handle:
        assert handle.read() == key_before


def test_client_certificate_is_for_clients_only(minion):
    ret = minion.peer(
        name=os.path.join(minion.pki, "client.crt"), key=os.path.join(minion.pki, "client.key"),
        usage="client", signing_policy="etcd-client", common_name="etcd-1-client",
    )
    assert ret["result"] is True, ret
    cert = load(os.path.join(minion.pki, "client.crt"))
    assert set(ext(cert, x509.ExtendedKeyUsage)) == {ExtendedKeyUsageOID.CLIENT_AUTH}


def test_ca_bundle_is_written_from_the_mine(minion):
    bundle = os.path.join(minion.pki, "ca.crt")
    ret = minion.state("etcd_cert.ca_bundle_managed", name=bundle, ca_server=MINION)
    assert ret["result"] is True and ret["changes"], ret
    with open(bundle) as handle, open(os.path.join(minion.ca_dir, "ca.crt")) as ca:
        assert handle.read() == ca.read()
    again = minion.state("etcd_cert.ca_bundle_managed", name=bundle, ca_server=MINION)
    assert again["result"] is True and again["changes"] == {}


def test_unknown_signing_policy_fails_with_the_ca_servers_reason(minion):
    ret = minion.peer(
        name=os.path.join(minion.pki, "x.crt"), key=os.path.join(minion.pki, "x.key"),
        signing_policy="etcd-nope",
    )
    assert ret["result"] is False
    assert "signing_policy must be specified and defined on signing minion" in ret["comment"]
