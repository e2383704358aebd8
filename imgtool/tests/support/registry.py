#!/usr/bin/python3
"""Start/stop a private CNCF distribution registry (docker-registry 2.8) for tests.

Stdlib only; needs /usr/bin/docker-registry, plus `htpasswd` (htpasswd mode)
and `openssl` (token mode).  Only 127.0.0.1 is used.

  registry.py start --dir DIR --mode none|htpasswd|token
                    [--user U --password P]      (required for htpasswd/token)
                    [--anonymous-pull]           (token mode: anonymous pull-only)
                    [--with-redirect-proxy]      (also start redirect_proxy.py; in auth
                                                  modes its blobstore reads with U/P)
                    [--key-id-method x5c|kid]    (token mode JWT key id, default x5c)
                    [--watch-pid PID]            (auto-stop when PID exits)
                    [--timeout SECONDS]          (readiness timeout, default 30)
                    [--registry-bin PATH]        (default $BERTH_REGISTRY_BIN or
                                                  /usr/bin/docker-registry)
     On success prints exactly one JSON line on stdout and exits 0:
       {"registry": "127.0.0.1:PORT", "token_server": "http://127.0.0.1:P/token"|null,
        "redirect_proxy": "127.0.0.1:P"|null, "pids": [PID, ...]}
     On failure exits 1, kills anything it started, and prints the reason plus
     the tail of the relevant logs on stderr.  Children run detached (own
     session/process group, stdin /dev/null, stdout/stderr to files in DIR), so
     the caller may capture start's stdout without hanging.

  registry.py stop --dir DIR [--timeout SECONDS]
     SIGTERM to each recorded process group, wait, SIGKILL what is left, wait.
     Idempotent (exit 0 when nothing runs); exit 1 if something survives.
     Prints one JSON line: {"stopped": [PID, ...]}.

Layout of DIR after start:
  config.yml                registry config (storage DIR/storage, delete on, log warn)
  storage/                  registry filesystem storage
  registry.log              registry stderr (logrus, level warn)
  registry-access.log       registry stdout (combined access log)
  htpasswd                  (htpasswd mode) bcrypt file from `htpasswd -Bbn`
  token/key.pem, cert.pem   (token mode) RSA-2048 key + self-signed cert
  token-server.log          (token mode) token server stderr
  token-requests.log        (token mode) JSON line per token request (see token_server.py)
  proxy.log, proxy-requests.log  (--with-redirect-proxy) stderr / JSON request log
  pids                      one PID per line;  procs.json: pid -> start time (pid reuse guard)
  info.json                 the JSON line printed by start

Token mode: realm http://127.0.0.1:TOKENPORT/token, service "berth-test-registry",
issuer "berth-test-issuer", rootcertbundle DIR/token/cert.pem.
htpasswd mode: realm "berth-test-registry".
"""

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SERVICE = "berth-test-registry"
ISSUER = "berth-test-issuer"
HTPASSWD_REALM = "berth-test-registry"
PYTHON = sys.executable or "/usr/bin/python3"


class StartError(Exception):
    pass


# ------------------------------------------------------------ processes --

