"""
The formula's certificates: who may hold which (``identity``: pinned by the CA from the
``etcd`` pillar, never chosen by the requester), what a certificate must be to be kept
(``problems``), making keys and requests on the minion, signing on the CA server
(``sign``), the CA itself (``new_ca``, ``ca_problem``), and expiry seen from outside.

Every certificate the formula issues:

======================= ============ ===================================================== =======================
holder / usage          CN           SANs                                                   key usage (EKU)
======================= ============ ===================================================== =======================
member ``peer``         etcd-peer    IP:<address>, DNS:<minion>, DNS:<member name>          serverAuth, clientAuth
member ``server``       <member>     IP:<address>, IP:127.0.0.1, DNS:<minion>, localhost    serverAuth, clientAuth
member ``client``       (none)       URI:urn:etcd-formula:member:<cluster>:<minion>         clientAuth
client ``patroni``      (none)       URI:urn:etcd-formula:patroni:<cluster>:<minion>        clientAuth
client ``vip_manager``  (none)       URI:urn:etcd-formula:vip_manager:<cluster>:<minion>    clientAuth
``admin`` (the master)  (none)       URI:urn:etcd-formula:admin:<CA server>                 clientAuth
======================= ============ ===================================================== =======================

Peers have a CA of their own (``peer-ca.key``/``peer-ca.crt`` beside the clients' CA in
``ca_dir``): the peer port trusts only it, so no client certificate is accepted there. Client certificates carry no CN because etcd's JSON
gateway refuses a certificate with one once authentication is on; who holds one is in its
URI SAN, pinned here.
"""

import datetime
import ipaddress
import os
import re
import socket
import ssl
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.append(_HERE)

import etcd_errors as errors  # noqa: E402
import etcd_settings  # noqa: E402

__virtualname__ = "etcd_pki"

PEER_CN = "etcd-peer"
# The two CAs: (key file, certificate file) in ca_dir, and the usages each one signs.
CAS = {"client": ("ca.key", "ca.crt"), "peer": ("peer-ca.key", "peer-ca.crt")}
# A CA rotation's other CAs, in sub-directories of ca_dir with the same file names: the next
# CA (made first, trusted everywhere before it signs) and the previous one (trusted until
# every leaf is reissued by the new one); etcd_ca.rotation_* moves them.
ROTATION_DIRS = ("next", "previous")
# The trust bundles the CA server publishes (the signing CA first), in ca_dir.
BUNDLES = {"client": "ca-bundle.crt", "peer": "peer-ca-bundle.crt"}
URI_PREFIX = "urn:etcd-formula"
MEMBER_USAGES = ("peer", "server", "client")
CLIENT_KINDS = ("patroni", "vip_manager")
USAGES = MEMBER_USAGES + CLIENT_KINDS + ("admin",)
EKUS = {"peer": ("serverAuth", "clientAuth"), "server": ("serverAuth", "clientAuth")}
# Before a certificate's notBefore: clocks of the CA server and the holder may differ.
BACKDATE = datetime.timedelta(minutes=5)


def __virtual__():
    return __virtualname__


# -- who may hold which certificate ----------------------------------------------------------------


def _exact_minions(spec):
    """The exact minion ids a client spec names, or None when its target is an expression
    (a glob, a grain...): certificates go to exact ids only."""
    target, tgt_type = etcd_settings.client_target(spec)
    if tgt_type != "list" or not isinstance(target, str):
        return None
    return [t.strip() for t in target.split(",") if t.strip()]


