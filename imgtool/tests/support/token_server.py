#!/usr/bin/python3
"""Minimal Docker registry token server (docker token auth spec) for tests.

Stdlib only.  Usually started by registry.py (--mode token); can be run alone:

  token_server.py --key KEY.pem --cert CERT.pem
                  [--service berth-test-registry] [--issuer berth-test-issuer]
                  [--user U --password P] [--anonymous-pull]
                  [--port 0] [--port-file FILE] [--log FILE]
                  [--key-id-method x5c|kid] [--expires-in 300]

Endpoints (all on http://127.0.0.1:PORT):
  GET  /token?service=S&scope=repository:NAME:pull,push&scope=...[&account=U]
       [&offline_token=true&client_id=C]   (optional HTTP Basic credentials)
       -> 200 {"token": JWT, "access_token": JWT, "expires_in": N,
               "issued_at": RFC3339[, "refresh_token": R]}
  POST /token  (application/x-www-form-urlencoded, OAuth2 style)
       grant_type=password&username=U&password=P&service=S&scope=A B&client_id=C
                 [&access_type=offline]
       grant_type=refresh_token&refresh_token=R&service=S&scope=A B
       -> 200 {"access_token": JWT, "token": JWT, "expires_in": N,
               "issued_at": ..., "scope": "...", ["refresh_token": R]}

Policy:
  * valid credentials (--user/--password)        -> every requested action
  * credentials present but wrong                -> 401 (GET: WWW-Authenticate Basic)
  * no credentials and --anonymous-pull          -> only "pull" on repository scopes
  * no credentials otherwise                     -> token with empty access list
  * ?service= present but != --service           -> 400 (catches client bugs)
  Scopes may be repeated (scope=a&scope=b) or space separated (scope=a%20b).

JWT: RS256 signed in pure Python (PKCS#1 v1.5) from --key (PKCS#1 or PKCS#8
PEM).  Key identification (--key-id-method):
  x5c (default): header "x5c": [base64(DER of --cert)]; distribution verifies
       the chain against auth.token.rootcertbundle (the same self-signed cert).
  kid: header "kid": libtrust key ID of the cert's public key
       (base32(sha256(DER SubjectPublicKeyInfo))[:30 bytes], groups of 4 by ':'),
       looked up among the keys of rootcertbundle.

Log (--log): one JSON object per line, flushed per request:
  {"time", "method", "path" (incl. query), "auth_present": bool,
   "auth_scheme": "basic"|"bearer"|...|null, "user", "auth_ok": bool|null,
   "grant_type", "service", "scopes": [...], "granted": [...], "status"}
The chosen port is written (atomically) to --port-file once listening.
"""

import argparse
import base64
import hashlib
import json
import os
import secrets
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


# ---------------------------------------------------------------- DER / RSA --

def _der_read(buf, i):
    """Read one TLV at buf[i]; return (tag, content_bytes, start, end)."""
    start = i
    tag = buf[i]
    i += 1
    length = buf[i]
    i += 1
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(buf[i:i + n], "big")
        i += n
    return tag, buf[i:i + length], start, i + length


def _der_children(content):
    out = []
    i = 0
    while i < len(content):
        tag, val, start, end = _der_read(content, i)
        out.append((tag, val, content[start:end]))
        i = end
    return out


def _pem_to_der(text, labels):
    for label in labels:
        begin = "-----BEGIN %s-----" % label
        end = "-----END %s-----" % label
        if begin in text:
            body = text.split(begin, 1)[1].split(end, 1)[0]
            return label, base64.b64decode("".join(body.split()))
    raise ValueError("no PEM block of type %s found" % " / ".join(labels))


