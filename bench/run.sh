#!/usr/bin/env bash
# Tollgate against nginx, side by side on this machine.
#
# Starts a trivial backend (nginx answering `200 hello` itself), then drives with wrk, one
# after the other: the backend directly, nginx proxying to it, and Tollgate proxying to it.
# Tollgate also serves a key-pair API, which verifies an HMAC-SHA256 signature and counts the
# request under a usage plan (rate limit and quota) on every request. It serves an OAuth
# business API too, measured with an RS256 id_token verified on every request (token cache
# off) and with the cache of verified tokens on. Last, nginx and Tollgate behind TLS, over
# HTTP/1.1 (wrk) and HTTP/2 (h2load, 10 streams per connection), with one self-signed
# certificate for `localhost`.
# Both proxies get one worker pinned to the same core, pooled keep-alive connections to the
# backend, and no access log. The backend and wrk share the other core.
#
#   bench/run.sh                 # 3 rounds of 10 s per target, 50 connections
#   BENCH_SECONDS=30 BENCH_ROUNDS=5 BENCH_CONNECTIONS=100 bench/run.sh
#
# Each round measures every target once; the table shows the median of the rounds for
# requests per second, p50 and p99 latency, and the proxy process's CPU time per request
# (user and kernel, from /proc), which varies less than throughput on a shared machine.
# Installs nginx-light and wrk with apt-get when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${BENCH_SECONDS:-10}
rounds=${BENCH_ROUNDS:-3}
connections=${BENCH_CONNECTIONS:-50}
proxy_core=${BENCH_PROXY_CORE:-1}
load_core=${BENCH_LOAD_CORE:-0}

if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
    echo "installing nginx-light and wrk" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk >/dev/null
fi
if ! command -v h2load >/dev/null || ! command -v openssl >/dev/null; then
    echo "installing nghttp2-client (h2load) and openssl" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client openssl >/dev/null
fi
if ! python3 -c "import jwt, cryptography" 2>/dev/null; then
    echo "installing PyJWT and cryptography" >&2
    python3 -m pip install --quiet pyjwt cryptography
fi

cargo build --release --locked -p tollgate >&2
tollgate=target/release/tollgate

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Returns a TCP port on 127.0.0.1 that nothing listens on.
free_port() {
    while :; do
        local port=$((20000 + RANDOM % 40000))
        if ! ss -ltn | awk '{print $4}' | grep -q ":$port\$"; then
            echo "$port"
            return
        fi
    done
}

wait_for_port() {
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "nothing listens on port $1" >&2
    exit 1
}

backend_port=$(free_port)
backend_port2=$(free_port)
nginx_port=$(free_port)
tollgate_port=$(free_port)
nginx_tls_port=$(free_port)
tollgate_tls_port=$(free_port)

# A self-signed certificate for `localhost`, the name both TLS targets are called by, so that
# clients send it as SNI.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost" \
    -keyout "$work/tls.key" -out "$work/tls.crt" >/dev/null 2>&1

nginx_conf() { # name, body of the http block
    mkdir -p "$work/$1"
    cat >"$work/$1/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $work/$1/nginx.pid;
error_log $work/$1/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/$1;
    proxy_temp_path $work/$1;
    fastcgi_temp_path $work/$1;
    uwsgi_temp_path $work/$1;
    scgi_temp_path $work/$1;
    $2
}
EOF
}

nginx_conf backend "server { listen 127.0.0.1:$backend_port; listen 127.0.0.1:$backend_port2;
    keepalive_requests 1000000; location / { return 200 'hello'; } }"
# Two backend ports stand for the two nodes of an upstream, balanced round robin by both
# proxies, with Tollgate's passive health checks on.
nginx_conf proxy "upstream backend { server 127.0.0.1:$backend_port; keepalive 64; }
    upstream pool { server 127.0.0.1:$backend_port; server 127.0.0.1:$backend_port2;
    keepalive 64; }
    server { listen 127.0.0.1:$nginx_port; keepalive_requests 1000000;
    location / { proxy_pass http://backend; proxy_http_version 1.1;
    proxy_set_header Connection ''; }
    location /release/pool { proxy_pass http://pool; proxy_http_version 1.1;
    proxy_set_header Connection ''; } }
    server { listen 127.0.0.1:$nginx_tls_port ssl http2; keepalive_requests 1000000;
    ssl_certificate $work/tls.crt; ssl_certificate_key $work/tls.key;
    location / { proxy_pass http://backend; proxy_http_version 1.1;
    proxy_set_header Connection ''; } }"