def identity(etcd_pillar, minion_id, usage):
    """
    The certificate the CA issues ``minion_id`` for ``usage`` (see the module doc):
    {"usage", "cn" (None: no CN), "sans" (sorted "IP:"/"DNS:"/"URI:" strings), "eku",
    "days_valid"}. EtcdUnsafe when that minion may not hold one: a peer or server
    certificate for a minion that is no member, a client kind's for a minion the pillar
    does not name exactly in that kind's target, the admin one for another than the CA
    server.
    """
    pki = etcd_settings.pki(etcd_pillar)
    if usage not in USAGES:
        raise errors.EtcdUnsafe("usage {!r}: expected one of {}".format(usage, ", ".join(USAGES)))
    eku = list(EKUS.get(usage, ("clientAuth",)))
    # client certificates may live shorter (pki:client_days_valid): renewed at each highstate
    days = pki["client_days_valid"] if usage in CLIENT_KINDS and pki.get("client_days_valid") \
        else pki["days_valid"]
    found = {"usage": usage, "eku": eku, "days_valid": days}
    if usage in MEMBER_USAGES:
        cluster = etcd_settings.cluster_of(etcd_pillar, minion_id)
        if cluster is None:
            raise errors.EtcdUnsafe(
                "{} is a member of no etcd cluster in pillar: no {} certificate for it".format(
                    minion_id, usage))
        member = cluster["members"][minion_id]
        name = etcd_settings.member_name(cluster, minion_id)
        address = str(member["address"]).strip("[]")
        if usage == "peer":
            found.update(cn=PEER_CN, sans=["IP:" + address, "DNS:" + minion_id, "DNS:" + name])
        elif usage == "server":
            found.update(cn=name, sans=["IP:" + address, "IP:127.0.0.1", "DNS:" + minion_id,
                                        "DNS:localhost"])
        else:
            found.update(cn=None, sans=["URI:{}:member:{}:{}".format(
                URI_PREFIX, cluster["name"], minion_id)])
    elif usage in CLIENT_KINDS:
        holders = []
        for cluster in etcd_settings.clusters(etcd_pillar).values():
            for spec in etcd_settings.client_specs(cluster).values():
                if spec["kind"] == usage and minion_id in (_exact_minions(spec) or []):
                    holders.append(cluster["name"])
        if not holders:
            raise errors.EtcdUnsafe(
                "{} is named by no {} client of pillar etcd:clusters (by exact minion id, "
                "tgt_type list): no {} certificate for it".format(minion_id, usage, usage))
        found.update(cn=None, sans=["URI:{}:{}:{}:{}".format(URI_PREFIX, usage, c, minion_id)
                                    for c in sorted(set(holders))])
    else:
        if minion_id != pki["ca_server"]:
            raise errors.EtcdUnsafe("the admin certificate is the CA server's ({}) only, not "
                                    "{}'s".format(pki["ca_server"], minion_id))
        found.update(cn=None, sans=["URI:{}:admin:{}".format(URI_PREFIX, minion_id)])
    found["sans"] = sorted(found["sans"])
    return found


def random_password():
    """A new random password (32 URL-safe characters) for an etcd user."""
    import secrets

    return secrets.token_urlsafe(24)


def external_identity(etcd_pillar, cluster_name, name):
    """The client certificate of ``name``, a client outside Salt (``salt-run
    etcd.credentials``): no CN, ``URI:urn:etcd-formula:external:<cluster>:<name>``,
    clientAuth. Never a usage a minion can ask for: only a job the master publishes to the
    CA server signs one (``etcd_ca.sign_external``)."""
    if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$", name):
        raise errors.EtcdUnsafe("{!r}: expected a client name (letters, digits, '.', '_', "
                                "'-')".format(name))
    if cluster_name not in etcd_settings.clusters(etcd_pillar):
        raise errors.EtcdUnsafe("no cluster {!r} in pillar etcd:clusters".format(cluster_name))
    return {"usage": "external", "eku": ["clientAuth"],
            "days_valid": etcd_settings.pki(etcd_pillar)["days_valid"], "cn": None,
            "sans": ["URI:{}:external:{}:{}".format(URI_PREFIX, cluster_name, name)]}


def issued_mine_name(minion_id):
    """The mine entry under which the CA server answers ``minion_id``'s certificate requests."""
    return "etcd_issued_" + minion_id


def cas():
    """{"client"|"peer": (key file, certificate file)}: the two CAs' files in ca_dir."""
    return dict(CAS)


def rotation_file(ca_dir):
    """The record of the CA rotation under way (etcd_ca.rotation_*): while it exists, the
    bundles hold the rotation's other CAs."""
    return os.path.join(ca_dir, "rotation.json")


def mine_lock_file(ca_dir):
    """The lock the CA server's ``mine.send`` calls take one at a time: the master keeps a
    minion's mine as one record that whichever worker takes a send reads, updates and
    writes back, so two sends of one minion at once can lose one (an answer a requester
    then waits for in vain)."""
    return os.path.join(ca_dir, ".mine.lock")


def bundle_file(ca_dir, which):
    """Where the CA server keeps the trust bundle of CA ``which`` it publishes."""
    return os.path.join(ca_dir, BUNDLES[which])


def bundle(ca_dir, which):
    """The trust bundle of CA ``which`` (PEM): the CA that signs first, then, while a
    rotation is recorded, the CAs it keeps trusted beside it (``next`` before it signs,
    ``previous`` until every leaf is reissued). Missing files are skipped; one CA alone is
    its file's text as it is."""
    name = CAS[which][1]
    texts = []
    rotating = os.path.exists(rotation_file(ca_dir))
    for where in ("",) + (ROTATION_DIRS if rotating else ()):
        try:
            with open(os.path.join(ca_dir, where, name)) as handle:
                texts.append(handle.read())
        except OSError:
            continue
    if len(texts) == 1:
        return texts[0]
    return "".join(t.strip() + "\n" for t in texts)


