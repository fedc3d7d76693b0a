"""
The formula's TLS files, issued by its own CA (``_modules/etcd_ca.py`` on the CA server).

- ``certificates_managed``: a member's (or a client's) certificates, each with its key: the
  certificates that are not what the pillar says this minion holds (``etcd_pki.identity``),
  not the CA's, or near their end are requested in ONE request (an event the master's
  reactor hands to the CA server; the answer comes back through the mine: no master worker
  waits on another minion meanwhile); a key of the wanted kind is kept (its certificate
  alone is replaced), a new key is made in memory and written only with its certificate;
  a failure leaves the old pair in place.
- ``ca_published``: on the CA server, its CA certificate published in the Salt mine.
- ``ca_bundle_managed``: on a member or client, the CA certificate file written from the mine.
- ``ca_managed``: on the CA server, the CA itself (created once, never rewritten; or yours).
- ``peer_trust_kept``: on a member, before its bundles: refuses a member built before peers
  had a CA of their own (``salt-run etcd.rotate_ca`` moves it).

The master needs the reactor (README): ``reactor: [{'etcd/cert/request':
['salt://etcd/reactor/sign.sls']}]``.

.. code-block:: yaml

    etcd-pki-certificates-managed:
      etcd_cert.certificates_managed:
        - name: etcd member certificates
        - ca_server: master
        - ca_file: /etc/etcd/pki/ca.crt
        - certificates:
          - {usage: peer, cert: /etc/etcd/pki/peer.crt, key: /etc/etcd/pki/peer.key, user: etcd}
"""

import grp
import os
import pwd
import time
import uuid

from salt.exceptions import CommandExecutionError, SaltInvocationError

try:
    from cryptography import x509 as cx509

    HAS_CRYPTOGRAPHY = True
except ImportError:
    HAS_CRYPTOGRAPHY = False

__virtualname__ = "etcd_cert"

# Mine entry (on the CA server) holding the CA certificate's PEM text.
CA_MINE_FUNCTION = "etcd_ca_cert"
# The event a minion asks the CA server with (the master's reactor answers it).
REQUEST_TAG = "etcd/cert/request"
# How often a minion looks for its answer in the mine. Each look is one mine.get, a cache
# read in a master worker: cheap. A longer pause cost more than it saved: with a cap of 2 s,
# 3 members and 12 clients applying at once took 1-5 s longer than the same 15 minions
# applying a state that signs nothing; with 0.5 s, the same within the noise
# (bench/signing.py, B against B0).
POLL_SECONDS = 0.25
MAX_POLL_SECONDS = 0.5


def __virtual__():
    if not HAS_CRYPTOGRAPHY or "etcd_pki.identity" not in __utils__:
        return (False, "etcd_cert needs the cryptography package and the formula's _utils")
    return __virtualname__


def _pki(function):
    return __utils__["etcd_pki." + function]


def _published(ca_server, mine_function):
    """What ``ca_server`` published in the mine as ``mine_function`` (a CA bundle), or None."""
    return (__salt__["mine.get"](ca_server, mine_function) or {}).get(ca_server)


def _read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return None


def _ids(user, group):
    try:
        return pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid
    except KeyError as exc:
        raise CommandExecutionError("no such user or group: {}".format(exc)) from None


def _write(path, text, user, group, mode):
    """``text`` into ``path`` through a temporary file renamed over it (owner, mode set first)."""
    uid, gid = _ids(user, group)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = "{}.{}.new".format(path, os.getpid())
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chown(temporary, uid, gid)
    os.chmod(temporary, mode)
    return temporary


def _attributes_wrong(path, user, group, mode):
    try:
        found = os.stat(path)
    except OSError:
        return False
    uid, gid = _ids(user, group)
    return (found.st_uid, found.st_gid, found.st_mode & 0o777) != (uid, gid, mode)


def _fix_attributes(path, user, group, mode):
    uid, gid = _ids(user, group)
    os.chown(path, uid, gid)
    os.chmod(path, mode)