def proc_start_time(pid):
    """Start time (clock ticks since boot) of pid, or None if gone/zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return None
    rest = stat[stat.rfind(")") + 2:].split()
    if rest[0] in ("Z", "X"):
        return None
    return rest[19]


def alive(pid, start_time=None):
    st = proc_start_time(pid)
    if st is None:
        return False
    return start_time is None or st == start_time


def spawn(argv, cwd, stdout_path, stderr_path, env=None):
    out = open(stdout_path, "ab")
    err = out if stderr_path == stdout_path else open(stderr_path, "ab")
    try:
        return subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=err, start_new_session=True, close_fds=True,
                                env=env)
    finally:
        out.close()
        if err is not out:
            err.close()


def terminate(entries, timeout):
    """entries: list of (pid, start_time). Returns list of survivors."""
    def live():
        return [(p, s) for p, s in entries if alive(p, s)]

    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        todo = live()
        if not todo:
            return []
        for pid, _ in todo:
            try:
                os.killpg(pid, sig)  # children are session/group leaders
            except OSError:
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            for pid, _ in todo:  # reap if they happen to be our children
                try:
                    os.waitpid(pid, os.WNOHANG)
                except OSError:
                    pass
            if not live():
                return []
            time.sleep(0.05)
    return live()


def read_state(d):
    procs = {}
    try:
        with open(os.path.join(d, "procs.json")) as f:
            procs = {int(k): v for k, v in json.load(f).items()}
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(d, "pids")) as f:
            for line in f:
                line = line.strip()
                if line.isdigit() and int(line) not in procs:
                    procs[int(line)] = None
    except OSError:
        pass
    return procs


def tail(path, n=40):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 16384))
            lines = f.read().decode("utf-8", "replace").splitlines()[-n:]
        return "\n".join("    " + l for l in lines) or "    (empty)"
    except OSError as e:
        return "    (unreadable: %s)" % e


# ------------------------------------------------------------- helpers --

def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_status(url, timeout=2.0):
    """Return (status, headers) or (None, error string)."""
    try:
        with _OPENER.open(url, timeout=timeout) as r:
            return r.status, r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.headers
    except Exception as e:  # connection refused, timeout, ...
        return None, str(e)


def wait_answering(url, ok, proc, timeout, what):
    """Poll url until it answers with a status in ok while proc runs."""
    deadline = time.monotonic() + timeout
    st = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StartError("%s exited early with status %s" % (what, proc.returncode))
        st, _ = http_status(url)
        if st in ok:
            return
        time.sleep(0.05)
    raise StartError("%s at %s not answering (%s)" % (what, url, st))


def wait_port_file(path, proc, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                txt = f.read().strip()
            if txt.isdigit():
                return int(txt)
        except OSError:
            pass
        if proc.poll() is not None:
            raise StartError("%s exited early with status %s" % (what, proc.returncode))
        time.sleep(0.05)
    raise StartError("%s did not write %s within %.0fs" % (what, path, timeout))


def run(argv, what, **kw):
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=60, **kw)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise StartError("%s failed: %s" % (what, e))
    if r.returncode != 0:
        raise StartError("%s failed (exit %d): %s" % (what, r.returncode,
                                                      r.stderr.decode(errors="replace")))
    return r.stdout


def yq(s):
    """YAML-safe double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(s)


def registry_config(d, port, mode, token_realm):
    lines = [
        "version: 0.1",
        "log:",
        "  level: warn",
        "  formatter: text",
        "  fields:",
        "    service: registry",
        "storage:",
        "  filesystem:",
        "    rootdirectory: %s" % yq(os.path.join(d, "storage")),
        "  delete:",
        "    enabled: true",
        "  maintenance:",
        "    uploadpurging:",
        "      enabled: false",
        "http:",
        "  addr: %s" % yq("127.0.0.1:%d" % port),
        "  secret: %s" % yq(secrets.token_hex(16)),
        "  headers:",
        "    X-Content-Type-Options: [nosniff]",
    ]
    if mode == "htpasswd":
        lines += ["auth:", "  htpasswd:", "    realm: %s" % yq(HTPASSWD_REALM),
                  "    path: %s" % yq(os.path.join(d, "htpasswd"))]
    elif mode == "token":
        lines += ["auth:", "  token:", "    realm: %s" % yq(token_realm),
                  "    service: %s" % yq(SERVICE), "    issuer: %s" % yq(ISSUER),
                  "    rootcertbundle: %s" % yq(os.path.join(d, "token", "cert.pem"))]
    return "\n".join(lines) + "\n"


def child_env():
    # REGISTRY_* variables override config.yml in distribution; drop them.
    return {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}


# ---------------------------------------------------------------- start --