def ca_label(cert_text):
    """The CA certificates of a PEM bundle as "CN [key id]" labels (what status shows)."""
    x509 = _crypto()[0]
    labels = []
    try:
        found = x509.load_pem_x509_certificates((cert_text or "").encode())
    except ValueError:  # nothing yet (a dry run before the CA exists), or no PEM
        return labels
    for ca in found:
        ski = _extension(ca, x509.SubjectKeyIdentifier)
        cn = ca.subject.get_attributes_for_oid(_crypto()[6].COMMON_NAME)
        labels.append("{} [{}]".format(cn[0].value if cn else "?",
                                       ski.digest.hex()[:8] if ski else "no key id"))
    return labels


def issuer_label(cert_text, ca_text):
    """Which CA of the bundle ``ca_text`` issued the PEM certificate ``cert_text``: its
    label, or "another CA"."""
    x509 = _crypto()[0]
    cert = x509.load_pem_x509_certificate(cert_text.encode())
    try:
        cas = x509.load_pem_x509_certificates((ca_text or "").encode())
    except ValueError:
        return "another CA"
    for ca, label in zip(cas, ca_label(ca_text)):
        if _issued_by(cert, ca):
            return label
    return "another CA"


def ca_of(usage):
    """Which of the two CAs signs ``usage``: ``peer`` for peer certificates, else ``client``."""
    return "peer" if usage == "peer" else "client"


# -- keys, requests, certificates --------------------------------------------------------------------


def _crypto():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    return x509, hashes, serialization, ec, rsa, ExtendedKeyUsageOID, NameOID


CURVES = {256: "SECP256R1", 384: "SECP384R1", 521: "SECP521R1"}


def new_key(algo="ec", size=256):
    """A new private key (made in memory: written only with its certificate)."""
    _, _, _, ec, rsa, _, _ = _crypto()
    if algo == "ec":
        return ec.generate_private_key(getattr(ec, CURVES[int(size)])())
    if algo == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=int(size))
    raise errors.EtcdUnsafe("key_algo {!r}: expected ec or rsa".format(algo))


def key_pem(key):
    _, _, serialization, _, _, _, _ = _crypto()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def load_key(text, algo=None, size=None):
    """The private key in PEM ``text`` (of ``algo`` and ``size`` when given), or None."""
    _, _, serialization, ec, rsa, _, _ = _crypto()
    try:
        key = serialization.load_pem_private_key(text.encode(), None)
    except (AttributeError, ValueError, TypeError):
        return None
    kinds = {"ec": ec.EllipticCurvePrivateKey, "rsa": rsa.RSAPrivateKey}
    if algo is not None and not (isinstance(key, kinds.get(algo, ())) and key.key_size == int(size)):
        return None
    return key


def csr_pem(key):
    """A certificate request of ``key`` (no subject: the CA decides who it is for)."""
    x509, hashes, serialization, _, _, _, _ = _crypto()
    request = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(
        key, hashes.SHA256())
    return request.public_bytes(serialization.Encoding.PEM).decode()


def _names(sans):
    x509 = _crypto()[0]
    names = []
    for san in sans:
        kind, _, value = san.partition(":")
        if kind == "IP":
            names.append(x509.IPAddress(ipaddress.ip_address(value)))
        elif kind == "DNS":
            names.append(x509.DNSName(value))
        elif kind == "URI":
            names.append(x509.UniformResourceIdentifier(value))
    return names


def sign(ca_key, ca_cert, request_pem, ident, now=None):
    """The CA's certificate for the key of ``request_pem`` with the identity ``ident``
    (``identity``'s): nothing of the request but its key is used; its signature proves the
    requester holds the key."""
    x509, hashes, serialization, _, _, eku_oid, name_oid = _crypto()
    if not isinstance(request_pem, str):
        raise errors.EtcdUnsafe("the certificate request: expected PEM text, not {}".format(
            type(request_pem).__name__))
    request = x509.load_pem_x509_csr(request_pem.encode())
    if not request.is_signature_valid:
        raise errors.EtcdUnsafe("the certificate request's signature is not its key's: refused")
    now = now or datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(name_oid.COMMON_NAME, ident["cn"])]
                        if ident["cn"] else [])
    usages = {"serverAuth": eku_oid.SERVER_AUTH, "clientAuth": eku_oid.CLIENT_AUTH}
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(request.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=int(ident["days_valid"])))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True,
                                     content_commitment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usages[u] for u in ident["eku"]]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_names(ident["sans"])),
                       critical=not ident["cn"])
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(request.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
    )
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def _extension(cert, kind):
    x509 = _crypto()[0]
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def load_certificate(pem):
    """The certificate in PEM ``pem`` (bytes or text); ValueError when it is none."""
    x509 = _crypto()[0]
    return x509.load_pem_x509_certificate(pem if isinstance(pem, bytes) else pem.encode())


