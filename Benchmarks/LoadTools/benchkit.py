#!/usr/bin/env python3
"""Helpers for scripts/bench (not part of the test suite). Loopback only, every loop bounded.

  issuer DIR N          make a CA + serving cert + RSA-2048 key, write issuer-url, issuer-ca.crt,
                        issuer-pub.pem, token (one) and tokens (N distinct valid tokens, one a
                        line) into DIR, then serve discovery + JWKS over HTTPS until killed;
                        writes DIR/issuer-ready last.
  cert DIR NAME         write NAME-ca.crt, NAME.crt, NAME.key (a CA and a 127.0.0.1/localhost cert).
  watches URL TOKEN N SECONDS
                        open N `?watch=true` GETs (plain HTTP) through URL, wait for the first
                        chunk of each, print "held K", hold them SECONDS, then close.
  spdy-throughput URL TOKEN SECONDS [--tls]
                        one SPDY/3.1 upgrade at URL, then echo 64 KiB chunks for SECONDS;
                        prints MB/s echoed (bytes received back per second).
  spdy-idle URL TOKEN N SECONDS
                        open N SPDY/3.1 upgrades (plain HTTP), print "held K", hold SECONDS.
"""
import asyncio
import base64
import datetime
import http.server
import json
import os
import ssl
import sys
import threading
import time
from urllib.parse import urlsplit


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_ca_and_cert(name: str):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} bench CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return (ca.public_bytes(pem), cert.public_bytes(pem),
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def pubkey_certificate(pub):
    """A throwaway self-issued certificate around the issuer's public key, for tools (older
    HAProxy) whose JWT verification wants a certificate rather than a bare public key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    now = datetime.datetime.now(datetime.timezone.utc)
    signer = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer signing key")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(pub)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(signer, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def write(path, data):
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def cmd_cert(d, name):
    ca, cert, key = make_ca_and_cert(name)
    write(f"{d}/{name}-ca.crt", ca)
    write(f"{d}/{name}.crt", cert)
    write(f"{d}/{name}.key", key)


def cmd_issuer(d, n):
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    ca, cert, key = make_ca_and_cert("issuer")
    write(f"{d}/issuer-ca.crt", ca)
    write(f"{d}/issuer.crt", cert)
    write(f"{d}/issuer.key", key)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = rsa_key.public_key()
    write(f"{d}/issuer-pub.pem", pub.public_bytes(serialization.Encoding.PEM,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo))
    write(f"{d}/issuer-pubcert.pem", pubkey_certificate(pub))
    nums = pub.public_numbers()
    jwk = {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": "bench-1",
           "n": b64u(nums.n.to_bytes(256, "big")), "e": b64u(nums.e.to_bytes(3, "big"))}

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(f"{d}/issuer.crt", f"{d}/issuer.key")
    state = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            url = state["url"]
            if self.path == "/.well-known/openid-configuration":
                body = json.dumps({"issuer": url, "jwks_uri": url + "/keys",
                                   "id_token_signing_alg_values_supported": ["RS256"]}).encode()
            elif self.path == "/keys":
                body = json.dumps({"keys": [jwk]}).encode()
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    url = f"https://127.0.0.1:{server.server_address[1]}"
    state["url"] = url
    write(f"{d}/issuer-url", url + "\n")

    header = b64u(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "bench-1"}, separators=(",", ":")).encode())
    now = int(time.time())

    def mint(i):
        claims = {"iss": url, "aud": "kubernetes", "sub": f"user-{i}", "email": f"user{i}@example.com",
                  "email_verified": True, "groups": ["developers", "oncall"], "iat": now, "exp": now + 7200}
        payload = b64u(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = f"{header}.{payload}".encode()
        sig = rsa_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return f"{header}.{payload}.{b64u(sig)}"

    write(f"{d}/token", mint(0) + "\n")
    write(f"{d}/tokens", "".join(mint(i) + "\n" for i in range(1, n + 1)))
    write(f"{d}/issuer-ready", "")
    print(f"issuer {url} with {n} tokens", flush=True)
    server.serve_forever()


async def open_stream(url, tls_ctx=None):
    u = urlsplit(url)
    return await asyncio.open_connection(u.hostname, u.port, ssl=tls_ctx,
                                         server_hostname=u.hostname if tls_ctx else None)


async def upgrade(url, token, tls_ctx=None):
    reader, writer = await open_stream(url, tls_ctx)
    u = urlsplit(url)
    writer.write((f"POST /testbed/spdy-echo HTTP/1.1\r\nHost: {u.netloc}\r\n"
                  f"Authorization: Bearer {token}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                  f"X-Stream-Protocol-Version: portforward.k8s.io\r\nContent-Length: 0\r\n\r\n").encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError("no 101: " + head.decode(errors="replace")[:200])
    hello = await reader.readexactly(len(b"upstream-ready\n"))
    assert hello == b"upstream-ready\n", hello
    return reader, writer


async def spdy_throughput(url, token, seconds, tls_ctx):
    reader, writer = await upgrade(url, token, tls_ctx)
    chunk = os.urandom(64 * 1024)
    stop = time.monotonic() + seconds
    sent = 0
    received = 0
    window = 4 * 1024 * 1024  # bytes allowed in flight

    async def send():
        nonlocal sent
        while time.monotonic() < stop:
            while sent - received > window:
                await asyncio.sleep(0)
            writer.write(chunk)
            sent += len(chunk)
            await writer.drain()

    start = time.monotonic()
    sender = asyncio.ensure_future(send())
    while True:
        if sender.done() and received >= sent:
            break
        data = await asyncio.wait_for(reader.read(1 << 20), timeout=30)
        if not data:
            break
        received += len(data)
    elapsed = time.monotonic() - start
    writer.close()
    print(f"{received / elapsed / 1e6:.1f}", flush=True)


async def hold_many(n, seconds, opener):
    sem = asyncio.Semaphore(200)
    held = []

    async def one(i):
        async with sem:
            try:
                held.append(await asyncio.wait_for(opener(), timeout=60))
            except Exception as e:  # counted, not fatal: the machine's limits decide
                if i % 500 == 0:
                    print(f"open {i} failed: {e!r}", file=sys.stderr, flush=True)

    await asyncio.gather(*(one(i) for i in range(n)))
    print(f"held {len(held)}", flush=True)
    await asyncio.sleep(seconds)
    for _, w in held:
        w.close()


async def open_watch(url, token):
    reader, writer = await open_stream(url)
    u = urlsplit(url)
    writer.write((f"GET /api/v1/namespaces?watch=true HTTP/1.1\r\nHost: {u.netloc}\r\n"
                  f"Authorization: Bearer {token}\r\n\r\n").encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head.decode(errors="replace")[:200])
    await reader.readuntil(b"\r\n")  # first chunk size line: the stream is flowing
    return reader, writer


def main():
    args = sys.argv[1:]
    cmd = args[0]
    if cmd == "issuer":
        cmd_issuer(args[1], int(args[2]))
    elif cmd == "cert":
        cmd_cert(args[1], args[2])
    elif cmd == "watches":
        url, token, n, secs = args[1], args[2], int(args[3]), float(args[4])
        asyncio.run(hold_many(n, secs, lambda: open_watch(url, token)))
    elif cmd == "spdy-idle":
        url, token, n, secs = args[1], args[2], int(args[3]), float(args[4])
        asyncio.run(hold_many(n, secs, lambda: upgrade(url, token)))
    elif cmd == "spdy-throughput":
        url, token, secs = args[1], args[2], float(args[3])
        ctx = None
        if url.startswith("https:"):
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        asyncio.run(spdy_throughput(url, token, secs, ctx))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