def _ask(ca_server, requests, timeout):
    """Fire the request, then read the CA server's answer from the mine: {usage: PEM}."""
    request_id = uuid.uuid4().hex
    mine_name = _pki("issued_mine_name")(__opts__["id"])
    own = __opts__["id"] == ca_server

    def fire():
        if not __salt__["event.fire_master"](
                {"ca_server": ca_server, "request_id": request_id, "requests": requests},
                REQUEST_TAG):
            raise CommandExecutionError(
                "the request to the CA server could not be sent (event.fire_master)")

    if own:
        # the CA server's own certificates (the master's admin one): signed here
        __salt__["etcd_ca.sign"](__opts__["id"], requests, request_id)
    else:
        fire()
    started = time.monotonic()
    give_up_at = started + timeout
    # an event the master took can still come to nothing (its reactor's job or the answer
    # lost on the way): asked once more, the same request, half way through the wait
    again_at = None if own else started + timeout / 2
    pause = POLL_SECONDS
    while True:
        answer = (__salt__["mine.get"](ca_server, mine_name) or {}).get(ca_server) or {}
        if isinstance(answer, dict) and answer.get("request_id") == request_id:
            if answer.get("refused"):
                raise CommandExecutionError("the CA server {} refused: {}".format(
                    ca_server, "; ".join("{}: {}".format(u, why)
                                         for u, why in sorted(answer["refused"].items()))))
            return answer.get("certificates") or {}
        if again_at is not None and time.monotonic() >= again_at:
            again_at = None
            fire()
            continue
        if time.monotonic() >= give_up_at:
            raise CommandExecutionError(
                "the CA server {} did not answer within {} s{}: is it up, and does the "
                "master have the reactor for {} (README)?".format(
                    ca_server, timeout, "" if own else " (asked twice)", REQUEST_TAG))
        # each look is a request to the master: back off a little (MAX_POLL_SECONDS)
        time.sleep(pause)
        pause = min(pause * 1.5, MAX_POLL_SECONDS)