def cmd_start(a):
    d = os.path.abspath(a.dir)
    os.makedirs(d, exist_ok=True)
    running = [p for p, s in read_state(d).items() if alive(p, s)]
    if running:
        raise StartError("registry in %s already running (pids %s); run stop first"
                         % (d, running))
    if a.mode in ("htpasswd", "token") and (not a.user or a.password is None):
        raise StartError("--mode %s needs --user and --password" % a.mode)
    if a.anonymous_pull and a.mode != "token":
        raise StartError("--anonymous-pull is only supported with --mode token")
    if not os.access(a.registry_bin, os.X_OK):
        raise StartError("registry binary %s not found/executable" % a.registry_bin)
    for name in ("pids", "procs.json", "info.json", "token.port", "proxy.port"):
        try:
            os.unlink(os.path.join(d, name))
        except OSError:
            pass
    os.makedirs(os.path.join(d, "storage"), exist_ok=True)

    procs = []  # Popen objects, in start order
    logs = []   # logs to show on failure
    try:
        token_url = None
        if a.mode == "htpasswd":
            out = run(["htpasswd", "-Bbn", a.user, a.password], "htpasswd -Bbn")
            with open(os.path.join(d, "htpasswd"), "wb") as f:
                f.write(out.strip() + b"\n")
        elif a.mode == "token":
            tdir = os.path.join(d, "token")
            os.makedirs(tdir, exist_ok=True)
            key, cert = os.path.join(tdir, "key.pem"), os.path.join(tdir, "cert.pem")
            run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
                 "-keyout", key, "-out", cert, "-days", "3650",
                 "-subj", "/CN=berth-test-token-signer"], "openssl req")
            port_file = os.path.join(d, "token.port")
            log = os.path.join(d, "token-server.log")
            logs.append(log)
            argv = [PYTHON, os.path.join(HERE, "token_server.py"), "--key", key,
                    "--cert", cert, "--service", SERVICE, "--issuer", ISSUER,
                    "--user", a.user, "--password", a.password,
                    "--port-file", port_file, "--key-id-method", a.key_id_method,
                    "--log", os.path.join(d, "token-requests.log")]
            if a.anonymous_pull:
                argv.append("--anonymous-pull")
            p = spawn(argv, d, log, log)
            procs.append(p)
            tport = wait_port_file(port_file, p, a.timeout, "token server")
            token_url = "http://127.0.0.1:%d/token" % tport
            wait_answering(token_url + "?service=" + SERVICE, (200,), p, a.timeout,
                           "token server")

        reg_log = os.path.join(d, "registry.log")
        logs.insert(0, reg_log)
        port = None
        for attempt in range(5):
            port = free_port()
            with open(os.path.join(d, "config.yml"), "w") as f:
                f.write(registry_config(d, port, a.mode, token_url))
            with open(reg_log, "ab") as f:
                f.write(b"--- berth registry.py: starting on 127.0.0.1:%d\n" % port)
            p = spawn([a.registry_bin, "serve", os.path.join(d, "config.yml")], d,
                      os.path.join(d, "registry-access.log"), reg_log, env=child_env())
            ready = False
            deadline = time.monotonic() + a.timeout
            while time.monotonic() < deadline:
                if p.poll() is not None:
                    break
                st, hdrs = http_status("http://127.0.0.1:%d/v2/" % port, timeout=1.0)
                # Our registry, not whatever else took the port meanwhile:
                # it speaks the distribution API and is still running.
                ours = st is not None and hdrs.get("Docker-Distribution-Api-Version")
                if st in (200, 401) and ours and p.poll() is None:
                    ready = True
                    break
                time.sleep(0.05)
            if ready:
                procs.append(p)
                break
            if p.poll() is None:
                procs.append(p)
                raise StartError("registry did not answer GET /v2/ with 200/401 within %.0fs"
                                 % a.timeout)
            with open(reg_log, "rb") as f:
                txt = f.read().decode("utf-8", "replace")
            if "address already in use" in txt.rsplit("--- berth registry.py", 1)[-1]:
                continue  # lost the port race; try another port
            raise StartError("registry exited with status %s" % p.returncode)
        else:
            raise StartError("registry could not bind a free port after 5 attempts")

        proxy_addr = None
        if a.with_redirect_proxy:
            port_file = os.path.join(d, "proxy.port")
            log = os.path.join(d, "proxy.log")
            logs.append(log)
            p = spawn([PYTHON, os.path.join(HERE, "redirect_proxy.py"),
                       "--upstream", "127.0.0.1:%d" % port,
                       "--listen-port-file", port_file,
                       "--log", os.path.join(d, "proxy-requests.log")]
                      + (["--upstream-auth", "%s:%s" % (a.user, a.password)]
                         if a.mode != "none" else [])
                      + (["--flaky", str(a.proxy_flaky)] if a.proxy_flaky else []), d, log, log)
            procs.append(p)
            pport = wait_port_file(port_file, p, a.timeout, "redirect proxy")
            proxy_addr = "127.0.0.1:%d" % pport
            wait_answering("http://%s/v2/" % proxy_addr, (200, 401), p, a.timeout,
                           "redirect proxy")

        if a.watch_pid:
            log = os.path.join(d, "watchdog.log")
            p = spawn([PYTHON, os.path.abspath(__file__), "watch", "--dir", d,
                       "--pid", str(a.watch_pid)], d, log, log)
            procs.append(p)

        pids = [p.pid for p in procs]
        with open(os.path.join(d, "procs.json"), "w") as f:
            json.dump({str(p): proc_start_time(p) for p in pids}, f)
        with open(os.path.join(d, "pids.tmp"), "w") as f:
            f.write("".join("%d\n" % p for p in pids))
        os.replace(os.path.join(d, "pids.tmp"), os.path.join(d, "pids"))
        info = {"registry": "127.0.0.1:%d" % port, "token_server": token_url,
                "redirect_proxy": proxy_addr, "pids": pids}
        line = json.dumps(info)
        with open(os.path.join(d, "info.json"), "w") as f:
            f.write(line + "\n")
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        return 0
    except BaseException as e:
        terminate([(p.pid, None) for p in procs], 3.0)
        for p in procs:
            try:
                p.wait(timeout=1)
            except Exception:
                pass
        msg = ["registry.py start failed (dir %s, mode %s): %s" % (d, a.mode, e)]
        for log in logs:
            msg.append("--- tail of %s:\n%s" % (log, tail(log)))
        sys.stderr.write("\n".join(msg) + "\n")
        return 1


