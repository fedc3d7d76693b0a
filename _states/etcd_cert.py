"""
An etcd member's TLS files, on Salt's x509_v2 remote signing.

- ``managed``: a key generated on the member (0600; it never leaves the member) and its
  certificate, signed by the CA server under a signing policy (``peer``, ``server`` or
  ``client`` usage), renewed when fewer than ``days_remaining`` days remain.
- ``ca_published``: on the CA server, its CA certificate published in the Salt mine.
- ``ca_bundle_managed``: on a member, the CA certificate file written from the mine.

Remote signing needs the master to let minions call ``x509.sign_remote_certificate`` on the
CA server (``peer`` in the master config) and the policies in the CA server's pillar
``x509_signing_policies`` (see pillar.example).

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
"""

import datetime
import grp
import ipaddress
import os
import pwd

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
    if "x509.certificate_managed" not in __states__:
        return (False, "etcd_cert needs Salt's x509_v2 states (and the cryptography package)")
    return __virtualname__


def subject_alt_names(usage, address, minion_id, hostname):
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


def _wanted_sans(sans):
    """{("IP", ip) | ("DNS", name)} from a subjectAltName string like "IP:10.0.0.1, DNS:h1"."""
    wanted = set()
    for entry in (sans or "").split(","):
        kind, _, value = entry.strip().partition(":")
        wanted.add(("IP", ipaddress.ip_address(value)) if kind == "IP" else (kind, value))
    return wanted - {("", "")}


def _owned(path, mode, owner):
    """Whether ``path`` has ``mode`` and is owned by ``owner`` (user, group); OSError if absent."""
    stat = os.stat(path)
    try:
        uid, gid = pwd.getpwnam(owner[0]).pw_uid, grp.getgrnam(owner[1]).gr_gid
    except KeyError:
        return False
    return (stat.st_mode & 0o7777, stat.st_uid, stat.st_gid) == (mode, uid, gid)


def _key_is_current(key, key_algo, key_size, owner):
    """
    Whether the private key at ``key`` is as wanted (algorithm, size, mode 0600, owner),
    judged here; False on any doubt: x509_v2 then looks at it.
    """
    try:
        with open(key, "rb") as handle:
            private_key = serialization.load_pem_private_key(handle.read(), None)
        if not _owned(key, 0o600, owner):
            return False
    except (OSError, ValueError, TypeError):
        return False
    kind = {"ec": ec.EllipticCurvePrivateKey, "rsa": rsa.RSAPrivateKey}.get(key_algo)
    return kind is not None and isinstance(private_key, kind) and private_key.key_size == key_size


