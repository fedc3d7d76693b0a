"""
A real etcd cluster on loopback for functional tests: a throw-away CA, peer/server/client
certificates, and etcd processes with mutual TLS on random free 127.0.0.1 ports.

    with LocalCluster(tmp_path, size=3) as cluster:
        cluster.endpoints            # client URLs of the voters it started
        cluster.tls                  # {"ca_file", "cert_file", "key_file"} for the client
        new = cluster.new_member()   # certificates and ports for one more member
        cluster.start(new, initial_cluster="...", state="existing")
        cluster.stop(new)            # SIGTERM, then SIGKILL, by PID

The binary is ``$ETCD_BIN`` or /usr/bin/etcd; the flags used exist in etcd 3.4 and 3.5.
"""

import datetime
import ipaddress
import os
import signal
import socket
import subprocess
import time

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ETCD_BIN = os.environ.get("ETCD_BIN", "/usr/bin/etcd")
LOOPBACK = "127.0.0.1"


def etcd_version(binary=ETCD_BIN):
    """(major, minor, patch) of the etcd binary."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith("etcd Version:"):
            return tuple(int(part) for part in line.split(":", 1)[1].strip().split(".")[:3])
    raise RuntimeError("cannot read the version of {}: {}".format(binary, out))


def free_port(address=LOOPBACK, port=0):
    """A TCP port free on ``address`` (``port`` itself if given and free), else OSError."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, port))
        return sock.getsockname()[1]


# the /24 of 127/8 the members' addresses are in: test/check runs the functional tier of
# several Salt lines at once, each in its own
LOOPBACK_NET = os.environ.get("ETCD_TEST_LOOPBACK_NET", "127.0.0")


def member_address(seq):
    """Member ``seq``'s own loopback address: all of 127/8 is local on Linux, so members
    can share the client and peer ports, as on real hosts and in the pillar."""
    return "{}.{}".format(LOOPBACK_NET, 10 + seq)