# ----------------------------------------------------------------- stop --

def stop_dir(d, timeout, exclude=()):
    procs = {p: s for p, s in read_state(d).items() if p not in exclude}
    entries = list(procs.items())
    survivors = terminate(entries, timeout)
    if not survivors:
        for name in ("pids", "procs.json"):
            try:
                os.unlink(os.path.join(d, name))
            except OSError:
                pass
    return [p for p, _ in entries], survivors


def cmd_stop(a):
    d = os.path.abspath(a.dir)
    pids, survivors = stop_dir(d, a.timeout)
    if survivors:
        sys.stderr.write("registry.py stop: processes survived SIGKILL: %s\n"
                         % [p for p, _ in survivors])
        return 1
    sys.stdout.write(json.dumps({"stopped": pids}) + "\n")
    return 0


def cmd_watch(a):
    """Internal: stop everything in DIR once --pid exits (or stop was called)."""
    d = os.path.abspath(a.dir)
    target_start = proc_start_time(a.pid)
    me = os.getpid()
    pids_file = os.path.join(d, "pids")
    seen_pids_file = False
    while True:
        time.sleep(0.5)
        exists = os.path.exists(pids_file)
        seen_pids_file = seen_pids_file or exists
        if seen_pids_file and not exists:
            return 0  # a regular stop happened
        if target_start is None or not alive(a.pid, target_start):
            time.sleep(0.5)  # let start finish writing pids if it is racing
            stop_dir(d, 5.0, exclude=(me,))
            return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start")
    s.add_argument("--dir", required=True)
    s.add_argument("--mode", choices=["none", "htpasswd", "token"], required=True)
    s.add_argument("--user")
    s.add_argument("--password")
    s.add_argument("--anonymous-pull", action="store_true")
    s.add_argument("--with-redirect-proxy", action="store_true")
    s.add_argument("--proxy-flaky", type=int, default=0,
                   help="the proxy's blob store fails the first N GETs of each blob (503/429)")
    s.add_argument("--key-id-method", choices=["x5c", "kid"], default="x5c")
    s.add_argument("--watch-pid", type=int)
    s.add_argument("--timeout", type=float, default=30.0)
    s.add_argument("--registry-bin",
                   default=os.environ.get("BERTH_REGISTRY_BIN", "/usr/bin/docker-registry"))
    t = sub.add_parser("stop")
    t.add_argument("--dir", required=True)
    t.add_argument("--timeout", type=float, default=5.0)
    w = sub.add_parser("watch")
    w.add_argument("--dir", required=True)
    w.add_argument("--pid", type=int, required=True)
    a = p.parse_args()
    if a.cmd == "start":
        try:
            return cmd_start(a)
        except StartError as e:
            sys.stderr.write("registry.py start failed: %s\n" % e)
            return 1
    if a.cmd == "stop":
        return cmd_stop(a)
    return cmd_watch(a)


if __name__ == "__main__":
    sys.exit(main())
