#!/usr/bin/python3
"""Reverse proxy in front of a registry that redirects blob fetches (S3-like).

Stdlib only.  Usage:

  redirect_proxy.py --upstream 127.0.0.1:PORT --listen-port-file FILE --log FILE
                    [--port 0] [--blobstore-port-file FILE2]
                    [--allow-blobstore-auth] [--upstream-auth USER:PASSWORD]

Behaviour (listening on 127.0.0.1, port chosen by the OS unless --port):
  * every request is forwarded to --upstream (all methods, headers, bodies;
    request and response bodies are streamed; chunked request bodies such as
    chunked PATCH uploads are re-chunked to the upstream; hop-by-hop headers
    are dropped; the Host header is passed through unchanged, so the registry
    builds Location URLs for the proxy; any Location still naming the upstream
    address is rewritten to the proxy's address).
  * GET/HEAD /v2/<name>/blobs/<digest>: the proxy first HEADs the blob on the
    upstream (with the client's headers).  If that is not 200 the request is
    forwarded as-is (so 404 BLOB_UNKNOWN / 401 come from the registry).
    Otherwise it answers
       307 Temporary Redirect
       Location: http://127.0.0.1:BSPORT/blobstore/<digest>?repo=<name>&sig=xyz
    (GET gets a tiny text/html body, like Go's http.Redirect).  BSPORT is the
    proxy's own port, or a second listener's port with --blobstore-port-file
    (a different port = a different origin, so HTTP clients must drop
    credentials when following the redirect).
  * GET/HEAD /blobstore/<digest>?repo=<name>&sig=xyz: fetches the blob from
    the upstream registry and streams it with Content-Length and
    Content-Type: application/octet-stream (Range is passed through -> 206).
    Wrong/missing sig -> 403 (S3-style XML).  A request carrying an
    Authorization header -> 400 InvalidArgument (as S3 does for presigned
    URLs) unless --allow-blobstore-auth.  Unknown blob -> 404 NoSuchKey.
    The blobstore's own upstream fetch is anonymous; with --upstream-auth it
    answers a 401 challenge itself (Basic, or Bearer: token from the realm with
    Basic credentials), so the proxy also works in front of htpasswd/token
    registries.  The client's credentials are never used for the blobstore.

The port is written (atomically, "PORT\\n") to --listen-port-file once
listening; likewise the blobstore port to --blobstore-port-file.

Log (--log): one JSON object per line, flushed per request:
  {"time", "kind": "forward"|"redirect"|"blobstore", "request_line",
   "method", "path", "authorization": bool, "status"}
Clients must never produce a "blobstore" line with "authorization": true.
"""

import argparse
import base64
import http.client
import json
import os
import re
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
              "proxy-authorization", "te", "trailer", "trailers", "transfer-encoding",
              "upgrade", "expect"}
BLOB_RE = re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>[A-Za-z0-9_+.-]+:[A-Za-z0-9=_-]+)$")
BLOBSTORE_RE = re.compile(r"^/blobstore/(?P<digest>[A-Za-z0-9_+.-]+:[A-Za-z0-9=_-]+)$")
CHUNK = 64 * 1024
UPSTREAM_TIMEOUT = 120


class Config:
    upstream_host = None
    upstream_port = None
    proxy_port = None
    blobstore_port = None
    allow_blobstore_auth = False
    flaky = 0
    flaky_seen = {}
    flaky_lock = threading.Lock()
    upstream_auth = None  # (user, password)
    log_file = None
    log_lock = threading.Lock()


