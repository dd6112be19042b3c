# Sourced by the facade benchmarks: the one configuration they measure,
# and nginx's equivalent reverse proxy.
#
#   facade_config FILE PORT STAGE UPSTREAM_PORT STORE_FILE
#
# writes to FILE a `strangler.toml` with the proxy on PORT (admin on the
# next port), a SQLite store in STORE_FILE, and one capability, `catalog`,
# whose route `/products/{id}` (GET) is at STAGE, with the monolith and
# the service both on UPSTREAM_PORT. The access log is off, as nginx's is.
facade_config() {
    local file=$1 port=$2 stage=$3 upstream_port=$4 store=$5
    cat > "$file" <<CONFIG
[facade]
listen = "127.0.0.1:$port"
admin_listen = "127.0.0.1:$((port + 1))"
default_backend = "legacy"
access_log = false
[store]
url = "sqlite://$store?mode=rwc"
[backends.legacy]
urls = ["http://127.0.0.1:$upstream_port"]
[backends.catalog]
urls = ["http://127.0.0.1:$upstream_port"]
[capabilities.catalog]
legacy = "legacy"
service = "catalog"
initial = "$stage"
[[routes]]
capability = "catalog"
path = "/products/{id}"
methods = ["GET"]
CONFIG
}

# nginx_proxy PORT UPSTREAM_PORT
#
# prints the `upstream` and `server` blocks of nginx as the reverse proxy
# the facade is measured against: upstream keep-alive, Host kept,
# X-Forwarded-* set, and a request id sent upstream and back, as the
# facade does.
nginx_proxy() {
    local port=$1 upstream_port=$2
    cat <<NGINX
    upstream shop { server 127.0.0.1:$upstream_port; keepalive 256; }
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://shop;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$host;
            proxy_set_header X-Request-Id \$request_id;
            add_header X-Request-Id \$request_id;
        }
    }
NGINX
}

# nginx_instance NAME SERVER
#
# starts an nginx of its own (a daemon, in a session of its own) in
# $work/NAME, tuned as its users tune it (`worker_processes auto`, long
# keep-alive, a shared TLS session cache), with SERVER (upstream and
# server blocks) in its `http` block. Needs $work. WORKER_PROCESSES
# overrides `auto`; PIN_CORES (a taskset list) keeps it on those cores.
nginx_instance() {
    local name=$1 server=$2
    mkdir -p "$work/$name"
    cat > "$work/$name/nginx.conf" <<EOF
worker_processes ${WORKER_PROCESSES:-auto};
pid $work/$name/nginx.pid;
error_log $work/$name/error.log warn;
daemon on;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $work/$name;
    proxy_temp_path $work/$name;
    fastcgi_temp_path $work/$name;
    uwsgi_temp_path $work/$name;
    scgi_temp_path $work/$name;
    keepalive_requests 1000000;
    ssl_session_cache shared:SSL:10m;
$server
}
EOF
    ${PIN_CORES:+taskset -c "$PIN_CORES"} nginx -c "$work/$name/nginx.conf" -p "$work/$name"
}

# wait_until_answering PORT: waits up to 10 s for a facade just started on
# PORT to answer `/products/1`; the caller checks that it does.
wait_until_answering() {
    for _ in $(seq 100); do
        curl -sf -o /dev/null "http://127.0.0.1:$1/products/1" && return
        sleep 0.1
    done
}

# idle_cpu_ticks PID SECONDS: the CPU ticks (user + system, from /proc) the
# process spends over SECONDS; what open control panels cost a facade that
# serves no traffic meanwhile.
idle_cpu_ticks() {
    local before after
    before=$(awk '{ print $14 + $15 }' "/proc/$1/stat")
    sleep "$2"
    after=$(awk '{ print $14 + $15 }' "/proc/$1/stat")
    echo $((after - before))
}