def cert_identity(cert):
    """{cn, sans, eku} of a certificate, in ``identity``'s terms."""
    x509, _, _, _, _, eku_oid, name_oid = _crypto()
    cns = [a.value for a in cert.subject.get_attributes_for_oid(name_oid.COMMON_NAME)]
    san = _extension(cert, x509.SubjectAlternativeName)
    sans = []
    if san is not None:
        sans += ["IP:{}".format(ip) for ip in san.get_values_for_type(x509.IPAddress)]
        sans += ["DNS:" + d for d in san.get_values_for_type(x509.DNSName)]
        sans += ["URI:" + u for u in san.get_values_for_type(x509.UniformResourceIdentifier)]
    names = {eku_oid.SERVER_AUTH: "serverAuth", eku_oid.CLIENT_AUTH: "clientAuth"}
    eku = _extension(cert, x509.ExtendedKeyUsage)
    return {"cn": cns[0] if cns else None, "sans": sorted(sans),
            "eku": sorted(names.get(u, u.dotted_string) for u in (eku or []))}


def _issued_by(cert, ca):
    try:
        cert.verify_directly_issued_by(ca)
        return True
    except Exception:  # noqa: BLE001 - InvalidSignature, another issuer, another key type
        return False


def issued_by_bundle(cert_text, ca_text):
    """Whether the PEM certificate ``cert_text`` was issued by a CA of the bundle ``ca_text``."""
    x509 = _crypto()[0]
    try:
        cert = x509.load_pem_x509_certificate((cert_text or "").encode())
        cas = x509.load_pem_x509_certificates((ca_text or "").encode())
    except ValueError:
        return False
    return any(_issued_by(cert, ca) for ca in cas)


def problems(cert_text, key, ca_text, ident, days_remaining, now=None):
    """Why the certificate in PEM ``cert_text`` is not the one to keep: not for ``key``, not
    issued by the bundle ``ca_text``'s first CA (the one that signs), fewer than ``days_remaining`` days left, not
    the identity ``ident``. [] when it is."""
    x509, _, serialization, _, _, _, _ = _crypto()
    if not cert_text:
        return ["no certificate yet"]
    try:
        cert = x509.load_pem_x509_certificate(cert_text.encode())
    except ValueError:
        return ["not a PEM certificate"]
    found = []
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key is None or cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        found.append("not for the private key")
    try:
        cas = x509.load_pem_x509_certificates((ca_text or "").encode())
    except ValueError:
        cas = []
    # the bundle's first CA signs; the others are trusted only while a rotation runs (the
    # next CA before it signs, the previous one until every leaf is reissued)
    if not cas or not _issued_by(cert, cas[0]):
        found.append("not issued by the cluster CA" if not any(_issued_by(cert, ca) for ca in cas)
                     else "issued by a CA that no longer signs (a CA rotation)")
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if now >= cert.not_valid_after_utc - datetime.timedelta(days=days_remaining):
        found.append("expires {:%Y-%m-%d}: fewer than {} days left".format(
            cert.not_valid_after_utc, days_remaining))
    have = cert_identity(cert)
    for what in ("cn", "sans"):
        if have[what] != ident[what]:
            found.append("{} {} instead of {}".format(what.upper(), have[what], ident[what]))
    if have["eku"] != sorted(ident["eku"]):
        found.append("usages {} instead of {}".format(have["eku"], sorted(ident["eku"])))
    return found


# -- the CA -------------------------------------------------------------------------------------------


