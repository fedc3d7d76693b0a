"""
An etcd member's TLS files, on Salt's x509_v2 remote signing.

- ``managed``: a key generated on the member (0600; it never leaves the member) and its
  certificate, signed by the CA server under a signing policy (``peer``, ``server`` or
  ``client`` usage), renewed when fewer than ``days_remaining`` days remain.
- ``ca_published``: on the CA server, its CA certificate published in the Salt mine.
- ``ca_bundle_managed``: on a member, the CA certificate file written from the mine.
- ``ca_managed``: on the CA server, the CA itself (created once, or yours).

Remote signing needs the master to let minions call ``x509.sign_remote_certificate`` on the
CA server (``peer`` in the master config) and the policies in the CA server's pillar
``x509_signing_policies`` (see pillar.example).

``managed`` judges the key and certificate itself and calls x509_v2's execution functions
(``x509.create_private_key``, ``x509.create_certificate``) only to make new ones, then
writes with ``file.managed``. x509_v2's own states write through ``state.single``, which in
a minion job compiles the pillar again from the master for every file (seconds per
certificate) and, on Salt 3008, can fail under concurrency ("dictionary keys changed during
iteration" in Tornado's IOLoop registry).

.. code-block:: yaml

    etcd-pki-peer-cert-managed:
      etcd_cert.managed:
        - name: /etc/etcd/pki/peer.crt
        - key: /etc/etcd/pki/peer.key
        - usage: peer
        - ca_server: master
        - signing_policy: etcd-peer
        - common_name: etcd-1
        - address: 10.77.0.11
        - ca_file: /etc/etcd/pki/ca.crt
"""

import datetime
import ipaddress

from salt.exceptions import CommandExecutionError, SaltInvocationError