def certificates_managed(name, certificates, ca_server, ca_file, key_algo="ec", key_size=256,
                         days_remaining=30, timeout=60):
    """
    Ensure this minion's certificates are what the pillar says it holds, issued by the
    cluster CA, with more than ``days_remaining`` days left; the others are issued anew in
    one request to the CA server, for the key in place when it is of ``key_algo`` and
    ``key_size`` (only the certificate is replaced then), else for a new key (made here,
    never sent; written 0600 only together with its certificate). Files with the wrong
    owner or mode are fixed once the certificates are in place.

    name
        Any name (it is only shown).
    certificates
        [{usage, cert, key, user, group, ca_file}]: ``usage`` one of peer, server, client (a
        member), patroni, vip_manager (a client), admin (the CA server's own); ``ca_file``
        the bundle of the CA that signs it (default: ``ca_file``; give the peers' CA for
        peer, as etcd/pki.sls does).
    ca_server
        Minion id of the CA server.
    ca_file
        The cluster's CA bundle: a certificate no CA of it issued is re-issued.
    key_algo, key_size
        New keys: ``ec`` (256, 384, 521) or ``rsa`` (2048, 3072, 4096).
    days_remaining
        Renew when fewer days than this remain.
    timeout
        Seconds to wait for the CA server's answer.
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    wanted, fixes = [], []
    try:
        if not isinstance(certificates, list) or not certificates:
            raise SaltInvocationError("certificates: expected a list of {usage, cert, key}")
        pillar = __salt__["config.get"]("etcd", {})
        for spec in certificates:
            user, group = spec.get("user", "root"), spec.get("group", "root")
            identity = _pki("identity")(pillar, __opts__["id"], spec["usage"])
            key = _pki("load_key")(_read(spec["key"]) or "", key_algo, key_size)
            ca_text = _read(spec.get("ca_file") or ca_file)
            why = _pki("problems")(_read(spec["cert"]), key, ca_text, identity, days_remaining)
            if why:
                # a key of the wanted kind is kept: only its certificate is replaced (one
                # atomic rename, no moment where etcd reads a key with another's certificate)
                wanted.append(dict(spec, user=user, group=group, because=why, kept_key=key))
                continue
            for path, mode in ((spec["key"], 0o600), (spec["cert"], 0o644)):
                if _attributes_wrong(path, user, group, mode):
                    fixes.append((path, user, group, mode))
        if fixes:
            ret["changes"]["attributes"] = [fix[0] for fix in fixes]
        for spec in wanted:
            ret["changes"].setdefault("issued", {})[spec["cert"]] = spec["because"]
        if not ret["changes"]:
            ret["comment"] = "the certificates of {} are as wanted".format(__opts__["id"])
            return ret
        if __opts__["test"]:
            ret.update(result=None, comment="{} certificate(s) would be issued, {} file(s) "
                       "fixed".format(len(wanted), len(fixes)))
            return ret
        if wanted:
            keys = {spec["usage"]: spec["kept_key"] or _pki("new_key")(key_algo, key_size)
                    for spec in wanted}
            issued = _ask(ca_server, [{"usage": u, "csr": _pki("csr_pem")(k)}
                                      for u, k in keys.items()], timeout)
            for spec in wanted:
                usage = spec["usage"]
                text = issued.get(usage)
                identity = _pki("identity")(pillar, __opts__["id"], usage)
                still = _pki("problems")(text, keys[usage], _read(spec.get("ca_file") or ca_file),
                                         identity, days_remaining)
                if still:
                    raise CommandExecutionError(
                        "the CA server {} answered a {} certificate that is not the one the "
                        "pillar gives {} ({}): nothing written".format(
                            ca_server, usage, __opts__["id"], "; ".join(still)))
            for spec in wanted:  # every pair checked: now written, key and certificate at once
                cert_file = _write(spec["cert"], issued[spec["usage"]], spec["user"],
                                   spec["group"], 0o644)
                if spec["kept_key"] is None:
                    key_file = _write(spec["key"], _pki("key_pem")(keys[spec["usage"]]),
                                      spec["user"], spec["group"], 0o600)
                    os.replace(key_file, spec["key"])
                elif _attributes_wrong(spec["key"], spec["user"], spec["group"], 0o600):
                    _fix_attributes(spec["key"], spec["user"], spec["group"], 0o600)
                os.replace(cert_file, spec["cert"])
        # owners and modes last: a failure above leaves the files as they were
        for path, user, group, mode in fixes:
            _fix_attributes(path, user, group, mode)
    except (CommandExecutionError, SaltInvocationError, KeyError) as err:
        # nothing changed (changes stay empty): the comment says what was tried
        tried = ", ".join("{} ({})".format(spec["usage"], "; ".join(spec["because"]))
                          for spec in wanted)
        ret.update(result=False, changes={}, comment=str(err) + (
            " [tried: {}; nothing was written]".format(tried) if tried else ""))
        return ret
    ret["comment"] = "{} certificate(s) issued by {}, {} file(s) fixed".format(
        len(wanted), ca_server, len(fixes))
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
        pki = __utils__["etcd_settings.pki"](__salt__["config.get"]("etcd", {}))
        with __utils__["etcd_files.exclusive"](_pki("mine_lock_file")(pki["ca_dir"])):
            sent = __salt__["mine.send"](mine_function, mine_function="file.read", path=name)
        if not sent:
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
        text = _published(ca_server, mine_function)
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


# Mine entries of the two CAs' certificates.
CA_MINE_FUNCTIONS = {"client": CA_MINE_FUNCTION, "peer": "etcd_peer_ca_cert"}


def peer_trust_kept(name, ca_server):
    """
    On a member, before its CA bundles are written: refuse the peers' bundle the CA server
    publishes when it would no longer trust this member's peer certificate ``name`` and
    that certificate is the clients' CA's: a cluster built before peers had a CA of their
    own. Its running peers trust only the clients' CA (etcd reads its trusted CA file at
    start only): a bundle or a peer certificate of the peers' CA now would cut members off
    from each other as they restart. ``salt-run etcd.rotate_ca`` moves such a cluster to
    the peers' CA without a moment of lost quorum. Changes nothing, ever.

    name
        The member's peer certificate (none yet: nothing to keep).
    ca_server
        Minion id of the CA server.
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    cert = _read(name)
    if cert is None:
        ret["comment"] = "no peer certificate yet at {}: nothing to keep trusting".format(name)
        return ret
    bundles = {which: _published(ca_server, mine) or ""
               for which, mine in CA_MINE_FUNCTIONS.items()}
    if (_pki("issued_by_bundle")(cert, bundles["client"])
            and not _pki("issued_by_bundle")(cert, bundles["peer"])):
        ret.update(result=False, comment=(
            "{} was issued by the clients' CA ({}), which the peers' CA bundle of {} does not "
            "hold ({}): this cluster was built before peers had a CA of their own. Move it "
            "there with salt-run etcd.rotate_ca (both CAs trusted, then rolling restarts), "
            "not a highstate. Nothing was changed".format(
                name, ", ".join(_pki("ca_label")(bundles["client"])), ca_server,
                ", ".join(_pki("ca_label")(bundles["peer"])) or "none published")))
        return ret
    ret["comment"] = "the peers' CA bundle of {} trusts {}".format(ca_server, name)
    return ret