cat >"$work/tollgate.yaml" <<EOF
server:
  listen: ["127.0.0.1:$tollgate_port"]
  listen_tls: ["127.0.0.1:$tollgate_tls_port"]
  tls: { cert_file: "$work/tls.crt", key_file: "$work/tls.key" }
  workers: 1
  access_log: { enabled: false }
services:
  - id: service-bench001
    name: bench
    default_domains: ["127.0.0.1", localhost]
    environments:
      release: {}
    apis:
      - id: api-bench001
        name: proxy
        path: /
        method: ANY
        backend: { type: http, url: "http://127.0.0.1:$backend_port" }
      - id: api-bench002
        name: signed
        path: /signed
        method: ANY
        auth: SECRET
        backend: { type: http, url: "http://127.0.0.1:$backend_port" }
      - id: api-bench003
        name: oauth
        path: /oauth/token
        backend: { type: mock }
        oauth: { public_key: { file: "$work/jwks.json" }, token_cache_entries: 0 }
      - id: api-bench004
        name: verified
        path: /verified
        method: ANY
        auth: OAUTH
        oauth_business: { authorization_api: api-bench003 }
        backend: { type: http, url: "http://127.0.0.1:$backend_port" }
      - id: api-bench005
        name: oauth-cached
        path: /oauth/cached
        backend: { type: mock }
        oauth: { public_key: { file: "$work/jwks.json" } }
      - id: api-bench007
        name: pool
        path: /pool
        method: ANY
        backend: { type: http, upstream: pool }
      - id: api-bench006
        name: cached
        path: /cached
        method: ANY
        auth: OAUTH
        oauth_business: { authorization_api: api-bench005 }
        backend: { type: http, url: "http://127.0.0.1:$backend_port" }
upstreams:
  - id: pool
    nodes:
      - { host: 127.0.0.1, port: $backend_port }
      - { host: 127.0.0.1, port: $backend_port2 }
    health: { enable_passive_check: true }
key_pairs:
  - { secret_id: AKIDbench001, secret_key: { env: BENCH_SECRET_KEY } }
usage_plans:
  - id: plan-bench
    requests_per_second: 2000000
    quota: 99999999
    key_pairs: [AKIDbench001]
    bindings: [{ service: service-bench001, environment: release }]
counters: { store: local, quota_file: "$work/quota.json" }
EOF
# An RS256 key pair and a token valid for two hours, made by PyJWT.
exp=$(($(date +%s) + 7200))
echo "[{\"name\": \"bench\", \"alg\": \"RS256\", \"kid\": \"rsa-1\", \"claims\": {\"sub\": \"bench\", \"exp\": $exp}}]" |
    python3 crates/tollgate/tests/fixtures/make_tokens.py >"$work/tokens.json"
python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(json.dumps(d["jwks_a"]))' \
    "$work/tokens.json" >"$work/jwks.json"
token=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["tokens"]["bench"])' "$work/tokens.json")
export BENCH_SECRET_KEY=bench-secret-key-0001
# A signed `Date` is not checked against the clock, so one set of headers serves the run.
sign_output=$("$tollgate" sign --secret-id AKIDbench001 --secret-key-env BENCH_SECRET_KEY \
    --date-header date -H "Source: bench")
signed_headers=()
while IFS= read -r line; do
    [ -z "$line" ] && break
    signed_headers+=(-H "$line")
done <<<"$sign_output"

taskset -c "$load_core" nginx -c "$work/backend/nginx.conf" -e "$work/backend/error.log" &
pids+=($!)
taskset -c "$proxy_core" nginx -c "$work/proxy/nginx.conf" -e "$work/proxy/error.log" &
pids+=($!)
RUST_LOG=warn taskset -c "$proxy_core" "$tollgate" run -c "$work/tollgate.yaml" &
pids+=($!)
for port in "$backend_port" "$nginx_port" "$tollgate_port" "$nginx_tls_port" "$tollgate_tls_port"; do
    wait_for_port "$port"
done

# Returns the CPU time of a process so far, in clock ticks: "user kernel".
cpu_ticks() {
    awk '{ print $14, $15 }' "/proc/$1/stat"
}

