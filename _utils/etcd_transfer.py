"""
A snapshot handed from the salt-master to the members that restore it, without ever going
through Salt's publish channel (whose payloads every accepted minion can read: a snapshot
holds every secret in etcd) and without exposing it on the fileserver.

The master serves the one file over HTTPS for the duration of the restore (``serve``): an
ephemeral key and certificate made for it, client certificates required and verified
against the cluster CA (only the members, with their client certificates, get it), one
random path. The member (``fetch``) pins the server certificate by the fingerprint the
runner hands it, and checks the file's sha256 before it keeps it.
"""

import contextlib
import datetime
import hashlib
import http.server
import os
import secrets
import shutil
import socket
import ssl
import tempfile
import threading

__virtualname__ = "etcd_transfer"

# Seconds a client has to finish its TLS handshake with the transfer server.
HANDSHAKE_TIMEOUT = 15


def __virtual__():
    return __virtualname__


def _ephemeral_pair(directory):
    """(cert file, key file, sha256 fingerprint of the DER certificate) made for one transfer."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "etcd-formula-transfer")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=12))
            .sign(key, hashes.SHA256()))
    cert_file = os.path.join(directory, "transfer.crt")
    key_file = os.path.join(directory, "transfer.key")
    with open(cert_file, "wb") as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    fingerprint = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    return cert_file, key_file, fingerprint


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def serve(path, ca_file, host="0.0.0.0", port=0):
    """
    Serve ``path`` over mTLS for the ``with`` block: yields {"port", "path" (the URL path),
    "fingerprint" (the server certificate's sha256), "sha256" (the file's), "served"
    (client addresses that got it)}. Only clients whose certificate the cluster CA
    (``ca_file``) signed are served.
    """
    secret_path = "/" + secrets.token_urlsafe(24)
    served = []
    directory = tempfile.mkdtemp(prefix="etcd-transfer-")
    try:
        cert_file, key_file, fingerprint = _ephemeral_pair(directory)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert_file, key_file)
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(ca_file)
        size = os.path.getsize(path)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                if self.path != secret_path:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                with open(path, "rb") as handle:
                    shutil.copyfileobj(handle, self.wfile, 1 << 20)
                served.append(self.client_address[0])

            def log_message(self, *args):  # no request lines on the runner's output
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self):
                # the TLS handshake happens in the request's own thread, under a timeout: a
                # client that connects and says nothing stalls nobody
                sock, address = self.socket.accept()
                sock.settimeout(HANDSHAKE_TIMEOUT)
                return context.wrap_socket(sock, server_side=True,
                                           do_handshake_on_connect=False), address

            def finish_request(self, request, client_address):
                try:
                    request.do_handshake()
                except (OSError, ssl.SSLError):
                    return
                request.settimeout(None)
                super().finish_request(request, client_address)

        server = Server((host, port), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield {"port": server.server_address[1], "path": secret_path,
                   "fingerprint": fingerprint, "sha256": file_sha256(path), "served": served}
        finally:
            server.shutdown()
            server.server_close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def fetch(host, port, url_path, fingerprint, sha256, destination, cert_file, key_file,
          timeout=30):
    """
    Fetch a served file into ``destination`` (0600): the server must present the certificate
    of ``fingerprint``, the file must have ``sha256``; otherwise nothing is kept and
    ValueError says why. Bytes written.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # pinned below, by fingerprint
    context.load_cert_chain(cert_file, key_file)
    partial = destination + ".part"
    try:
        return _fetch(host, port, url_path, fingerprint, sha256, destination, partial, context,
                      timeout)
    finally:
        if os.path.exists(partial):  # broken off, or refused: nothing of it is kept
            os.remove(partial)


def _fetch(host, port, url_path, fingerprint, sha256, destination, partial, context, timeout):
    with socket.create_connection((host, int(port)), timeout=timeout) as raw:
        with context.wrap_socket(raw) as tls:
            presented = hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()
            if presented != fingerprint:
                raise ValueError("the snapshot server at {}:{} presented another certificate "
                                 "({}): refusing it".format(host, port, presented))
            tls.sendall("GET {} HTTP/1.0\r\nHost: {}\r\n\r\n".format(url_path, host).encode())
            reader = tls.makefile("rb")
            status_line = reader.readline().decode(errors="replace")
            if " 200 " not in status_line:
                raise ValueError("the snapshot server answered {}".format(status_line.strip()))
            while reader.readline() not in (b"\r\n", b"\n", b""):
                pass
            digest = hashlib.sha256()
            written = 0
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                for chunk in iter(lambda: reader.read(1 << 20), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    written += len(chunk)
    if digest.hexdigest() != sha256:
        raise ValueError("the snapshot fetched has sha256 {}, expected {}: not kept".format(
            digest.hexdigest(), sha256))
    os.replace(partial, destination)
    return written