def _certificate_is_current(name, key, ca_file, common_name, sans, usage, days_remaining, owner):
    """
    Whether the certificate at ``name`` is as wanted, judged here without asking the CA
    server: for ``key``, issued by a CA in ``ca_file``, more than ``days_remaining`` days
    left, the wanted CN, SANs and usages, mode 0644, owned by ``owner`` (user, group).
    False on any doubt: x509_v2 then compares it with the CA server's signing policy.
    """
    try:
        with open(name, "rb") as handle:
            cert = cx509.load_pem_x509_certificate(handle.read())
        with open(key, "rb") as handle:
            private_key = serialization.load_pem_private_key(handle.read(), None)
        with open(ca_file, "rb") as handle:
            cas = cx509.load_pem_x509_certificates(handle.read())
        if not _owned(name, 0o644, owner):
            return False
        eku = set(cert.extensions.get_extension_for_class(cx509.ExtendedKeyUsage).value)
        if sans:
            san = cert.extensions.get_extension_for_class(cx509.SubjectAlternativeName).value
            have_sans = {("IP", ip) for ip in san.get_values_for_type(cx509.IPAddress)}
            have_sans |= {("DNS", dns) for dns in san.get_values_for_type(cx509.DNSName)}
        else:
            have_sans = set()
    except (OSError, ValueError, cx509.ExtensionNotFound):
        return False
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER

    def issued_by(ca):
        try:
            cert.verify_directly_issued_by(ca)
            return True
        except Exception:  # pylint: disable=broad-except
            # InvalidSignature, or another CA's key type: not issued by this one
            return False

    renew_at = cert.not_valid_after_utc - datetime.timedelta(days=days_remaining)
    return (
        datetime.datetime.now(datetime.timezone.utc) < renew_at
        and cert.public_key().public_bytes(encoding, public)
        == private_key.public_key().public_bytes(encoding, public)
        and any(issued_by(ca) for ca in cas)
        and [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        == [common_name]
        and have_sans == _wanted_sans(sans)
        and eku == {EKU_OIDS[u.strip()] for u in EXTENDED_KEY_USAGES[usage].split(",")}
    )


def managed(
    name,
    key,
    usage,
    ca_server,
    signing_policy,
    common_name=None,
    address=None,
    days_valid=825,
    days_remaining=30,
    key_algo="ec",
    key_size=256,
    user="root",
    group="root",
    ca_file=None,
):
    """
    Ensure a member's private key exists (generated here, mode 0600) and its certificate
    is signed by the CA server for ``usage``.

    name
        Path of the certificate (mode 0644).

    key
        Path of the private key. Generated on this minion if absent; kept on renewal.

    usage
        ``peer`` (serverAuth + clientAuth, SANs), ``server`` (the client port: SANs) or
        ``client`` (clientAuth, for etcdctl and the formula's client).

    ca_server
        Minion ID of the CA server.

    signing_policy
        Name of the CA server's signing policy for this usage (``etcd-peer`` ...).

    common_name
        Subject CN. Default: this minion's ID.

    address
        The member's IP address, put in the SANs with the minion ID, the hostname,
        ``localhost`` and ``127.0.0.1``.

    days_valid
        Validity of a new certificate (the signing policy may fix it). Default 825.

    days_remaining
        Renew the certificate when fewer days than this remain. Default 30.

    key_algo, key_size
        The key: ``ec`` (256, 384, 521) or ``rsa`` (2048, 3072, 4096). Default ec 256.

    user, group
        Owner of both files. Default root.

    ca_file
        The CA bundle the certificate must be issued by. When given, a key and certificate
        found as wanted here (algorithm and size; key, issuer, validity, CN, SANs, usages;
        owner, mode) are left alone without asking the CA server: a no-change run makes no
        round trip through the master. Anything else is left to x509_v2, which compares
        the certificate with the signing policy.
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    try:
        if usage not in EXTENDED_KEY_USAGES:
            raise SaltInvocationError(
                "usage {!r}: expected one of {}".format(usage, ", ".join(EXTENDED_KEY_USAGES))
            )
        key_changes = {}
        if not (ca_file and _key_is_current(key, key_algo, key_size, (user, group))):
            key_ret = __states__["x509.private_key_managed"](
                name=key, algo=key_algo, keysize=key_size, user=user, group=group, mode="0600"
            )
            if _failed(key_ret):
                raise CommandExecutionError("private key {}: {}".format(key, key_ret["comment"]))
            key_changes = _fold(key_ret)
        if key_changes:
            ret["changes"]["key"] = key_changes

        common_name = common_name or __opts__["id"]
        sans = subject_alt_names(usage, address, __opts__["id"], __grains__.get("host"))
        if __opts__["test"] and "created" in key_changes:
            # no key yet to check a certificate against: it would be issued for the new key
            ret["changes"]["certificate"] = {"created": name}
        elif not key_changes and ca_file and _certificate_is_current(
            name, key, ca_file, common_name, sans, usage, days_remaining, (user, group)
        ):
            pass
        else:
            cert_ret = __states__["x509.certificate_managed"](
                name=name,
                ca_server=ca_server,
                signing_policy=signing_policy,
                private_key=key,
                CN=common_name,
                subjectAltName=sans,
                basicConstraints="critical, CA:false",
                keyUsage="critical, digitalSignature, keyEncipherment",
                extendedKeyUsage=EXTENDED_KEY_USAGES[usage],
                days_valid=days_valid,
                days_remaining=days_remaining,
                user=user,
                group=group,
                mode="0644",
            )
            if _failed(cert_ret):
                raise CommandExecutionError(
                    "certificate {}: {}".format(name, cert_ret["comment"])
                )
            cert_changes = _fold(cert_ret)
            if cert_changes:
                ret["changes"]["certificate"] = cert_changes
    except (CommandExecutionError, SaltInvocationError) as err:
        ret["result"] = False
        ret["comment"] = str(err)
        ret["changes"] = {}
        return ret

    if not ret["changes"]:
        ret["comment"] = "The {} key {} and certificate {} are as wanted".format(usage, key, name)
    elif __opts__["test"]:
        ret["result"] = None
        ret["comment"] = "The {} key {} and certificate {} would be updated: {}".format(
            usage, key, name, ", ".join(sorted(ret["changes"]))
        )
    else:
        ret["comment"] = "The {} key {} and certificate {} have been updated: {}".format(
            usage, key, name, ", ".join(sorted(ret["changes"]))
        )
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
        file_ret = __states__["x509.pem_managed"](
            name=name, text=text, user=user, group=group, mode=mode
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
