#!/bin/bash
# Self-test of the registry test helpers against the real docker-registry 2.8.
#
# Usage:  bash imgtool/tests/support/check.sh        (exit 0 and "ALL OK" on success)
#         KEEP=1 bash .../check.sh                    (keep the work dir for inspection)
#
# Needs /usr/bin/docker-registry, /usr/bin/python3, curl, openssl, htpasswd.
# Exercises, with curl only and only on 127.0.0.1:
#   mode none + redirect_proxy.py: monolithic (POST+PUT and single POST) and chunked
#     PATCH uploads through the proxy, Location rewriting, 307 blob redirects,
#     /blobstore/ fetch (full + Range), signature/Authorization rejection, manifests,
#     delete, and the proxy's request log;
#   mode htpasswd: 401 + Basic challenge without/with wrong creds, 200 with creds, push;
#   mode token (x5c): Bearer challenge, GET /token with creds, push blobs + manifest with
#     the bearer token, scope enforcement, anonymous (no anonymous-pull) denial, POST
#     /token password + refresh_token grants, token request log;
#   mode token (kid, --anonymous-pull, --with-redirect-proxy): anonymous pull-only,
#     redirect proxy in front of a token registry;
#   registry.py failure reporting, double start, --watch-pid; and finally that no
#   process started here is left running.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY=/usr/bin/python3
REGPY="$HERE/registry.py"
WORK="$(mktemp -d /tmp/berth-registry-check.XXXXXX)"
DIRS=()
PROXY_PID=""
SLEEP_PID=""
C=(curl -sS --noproxy 127.0.0.1 --max-time 30)
USER_NAME=alice
PASS='s3cret pass!'

log() { printf '== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

all_pids() {
    local f
    for f in "$WORK"/*/info.json; do
        [ -e "$f" ] && $PY -c 'import json,sys;print(*json.load(open(sys.argv[1]))["pids"])' "$f"
    done
    [ -n "$PROXY_PID" ] && echo "$PROXY_PID"
    return 0
}

is_running() { # pid -> 0 if alive and not a zombie
    local st
    st=$(awk '{sub(/.*\) /,""); print $1}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ "$st" != Z ] && [ "$st" != X ]
}

cleanup() {
    local rc=$? pids d p left=""
    set +e
    pids="$(all_pids | tr '\n' ' ')"
    for d in "${DIRS[@]}"; do "$PY" "$REGPY" stop --dir "$d" >/dev/null; done
    if [ -n "$PROXY_PID" ]; then kill "$PROXY_PID" 2>/dev/null; wait "$PROXY_PID" 2>/dev/null; fi
    if [ -n "$SLEEP_PID" ]; then kill "$SLEEP_PID" 2>/dev/null; wait "$SLEEP_PID" 2>/dev/null; fi
    for p in $pids; do is_running "$p" && left="$left $p"; done
    if [ -n "$left" ]; then
        echo "FAIL: leftover processes:$left" >&2
        ps -o pid,stat,cmd -p "${left# }" >&2
        rc=1
    fi
    if [ "$rc" -ne 0 ] || [ -n "${KEEP:-}" ]; then
        echo "work dir kept: $WORK" >&2
        if [ "$rc" -ne 0 ]; then
            for f in "$WORK"/*/registry.log "$WORK"/*/token-server.log "$WORK"/*/proxy.log \
                     "$WORK"/proxy/stderr.log; do
                [ -s "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
            done
        fi
    else
        rm -rf "$WORK"
    fi
    [ "$rc" -eq 0 ] && echo "ALL OK"
    exit "$rc"
}
trap cleanup EXIT

# req NAME curl-args...   -> $CODE; body in $WORK/NAME.b, headers in $WORK/NAME.h
req() {
    local name=$1; shift
    CODE=$("${C[@]}" -o "$WORK/$name.b" -D "$WORK/$name.h" -w '%{http_code}' "$@") || \
        fail "curl $* failed"
}
hdr() { grep -i "^$2:" "$WORK/$1.h" | tail -n 1 | cut -d' ' -f2- | tr -d '\r'; }
expect() { [ "$CODE" = "$1" ] || fail "$2: expected HTTP $1, got $CODE; body: $(head -c 400 "$WORK/$3.b" 2>/dev/null)"; }
json() { $PY -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }
sha() { echo "sha256:$(sha256sum "$1" | cut -d' ' -f1)"; }
addq() { case "$1" in *\?*) echo "$1&$2";; *) echo "$1?$2";; esac; }