def load_rsa_private_key(path):
    with open(path) as f:
        text = f.read()
    label, der = _pem_to_der(text, ["RSA PRIVATE KEY", "PRIVATE KEY"])
    if label == "PRIVATE KEY":  # PKCS#8 PrivateKeyInfo
        tag, content, _, _ = _der_read(der, 0)
        parts = _der_children(content)
        # version, AlgorithmIdentifier, privateKey OCTET STRING
        if parts[2][0] != 0x04:
            raise ValueError("unexpected PKCS#8 structure")
        der = parts[2][1]
    tag, content, _, _ = _der_read(der, 0)
    ints = [int.from_bytes(v, "big") for t, v, _ in _der_children(content) if t == 0x02]
    _version, n, e, d, p, q, dp, dq, qinv = ints[:9]
    return {"n": n, "e": e, "d": d, "p": p, "q": q, "dp": dp, "dq": dq, "qinv": qinv}


def load_cert(path):
    """Return (cert_der, spki_der, n, e) of the first certificate in path."""
    with open(path) as f:
        text = f.read()
    _, der = _pem_to_der(text, ["CERTIFICATE"])
    _, cert_content, _, _ = _der_read(der, 0)
    tbs = _der_children(cert_content)[0]
    fields = _der_children(tbs[1])
    idx = 0
    if fields[0][0] == 0xA0:  # explicit [0] version
        idx = 1
    # serial, signature alg, issuer, validity, subject, subjectPublicKeyInfo
    spki_tag, spki_content, spki_der = fields[idx + 5]
    spki_parts = _der_children(spki_content)
    bitstring = spki_parts[1][1]
    rsa_pub = bitstring[1:]  # skip "unused bits" byte
    _, pub_content, _, _ = _der_read(rsa_pub, 0)
    n, e = [int.from_bytes(v, "big") for _, v, _ in _der_children(pub_content)]
    return der, spki_der, n, e


_SHA256_DIGESTINFO = bytes.fromhex("3031300d060960864801650304020105000420")


def _emsa_pkcs1_v15(message, k):
    t = _SHA256_DIGESTINFO + hashlib.sha256(message).digest()
    if k < len(t) + 11:
        raise ValueError("RSA key too short")
    return b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t


def rs256_sign(key, message):
    n = key["n"]
    k = (n.bit_length() + 7) // 8
    m = int.from_bytes(_emsa_pkcs1_v15(message, k), "big")
    # CRT
    m1 = pow(m, key["dp"], key["p"])
    m2 = pow(m, key["dq"], key["q"])
    h = (key["qinv"] * (m1 - m2)) % key["p"]
    s = m2 + h * key["q"]
    return s.to_bytes(k, "big")


def rs256_verify(n, e, message, sig):
    k = (n.bit_length() + 7) // 8
    return pow(int.from_bytes(sig, "big"), e, n) == int.from_bytes(
        _emsa_pkcs1_v15(message, k), "big")


def libtrust_key_id(spki_der):
    digest = hashlib.sha256(spki_der).digest()[:30]
    s = base64.b32encode(digest).decode().rstrip("=")
    return ":".join(s[i:i + 4] for i in range(0, len(s), 4))


def b64url(data):
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


# ------------------------------------------------------------------ server --