try:
    from cryptography import x509 as cx509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    EKU_OIDS = {
        "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
        "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    }
    KEY_TYPES = {"ec": ec.EllipticCurvePrivateKey, "rsa": rsa.RSAPrivateKey}
except ImportError:  # x509_v2 is then unavailable too: __virtual__ says so
    pass

__virtualname__ = "etcd_cert"

# Extended key usages per certificate role. The server certificate is also a client one:
# etcd's JSON gateway (what the formula's client speaks) dials etcd's own gRPC server with
# it, and etcd refuses that dial ("incompatible key usage") when client-cert-auth is on.
EXTENDED_KEY_USAGES = {
    "peer": "serverAuth, clientAuth",
    "server": "serverAuth, clientAuth",
    "client": "clientAuth",
}
# The usages a server certificate is dialled under need these SANs; a client one needs none.
USAGES_WITH_SANS = ("peer", "server")

# Mine entry (on the CA server) holding the CA certificate's PEM text.
CA_MINE_FUNCTION = "etcd_ca_cert"


def __virtual__():
    if "x509.create_certificate" not in __salt__:
        return (False, "etcd_cert needs Salt's x509_v2 module (and the cryptography package)")
    return __virtualname__


def _subject_alt_names(usage, address, minion_id, hostname):
    """
    The subjectAltName of a certificate for ``usage``: the member's address and names,
    and loopback (the member listens on 127.0.0.1 too). None for client certificates.
    """
    if usage not in USAGES_WITH_SANS:
        return None
    names = []
    if address:
        names.append("IP:{}".format(address))
    for dns in (minion_id, hostname, "localhost"):
        if dns and "DNS:{}".format(dns) not in names:
            names.append("DNS:{}".format(dns))
    names.append("IP:127.0.0.1")
    return ", ".join(names)


def _fold(sub_ret):
    """
    The changes of a wrapped x509 state, file changes (owner, mode) included: x509_v2
    reports those only in its ``sub_state_run``.
    """
    changes = dict(sub_ret.get("changes") or {})
    for sub in sub_ret.get("sub_state_run") or []:
        if sub.get("changes"):
            changes.setdefault("file", {}).update(sub["changes"])
    return changes


def _failed(sub_ret):
    return sub_ret.get("result") is False or any(
        sub.get("result") is False for sub in sub_ret.get("sub_state_run") or []
    )


def _read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return None


def _load_key(text, key_algo, key_size):
    """The private key in PEM ``text`` if it is of ``key_algo`` and ``key_size``, else None."""
    try:
        key = serialization.load_pem_private_key(text.encode(), None)
    except (AttributeError, ValueError, TypeError):
        return None
    kind = KEY_TYPES.get(key_algo)
    return key if kind and isinstance(key, kind) and key.key_size == key_size else None


def _wanted_sans(sans):
    """{("IP", ip) | ("DNS", name)} from a subjectAltName string like "IP:10.0.0.1, DNS:h1"."""
    wanted = set()
    for entry in (sans or "").split(","):
        kind, _, value = entry.strip().partition(":")
        wanted.add(("IP", ipaddress.ip_address(value)) if kind == "IP" else (kind, value))
    return wanted - {("", "")}


def _extension(cert, kind):
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except cx509.ExtensionNotFound:
        return None


def _certificate_problems(text, private_key, ca_pem, common_name, sans, usage, days_remaining):
    """
    Why the certificate in PEM ``text`` is not what an etcd member needs: not for
    ``private_key``, not issued by a CA of the bundle ``ca_pem``, fewer than
    ``days_remaining`` days left, another CN, other SANs or usages. [] when it is.
    """
    if not text:
        return ["no certificate yet"]
    try:
        cert = cx509.load_pem_x509_certificate(text.encode())
    except ValueError:
        return ["not a PEM certificate"]
    problems = []
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if private_key is None or cert.public_key().public_bytes(*spki) != private_key.public_key().public_bytes(*spki):
        problems.append("not for the private key")
    try:
        cas = cx509.load_pem_x509_certificates((ca_pem or "").encode())
    except ValueError:
        cas = []
    if not any(_issued_by(cert, ca) for ca in cas):
        problems.append("not issued by the cluster CA")
    renew_at = cert.not_valid_after_utc - datetime.timedelta(days=days_remaining)
    if datetime.datetime.now(datetime.timezone.utc) >= renew_at:
        problems.append(
            "expires {:%Y-%m-%d}: fewer than {} days left".format(cert.not_valid_after_utc, days_remaining)
        )
    have_cn = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if have_cn != [common_name]:
        problems.append("CN {} instead of {}".format(",".join(have_cn) or "none", common_name))
    san = _extension(cert, cx509.SubjectAlternativeName)
    have_sans = set()
    if san is not None:
        have_sans = {("IP", ip) for ip in san.get_values_for_type(cx509.IPAddress)}
        have_sans |= {("DNS", dns) for dns in san.get_values_for_type(cx509.DNSName)}
    if have_sans != _wanted_sans(sans):
        problems.append("SANs differ from: {}".format(sans or "none"))
    eku = _extension(cert, cx509.ExtendedKeyUsage)
    wanted_eku = {EKU_OIDS[u.strip()] for u in EXTENDED_KEY_USAGES[usage].split(",")}
    if set(eku or ()) != wanted_eku:
        problems.append("usages differ from: {}".format(EXTENDED_KEY_USAGES[usage]))
    return problems


def _issued_by(cert, ca):
    try:
        cert.verify_directly_issued_by(ca)
        return True
    except Exception:  # pylint: disable=broad-except
        # InvalidSignature, another issuer name, or another CA's key type
        return False


def _write(name, contents, user, group, mode, secret=False):
    """file.managed of ``contents`` (a key's text never goes into the changes)."""
    file_ret = __states__["file.managed"](
        name=name, contents=contents, user=user, group=group, mode=mode,
        show_changes=not secret,
    )
    if file_ret["result"] is False:
        raise CommandExecutionError("{}: {}".format(name, file_ret["comment"]))
    return file_ret.get("changes") or {}


def managed(
    name,
    key,
    usage,
    ca_server,
    signing_policy,
    ca_file,
    common_name=None,
    address=None,
    days_valid=825,
    days_remaining=30,
    key_algo="ec",
    key_size=256,
    user="root",
    group="root",
):
    """
    Ensure a member's private key exists (generated here, mode 0600) and its certificate
    (mode 0644) is for that key, signed by the CA server for ``usage``, with more than
    ``days_remaining`` days left; otherwise make a key and ask the CA server to sign.

    name
        Path of the certificate.

    key
        Path of the private key. Generated on this minion if absent (or of another
        algorithm or size); kept on renewal.

    usage
        ``peer`` (serverAuth + clientAuth, SANs), ``server`` (the client port: SANs) or
        ``client`` (clientAuth, for etcdctl and the formula's client).

    ca_server
        Minion ID of the CA server.

    signing_policy
        Name of the CA server's signing policy for this usage (``etcd-peer`` ...).

    ca_file
        The cluster's CA bundle: a certificate issued by another CA is re-issued.

    common_name
        Subject CN. Default: this minion's ID.

    address
        The member's IP address, put in the SANs with the minion ID, the hostname,
        ``localhost`` and ``127.0.0.1``.

    days_valid
        Validity asked for a new certificate (the signing policy may fix it). Default 825.

    days_remaining
        Renew the certificate when fewer days than this remain. Default 30.

    key_algo, key_size
        The key: ``ec`` (256, 384, 521) or ``rsa`` (2048, 3072, 4096). Default ec 256.

    user, group
        Owner of both files. Default root.
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    test = __opts__["test"]
    try:
        if usage not in EXTENDED_KEY_USAGES:
            raise SaltInvocationError(
                "usage {!r}: expected one of {}".format(usage, ", ".join(EXTENDED_KEY_USAGES))
            )
        common_name = common_name or __opts__["id"]
        sans = _subject_alt_names(usage, address, __opts__["id"], __grains__.get("host"))

        key_text = _read(key)
        private_key = _load_key(key_text, key_algo, key_size)
        if private_key is None:
            ret["changes"]["key"] = {"created" if key_text is None else "replaced": key}
            if not test:
                key_text = __salt__["x509.create_private_key"](algo=key_algo, keysize=key_size)
                private_key = _load_key(key_text, key_algo, key_size)
        if not test or "key" not in ret["changes"]:
            # a kept key's owner and mode are checked (in test mode too: nothing is written)
            file_changes = _write(key, key_text, user, group, "0600", secret=True)
            if file_changes and "key" not in ret["changes"]:
                ret["changes"]["key"] = file_changes

        cert_text = _read(name)
        ca_pem = _read(ca_file)
        problems = _certificate_problems(
            cert_text, private_key, ca_pem, common_name, sans, usage, days_remaining
        )
        if problems:
            ret["changes"]["certificate"] = {"issued": name, "because": problems}
            if not test:
                cert_text = __salt__["x509.create_certificate"](
                    ca_server=ca_server,
                    signing_policy=signing_policy,
                    private_key=key,
                    CN=common_name,
                    subjectAltName=sans,
                    basicConstraints="critical, CA:false",
                    keyUsage="critical, digitalSignature, keyEncipherment",
                    extendedKeyUsage=EXTENDED_KEY_USAGES[usage],
                    days_valid=days_valid,
                )
                still = _certificate_problems(
                    cert_text, private_key, ca_pem, common_name, sans, usage, days_remaining
                )
                if still:
                    # writing it would mean a new request on every run: say what to fix
                    raise CommandExecutionError(
                        "the CA server {} signed under policy {} a certificate an etcd member "
                        "cannot use ({}): fix that signing policy".format(
                            ca_server, signing_policy, "; ".join(still)
                        )
                    )
        if not test or "certificate" not in ret["changes"]:
            file_changes = _write(name, cert_text, user, group, "0644")
            if file_changes and "certificate" not in ret["changes"]:
                ret["changes"]["certificate"] = file_changes
    except (CommandExecutionError, SaltInvocationError) as err:
        ret.update(result=False, comment=str(err), changes={})
        return ret

    what = "The {} key {} and certificate {}".format(usage, key, name)
    if not ret["changes"]:
        ret["comment"] = what + " are as wanted"
    elif test:
        ret["result"] = None
        ret["comment"] = "{} would be updated: {}".format(what, ", ".join(sorted(ret["changes"])))
    else:
        ret["comment"] = "{} have been updated: {}".format(what, ", ".join(sorted(ret["changes"])))
    return ret


def ca_published(name, mine_function=CA_MINE_FUNCTION):
    """
    On the CA server: publish the CA certificate at ``name`` in the Salt mine (as
    ``mine_function``), where members fetch it. Only sent when the mine holds another text.

    name
        Path of the CA certificate on this minion.

    mine_function
        The mine entry. Default ``etcd_ca_cert``.
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    minion_id = __opts__["id"]
    try:
        if not __salt__["file.file_exists"](name):
            raise CommandExecutionError(
                "no CA certificate at {}: apply etcd.ca first, or put yours there".format(name)
            )
        text = __salt__["file.read"](name)
        published = (__salt__["mine.get"](minion_id, mine_function) or {}).get(minion_id)
        if published == text:
            ret["comment"] = "The CA certificate {} is published in the mine as {}".format(
                name, mine_function
            )
            return ret
        ret["changes"] = {"published": {"old": bool(published), "new": mine_function}}
        if __opts__["test"]:
            ret["result"] = None
            ret["comment"] = "The CA certificate {} would be published in the mine as {}".format(
                name, mine_function
            )
            return ret
        if not __salt__["mine.send"](mine_function, mine_function="file.read", path=name):
            raise CommandExecutionError(
                "the master did not store the CA certificate in the mine (see the minion log)"
            )
    except (CommandExecutionError, SaltInvocationError) as err:
        ret["result"] = False
        ret["comment"] = str(err)
        ret["changes"] = {}
        return ret
    ret["comment"] = "The CA certificate {} has been published in the mine as {}".format(
        name, mine_function
    )
    return ret


def ca_bundle_managed(
    name, ca_server, mine_function=CA_MINE_FUNCTION, user="root", group="root", mode="0644"
):
    """
    On a member: write the CA certificate the CA server published in the mine to ``name``.

    name
        Path of the CA bundle (``trusted-ca-file`` of etcd, ``ETCDCTL_CACERT``).

    ca_server
        Minion ID of the CA server.

    mine_function
        The mine entry the CA server published (``ca_published``). Default ``etcd_ca_cert``.

    user, group, mode
        Owner and mode of the file. Default root, root, 0644.
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    try:
        text = (__salt__["mine.get"](ca_server, mine_function) or {}).get(ca_server)
        if not text:
            raise CommandExecutionError(
                "the CA server {} has published no CA certificate in the mine ({}): "
                "apply etcd.ca on it first".format(ca_server, mine_function)
            )
        try:
            cx509.load_pem_x509_certificates(text.encode())
        except ValueError as err:
            raise CommandExecutionError(
                "the CA server {} published no PEM certificate as {}: {}".format(
                    ca_server, mine_function, err
                )
            ) from err
        file_ret = __states__["file.managed"](
            name=name, contents=text, user=user, group=group, mode=mode
        )
    except (CommandExecutionError, SaltInvocationError) as err:
        ret["result"] = False
        ret["comment"] = str(err)
        return ret
    ret.update(
        result=file_ret["result"],
        changes=file_ret.get("changes") or {},
        comment="CA bundle from {}: {}".format(ca_server, file_ret.get("comment", "")),
    )
    return ret


SIGNING_POLICIES = ("etcd-peer", "etcd-server", "etcd-client")


def _ca_files(pki):
    return pki["ca_dir"] + "/ca.key", pki["ca_dir"] + "/ca.crt"


def ca_managed(name, common_name="etcd CA"):
    """
    On the CA server: the cluster CA from pillar ``etcd:pki``, published in the mine.

    - ``ca_provided: false``: the CA key (0600) and a self-signed CA certificate are
      created in ``ca_dir`` when absent, and never touched again (a new CA would make
      every member distrust the others until all are re-issued and restarted);
    - ``ca_provided: true``: ``ca_dir/ca.key`` and ``ca_dir/ca.crt`` are yours, only checked.

    Fails when the signing policies members ask for (``etcd-peer``, ``etcd-server``,
    ``etcd-client``) are missing from this minion's pillar ``x509_signing_policies``.

    name
        Any name (it is only shown).

    common_name
        CN of a generated CA certificate. Default ``etcd CA``.
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    try:
        pki = __utils__["etcd_pillar.pki"](__salt__["config.get"]("etcd", {}))
        key, cert = _ca_files(pki)
        policies = __salt__["pillar.get"]("x509_signing_policies", {}) or {}
        missing = [policy for policy in SIGNING_POLICIES if policy not in policies]
        if missing:
            raise CommandExecutionError(
                "pillar x509_signing_policies of {} lacks {}: members cannot get certificates "
                "signed (see pillar.example)".format(__opts__["id"], ", ".join(missing))
            )
        if pki["ca_provided"]:
            absent = [path for path in (key, cert) if not __salt__["file.file_exists"](path)]
            if absent:
                raise CommandExecutionError(
                    "ca_provided is true, but {} is missing: put your CA there".format(
                        " and ".join(absent)
                    )
                )
        else:
            steps = [
                (
                    "directory",
                    __states__["file.directory"](
                        name=pki["ca_dir"], user="root", group="root", mode="0700", makedirs=True
                    ),
                ),
                (
                    "key",
                    __states__["x509.private_key_managed"](
                        name=key, algo=pki["key_algo"], keysize=pki["key_size"], mode="0600"
                    ),
                ),
            ]
            if not __salt__["file.file_exists"](cert):
                if __opts__["test"] and "created" in steps[-1][1]["changes"]:
                    steps.append(("certificate", {"result": None, "changes": {"created": cert}}))
                else:
                    steps.append(
                        (
                            "certificate",
                            __states__["x509.certificate_managed"](
                                name=cert,
                                signing_private_key=key,
                                CN=common_name,
                                basicConstraints="critical, CA:true",
                                keyUsage="critical, cRLSign, keyCertSign",
                                subjectKeyIdentifier="hash",
                                authorityKeyIdentifier="keyid:always",
                                days_valid=pki["ca_days_valid"],
                                days_remaining=0,
                                mode="0644",
                            ),
                        )
                    )
            for what, step in steps:
                if _failed(step):
                    raise CommandExecutionError("CA {}: {}".format(what, step.get("comment")))
                if _fold(step):
                    ret["changes"][what] = _fold(step)
        if __opts__["test"] and ret["changes"]:
            # the certificate is not there yet to be published
            ret["changes"]["published"] = {"old": False, "new": CA_MINE_FUNCTION}
        else:
            published = ca_published(cert)
            if published["result"] is False:
                raise CommandExecutionError(published["comment"])
            if published["changes"]:
                ret["changes"].update(published["changes"])
    except (CommandExecutionError, SaltInvocationError) as err:
        ret.update(result=False, comment=str(err), changes={})
        return ret
    if not ret["changes"]:
        ret["comment"] = "The CA in {} is as wanted and published".format(pki["ca_dir"])
    elif __opts__["test"]:
        ret["result"] = None
        ret["comment"] = "The CA in {} would be updated: {}".format(
            pki["ca_dir"], ", ".join(sorted(ret["changes"]))
        )
    else:
        ret["comment"] = "The CA in {} has been updated: {}".format(
            pki["ca_dir"], ", ".join(sorted(ret["changes"]))
        )
    return ret