start_registry() { # NAME args... -> sets $INFO (the JSON line), records the dir
    local d="$WORK/$1"; shift
    DIRS+=("$d")
    "$PY" "$REGPY" start --dir "$d" "$@" > "$d.json" || fail "registry.py start $* failed"
    [ "$(wc -l < "$d.json")" -eq 1 ] || fail "start printed more than one line"
    INFO=$(cat "$d.json")
}

# push_blob BASE REPO FILE [curl auth args...]   (monolithic POST + PUT)
push_blob() {
    local base=$1 repo=$2 file=$3; shift 3
    local dg loc
    dg=$(sha "$file")
    req post "$@" -X POST -H 'Content-Length: 0' "$base/v2/$repo/blobs/uploads/"
    expect 202 "POST upload $repo" post
    loc=$(hdr post Location)
    [ -n "$loc" ] || fail "no Location on upload POST"
    LAST_UPLOAD_LOCATION=$loc
    case "$loc" in http://*) ;; /*) loc="$base$loc";; esac
    req put "$@" -X PUT -H 'Content-Type: application/octet-stream' \
        --data-binary "@$file" "$(addq "$loc" "digest=$dg")"
    expect 201 "PUT upload $repo" put
    [ "$(hdr put Docker-Content-Digest)" = "$dg" ] || fail "digest header mismatch"
}

make_image() { # dir -> config.json layer.bin manifest.json in dir
    local d=$1
    mkdir -p "$d"
    printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' > "$d/config.json"
    head -c 3000 /dev/urandom > "$d/layer.bin"
    $PY - "$d" <<'EOF'
import hashlib, json, os, sys
d = sys.argv[1]
def desc(mt, p):
    b = open(os.path.join(d, p), "rb").read()
    return {"mediaType": mt, "digest": "sha256:" + hashlib.sha256(b).hexdigest(), "size": len(b)}
m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
     "config": desc("application/vnd.oci.image.config.v1+json", "config.json"),
     "layers": [desc("application/vnd.oci.image.layer.v1.tar+gzip", "layer.bin")]}
open(os.path.join(d, "manifest.json"), "w").write(json.dumps(m))
EOF
}

push_image() { # BASE REPO DIR TAG [auth...]
    local base=$1 repo=$2 d=$3 tag=$4; shift 4
    push_blob "$base" "$repo" "$d/config.json" "$@"
    push_blob "$base" "$repo" "$d/layer.bin" "$@"
    req man "$@" -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
        --data-binary "@$d/manifest.json" "$base/v2/$repo/manifests/$tag"
    expect 201 "PUT manifest $repo:$tag" man
    [ "$(hdr man Docker-Content-Digest)" = "$(sha "$d/manifest.json")" ] || fail "manifest digest"
}

printf 'hello berth blob\n' > "$WORK/small.bin"
SMALL_DG=$(sha "$WORK/small.bin")
make_image "$WORK/img"

# ------------------------------------------------------------------ mode none
log "mode none + redirect_proxy.py"
start_registry none --mode none
REG=$(echo "$INFO" | json /dev/stdin 'd["registry"]')
[ "$(echo "$INFO" | json /dev/stdin 'd["token_server"]')" = None ] || fail "token_server not null"
req v2 "http://$REG/v2/"; expect 200 "GET /v2/ (none)" v2
[ "$(hdr v2 Docker-Distribution-Api-Version)" = "registry/2.0" ] || fail "api version header"

mkdir -p "$WORK/proxy"
"$PY" "$HERE/redirect_proxy.py" --upstream "$REG" --listen-port-file "$WORK/proxy/port" \
    --log "$WORK/proxy/requests.log" >"$WORK/proxy/stderr.log" 2>&1 &
PROXY_PID=$!
for _ in $(seq 100); do [ -s "$WORK/proxy/port" ] && break; sleep 0.05; done
[ -s "$WORK/proxy/port" ] || fail "proxy did not write its port file"
PX="http://127.0.0.1:$(cat "$WORK/proxy/port")"