class _CA:
    def __init__(self, directory):
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "etcd-test-ca")])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True,
                    content_commitment=False, key_encipherment=False, data_encipherment=False,
                    key_agreement=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.cert_file = self._write("ca.crt", self.cert.public_bytes(serialization.Encoding.PEM))

    def _write(self, name, data):
        path = os.path.join(self.directory, name)
        with open(path, "wb") as handle:
            handle.write(data)
        os.chmod(path, 0o600)
        return path

    def issue(self, stem, common_name, usages, ip_sans=()):
        """Write ``<stem>.crt``/``<stem>.key``; return their paths."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        # common_name None: a subject without CN and a URI SAN, as the formula issues
        # client certificates (etcd's gateway refuses one with a CN once auth is on)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
                            if common_name else [])
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        )
        if not common_name:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier("urn:etcd-formula:test:" + stem)]), critical=True)
        if ip_sans:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_sans]
                    + [x509.DNSName("localhost")]
                ),
                critical=False,
            )
        cert = builder.sign(self.key, hashes.SHA256())
        cert_file = self._write(stem + ".crt", cert.public_bytes(serialization.Encoding.PEM))
        key_file = self._write(
            stem + ".key",
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        return cert_file, key_file


class LocalMember:
    def __init__(self, name, seq, directory, ca, client_port, peer_port):
        self.name = name
        self.seq = seq
        self.address = member_address(seq)
        self.directory = directory
        self.data_dir = os.path.join(directory, "data")
        free_port(self.address, client_port)
        free_port(self.address, peer_port)
        self.client_url = "https://{}:{}".format(self.address, client_port)
        self.peer_url = "https://{}:{}".format(self.address, peer_port)
        both = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)
        self.server_cert, self.server_key = ca.issue(
            os.path.join(name, "server"), name, both, ip_sans=(self.address,)
        )
        # peers dial each other: the peer cert is a server and a client cert
        self.peer_cert, self.peer_key = ca.issue(
            os.path.join(name, "peer"), name, both, ip_sans=(self.address,)
        )
        self.process = None
        self.log_file = os.path.join(directory, "etcd.log")

    @property
    def pid(self):
        return self.process.pid if self.process else None

    def running(self):
        return self.process is not None and self.process.poll() is None


class LocalCluster:
    """A TLS etcd cluster of ``size`` voters under ``root``; stops every process it started."""

    def __init__(self, root, size=3, name="test", etcd_bin=ETCD_BIN):
        self.root = str(root)
        self.size = size
        self.name = name
        self.etcd_bin = etcd_bin
        self.token = "{}-{}".format(name, os.getpid())
        os.makedirs(self.root, exist_ok=True)
        self.ca = _CA(self.root)
        self.client_cert, self.client_key = self.ca.issue(
            "client", "root", (ExtendedKeyUsageOID.CLIENT_AUTH,)
        )
        # the formula's kind of client certificate: no CN (needed once auth is on)
        self.client_cert_no_cn, self.client_key_no_cn = self.ca.issue(
            "client-no-cn", None, (ExtendedKeyUsageOID.CLIENT_AUTH,))
        self.members = []
        self._seq = 0
        self.client_port = free_port()
        self.peer_port = free_port()

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self):
        try:
            self.bootstrap()
        except BaseException:
            self.stop_all()
            raise
        return self

    def __exit__(self, *exc_info):
        self.stop_all()

    def bootstrap(self, timeout=30):
        initial = [self.new_member() for _ in range(self.size)]
        initial_cluster = self.initial_cluster(initial)
        for member in initial:
            self.start(member, initial_cluster, state="new")
        self.wait_healthy(initial, timeout)

    def new_member(self):
        self._seq += 1
        name = "{}-{}".format(self.name, self._seq)
        directory = os.path.join(self.root, name)
        os.makedirs(directory, exist_ok=True)
        member = LocalMember(
            name, self._seq, directory, self.ca, self.client_port, self.peer_port
        )
        self.members.append(member)
        return member

    @staticmethod
    def initial_cluster(members):
        return ",".join("{}={}".format(m.name, m.peer_url) for m in members)

    def start(self, member, initial_cluster, state="existing"):
        args = [
            self.etcd_bin,
            "--name", member.name,
            "--data-dir", member.data_dir,
            "--listen-client-urls", member.client_url,
            "--advertise-client-urls", member.client_url,
            "--listen-peer-urls", member.peer_url,
            "--initial-advertise-peer-urls", member.peer_url,
            "--initial-cluster", initial_cluster,
            "--initial-cluster-state", state,
            "--initial-cluster-token", self.token,
            "--cert-file", member.server_cert,
            "--key-file", member.server_key,
            "--trusted-ca-file", self.ca.cert_file,
            "--client-cert-auth",
            "--peer-cert-file", member.peer_cert,
            "--peer-key-file", member.peer_key,
            "--peer-trusted-ca-file", self.ca.cert_file,
            "--peer-client-cert-auth",
            "--logger", "zap",
            "--log-outputs", "stderr",
        ]
        # etcd reads ETCD_* variables as flags: keep the caller's out of the test cluster
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        with open(member.log_file, "ab") as log:
            member.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        return member

    def stop(self, member, timeout=10):
        """Stop ``member``'s etcd by its PID (SIGTERM, SIGKILL after ``timeout``)."""
        process = member.process
        if process is None or process.poll() is not None:
            return
        try:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

    def stop_all(self):
        for member in self.members:
            self.stop(member)

    # -- what tests ask ------------------------------------------------------------------------

    @property
    def tls(self):
        return {
            "ca_file": self.ca.cert_file,
            "cert_file": self.client_cert,
            "key_file": self.client_key,
        }

    def pillar(self, members=None):
        """Pillar ``etcd`` describing this cluster (``members``: default all), minion IDs
        ``m<seq>``, as the formula's pillar describes a real one."""
        return {
            "clusters": {
                self.name: {
                    "members": {
                        "m{}".format(m.seq): {"seq": m.seq, "address": m.address}
                        for m in (self.members if members is None else members)
                    },
                    "client_port": self.client_port,
                    "peer_port": self.peer_port,
                }
            }
        }

    @property
    def endpoints(self):
        return [m.client_url for m in self.members if m.running()]

    def member_named(self, name):
        return next(m for m in self.members if m.name == name)

    def _session(self):
        session = requests.Session()
        session.trust_env = False
        session.verify = self.ca.cert_file
        session.cert = (self.client_cert, self.client_key)
        return session

    def is_healthy(self, member):
        """What etcd's own /health says of ``member`` (independent of the code under test)."""
        try:
            answer = self._session().get(member.client_url + "/health", timeout=2)
            return answer.status_code == 200 and answer.json().get("health") == "true"
        except (requests.RequestException, ValueError):
            return False

    def wait_healthy(self, members, timeout=30):
        give_up_at = time.monotonic() + timeout
        waiting = list(members)
        while waiting:
            for member in list(waiting):
                if not member.running():
                    raise RuntimeError(
                        "etcd {} exited: see {}\n{}".format(member.name, member.log_file, self.log_tail(member))
                    )
                if self.is_healthy(member):
                    waiting.remove(member)
            if waiting and time.monotonic() > give_up_at:
                raise RuntimeError(
                    "etcd members not healthy after {} s: {}".format(
                        timeout, ", ".join(m.name for m in waiting)
                    )
                )
            if waiting:
                time.sleep(0.1)

    def etcdctl_env(self):
        return {
            "ETCDCTL_API": "3",
            "ETCDCTL_ENDPOINTS": ",".join(self.endpoints),
            "ETCDCTL_CACERT": self.ca.cert_file,
            "ETCDCTL_CERT": self.client_cert,
            "ETCDCTL_KEY": self.client_key,
        }

    @staticmethod
    def log_tail(member, lines=20):
        try:
            with open(member.log_file, encoding="utf-8", errors="replace") as handle:
                return "".join(handle.readlines()[-lines:])
        except OSError:
            return ""