class TokenIssuer:
    def __init__(self, args):
        self.args = args
        self.key = load_rsa_private_key(args.key)
        self.cert_der, self.spki_der, n, e = load_cert(args.cert)
        if n != self.key["n"]:
            raise SystemExit("token_server: --key does not match --cert public key")
        test = rs256_sign(self.key, b"self-test")
        if not rs256_verify(n, e, b"self-test", test):
            raise SystemExit("token_server: RSA self-test failed")
        self.kid = libtrust_key_id(self.spki_der)
        self.refresh_tokens = {}
        self.lock = threading.Lock()
        self.log_file = open(args.log, "a", buffering=1) if args.log else None

    def log(self, entry):
        if not self.log_file:
            return
        with self.lock:
            self.log_file.write(json.dumps(entry, sort_keys=True) + "\n")
            self.log_file.flush()

    def header(self):
        h = {"typ": "JWT", "alg": "RS256"}
        if self.args.key_id_method == "kid":
            h["kid"] = self.kid
        else:
            h["x5c"] = [base64.b64encode(self.cert_der).decode()]
        return h

    def make_jwt(self, subject, access):
        now = int(time.time())
        claims = {
            "iss": self.args.issuer,
            "sub": subject,
            "aud": self.args.service,
            "exp": now + self.args.expires_in,
            "nbf": now - 1,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        signing_input = (b64url(json.dumps(self.header(), separators=(",", ":")).encode())
                         + "." + b64url(json.dumps(claims, separators=(",", ":")).encode()))
        sig = rs256_sign(self.key, signing_input.encode())
        return signing_input + "." + b64url(sig), now

    def check_credentials(self, user, password):
        return (self.args.user is not None and user == self.args.user
                and password == self.args.password)

    @staticmethod
    def parse_scopes(raw_scopes):
        out = []
        for raw in raw_scopes:
            for s in raw.split(" "):
                s = s.strip()
                if not s:
                    continue
                first = s.find(":")
                last = s.rfind(":")
                if first < 0 or first == last:
                    continue  # malformed: ignore like distribution's token servers
                out.append((s[:first], s[first + 1:last],
                            [a for a in s[last + 1:].split(",") if a]))
        return out

    def grant(self, scopes, authenticated):
        merged = {}
        order = []
        for typ, name, actions in scopes:
            if authenticated:
                allowed = actions
            elif self.args.anonymous_pull and typ == "repository":
                allowed = [a for a in actions if a == "pull"]
            else:
                allowed = []
            if not allowed:
                continue
            key = (typ, name)
            if key not in merged:
                merged[key] = []
                order.append(key)
            for a in allowed:
                if a not in merged[key]:
                    merged[key].append(a)
        return [{"type": t, "name": n, "actions": merged[(t, n)]} for t, n in order]

    def new_refresh_token(self, user):
        tok = "rt-" + secrets.token_urlsafe(24)
        with self.lock:
            self.refresh_tokens[tok] = user
        return tok

    def refresh_user(self, tok):
        with self.lock:
            return self.refresh_tokens.get(tok)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "berth-test-token-server/1.0"
    issuer = None  # set in main

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.log_date_time_string(), fmt % args))

    def _send_json(self, status, obj, extra_headers=()):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra_headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _auth(self):
        """Return (present, scheme, user, password)."""
        h = self.headers.get("Authorization")
        if not h:
            return False, None, None, None
        scheme, _, rest = h.strip().partition(" ")
        if scheme.lower() != "basic":
            return True, scheme.lower(), None, None
        try:
            user, _, pw = base64.b64decode(rest.strip()).decode("utf-8").partition(":")
        except Exception:
            return True, "basic", None, None
        return True, "basic", user, pw

    def _base_entry(self):
        present, scheme, user, _ = self._auth()
        return {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "method": self.command, "path": self.path,
                "auth_present": present, "auth_scheme": scheme, "user": user,
                "auth_ok": None, "grant_type": None, "service": None,
                "scopes": [], "granted": [], "status": None}

    def _service_ok(self, service, entry):
        if service and service != self.issuer.args.service:
            entry["status"] = 400
            self._send_json(400, {"errors": [{"code": "UNSUPPORTED",
                                              "message": "unknown service %r (expected %r)"
                                              % (service, self.issuer.args.service)}]})
            return False
        return True

    def do_GET(self):
        entry = self._base_entry()
        try:
            self._get(entry)
        finally:
            self.issuer.log(entry)

    def _get(self, entry):
        url = urllib.parse.urlsplit(self.path)
        if url.path.rstrip("/") != "/token":
            entry["status"] = 404
            self._send_json(404, {"errors": [{"code": "NOT_FOUND", "message": "not found"}]})
            return
        q = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        service = (q.get("service") or [None])[0]
        entry["service"] = service
        raw_scopes = q.get("scope", [])
        entry["scopes"] = raw_scopes
        if not self._service_ok(service, entry):
            return
        present, scheme, user, pw = self._auth()
        authenticated = False
        if present:
            authenticated = scheme == "basic" and self.issuer.check_credentials(user, pw)
            entry["auth_ok"] = authenticated
            if not authenticated:
                entry["status"] = 401
                self._send_json(401, {"errors": [{"code": "UNAUTHORIZED",
                                                  "message": "invalid credentials"}]},
                                [("WWW-Authenticate", 'Basic realm="berth-test-token-server"')])
                return
        access = self.issuer.grant(self.issuer.parse_scopes(raw_scopes), authenticated)
        entry["granted"] = access
        token, now = self.issuer.make_jwt(user if authenticated else "", access)
        resp = {"token": token, "access_token": token,
                "expires_in": self.issuer.args.expires_in,
                "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}
        if authenticated and (q.get("offline_token") or [""])[0].lower() == "true":
            resp["refresh_token"] = self.issuer.new_refresh_token(user)
        entry["status"] = 200
        self._send_json(200, resp)

    def do_POST(self):
        entry = self._base_entry()
        try:
            self._post(entry)
        finally:
            self.issuer.log(entry)

    def _post(self, entry):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        url = urllib.parse.urlsplit(self.path)
        if url.path.rstrip("/") != "/token":
            entry["status"] = 404
            self._send_json(404, {"error": "not_found"})
            return
        form = urllib.parse.parse_qs(body, keep_blank_values=True)
        get = lambda k: (form.get(k) or [None])[0]
        grant_type = get("grant_type")
        service = get("service")
        raw_scopes = form.get("scope", [])
        entry.update(grant_type=grant_type, service=service, scopes=raw_scopes)
        if not self._service_ok(service, entry):
            return
        if grant_type == "password":
            user = get("username")
            entry["user"] = user
            ok = self.issuer.check_credentials(user, get("password"))
        elif grant_type == "refresh_token":
            user = self.issuer.refresh_user(get("refresh_token") or "")
            entry["user"] = user
            ok = user is not None
        else:
            entry["status"] = 400
            self._send_json(400, {"error": "unsupported_grant_type",
                                  "error_description": "grant_type %r" % grant_type})
            return
        entry["auth_ok"] = ok
        if not ok:
            entry["status"] = 401
            self._send_json(401, {"error": "invalid_grant",
                                  "error_description": "invalid credentials"})
            return
        access = self.issuer.grant(self.issuer.parse_scopes(raw_scopes), True)
        entry["granted"] = access
        token, now = self.issuer.make_jwt(user, access)
        resp = {"access_token": token, "token": token,
                "expires_in": self.issuer.args.expires_in,
                "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                "scope": " ".join(" ".join(raw_scopes).split())}
        if grant_type == "password" and get("access_type") == "offline":
            resp["refresh_token"] = self.issuer.new_refresh_token(user)
        elif grant_type == "refresh_token":
            resp["refresh_token"] = get("refresh_token")
        entry["status"] = 200
        self._send_json(200, resp)


def main():
    p = argparse.ArgumentParser(description="test token server for docker-registry token auth")
    p.add_argument("--key", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--service", default="berth-test-registry")
    p.add_argument("--issuer", default="berth-test-issuer")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--anonymous-pull", action="store_true")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file")
    p.add_argument("--log")
    p.add_argument("--key-id-method", choices=["x5c", "kid"], default="x5c")
    p.add_argument("--expires-in", type=int, default=300)
    args = p.parse_args()

    Handler.issuer = TokenIssuer(args)
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, args.port_file)
    sys.stderr.write("token_server listening on %s:%d (kid %s)\n"
                     % (args.host, port, Handler.issuer.kid))
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