# Runs wrk on a URL and prints "rps p50_ms p99_ms user_us_per_request kernel_us_per_request"
# with the CPU figures taken from process $2; further arguments go to wrk.
measure() {
    local url=$1 pid=$2
    shift 2
    taskset -c "$load_core" wrk -t1 -c"$connections" -d2s "$@" "$url" >/dev/null
    read -r user0 kernel0 < <(cpu_ticks "$pid")
    taskset -c "$load_core" wrk -t1 -c"$connections" -d"${seconds}s" --latency "$@" "$url" >"$work/wrk.out"
    read -r user1 kernel1 < <(cpu_ticks "$pid")
    if grep -q "Non-2xx" "$work/wrk.out"; then
        echo "non-2xx responses from $url:" >&2
        cat "$work/wrk.out" >&2
        exit 1
    fi
    awk -v user=$((user1 - user0)) -v kernel=$((kernel1 - kernel0)) -v hz="$(getconf CLK_TCK)" '
        function ms(v) {
            if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
            if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
            if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
            return v
        }
        /^Requests\/sec:/ { rps = $2 }
        / requests in / { requests = $1 }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        END {
            printf "%.0f %.3f %.3f %.2f %.2f\n", rps, p50, p99,
                user * 1e6 / hz / requests, kernel * 1e6 / hz / requests
        }
    ' "$work/wrk.out"
}

# Runs h2load (HTTP/2, 10 streams per connection) on a URL and prints the same columns as
# `measure`. h2load reports no percentiles, so p50 is its mean and p99 its maximum.
measure_h2() {
    local url=$1 pid=$2
    taskset -c "$load_core" h2load -c"$connections" -m10 -D2 "$url" >/dev/null
    read -r user0 kernel0 < <(cpu_ticks "$pid")
    taskset -c "$load_core" h2load -c"$connections" -m10 -D"$seconds" "$url" >"$work/h2load.out"
    read -r user1 kernel1 < <(cpu_ticks "$pid")
    if ! grep -q "status codes: [0-9]* 2xx, 0 3xx, 0 4xx, 0 5xx" "$work/h2load.out"; then
        echo "non-2xx responses or failures from $url:" >&2
        cat "$work/h2load.out" >&2
        exit 1
    fi
    awk -v user=$((user1 - user0)) -v kernel=$((kernel1 - kernel0)) -v hz="$(getconf CLK_TCK)" '
        function ms(v) {
            if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
            if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
            if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
            return v
        }
        /^finished in/ { rps = $4 }
        /^requests:/ { requests = $8 }
        /^time for request:/ { mean = ms($6); max = ms($5) }
        END {
            printf "%.0f %.3f %.3f %.2f %.2f\n", rps, mean, max,
                user * 1e6 / hz / requests, kernel * 1e6 / hz / requests
        }
    ' "$work/h2load.out"
}

# Prints the median of each column of the rows in file $1.
medians() {
    local columns
    columns=$(head -1 "$1" | wc -w)
    for column in $(seq "$columns"); do
        cut -d' ' -f"$column" "$1" | sort -g | awk '{ v[NR] = $1 } END { printf "%s ", v[int((NR + 1) / 2)] }'
    done
    echo
}

backend_pid=$(pgrep -P "${pids[0]}" | head -1)
nginx_pid=$(pgrep -P "${pids[1]}" | head -1)
tollgate_pid=${pids[2]}
path=/release/bench
for round in $(seq "$rounds"); do
    echo "round $round of $rounds" >&2
    measure "http://127.0.0.1:$backend_port$path" "$backend_pid" >>"$work/direct"
    measure "http://127.0.0.1:$nginx_port$path" "$nginx_pid" >>"$work/nginx"
    measure "http://127.0.0.1:$tollgate_port$path" "$tollgate_pid" >>"$work/tollgate"
    measure "http://127.0.0.1:$tollgate_port/release/signed" "$tollgate_pid" \
        "${signed_headers[@]}" >>"$work/signed"
    measure "http://127.0.0.1:$tollgate_port/release/verified" "$tollgate_pid" \
        -H "Authorization: Bearer $token" >>"$work/verified"
    measure "http://127.0.0.1:$tollgate_port/release/cached" "$tollgate_pid" \
        -H "Authorization: Bearer $token" >>"$work/cached"
    measure "http://127.0.0.1:$nginx_port/release/pool" "$nginx_pid" >>"$work/nginx_pool"
    measure "http://127.0.0.1:$tollgate_port/release/pool" "$tollgate_pid" >>"$work/tollgate_pool"
    measure "https://localhost:$nginx_tls_port$path" "$nginx_pid" >>"$work/nginx_tls"
    measure "https://localhost:$tollgate_tls_port$path" "$tollgate_pid" >>"$work/tollgate_tls"
    measure_h2 "https://localhost:$nginx_tls_port$path" "$nginx_pid" >>"$work/nginx_h2"
    measure_h2 "https://localhost:$tollgate_tls_port$path" "$tollgate_pid" >>"$work/tollgate_h2"
