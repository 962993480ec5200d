#!/usr/bin/env bash
# A three-node RabbitMQ cluster of our own on this machine, for the fault tests: nodes
# osier-c1..3@localhost on 127.0.0.1:5673-5675 (Erlang distribution on 25673-25675), beside the
# default node on 5672, which this script never touches. Everything lives under $OSIER_CLUSTER_DIR
# (default /tmp/osier-rabbit-cluster): data, logs, the cookie the nodes share.
#
#   rabbit-cluster.sh start          start the three nodes and join them into one cluster
#   rabbit-cluster.sh stop           stop the three nodes (data kept)
#   rabbit-cluster.sh clean          stop them and delete their data
#   rabbit-cluster.sh status         the cluster as node 1 sees it
#   rabbit-cluster.sh healthy        exit 0 if every node runs and sees all three, no partition
#   rabbit-cluster.sh kill N         kill -9 node N (1-3)
#   rabbit-cluster.sh freeze N       SIGSTOP node N: sockets stay open, nothing answers
#   rabbit-cluster.sh thaw N         SIGCONT node N
#   rabbit-cluster.sh restart N      start node N again after a kill (it rejoins on its own)
#   rabbit-cluster.sh stop-node N    stop node N's Erlang VM cleanly
#   rabbit-cluster.sh close-conns N  close every client connection on node N
#   rabbit-cluster.sh ctl N ARGS...  rabbitmqctl against node N
#
# It needs the rabbitmq-server package (RabbitMQ 3.8+; quorum queues need the cluster).
set -euo pipefail

DIR=${OSIER_CLUSTER_DIR:-/tmp/osier-rabbit-cluster}
BIN=${RABBITMQ_BIN:-/usr/lib/rabbitmq/bin}
if [ ! -x "$BIN/rabbitmq-server" ]; then
    BIN=$(dirname "$(command -v rabbitmq-server || echo /usr/sbin/rabbitmq-server)")
fi
NODES=(1 2 3)

node_name() { echo "osier-c$1@localhost"; }
node_port() { echo $((5672 + $1)); }
node_dir() { echo "$DIR/c$1"; }

node_env() {
    local n=$1 d
    d=$(node_dir "$n")
    export HOME="$DIR"
    export RABBITMQ_NODENAME
    RABBITMQ_NODENAME=$(node_name "$n")
    export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    export RABBITMQ_NODE_PORT
    RABBITMQ_NODE_PORT=$(node_port "$n")
    export RABBITMQ_DIST_PORT=$((25672 + n))
    export RABBITMQ_CONFIG_FILE="$d/rabbitmq"
    export RABBITMQ_ADVANCED_CONFIG_FILE="$d/advanced.config"
    export RABBITMQ_CONF_ENV_FILE="$d/rabbitmq-env.conf"
    export RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins"
    export RABBITMQ_MNESIA_BASE="$d/mnesia"
    export RABBITMQ_LOG_BASE="$d/log"
    export RABBITMQ_PID_FILE="$d/pid"
    export ERL_EPMD_ADDRESS=127.0.0.1
}

prepare_node() {
    local n=$1 d
    d=$(node_dir "$n")
    mkdir -p "$d/mnesia" "$d/log"
    cat > "$d/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$(node_port "$n")
loopback_users = none
cluster_partition_handling = pause_minority
# Peers notice a frozen node within ~5 s instead of a minute, so the survivors take over its
# queues within the fault tests' budget.
net_ticktime = 4
EOF
    echo "[]." > "$d/advanced.config"
    : > "$d/rabbitmq-env.conf"
    echo "[]." > "$d/enabled_plugins"
    # Node 1 serves the management HTTP API on 127.0.0.1:15673 (`osier topology`'s test).
    if [ "$n" = 1 ]; then
        echo "[rabbitmq_management]." > "$d/enabled_plugins"
        printf 'management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = 15673\n' >> "$d/rabbitmq.conf"
    fi
}