def new_ca(key, common_name, days):
    """A self-signed CA certificate for ``key`` (PEM)."""
    x509, hashes, serialization, _, _, _, name_oid = _crypto()
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(name_oid.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE).not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, key_encipherment=False,
                                     content_commitment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def ca_problem(key_text, cert_text, key_path="ca.key", cert_path="ca.crt"):
    """Why ``key_text`` and ``cert_text`` are no usable CA (naming both files), or None."""
    x509, _, serialization, _, _, _, _ = _crypto()
    key = load_key(key_text or "")
    if key is None:
        return "{} is no private key".format(key_path)
    try:
        cert = x509.load_pem_x509_certificate((cert_text or "").encode())
    except ValueError:
        return "{} is no PEM certificate".format(cert_path)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        return "the CA key {} does not match the CA certificate {}: every signing would fail" \
               "; restore the pair (the formula never makes a new CA key over an old " \
               "certificate)".format(key_path, cert_path)
    constraints = _extension(cert, x509.BasicConstraints)
    if constraints is None or not constraints.ca:
        return "{} is no CA certificate (basicConstraints CA:true)".format(cert_path)
    return None


def load_ca(key_path, cert_path):
    """(CA key, CA certificate) from their files, checked to be a pair."""
    x509 = _crypto()[0]
    try:
        with open(key_path) as handle:
            key_text = handle.read()
        with open(cert_path) as handle:
            cert_text = handle.read()
    except OSError as exc:
        raise errors.EtcdUnsafe("the CA cannot sign: {}: {}".format(exc.filename, exc.strerror)) from None
    problem = ca_problem(key_text, cert_text, key_path, cert_path)
    if problem:
        raise errors.EtcdUnsafe(problem)
    return load_key(key_text), x509.load_pem_x509_certificate(cert_text.encode())


# -- expiry, seen from outside -----------------------------------------------------------------------


def _not_after(der_or_pem, pem=False):
    x509 = _crypto()[0]
    if pem:
        return x509.load_pem_x509_certificate(der_or_pem).not_valid_after_utc
    return x509.load_der_x509_certificate(der_or_pem).not_valid_after_utc


def _served_der(url, timeout=3):
    """The certificate (DER) the TLS server at ``url`` presents (read, trusting nothing: no
    client certificate is sent, so etcd's handshake fails after its certificate came)."""
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as sock:
        with context.wrap_socket(sock) as tls:
            return tls.getpeercert(binary_form=True)


def served_not_after(url, timeout=3):
    """notAfter of the certificate the TLS server at ``url`` presents."""
    return _not_after(_served_der(url, timeout))


def served_certificate(url, timeout=3):
    """The certificate the TLS server at ``url`` presents (PEM)."""
    return ssl.DER_cert_to_PEM_cert(_served_der(url, timeout))


def first_certificate(bundle_text):
    """The first certificate of a PEM bundle (the CA that signs, in the formula's bundles)."""
    x509, _, serialization = _crypto()[:3]
    found = x509.load_pem_x509_certificates((bundle_text or "").encode())
    return found[0].public_bytes(serialization.Encoding.PEM).decode()


def file_not_after(path):
    with open(path, "rb") as handle:
        return _not_after(handle.read(), pem=True)


def expiry_row(who, what, where, not_after, now=None):
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return [who, what, where, not_after.strftime("%Y-%m-%d"), str((not_after - now).days)]


def issued_rows(issued, ca_text="", now=None):
    """[holder, usage, not after, days left, issuer, subject alternative names] of every
    certificate the CA issued last (``issued``: etcd_ca.certificates' {holder: {usage:
    PEM}}; the issuer's label from the bundles ``ca_text``), the soonest to expire first."""
    x509 = _crypto()[0]
    now = now or datetime.datetime.now(datetime.timezone.utc)
    rows = []
    for holder, usages in sorted(issued.items()):
        for usage, pem in sorted(usages.items()):
            cert = x509.load_pem_x509_certificate(pem.encode())
            rows.append([holder, usage, cert.not_valid_after_utc.strftime("%Y-%m-%d"),
                         (cert.not_valid_after_utc - now).days, issuer_label(pem, ca_text),
                         " ".join(cert_identity(cert)["sans"])])
    return sorted(rows, key=lambda row: (row[3], row[0], row[1]))


def expiry_rows(members, admin_cert_file):
    """[minion, cert, where, not after, days left] of each member's served server and peer
    certificates (``members``: [(minion, client URL, peer URL)]) and the admin certificate."""
    rows = []
    for minion, client_url, peer_url in members:
        for what, url in (("server", client_url), ("peer", peer_url)):
            try:
                rows.append(expiry_row(minion, what, url, served_not_after(url)))
            except (OSError, ValueError) as exc:
                rows.append([minion, what, url, "-", "unreachable: {}".format(exc)])
    try:
        rows.append(expiry_row("(master)", "admin client", admin_cert_file,
                               file_not_after(admin_cert_file)))
    except (OSError, ValueError) as exc:
        rows.append(["(master)", "admin client", admin_cert_file, "-", str(exc)])
    return rows