done
read -r direct_rps direct_p50 direct_p99 direct_user direct_kernel < <(medians "$work/direct")
read -r nginx_rps nginx_p50 nginx_p99 nginx_user nginx_kernel < <(medians "$work/nginx")
read -r tollgate_rps tollgate_p50 tollgate_p99 tollgate_user tollgate_kernel < <(medians "$work/tollgate")
read -r signed_rps signed_p50 signed_p99 signed_user signed_kernel < <(medians "$work/signed")
read -r verified_rps verified_p50 verified_p99 verified_user verified_kernel < <(medians "$work/verified")
read -r cached_rps cached_p50 cached_p99 cached_user cached_kernel < <(medians "$work/cached")
read -r npool_rps npool_p50 npool_p99 npool_user npool_kernel < <(medians "$work/nginx_pool")
read -r tpool_rps tpool_p50 tpool_p99 tpool_user tpool_kernel < <(medians "$work/tollgate_pool")
read -r ntls_rps ntls_p50 ntls_p99 ntls_user ntls_kernel < <(medians "$work/nginx_tls")
read -r ttls_rps ttls_p50 ttls_p99 ttls_user ttls_kernel < <(medians "$work/tollgate_tls")
read -r nh2_rps nh2_p50 nh2_p99 nh2_user nh2_kernel < <(medians "$work/nginx_h2")
read -r th2_rps th2_p50 th2_p99 th2_user th2_kernel < <(medians "$work/tollgate_h2")

echo
echo "wrk -t1 -c$connections -d${seconds}s, median of $rounds rounds;" \
    "proxies pinned to core $proxy_core, wrk and backend on core $load_core"
echo "$(nproc) cores, $(uname -r), $(nginx -v 2>&1 | sed 's/.*: //'), $("$tollgate" --version)"
echo
row() { printf '| %-22s | %9s | %8s | %8s | %12s | %14s |\n' "$@"; }
row target "req/s" "p50 ms" "p99 ms" "user µs/req" "kernel µs/req"
printf '|%s|%s|%s|%s|%s|%s|\n' ------------------------ ----------- ---------- ---------- -------------- ----------------
row "backend direct" "$direct_rps" "$direct_p50" "$direct_p99" "$direct_user" "$direct_kernel"
row "nginx proxy" "$nginx_rps" "$nginx_p50" "$nginx_p99" "$nginx_user" "$nginx_kernel"
row "tollgate proxy" "$tollgate_rps" "$tollgate_p50" "$tollgate_p99" "$tollgate_user" "$tollgate_kernel"
row "tollgate key pair" "$signed_rps" "$signed_p50" "$signed_p99" "$signed_user" "$signed_kernel"
row "tollgate RS256" "$verified_rps" "$verified_p50" "$verified_p99" "$verified_user" "$verified_kernel"
row "tollgate RS256 cached" "$cached_rps" "$cached_p50" "$cached_p99" "$cached_user" "$cached_kernel"
row "nginx upstream" "$npool_rps" "$npool_p50" "$npool_p99" "$npool_user" "$npool_kernel"
row "tollgate upstream" "$tpool_rps" "$tpool_p50" "$tpool_p99" "$tpool_user" "$tpool_kernel"
row "nginx https" "$ntls_rps" "$ntls_p50" "$ntls_p99" "$ntls_user" "$ntls_kernel"
row "tollgate https" "$ttls_rps" "$ttls_p50" "$ttls_p99" "$ttls_user" "$ttls_kernel"
row "nginx h2 (mean/max)" "$nh2_rps" "$nh2_p50" "$nh2_p99" "$nh2_user" "$nh2_kernel"
row "tollgate h2 (mean/max)" "$th2_rps" "$th2_p50" "$th2_p99" "$th2_user" "$th2_kernel"
echo
awk -v t="$tollgate_rps" -v n="$nginx_rps" -v tp="$tollgate_p99" -v np="$nginx_p99" \
    'BEGIN { printf "tollgate/nginx: requests per second %.2f, p99 latency %.2f\n", t / n, tp / np }'
awk -v s="$signed_rps" -v t="$tollgate_rps" \
    'BEGIN { printf "key pair + usage plan / plain tollgate proxy: requests per second %.2f\n", s / t }'
awk -v v="$verified_rps" -v c="$cached_rps" -v t="$tollgate_rps" \
    'BEGIN { printf "RS256 every request / plain: %.2f; RS256 cached / plain: %.2f\n", v / t, c / t }'
awk -v t="$tpool_rps" -v n="$npool_rps" -v p="$tollgate_rps" \
    'BEGIN { printf "upstream of two nodes: tollgate/nginx %.2f; tollgate upstream / plain proxy %.2f\n", t / n, t / p }'
awk -v t="$ttls_rps" -v n="$ntls_rps" -v th="$th2_rps" -v nh="$nh2_rps" \
    'BEGIN { printf "tollgate/nginx over TLS: HTTP/1.1 %.2f, HTTP/2 %.2f\n", t / n, th / nh }'