def _ensure_ca(pki, which, common_name, test):
    """One CA (``client`` or ``peer``): created once, else checked. Its changes."""
    key_name, cert_name = _pki("cas")()[which]
    key_path = os.path.join(pki["ca_dir"], key_name)
    cert_path = os.path.join(pki["ca_dir"], cert_name)
    key_text, cert_text = _read(key_path), _read(cert_path)
    changes = {}
    if key_text is None or cert_text is None:
        if os.path.exists(_pki("rotation_file")(pki["ca_dir"])):
            raise CommandExecutionError(
                "{} is missing while a CA rotation is under way ({}): no CA is made here; "
                "continue the rotation: salt-run etcd.rotate_ca".format(
                    key_path if key_text is None else cert_path,
                    _pki("rotation_file")(pki["ca_dir"])))
        if pki["ca_provided"]:
            missing = [p for p, t in ((key_path, key_text), (cert_path, cert_text)) if t is None]
            raise CommandExecutionError("ca_provided is true, but {} is missing: put your CA "
                                        "there".format(" and ".join(missing)))
        if (key_text is None) != (cert_text is None):
            raise CommandExecutionError(
                "{} exists without {}: the formula never makes a new CA key for an old "
                "certificate, nor the reverse; restore the missing file".format(
                    key_path if key_text else cert_path, cert_path if key_text else key_path))
        changes["created"] = [key_path, cert_path]
        if not test:
            os.makedirs(pki["ca_dir"], mode=0o700, exist_ok=True)
            os.chmod(pki["ca_dir"], 0o700)
            key = _pki("new_key")(pki["ca_key_algo"], pki["ca_key_size"])
            cert_text = _pki("new_ca")(key, common_name, pki["ca_days_valid"])
            key_file = _write(key_path, _pki("key_pem")(key), "root", "root", 0o600)
            cert_file = _write(cert_path, cert_text, "root", "root", 0o644)
            os.replace(key_file, key_path)
            os.replace(cert_file, cert_path)
    else:
        problem = _pki("ca_problem")(key_text, cert_text, key_path, cert_path)
        if problem:
            raise CommandExecutionError(problem)
    # what members and clients trust: this CA, and a rotation's other CA beside it
    bundle_path = _pki("bundle_file")(pki["ca_dir"], which)
    bundle_text = _pki("bundle")(pki["ca_dir"], which)
    if _read(bundle_path) != bundle_text:
        changes["bundle"] = _pki("ca_label")(bundle_text)
        if not test:
            __utils__["etcd_files.replace"](bundle_path, bundle_text, mode=0o644)
    if test and changes:
        changes["published"] = CA_MINE_FUNCTIONS[which]
    else:
        published = ca_published(bundle_path, CA_MINE_FUNCTIONS[which])
        if published["result"] is False:
            raise CommandExecutionError(published["comment"])
        changes.update(published["changes"])
    return changes