def log_entry(entry):
    if Config.log_file is None:
        return
    with Config.log_lock:
        Config.log_file.write(json.dumps(entry, sort_keys=True) + "\n")
        Config.log_file.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "berth-test-redirect-proxy/1.0"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.log_date_time_string(), fmt % args))

    # -- plumbing ---------------------------------------------------------
    def _entry(self, kind):
        return {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "kind": kind, "request_line": self.requestline,
                "method": self.command, "path": self.path,
                "authorization": "Authorization" in self.headers, "status": None}

    def _body_chunks(self):
        """Yield the request body (de-chunked if needed)."""
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ConnectionError("client closed during chunked body")
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while True:  # trailers
                        t = self.rfile.readline(65537)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    return
                remaining = size
                while remaining > 0:
                    data = self.rfile.read(min(CHUNK, remaining))
                    if not data:
                        raise ConnectionError("client closed during chunk")
                    remaining -= len(data)
                    yield data
                self.rfile.readline(3)  # CRLF after chunk
        else:
            remaining = int(self.headers.get("Content-Length") or 0)
            while remaining > 0:
                data = self.rfile.read(min(CHUNK, remaining))
                if not data:
                    raise ConnectionError("client closed during body")
                remaining -= len(data)
                yield data

    def _has_body(self):
        return ("chunked" in self.headers.get("Transfer-Encoding", "").lower()
                or int(self.headers.get("Content-Length") or 0) > 0)

    def _rewrite_location(self, value):
        up = "%s:%d" % (Config.upstream_host, Config.upstream_port)
        me = "127.0.0.1:%d" % Config.proxy_port
        for scheme in ("http://", "https://"):
            if value.startswith(scheme + up):
                return "http://" + me + value[len(scheme + up):]
        return value

    def _upstream_request(self, method, path, headers, body_iter=None, chunked=False,
                          length=None):
        conn = http.client.HTTPConnection(Config.upstream_host, Config.upstream_port,
                                          timeout=UPSTREAM_TIMEOUT)
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for k, v in headers:
            conn.putheader(k, v)
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        elif length is not None:
            conn.putheader("Content-Length", str(length))
        conn.endheaders()
        if body_iter is not None:
            for data in body_iter:
                if chunked:
                    conn.send(b"%x\r\n" % len(data) + data + b"\r\n")
                else:
                    conn.send(data)
            if chunked:
                conn.send(b"0\r\n\r\n")
        return conn, conn.getresponse()

    def _client_headers(self):
        out = []
        for k, v in self.headers.items():
            if k.lower() in HOP_BY_HOP or k.lower() == "content-length":
                continue
            out.append((k, v))
        if not any(k.lower() == "host" for k, _ in out):
            out.append(("Host", "127.0.0.1:%d" % Config.proxy_port))
        return out

    def _relay_response(self, resp, method, rewrite=True):
        status = resp.status
        self.send_response_only(status, resp.reason)
        self.send_header("Date", self.date_time_string())
        length = resp.getheader("Content-Length")
        no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
        for k, v in resp.getheaders():
            kl = k.lower()
            if kl in HOP_BY_HOP or kl in ("content-length", "date", "server"):
                continue
            if kl == "location" and rewrite:
                v = self._rewrite_location(v)
            self.send_header(k, v)
        chunked_out = False
        if length is not None:
            self.send_header("Content-Length", length)
        elif not no_body:
            self.send_header("Transfer-Encoding", "chunked")
            chunked_out = True
        self.end_headers()
        if no_body:
            return
        while True:
            data = resp.read1(CHUNK) if hasattr(resp, "read1") else resp.read(CHUNK)
            if not data:
                break
            if chunked_out:
                self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")
            else:
                self.wfile.write(data)
        if chunked_out:
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _simple(self, status, body, ctype="text/plain; charset=utf-8", headers=()):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    # -- dispatch ---------------------------------------------------------
    def _handle(self):
        path_only = urllib.parse.urlsplit(self.path).path
        if path_only.startswith("/blobstore/"):
            return self._blobstore(path_only)
        if getattr(self.server, "blobstore_only", False):
            entry = self._entry("blobstore")
            entry["status"] = 404
            self.close_connection = True
            self._simple(404, "blobstore listener only serves /blobstore/\n")
            log_entry(entry)
            return
        m = BLOB_RE.match(path_only)
        if m and self.command in ("GET", "HEAD") and not self._has_body():
            return self._redirect(m.group("name"), m.group("digest"))
        return self._forward("forward")

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _handle

    def _forward(self, kind):
        entry = self._entry(kind)
        conn = None
        try:
            chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
            length = None if chunked else self.headers.get("Content-Length")
            body = self._body_chunks() if (chunked or length is not None) else None
            try:
                conn, resp = self._upstream_request(
                    self.command, self.path, self._client_headers(), body,
                    chunked=chunked, length=int(length) if length is not None else None)
            except (OSError, http.client.HTTPException) as e:
                entry["status"] = 502
                self.close_connection = True
                self._simple(502, "upstream error: %s\n" % e)
                return
            entry["status"] = resp.status
            self._relay_response(resp, self.command)
        finally:
            if conn is not None:
                conn.close()
            log_entry(entry)

    def _redirect(self, name, digest):
        entry = self._entry("redirect")
        conn = None
        try:
            try:
                conn, resp = self._upstream_request("HEAD", self.path, self._client_headers())
                resp.read()
            except (OSError, http.client.HTTPException) as e:
                entry["status"] = 502
                self.close_connection = True
                self._simple(502, "upstream error: %s\n" % e)
                return
            finally:
                if conn is not None:
                    conn.close()
            if resp.status != 200:
                entry = None  # logged by _forward instead
                return self._forward("forward")
            port = Config.blobstore_port or Config.proxy_port
            location = "http://127.0.0.1:%d/blobstore/%s?repo=%s&sig=xyz" % (
                port, digest, urllib.parse.quote(name, safe="/"))
            body = ('<a href="%s">Temporary Redirect</a>.\n\n' % location).encode()
            entry["status"] = 307
            self.send_response(307, "Temporary Redirect")
            self.send_header("Location", location)
            self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
            if self.command == "GET":
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_header("Content-Length", "0")
                self.end_headers()
        finally:
            if entry is not None:
                log_entry(entry)

    def _s3_error(self, status, code, message):
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code>'
                '<Message>%s</Message></Error>\n' % (code, message))
        self._simple(status, body, ctype="application/xml")

    def _blobstore(self, path_only):
        entry = self._entry("blobstore")
        conn = None
        # --flaky N: the first N fetches of each blob fail the way busy
        # storage does (503, then 429 with Retry-After), to exercise retries.
        with Config.flaky_lock:
            seen = Config.flaky_seen.get(path_only, 0)
            Config.flaky_seen[path_only] = seen + 1
        if self.command == "GET" and seen < Config.flaky:
            entry["status"] = 503 if seen % 2 == 0 else 429
            self._simple(entry["status"], "try again\n", headers=[("Retry-After", "0")])
            log_entry(entry)
            return
        try:
            if self._has_body():
                for _ in self._body_chunks():
                    pass
            if self.command not in ("GET", "HEAD"):
                entry["status"] = 405
                return self._s3_error(405, "MethodNotAllowed", "only GET/HEAD")
            m = BLOBSTORE_RE.match(path_only)
            q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            repo = (q.get("repo") or [""])[0]
            if not m or not repo:
                entry["status"] = 400
                return self._s3_error(400, "InvalidRequest", "bad blobstore URL")
            if (q.get("sig") or [""])[0] != "xyz":
                entry["status"] = 403
                return self._s3_error(403, "SignatureDoesNotMatch", "bad signature")
            if "Authorization" in self.headers and not Config.allow_blobstore_auth:
                entry["status"] = 400
                return self._s3_error(
                    400, "InvalidArgument",
                    "Only one auth mechanism allowed; an Authorization header must not "
                    "be sent with a presigned URL")
            headers = [("Host", "%s:%d" % (Config.upstream_host, Config.upstream_port))]
            if self.headers.get("Range"):
                headers.append(("Range", self.headers["Range"]))
            upath = "/v2/%s/blobs/%s" % (urllib.parse.quote(repo, safe="/"), m.group("digest"))
            try:
                conn, resp = self._upstream_request(self.command, upath, headers)
                if resp.status == 401 and Config.upstream_auth:
                    challenge = resp.getheader("WWW-Authenticate", "")
                    resp.read()
                    conn.close()
                    conn = None
                    authz = upstream_authorization(challenge)
                    if authz:
                        conn, resp = self._upstream_request(
                            self.command, upath, headers + [("Authorization", authz)])
            except (OSError, http.client.HTTPException, ValueError) as e:
                entry["status"] = 502
                self.close_connection = True
                return self._s3_error(502, "BadGateway", str(e))
            if resp.status == 404:
                resp.read()
                entry["status"] = 404
                return self._s3_error(404, "NoSuchKey", "The specified key does not exist.")
            if resp.status not in (200, 206):
                resp.read()
                entry["status"] = 502
                return self._s3_error(502, "BadGateway",
                                      "upstream answered %d" % resp.status)
            entry["status"] = resp.status
            self.send_response(resp.status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", '"%s"' % m.group("digest").split(":", 1)[-1][:32])
            if resp.getheader("Content-Range"):
                self.send_header("Content-Range", resp.getheader("Content-Range"))
            length = resp.getheader("Content-Length")
            if length is None:
                data = resp.read()  # should not happen with distribution
                length = str(len(data))
                self.send_header("Content-Length", length)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                return
            self.send_header("Content-Length", length)
            self.end_headers()
            if self.command == "HEAD":
                return
            while True:
                data = resp.read1(CHUNK)
                if not data:
                    break
                self.wfile.write(data)
        finally:
            if conn is not None:
                conn.close()
            log_entry(entry)


def parse_challenge(value):
    scheme, _, rest = value.strip().partition(" ")
    params = dict((k.lower(), v) for k, v in re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


def upstream_authorization(challenge):
    """Authorization header value answering the upstream's 401 challenge."""
    user, password = Config.upstream_auth
    basic = "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
    scheme, params = parse_challenge(challenge)
    if scheme == "basic":
        return basic
    if scheme != "bearer" or "realm" not in params:
        return None
    q = {"service": params.get("service", "")}
    if params.get("scope"):
        q["scope"] = params["scope"]
    realm = urllib.parse.urlsplit(params["realm"])
    conn = http.client.HTTPConnection(realm.hostname, realm.port or 80,
                                      timeout=UPSTREAM_TIMEOUT)
    try:
        conn.request("GET", realm.path + "?" + urllib.parse.urlencode(q),
                     headers={"Authorization": basic})
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise ValueError("token realm answered %d" % r.status)
        d = json.loads(body)
        return "Bearer " + (d.get("token") or d["access_token"])
    finally:
        conn.close()


def write_port_file(path, port):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.replace(tmp, path)


def main():
    p = argparse.ArgumentParser(description="registry reverse proxy with S3-like blob redirects")
    p.add_argument("--upstream", required=True, help="HOST:PORT of the registry")
    p.add_argument("--listen-port-file", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--blobstore-port-file",
                   help="serve /blobstore/ on a second port (different origin)")
    p.add_argument("--allow-blobstore-auth", action="store_true",
                   help="do not reject blobstore requests carrying Authorization")
    p.add_argument("--upstream-auth", metavar="USER:PASSWORD",
                   help="credentials the blobstore uses to read from the upstream")
    p.add_argument("--flaky", type=int, default=0,
                   help="fail the first N GETs of each blob with 503/429")
    args = p.parse_args()
    Config.flaky = args.flaky
    if args.upstream_auth:
        u, _, pw = args.upstream_auth.partition(":")
        Config.upstream_auth = (u, pw)

    host, _, port = args.upstream.rpartition(":")
    Config.upstream_host = host or "127.0.0.1"
    Config.upstream_port = int(port)
    Config.allow_blobstore_auth = args.allow_blobstore_auth
    Config.log_file = open(args.log, "a", buffering=1)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    Config.proxy_port = server.server_address[1]
    servers = [server]
    if args.blobstore_port_file:
        bs = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        bs.daemon_threads = True
        bs.blobstore_only = True
        Config.blobstore_port = bs.server_address[1]
        servers.append(bs)
        threading.Thread(target=bs.serve_forever, daemon=True).start()
        write_port_file(args.blobstore_port_file, Config.blobstore_port)
    write_port_file(args.listen_port_file, Config.proxy_port)
    sys.stderr.write("redirect_proxy listening on 127.0.0.1:%d -> %s (blobstore port %s)\n"
                     % (Config.proxy_port, args.upstream, Config.blobstore_port or "same"))
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
