# Shared by scripts/run and scripts/test: install what is missing, start and stop the embedded
# PostgreSQL and Kafka. Source it; every function prints what it does on stderr.
# shellcheck shell=bash

CAUCE_ROOT=${CAUCE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$CAUCE_ROOT/infra/kafka/pom.xml")

# Debian packages the build, the embedded runtime and the tests need.
CAUCE_PACKAGES=(
  cmake ninja-build g++ pkg-config git ca-certificates iproute2 procps util-linux
  librdkafka-dev libpqxx-dev rapidjson-dev prometheus-cpp-dev libgtest-dev libgmock-dev
  libboost-dev libboost-stacktrace-dev libcurl4-openssl-dev zlib1g-dev libcairo2-dev libpango1.0-dev
  libcli11-dev libssl-dev
  postgresql-15 postgresql-client-15 openjdk-17-jre-headless maven curl clang-format
  python3 python3-confluent-kafka python3-jsonschema python3-yaml fonts-dejavu-core poppler-utils
  prometheus python3-venv tzdata
)

log() { printf '\033[1m[cauce]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[cauce] error:\033[0m %s\n' "$*" >&2; exit 1; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

install_packages() {
  local missing=()
  local pkg
  for pkg in "${CAUCE_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${#missing[@]} Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Kafka's jars from Maven Central (pinned in infra/kafka/pom.xml; -C: fail on a bad checksum),
# fetched again when the pom changes.
KAFKA_HOME=${CAUCE_KAFKA_HOME:-$CAUCE_ROOT/.cache/kafka-$KAFKA_VERSION}
fetch_kafka() {
  local pom="$CAUCE_ROOT/infra/kafka/pom.xml"
  local stamp
  stamp="$KAFKA_HOME/.complete-$(sha256sum "$pom" | cut -c1-16)"
  [ -f "$stamp" ] && return 0
  log "fetching Apache Kafka $KAFKA_VERSION from Maven Central"
  rm -rf "$KAFKA_HOME"
  mkdir -p "$KAFKA_HOME/lib"
  mvn -q -B -C -f "$pom" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_HOME/lib" >&2 ||
    die "could not fetch Kafka $KAFKA_VERSION with Maven"
  touch "$stamp"
}

# Test tools Debian does not package (schemathesis), pinned in requirements-test.txt, in a venv
# of their own under .cache/ (reinstalled when the pins change).
TEST_VENV=$CAUCE_ROOT/.cache/venv-test
fetch_test_tools() {
  local requirements="$CAUCE_ROOT/scripts/lib/requirements-test.txt"
  local stamp
  stamp="$TEST_VENV/.complete-$(sha256sum "$requirements" | cut -c1-16)"
  # (a venv outlives the interpreter it was made with only as long as that stays installed)
  [ -f "$stamp" ] && "$TEST_VENV/bin/python" -c '' 2>/dev/null && return 0
  log "installing the test tools from PyPI (scripts/lib/requirements-test.txt)"
  rm -rf "$TEST_VENV"
  python3 -m venv "$TEST_VENV" || die "could not create a Python venv in $TEST_VENV"
  "$TEST_VENV/bin/pip" install -q --disable-pip-version-check -r "$requirements" >&2 ||
    die "could not install the test tools from PyPI"
  touch "$stamp"
}

configure_build() { # preset
  cmake --preset "$1" >/dev/null || die "cmake configure ($1) failed"
  cmake --build --preset "$1" || die "build ($1) failed"
}

port_in_use() { ss -Htln "sport = :$1" 2>/dev/null | grep -q .; }

# A free TCP port on 127.0.0.1, chosen at random (concurrent runs rarely collide) below the
# kernel's ephemeral range: a port in that range may be taken by an outgoing connection between
# this check and the server's bind. Any socket on the port counts, not only listeners.
free_port() {
  local low port
  low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  [ "$low" -gt 11000 ] || low=32768
  for _ in $(seq 1 200); do
    port=$((10000 + RANDOM % (low - 10000)))
    ss -Htan "sport = :$port" 2>/dev/null | grep -q . || { echo "$port"; return 0; }
  done
  die "no free port found"
}

require_port_free() { # port variable-name
  port_in_use "$1" && die "port $1 is already in use; stop what listens there or set $2 to another port"
  return 0
}

wait_for_port() { # port seconds what
  local deadline=$((SECONDS + $2))
  until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.2
  done
}

# ---- PostgreSQL ------------------------------------------------------------------------------
# Runs as the `postgres` user when we are root (PostgreSQL refuses root), else as ourselves.
PG_BIN=${CAUCE_PG_BIN:-/usr/lib/postgresql/15/bin}
pg_as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# pg_start DIR PORT [TLS_DIR]: initialises DIR/data on first use (superuser `postgres`, password
# in DIR/superuser.password), then starts it on 127.0.0.1:PORT with its socket in DIR/run; with
# TLS_DIR (tls_test_ca), ssl=on with that directory's server certificate.
pg_start() {
  local dir=$1 port=$2 tls=${3:-}
  mkdir -p "$dir"
  if [ "$(id -u)" -eq 0 ]; then
    local d=$dir
    while [ "$d" != / ]; do
      runuser -u postgres -- test -x "$d" 2>/dev/null ||
        die "PostgreSQL runs as user postgres, which cannot enter $d; put the data dir elsewhere (CAUCE_DATA_DIR) or chmod o+x $d"
      d=$(dirname "$d")
    done
    chown postgres: "$dir"
  fi
  chmod 700 "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    log "initialising PostgreSQL cluster in $dir/data"
    pg_as_owner sh -c "umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > '$dir/superuser.password'"
    pg_as_owner "$PG_BIN/initdb" -D "$dir/data" -U postgres -E UTF8 --locale=C.UTF-8 \
      --auth-local=trust --auth-host=scram-sha-256 --pwfile="$dir/superuser.password" >/dev/null ||
      die "initdb failed"
  fi
  pg_as_owner mkdir -p "$dir/run"
  local ssl=
  if [ -n "$tls" ]; then
    # The server's key must belong to the user PostgreSQL runs as, readable by it alone.
    local file
    for file in server.crt server.key; do
      pg_as_owner sh -c "umask 077; cat >'$dir/$file'" <"$tls/$file"
    done
    ssl="-c ssl=on -c ssl_cert_file=$dir/server.crt -c ssl_key_file=$dir/server.key"
  fi
  if pg_as_owner "$PG_BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    log "stopping a PostgreSQL left running on $dir/data"
    pg_as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
  fi
  log "starting PostgreSQL on 127.0.0.1:$port"
  pg_as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
    -o "-p $port -c listen_addresses=127.0.0.1 -k $dir/run -c unix_socket_permissions=0700 $ssl" \
    start >/dev/null || { tail -20 "$dir/postgres.log" >&2; die "PostgreSQL did not start (log: $dir/postgres.log)"; }
}

pg_stop() { # DIR
  [ -f "$1/data/postmaster.pid" ] || return 0
  pg_as_owner "$PG_BIN/pg_ctl" -D "$1/data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
}

pg_psql() { # DIR PORT SQL...
  local dir=$1 port=$2
  shift 2
  pg_as_owner "$PG_BIN/../bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir/run" -p "$port" -U postgres -d postgres "$@"
}

# pg_ensure_role DIR PORT ROLE PASSWORD_FILE [SUPERUSER]: a login role with its own database.
pg_ensure_role() {
  local dir=$1 port=$2 role=$3 pwfile=$4 super=${5:-}
  local password
  password=$(cat "$pwfile")
  local attrs="LOGIN"
  [ -n "$super" ] && attrs="LOGIN SUPERUSER"
  pg_psql "$dir" "$port" -v role="$role" -v pw="$password" <<SQL >/dev/null
SELECT format('CREATE ROLE %I $attrs PASSWORD %L', :'role', :'pw')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I $attrs PASSWORD %L', :'role', :'pw') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'role', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'role') \gexec
SQL
}

# ---- Kafka (KRaft) ------------------------------------------------------------------------------
# One node is a directory: DIR/server.properties, its log in DIR/logs, DIR/kafka.pid,
# DIR/kafka.log. kafka_start runs the single node scripts/run and scripts/test use;
# scripts/cluster builds three nodes from the same pieces.

# Every Kafka JVM's options but its heap: our logging, G1.
KAFKA_JVM_OPTS=(-XX:+UseG1GC -Djava.awt.headless=true
  "-Dlog4j.configuration=file:$CAUCE_ROOT/infra/kafka/log4j.properties")

# kafka_java HEAP_OPTS CLASS ARGS...: a JVM on Kafka's jars.
kafka_java() {
  local heap=$1
  shift
  # shellcheck disable=SC2086 # HEAP_OPTS is a list of JVM options
  java $heap "${KAFKA_JVM_OPTS[@]}" -cp "$KAFKA_HOME/lib/*" "$@"
}

# kafka_tool CLASS ARGS...: one of Kafka's command-line tools (org.apache.kafka.tools.TopicCommand,
# MetadataQuorumCommand, ...) with a heap of its own, small.
kafka_tool() { kafka_java "-Xms32m -Xmx128m -XX:TieredStopAtLevel=1" "$@"; }

kafka_random_cluster_id() { kafka_java "-Xmx64m" kafka.tools.StorageTool random-uuid 2>/dev/null; }

# kafka_configure TEMPLATE DIR NAME=VALUE...: DIR/server.properties from an infra/kafka template,
# every @NAME@ replaced by its value and @LOG_DIR@ by DIR/logs.
kafka_configure() {
  local template=$1 dir=$2
  shift 2
  mkdir -p "$dir/logs"
  local subst=(-e "s|@LOG_DIR@|$dir/logs|g") pair
  for pair in "$@"; do subst+=(-e "s|@${pair%%=*}@|${pair#*=}|g"); done
  sed "${subst[@]}" "$template" >"$dir/server.properties"
  ! grep -n '@[A-Z_]*@' "$dir/server.properties" >&2 || die "unfilled placeholders in $dir/server.properties"
}

# kafka_format DIR CLUSTER_ID [STORAGE_TOOL_ARGS...]: formats DIR/logs for that cluster, once
# (extra arguments such as --add-scram go to Kafka's storage tool).
kafka_format() {
  local dir=$1 cluster_id=$2
  shift 2
  [ -f "$dir/logs/meta.properties" ] && return 0
  log "formatting Kafka storage in $dir/logs (cluster $cluster_id)"
  kafka_java "-Xmx128m" kafka.tools.StorageTool format -t "$cluster_id" \
    -c "$dir/server.properties" "$@" >/dev/null || die "formatting Kafka storage failed"
}

# kafka_spawn DIR HEAP_OPTS: stops a node left running on DIR, then starts it in the background
# in a session of its own (pid in DIR/kafka.pid, output in DIR/kafka.log).
kafka_spawn() {
  local dir=$1 heap=$2
  kafka_stop "$dir"
  # (setsid execs the JVM in this background child, so $! is the JVM's pid)
  # shellcheck disable=SC2086 # HEAP_OPTS is a list of JVM options
  setsid java $heap "${KAFKA_JVM_OPTS[@]}" -cp "$KAFKA_HOME/lib/*" kafka.Kafka "$dir/server.properties" \
    >"$dir/kafka.log" 2>&1 </dev/null &
  echo $! >"$dir/kafka.pid"
}

# kafka_wait_started DIR PORT SECONDS: until the node logged that it started (in KRaft: caught up
# with the metadata log and unfenced) and its broker port accepts connections.
kafka_wait_started() {
  local dir=$1 port=$2 deadline=$((SECONDS + $3))
  until grep -q 'Kafka Server started' "$dir/kafka.log" 2>/dev/null && wait_for_port "$port" 1; do
    kill -0 "$(cat "$dir/kafka.pid")" 2>/dev/null || { tail -30 "$dir/kafka.log" >&2; die "Kafka exited (log: $dir/kafka.log)"; }
    [ $SECONDS -ge $deadline ] && die "Kafka did not start within $3 s (log: $dir/kafka.log)"
    sleep 0.3
  done
}

# kafka_start DIR PORT CONTROLLER_PORT [EXTRA_PROPERTIES [STORAGE_TOOL_ARGS...]]: one combined
# broker + controller from infra/kafka/server.properties.in (then the EXTRA_PROPERTIES file, whose
# keys win), formatted once with a cluster id of its own, started in the background; returns once
# it serves.
kafka_start() {
  local dir=$1 port=$2 cport=$3 extra=${4:-}
  shift $(($# < 4 ? $# : 4))
  kafka_configure "$CAUCE_ROOT/infra/kafka/server.properties.in" "$dir" PORT="$port" CONTROLLER_PORT="$cport"
  [ -z "$extra" ] || cat "$extra" >>"$dir/server.properties"
  [ -f "$dir/logs/meta.properties" ] || kafka_format "$dir" "$(kafka_random_cluster_id)" "$@"
  log "starting Kafka $KAFKA_VERSION (KRaft) on 127.0.0.1:$port"
  kafka_spawn "$dir" "-Xms256m -Xmx512m"
  kafka_wait_started "$dir" "$port" 90
}

# kafka_stop DIR [SECONDS]: SIGTERM (a controlled shutdown), SIGKILL after SECONDS (30).
kafka_stop() {
  local pidfile="$1/kafka.pid" pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 $((${2:-30} * 5))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

# ---- TLS and SASL for tests ---------------------------------------------------------------------
# tls_test_ca DIR: a throwaway CA (DIR/ca.crt), a certificate it signed for localhost and
# 127.0.0.1 (DIR/server.crt and .key, and DIR/server.p12 for Java with its password in
# DIR/server.p12.password), a client certificate (DIR/client.crt and .key) and an unrelated CA
# (DIR/other-ca.crt) for a client to refuse the server with. Valid for two days.
tls_test_ca() {
  local dir=$1
  mkdir -p "$dir"
  (
    set -e
    cd "$dir"
    umask 077
    key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }
    for ca in ca other-ca; do
      key "$ca"
      openssl req -x509 -key "$ca.key" -days 2 -subj "/CN=cauce test $ca" -out "$ca.crt" 2>/dev/null
    done
    for leaf in server:localhost:"extendedKeyUsage=serverAuth;subjectAltName=DNS:localhost,IP:127.0.0.1" \
      client:cauce-test-client:"extendedKeyUsage=clientAuth"; do
      IFS=: read -r name cn ext <<<"$leaf"
      key "$name"
      openssl req -new -key "$name.key" -subj "/CN=$cn" -out "$name.csr" 2>/dev/null
      printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n%s\n' \
        "${ext//;/$'\n'}" >"$name.ext"
      openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
        -extfile "$name.ext" -out "$name.crt" 2>/dev/null
    done
    head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >server.p12.password
    openssl pkcs12 -export -in server.crt -inkey server.key -passout file:server.p12.password \
      -out server.p12
    chmod 644 ca.crt other-ca.crt server.crt client.crt
  ) || die "making the test CA in $dir failed"
}

# kafka_secured_properties TLS_DIR PORT CONTROLLER_PORT SASL_PORT SSL_PORT SASL_SSL_PORT USER
# PASSWORD_FILE: properties (for kafka_start's EXTRA_PROPERTIES) adding three listeners beside
# PLAINTEXT, which stays the default and inter-broker one: SASL_PLAINTEXT and SASL_SSL accepting
# SCRAM-SHA-512, SCRAM-SHA-256 (USER's credentials go in at format time: kafka_format's --add-scram) and
# PLAIN, and SSL requiring a client certificate; certificates from tls_test_ca TLS_DIR.
kafka_secured_properties() {
  local tls=$1 port=$2 cport=$3 sasl=$4 ssl=$5 sasl_ssl=$6 user=$7 password
  password=$(cat "$8")
  local p12_password listener mechanism
  p12_password=$(cat "$tls/server.p12.password")
  cat <<PROPERTIES
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport,SASL_PLAINTEXT://127.0.0.1:$sasl,SSL://127.0.0.1:$ssl,SASL_SSL://127.0.0.1:$sasl_ssl
advertised.listeners=PLAINTEXT://127.0.0.1:$port,SASL_PLAINTEXT://127.0.0.1:$sasl,SSL://127.0.0.1:$ssl,SASL_SSL://127.0.0.1:$sasl_ssl
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN
ssl.keystore.type=PKCS12
ssl.keystore.location=$tls/server.p12
ssl.keystore.password=$p12_password
ssl.key.password=$p12_password
ssl.truststore.type=PEM
ssl.truststore.location=$tls/ca.crt
listener.name.ssl.ssl.client.auth=required
PROPERTIES
  for listener in sasl_plaintext sasl_ssl; do
    for mechanism in scram-sha-512 scram-sha-256; do
      echo "listener.name.$listener.$mechanism.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
    done
    echo "listener.name.$listener.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$user=\"$password\";"
  done
}