def ca_managed(name, common_name="etcd CA"):
    """
    On the CA server: the cluster's two CAs of pillar ``etcd:pki`` (the clients' CA, which
    the client port trusts, and the peers' own, which the peer port trusts: no client
    certificate passes there), published in the mine (``etcd_ca_cert``,
    ``etcd_peer_ca_cert``).

    - ``ca_provided: false``: each CA key (``ca_key_algo``, ``ca_key_size``: settings of its
      own, never the member keys') and its self-signed certificate are created in
      ``ca_dir`` once; once they exist they are never regenerated nor rewritten (a new CA
      would make every member distrust the others);
    - ``ca_provided: true``: ``ca.key``/``ca.crt`` and ``peer-ca.key``/``peer-ca.crt`` in
      ``ca_dir`` are yours, only checked.

    Either way a key that does not match its certificate, or a certificate that is no CA,
    fails naming both files.

    name
        Any name (it is only shown).
    common_name
        CN of a generated CA certificate (the peers' gets " (peers)"). Default ``etcd CA``.
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    try:
        pki = __utils__["etcd_settings.pki"](__salt__["config.get"]("etcd", {}))
        for which, cn in (("client", common_name), ("peer", common_name + " (peers)")):
            changes = _ensure_ca(pki, which, cn, __opts__["test"])
            if changes:
                ret["changes"][which] = changes
    except (CommandExecutionError, SaltInvocationError) as err:
        ret.update(result=False, comment=str(err), changes={})
        return ret
    if not ret["changes"]:
        ret["comment"] = "The CAs in {} are as wanted and published".format(pki["ca_dir"])
    elif __opts__["test"]:
        ret.update(result=None, comment="The CAs in {} would be updated: {}".format(
            pki["ca_dir"], ", ".join(sorted(ret["changes"]))))
    else:
        ret["comment"] = "The CAs in {} have been updated: {}".format(
            pki["ca_dir"], ", ".join(sorted(ret["changes"])))
    return ret


def expiry_exported(name, certificates, cluster):
    """
    Export each certificate's notAfter for prometheus: ``name`` (a ``.prom`` file name) in
    node_exporter's textfile directory (pillar ``etcd:monitoring:textfile_dir``), metric
    ``etcd_formula_certificate_expiry_timestamp_seconds{etcd_cluster, minion, certificate}``.
    Nothing (and no failure) where the directory does not exist. A renewal changes it.

    name
        The file's name, e.g. ``etcd_formula_certificates_member.prom``.
    certificates
        [{certificate: peer|server|client|..., cert: path}].
    cluster
        The ``etcd_cluster`` label.
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    try:
        directory = __utils__["etcd_settings.monitoring"](
            __salt__["config.get"]("etcd", {}))["textfile_dir"]
        samples = []
        if __opts__["test"] and not all(os.path.exists(spec["cert"]) for spec in certificates):
            # a dry run before the certificates exist: they are issued first
            ret.update(result=None, changes={"exported": [s["certificate"] for s in certificates]},
                       comment="the certificates' expiry would be exported once they are issued")
            return ret
        for spec in certificates:
            try:
                not_after = _pki("file_not_after")(spec["cert"])
            except (OSError, ValueError) as exc:
                raise CommandExecutionError("{}: no certificate to export ({})".format(
                    spec["cert"], exc)) from None
            samples.append(__utils__["etcd_metrics.certificate_sample"](
                cluster, __opts__["id"], spec["certificate"], not_after.timestamp()))
        text = __utils__["etcd_metrics.render"](samples)
        if not directory or not os.path.isdir(directory):
            ret["comment"] = "no textfile directory {} (node_exporter's): nothing exported".format(
                directory)
            return ret
        path = os.path.join(directory, name)
        if _read(path) == text:
            ret["comment"] = "{}: the certificates' expiry is exported".format(path)
            return ret
        ret["changes"] = {"exported": [spec["certificate"] for spec in certificates]}
        if __opts__["test"]:
            ret.update(result=None, comment="{} would be written".format(path))
            return ret
        __utils__["etcd_metrics.write"](directory, name, text)
        ret["comment"] = "{}: written".format(path)
    except (CommandExecutionError, SaltInvocationError, KeyError, ValueError, OSError) as err:
        ret.update(result=False, changes={}, comment=str(err))
    return ret