ctl() {
    local n=$1
    shift
    (node_env "$n" && "$BIN/rabbitmqctl" -n "$(node_name "$n")" "$@")
}

pid_of() {
    local f
    f="$(node_dir "$1")/pid"
    [ -s "$f" ] && cat "$f"
}

running() {
    local pid
    pid=$(pid_of "$1" || true)
    [ -n "${pid:-}" ] && kill -0 "$pid" 2>/dev/null
}

launch_node() {
    local n=$1
    running "$n" && return 0
    prepare_node "$n"
    (node_env "$n" && "$BIN/rabbitmq-server" -detached >"$(node_dir "$n")/log/startup.log" 2>&1)
}

wait_node() {
    ctl "$1" wait --timeout 120 "$(node_dir "$1")/pid" >/dev/null
}

start_node() {
    launch_node "$1"
    wait_node "$1"
}

cmd=${1:-}
case "$cmd" in
start)
    mkdir -p "$DIR"
    if [ ! -s "$DIR/.erlang.cookie" ]; then
        head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DIR/.erlang.cookie"
        chmod 400 "$DIR/.erlang.cookie"
    fi
    # All at once: a node that was not the last to stop waits for its peers before it starts.
    for n in "${NODES[@]}"; do launch_node "$n"; done
    for n in "${NODES[@]}"; do wait_node "$n"; done
    for n in 2 3; do
        if ! ctl 1 cluster_status 2>/dev/null | grep -q "$(node_name "$n")"; then
            ctl "$n" stop_app >/dev/null
            ctl "$n" join_cluster "$(node_name 1)" >/dev/null 2>&1
            ctl "$n" start_app >/dev/null 2>&1
        fi
    done
    ctl 1 await_online_nodes 3 >/dev/null
    echo "cluster up: 127.0.0.1:5673, 127.0.0.1:5674, 127.0.0.1:5675"
    ;;
stop)
    for n in 3 2 1; do
        pid=$(pid_of "$n" || true)
        if [ -n "${pid:-}" ] && kill -0 "$pid" 2>/dev/null; then
            kill -CONT "$pid" 2>/dev/null || true
            ctl "$n" stop >/dev/null 2>&1 || kill -9 "$pid" 2>/dev/null || true
        fi
    done
    ;;
clean)
    # Nothing to keep: the nodes go at once (a graceful stop can hang on a partitioned node).
    for n in "${NODES[@]}"; do
        pid=$(pid_of "$n" || true)
        if [ -n "${pid:-}" ]; then
            kill -CONT "$pid" 2>/dev/null || true
            kill -9 "$pid" 2>/dev/null || true
            # Gone, and its ports with it, before anyone looks at them.
            for _ in $(seq 1 100); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
        fi
    done
    rm -rf "$DIR"
    ;;
status) ctl 1 cluster_status ;;
healthy)
    # Whether the cluster can take another scenario as it is: every node running and seeing
    # all three running, no partition, no alarm.
    for n in "${NODES[@]}"; do
        running "$n" || exit 1
        s=$(ctl "$n" cluster_status --formatter json 2>/dev/null) || exit 1
        up=$(printf '%s' "$s" | grep -o '"running_nodes":\[[^]]*\]') || exit 1
        for m in "${NODES[@]}"; do
            case "$up" in *"\"$(node_name "$m")\""*) ;; *) exit 1 ;; esac
        done
        case "$s" in *'"partitions":{}'*) ;; *) exit 1 ;; esac
        case "$s" in *'"alarms":[]'*) ;; *) exit 1 ;; esac
    done
    ;;
kill) kill -9 "$(pid_of "$2")" ;;
freeze) kill -STOP "$(pid_of "$2")" ;;
thaw) kill -CONT "$(pid_of "$2")" ;;
restart) start_node "$2" ;;
stop-node) ctl "$2" stop >/dev/null ;;
close-conns) ctl "$2" close_all_connections -p / "closed by the fault test" >/dev/null ;;
ctl)
    n=$2
    shift 2
    ctl "$n" "$@"
    ;;
*)
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