push_blob "$PX" test/x "$WORK/small.bin"
case "$LAST_UPLOAD_LOCATION" in
    "$PX"/v2/test/x/blobs/uploads/*) ;;
    *) fail "upload Location not rewritten to proxy: $LAST_UPLOAD_LOCATION";;
esac
req redir "$PX/v2/test/x/blobs/$SMALL_DG"; expect 307 "blob GET via proxy" redir
BLOBSTORE_URL=$(hdr redir Location)
[ "$BLOBSTORE_URL" = "$PX/blobstore/$SMALL_DG?repo=test/x&sig=xyz" ] || fail "redirect Location: $BLOBSTORE_URL"
req redirh -I "$PX/v2/test/x/blobs/$SMALL_DG"; expect 307 "blob HEAD via proxy" redirh
req follow -L "$PX/v2/test/x/blobs/$SMALL_DG"; expect 200 "blob GET -L via proxy" follow
cmp -s "$WORK/follow.b" "$WORK/small.bin" || fail "blob content via redirect differs"
[ "$(hdr follow Content-Type)" = application/octet-stream ] || fail "blobstore content type"
[ "$(hdr follow Content-Length)" = "$(wc -c < "$WORK/small.bin")" ] || fail "blobstore length"
req range -H 'Range: bytes=0-4' "$BLOBSTORE_URL"; expect 206 "blobstore range" range
[ "$(cat "$WORK/range.b")" = hello ] || fail "range content"
req bsauth -H 'Authorization: Basic Zm9vOmJhcg==' "$BLOBSTORE_URL"; expect 400 "blobstore with auth" bsauth
req bssig "$PX/blobstore/$SMALL_DG?repo=test/x&sig=bad"; expect 403 "blobstore bad sig" bssig
req missing "$PX/v2/test/x/blobs/sha256:$(printf '0%.0s' $(seq 64))"; expect 404 "missing blob" missing
grep -q BLOB_UNKNOWN "$WORK/missing.b" || fail "missing blob error body"

# chunked PATCH upload through the proxy (curl sends Transfer-Encoding: chunked)
head -c 200000 /dev/urandom > "$WORK/big.bin"
req cpost -X POST -H 'Content-Length: 0' "$PX/v2/test/x/blobs/uploads/"; expect 202 "POST (chunked)" cpost
req patch -X PATCH -H 'Content-Type: application/octet-stream' -H 'Transfer-Encoding: chunked' \
    --data-binary "@$WORK/big.bin" "$(hdr cpost Location)"
expect 202 "chunked PATCH" patch
[ "$(hdr patch Range)" = "0-199999" ] || fail "PATCH Range header: $(hdr patch Range)"
req cput -X PUT -H 'Content-Length: 0' "$(addq "$(hdr patch Location)" "digest=$(sha "$WORK/big.bin")")"
expect 201 "PUT after PATCH" cput
req bigget -L "$PX/v2/test/x/blobs/$(sha "$WORK/big.bin")"; expect 200 "big blob via redirect" bigget
cmp -s "$WORK/bigget.b" "$WORK/big.bin" || fail "big blob content differs"

# Quirk of distribution 2.8: single-request monolithic upload (POST ?digest= with a
# body) is NOT supported: it answers 202 + Location and discards the body, so a
# client must always finish with PUT (and send the data there).
printf 'single post upload' > "$WORK/single.bin"
req single -X POST -H 'Content-Type: application/octet-stream' --data-binary "@$WORK/single.bin" \
    "$PX/v2/test/x/blobs/uploads/?digest=$(sha "$WORK/single.bin")"
expect 202 "single POST upload (2.8 ignores it)" single
req single2 "$PX/v2/test/x/blobs/$(sha "$WORK/single.bin")"; expect 404 "single POST stored nothing" single2

push_image "$PX" test/x "$WORK/img" v1
req mget -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$PX/v2/test/x/manifests/v1"
expect 200 "manifest GET via proxy" mget
cmp -s "$WORK/mget.b" "$WORK/img/manifest.json" || fail "manifest content"
req tags "$PX/v2/test/x/tags/list"; expect 200 tags tags
req del -X DELETE "$PX/v2/test/x/blobs/$SMALL_DG"; expect 202 "blob DELETE" del
req gone "$PX/v2/test/x/blobs/$SMALL_DG"; expect 404 "deleted blob" gone

PLOG="$WORK/proxy/requests.log"
grep -q '"kind": "blobstore"' "$PLOG" || fail "no blobstore entries in proxy log"
grep '"kind": "blobstore"' "$PLOG" | grep '"status": 200' | grep -q '"authorization": false' \
    || fail "proxy log: blobstore 200 without auth missing"
grep '"kind": "blobstore"' "$PLOG" | grep -q '"authorization": true' \
    || fail "proxy log did not record the Authorization probe"
grep -q '"kind": "redirect", "method": "HEAD"' "$PLOG" || fail "HEAD redirect not logged"
kill "$PROXY_PID"; wait "$PROXY_PID" 2>/dev/null || true; PROXY_PID=""

# ------------------------------------------------------------- mode htpasswd
log "mode htpasswd"
start_registry htp --mode htpasswd --user "$USER_NAME" --password "$PASS"
REG=$(echo "$INFO" | json /dev/stdin 'd["registry"]')
req h1 "http://$REG/v2/"; expect 401 "htpasswd no creds" h1
[ "$(hdr h1 Www-Authenticate)" = 'Basic realm="berth-test-registry"' ] || fail "basic challenge: $(hdr h1 Www-Authenticate)"
req h2 -u "$USER_NAME:wrong" "http://$REG/v2/"; expect 401 "htpasswd wrong creds" h2
req h3 -u "$USER_NAME:$PASS" "http://$REG/v2/"; expect 200 "htpasswd creds" h3
push_blob "http://$REG" test/x "$WORK/small.bin" -u "$USER_NAME:$PASS"
req h4 "http://$REG/v2/test/x/blobs/$SMALL_DG"; expect 401 "htpasswd blob no creds" h4

# ---------------------------------------------------------- mode token (x5c)
log "mode token (x5c)"
start_registry tok --mode token --user "$USER_NAME" --password "$PASS"
REG=$(echo "$INFO" | json /dev/stdin 'd["registry"]')
TS=$(echo "$INFO" | json /dev/stdin 'd["token_server"]')
R="http://$REG"
req t1 "$R/v2/"; expect 401 "token /v2/" t1
[ "$(hdr t1 Www-Authenticate)" = "Bearer realm=\"$TS\",service=\"berth-test-registry\"" ] \
    || fail "bearer challenge: $(hdr t1 Www-Authenticate)"
req t2 -X POST "$R/v2/test/x/blobs/uploads/"; expect 401 "token POST no auth" t2
# Quirk of 2.8: the order of actions in the challenge's scope is random (pull,push or push,pull)
case "$(hdr t2 Www-Authenticate)" in
    "Bearer realm=\"$TS\",service=\"berth-test-registry\",scope=\"repository:test/x:pull,push\"") ;;
    "Bearer realm=\"$TS\",service=\"berth-test-registry\",scope=\"repository:test/x:push,pull\"") ;;
    *) fail "bearer challenge with scope: $(hdr t2 Www-Authenticate)";;
esac

req tk -u "$USER_NAME:$PASS" "$TS?service=berth-test-registry&scope=repository:test/x:pull,push"
expect 200 "token with creds" tk
TOK=$(json "$WORK/tk.b" 'd["token"]')
[ "$TOK" = "$(json "$WORK/tk.b" 'd["access_token"]')" ] || fail "token != access_token"
[ "$(json "$WORK/tk.b" 'd["expires_in"]')" = 300 ] || fail "expires_in"
echo "$TOK" | $PY -c '
import base64, json, sys
h, c, s = sys.stdin.read().strip().split(".")
dec = lambda x: json.loads(base64.urlsafe_b64decode(x + "=" * (-len(x) % 4)))
h, c = dec(h), dec(c)
assert h["alg"] == "RS256" and "x5c" in h, h
assert c["iss"] == "berth-test-issuer" and c["aud"] == "berth-test-registry", c
assert c["sub"] == "alice", c
assert c["access"] == [{"type": "repository", "name": "test/x", "actions": ["pull", "push"]}], c
for k in ("exp", "nbf", "iat", "jti"): assert k in c, k
' || fail "JWT contents"
AUTH=(-H "Authorization: Bearer $TOK")
req t3 "${AUTH[@]}" "$R/v2/"; expect 200 "/v2/ with bearer" t3
push_image "$R" test/x "$WORK/img" v1 "${AUTH[@]}"
req t4 "${AUTH[@]}" -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$R/v2/test/x/manifests/v1"
expect 200 "manifest GET with bearer" t4
req t5 "${AUTH[@]}" "$R/v2/other/y/tags/list"; expect 401 "out-of-scope repo" t5
hdr t5 Www-Authenticate | grep -q 'error="insufficient_scope"' || fail "insufficient_scope missing"
req t6 -H 'Authorization: Bearer not.a.jwt' "$R/v2/test/x/tags/list"; expect 401 "bad token" t6
hdr t6 Www-Authenticate | grep -q 'error="invalid_token"' || fail "invalid_token missing"

req tw -u "$USER_NAME:nope" "$TS?service=berth-test-registry&scope=repository:test/x:pull"
expect 401 "token wrong creds" tw
req tsvc -u "$USER_NAME:$PASS" "$TS?service=wrong&scope=repository:test/x:pull"
expect 400 "token wrong service" tsvc
req ta "$TS?service=berth-test-registry&scope=repository:test/x:pull"; expect 200 "anon token" ta
[ "$(json "$WORK/ta.b" 'len(__import__("base64").urlsafe_b64decode(d["token"].split(".")[1]+"==="))>0 and json.loads(__import__("base64").urlsafe_b64decode(d["token"].split(".")[1]+"==="))["access"]')" = "[]" ] \
    || fail "anonymous token should have empty access"
req t7 -H "Authorization: Bearer $(json "$WORK/ta.b" 'd["token"]')" "$R/v2/test/x/manifests/v1"
expect 401 "anonymous pull denied" t7

# pull-only token cannot push
req tp -u "$USER_NAME:$PASS" "$TS?service=berth-test-registry&scope=repository:test/x:pull"
req t8 -H "Authorization: Bearer $(json "$WORK/tp.b" 'd["token"]')" -X POST "$R/v2/test/x/blobs/uploads/"
expect 401 "push with pull-only token" t8

# OAuth2 POST /token
req op -X POST --data-urlencode grant_type=password --data-urlencode "username=$USER_NAME" \
    --data-urlencode "password=$PASS" --data-urlencode service=berth-test-registry \
    --data-urlencode 'scope=repository:test/x:pull' --data-urlencode client_id=berth \
    --data-urlencode access_type=offline "$TS"
expect 200 "POST /token password" op
RT=$(json "$WORK/op.b" 'd["refresh_token"]')
OTOK=$(json "$WORK/op.b" 'd["access_token"]')
req t9 -H "Authorization: Bearer $OTOK" -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "$R/v2/test/x/manifests/v1"
expect 200 "pull with oauth token" t9
# Quirk of 2.8: an OCI manifest requested without an OCI Accept header -> 404 MANIFEST_UNKNOWN
req t9b -H "Authorization: Bearer $OTOK" "$R/v2/test/x/manifests/v1"
expect 404 "OCI manifest without OCI Accept" t9b
grep -q MANIFEST_UNKNOWN "$WORK/t9b.b" || fail "expected MANIFEST_UNKNOWN"
req orf -X POST --data-urlencode grant_type=refresh_token --data-urlencode "refresh_token=$RT" \
    --data-urlencode service=berth-test-registry --data-urlencode 'scope=repository:test/x:pull,push' \
    --data-urlencode client_id=berth "$TS"
expect 200 "POST /token refresh_token" orf
req t10 -H "Authorization: Bearer $(json "$WORK/orf.b" 'd["access_token"]')" -X POST "$R/v2/test/x/blobs/uploads/"
expect 202 "push with refreshed token" t10
req obad -X POST --data-urlencode grant_type=password --data-urlencode "username=$USER_NAME" \
    --data-urlencode password=bad --data-urlencode service=berth-test-registry "$TS"
expect 401 "POST /token bad password" obad

TLOG="$WORK/tok/token-requests.log"
grep '"auth_present": true' "$TLOG" | grep -q '"method": "GET"' || fail "token log lacks authed GET"
grep '"auth_present": false' "$TLOG" | grep -q '"path": "/token?service=berth-test-registry&scope=repository:test/x:pull"' \
    || fail "token log lacks anonymous GET"
grep -q '"grant_type": "refresh_token"' "$TLOG" || fail "token log lacks refresh grant"

# ------------------------------- mode token (kid, anonymous pull, with proxy)
log "mode token (kid, --anonymous-pull, --with-redirect-proxy)"
start_registry anon --mode token --user "$USER_NAME" --password "$PASS" \
       --anonymous-pull --key-id-method kid --with-redirect-proxy
REG=$(echo "$INFO" | json /dev/stdin 'd["registry"]')
TS=$(echo "$INFO" | json /dev/stdin 'd["token_server"]')
PX="http://$(echo "$INFO" | json /dev/stdin 'd["redirect_proxy"]')"
req ak -u "$USER_NAME:$PASS" "$TS?service=berth-test-registry&scope=repository:pub/img:pull,push"
json "$WORK/ak.b" 'd["token"]' | cut -d. -f1 | $PY -c '
import base64, json, sys; x = sys.stdin.read().strip()
h = json.loads(base64.urlsafe_b64decode(x + "=" * (-len(x) % 4)))
assert "kid" in h and "x5c" not in h and len(h["kid"].split(":")) == 12, h' || fail "kid header"
push_image "http://$REG" pub/img "$WORK/img" latest -H "Authorization: Bearer $(json "$WORK/ak.b" 'd["token"]')"
req aa "$TS?service=berth-test-registry&scope=repository:pub/img:pull,push"; expect 200 "anon token" aa
ATOK=$(json "$WORK/aa.b" 'd["token"]')
req a1 -H "Authorization: Bearer $ATOK" -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://$REG/v2/pub/img/manifests/latest"
expect 200 "anonymous pull" a1
req a2 -H "Authorization: Bearer $ATOK" -X POST "http://$REG/v2/pub/img/blobs/uploads/"
expect 401 "anonymous push denied" a2
hdr a2 Www-Authenticate | grep -q 'error="insufficient_scope"' || fail "anon push challenge"
LAYER_DG=$(sha "$WORK/img/layer.bin")
req a3 "$PX/v2/pub/img/blobs/$LAYER_DG"; expect 401 "proxy: blob without token" a3
req a4 -H "Authorization: Bearer $ATOK" "$PX/v2/pub/img/blobs/$LAYER_DG"; expect 307 "proxy: blob with token" a4
req a5 "$(hdr a4 Location)"; expect 200 "blobstore without auth" a5
cmp -s "$WORK/a5.b" "$WORK/img/layer.bin" || fail "layer via blobstore"

# ------------------------------------------------- launcher robustness checks
log "registry.py robustness"
if "$PY" "$REGPY" start --dir "$WORK/anon" --mode none >/dev/null 2>"$WORK/dbl.err"; then
    fail "second start on a running dir succeeded"
fi
grep -q "already running" "$WORK/dbl.err" || fail "double start message"
if "$PY" "$REGPY" start --dir "$WORK/bad" --mode none --registry-bin /bin/false --timeout 5 \
    >"$WORK/bad.out" 2>"$WORK/bad.err"; then
    fail "start with /bin/false succeeded"
fi
[ ! -s "$WORK/bad.out" ] || fail "failed start printed to stdout"
grep -q "tail of .*registry.log" "$WORK/bad.err" || fail "failure message lacks log tail"
sleep 300 & SLEEP_PID=$!
start_registry watched --mode none --watch-pid "$SLEEP_PID"
WPIDS=$(echo "$INFO" | json /dev/stdin '" ".join(map(str, d["pids"]))')
kill "$SLEEP_PID"; wait "$SLEEP_PID" 2>/dev/null || true; SLEEP_PID=""
for _ in $(seq 100); do
    alive=""; for p in $WPIDS; do is_running "$p" && alive=1; done
    [ -z "$alive" ] && break; sleep 0.1
done
[ -z "$alive" ] || fail "--watch-pid did not stop the registry"

log "stop all"
for d in "${DIRS[@]}"; do
    "$PY" "$REGPY" stop --dir "$d" | grep -q '"stopped"' || fail "stop $d"
done
"$PY" "$REGPY" stop --dir "$WORK/none" | grep -q '"stopped": \[\]' || fail "stop not idempotent"
