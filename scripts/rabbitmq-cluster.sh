#!/usr/bin/env bash
# A three-node RabbitMQ cluster on this machine, beside the default node
# (rabbit@localhost on 5672, left alone), for the integration tests that kill
# and restart a node under load.
#
#   scripts/rabbitmq-cluster.sh start   DIR         start (or reuse if healthy) the cluster;
#                                                   last stdout line = the 3 AMQP URLs, comma-separated
#   scripts/rabbitmq-cluster.sh kill    DIR a|b|c   SIGKILL that node's Erlang VM, return once gone
#   scripts/rabbitmq-cluster.sh restart DIR a|b|c   start it again, wait until the cluster sees it running
#   scripts/rabbitmq-cluster.sh status  DIR         print running nodes; exit 0 iff all three run
#   scripts/rabbitmq-cluster.sh stop    DIR         SIGTERM (graceful), SIGKILL after 20 s; files kept
#   scripts/rabbitmq-cluster.sh urls    DIR         print the AMQP URLs
#
# Nodes: guichet-{a,b,c}@localhost, AMQP 127.0.0.1:569{1,2,3}, Erlang distribution
# 2569{1,2,3}. Everything (data, logs, pid files, configs, a copy of the Erlang
# cookie) lives under DIR/{a,b,c,home}. The cookie is the default node's
# (/var/lib/rabbitmq/.erlang.cookie), so the stock CLI works too:
#   rabbitmqctl -n guichet-a@localhost cluster_status
# Environment:
#   GUICHET_RMQ_FRESH=1       `start` always wipes the nodes' data and forms a new cluster
#                             (default: reuse a healthy running cluster, else start fresh)
#   GUICHET_RMQ_MANAGEMENT=1  management plugin on node a, http://127.0.0.1:15691 (slower start)
#   GUICHET_RMQ_TIMEOUT=90    seconds to wait for a node to come up / join
#   GUICHET_RMQ_COOKIE=PATH   Erlang cookie file to use (default: the default node's)
# Progress and errors go to stderr; only the URLs go to stdout. On failure: exit 1
# and the tail of the failing node's logs on stderr; nodes already up are left
# running (the next start or stop takes care of them). `start` also stops nodes
# of the same names started from another DIR (they would hold the ports).
set -euo pipefail

readonly RMQ_BIN=/usr/lib/rabbitmq/bin
readonly NODES=(a b c)
readonly HOSTPART=localhost
TIMEOUT=${GUICHET_RMQ_TIMEOUT:-90}
T0=$(date +%s%N)

usage() {
    sed -n '6,12p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

log() { printf '[rabbitmq-cluster %5.1fs] %s\n' "$(( ($(date +%s%N) - T0) / 1000000 ))e-3" "$*" >&2; }

die() {
    printf 'rabbitmq-cluster: error: %s\n' "$*" >&2
    exit 1
}

node_name() { echo "guichet-$1@$HOSTPART"; }
idx() { case $1 in a) echo 1 ;; b) echo 2 ;; c) echo 3 ;; *) die "unknown node '$1' (expected a, b or c)" ;; esac; }
amqp_port() { echo $((5690 + $(idx "$1"))); }
dist_port() { echo $((25690 + $(idx "$1"))); }
url() { echo "amqp://guest:guest@127.0.0.1:$(amqp_port "$1")/%2f"; }
urls() { echo "$(url a),$(url b),$(url c)"; }
node_log() { echo "$DIR/$1/log/$(node_name "$1").log"; }

# Print the tails of a node's logs to stderr, then fail.
die_node() {
    local n=$1
    shift
    {
        printf 'rabbitmq-cluster: error: node %s: %s\n' "$(node_name "$n")" "$*"
        local f
        for f in "$(node_log "$n")" "$DIR/$n/log/startup.log"; do
            if [[ -s $f ]]; then
                echo "----- last lines of $f -----"
                tail -n 40 "$f"
            fi
        done
    } >&2
    exit 1
}

# Environment shared by the nodes and our CLI calls. Scrub inherited RabbitMQ /
# Erlang settings so that the caller's environment cannot redirect us.
setup_env() {
    local v
    for v in $(compgen -e); do
        case $v in RABBITMQ_* | ERL_* | ERLANG_*) unset "$v" ;; esac
    done
    export HOME="$DIR/home"
    export LC_ALL=C.UTF-8 LANG=C.UTF-8
    # Our own (empty) env file instead of /etc/rabbitmq/rabbitmq-env.conf, which pins NODENAME.
    export RABBITMQ_CONF_ENV_FILE="$DIR/rabbitmq-env.conf"
    # Same as /etc/rabbitmq/rabbitmq-env.conf: epmd and distribution on loopback only.
    export ERL_EPMD_ADDRESS=127.0.0.1
    export ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"
    # CLI distribution ports away from the default 35672-35682 used by the default node's CLI.
    export RABBITMQ_CTL_DIST_PORT_MIN=35691 RABBITMQ_CTL_DIST_PORT_MAX=35720
}

prepare_dir() {
    mkdir -p "$DIR/home"
    local cookie=${GUICHET_RMQ_COOKIE:-}
    if [[ -z $cookie ]]; then
        for cookie in /var/lib/rabbitmq/.erlang.cookie ~root/.erlang.cookie; do
            [[ -r $cookie ]] && break
        done
    fi
    [[ -r $cookie ]] || die "cannot read an Erlang cookie (tried ${GUICHET_RMQ_COOKIE:-/var/lib/rabbitmq/.erlang.cookie}); run as root or set GUICHET_RMQ_COOKIE"
    if ! cmp -s "$cookie" "$DIR/home/.erlang.cookie" 2>/dev/null; then
        rm -f "$DIR/home/.erlang.cookie"
        install -m 400 "$cookie" "$DIR/home/.erlang.cookie"
    fi
    : >"$DIR/rabbitmq-env.conf"
    local n
    for n in "${NODES[@]}"; do
        mkdir -p "$DIR/$n/log" "$DIR/$n/mnesia"
        {
            echo "listeners.tcp.local = 127.0.0.1:$(amqp_port "$n")"
            echo "disk_free_limit.absolute = 50MB"
            echo "vm_memory_high_watermark.relative = 0.8"
            echo "log.file.level = info"
            echo "log.console = false"
            echo "cluster_name = guichet"
            # b and c join a by themselves on their first boot (a is started first);
            # a boots standalone. On later boots the data dir remembers the cluster.
            if [[ $n != a ]]; then
                echo "cluster_formation.peer_discovery_backend = classic_config"
                echo "cluster_formation.classic_config.nodes.1 = $(node_name a)"
                echo "cluster_formation.classic_config.nodes.2 = $(node_name b)"
                echo "cluster_formation.classic_config.nodes.3 = $(node_name c)"
                echo "cluster_formation.discovery_retry_limit = 60"
                echo "cluster_formation.discovery_retry_interval = 500"
            fi
            if [[ $n == a && ${GUICHET_RMQ_MANAGEMENT:-0} == 1 ]]; then
                echo "management.tcp.ip = 127.0.0.1"
                echo "management.tcp.port = 15691"
            fi
        } >"$DIR/$n/rabbitmq.conf"
        # Quorum queues declared without x-quorum-initial-group-size get
        # quorum_cluster_size members (3 is also the 3.10 default): one per node.
        echo '[{rabbit, [{quorum_cluster_size, 3}]}].' >"$DIR/$n/advanced.config"
        if [[ $n == a && ${GUICHET_RMQ_MANAGEMENT:-0} == 1 ]]; then
            echo '[rabbitmq_management].' >"$DIR/$n/enabled_plugins"
        else
            echo '[].' >"$DIR/$n/enabled_plugins"
        fi
    done
}

ctl() {
    local n=$1
    shift
    "$RMQ_BIN/rabbitmqctl" -q -n "$(node_name "$n")" "$@"
}

# PID of the node's beam.smp, if it runs. The VM carries marker arguments
# (-guichet_rmq_node NAME -guichet_rmq_dir ID) since RabbitMQ names the node
# only once booted. With "any", also finds a node of that name started from
# another DIR (it holds the same name and ports).
dir_id() { printf '%s' "$DIR" | cksum | cut -d' ' -f1; }
marker() { echo "-guichet_rmq_node $(node_name "$1") -guichet_rmq_dir $(dir_id)"; }
pid_of() {
    local pattern
    if [[ ${2:-} == any ]]; then
        pattern="-guichet_rmq_node $(node_name "$1")"
    else
        pattern=$(marker "$1")
    fi
    { pgrep -f -- "beam\.smp .*$pattern( |\$)" || true; } | head -n 1
}

port_listening() { [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]; }

launch() {
    local n=$1
    local name port
    name=$(node_name "$n")
    port=$(amqp_port "$n")
    if port_listening "$port"; then
        die "port $port is already in use (by something other than $name?): $(ss -Hltnp "sport = :$port")"
    fi
    rm -f "$DIR/$n/pid"
    echo "===== $(date '+%F %T') starting $name" >>"$DIR/$n/log/startup.log"
    (
        export RABBITMQ_NODENAME="$name"
        export RABBITMQ_DIST_PORT
        RABBITMQ_DIST_PORT=$(dist_port "$n")
        export RABBITMQ_MNESIA_BASE="$DIR/$n/mnesia"
        export RABBITMQ_LOG_BASE="$DIR/$n/log"
        export RABBITMQ_PID_FILE="$DIR/$n/pid"
        export RABBITMQ_CONFIG_FILE="$DIR/$n/rabbitmq.conf"
        export RABBITMQ_ADVANCED_CONFIG_FILE="$DIR/$n/advanced.config"
        export RABBITMQ_ENABLED_PLUGINS_FILE="$DIR/$n/enabled_plugins"
        export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=$(marker "$n")
        cd "$DIR/$n"
        setsid "$RMQ_BIN/rabbitmq-server" </dev/null >>"$DIR/$n/log/startup.log" 2>&1 &
        echo $! >"$DIR/$n/wrapper.pid"
    )
}

# Wait until the node's AMQP listener is up (cheap polling, no CLI).
await_port() {
    local n=$1 deadline port wrapper
    deadline=$(($(date +%s) + TIMEOUT))
    port=$(amqp_port "$n")
    wrapper=$(cat "$DIR/$n/wrapper.pid" 2>/dev/null || true)
    until port_listening "$port"; do
        if [[ -n $wrapper ]] && ! kill -0 "$wrapper" 2>/dev/null && [[ -z $(pid_of "$n" any) ]]; then
            die_node "$n" "the node exited during startup"
        fi
        (($(date +%s) < deadline)) || die_node "$n" "AMQP port $port not listening after ${TIMEOUT}s"
        sleep 0.1
    done
}

# Cluster members that node $1 sees running (as cluster_status's running_nodes)
# and whose rabbit application has finished booting; sorted, comma-separated.
running_nodes() {
    ctl "$1" eval 'lists:sort([N || N <- rabbit_nodes:all_running(), rabbit:is_running(N)]).' 2>/dev/null |
        tr -d "[]' \n"
}

# Wait until node $1 sees all of $2 (comma-separated) running.
await_running() {
    local n=$1 want=$2 deadline seen=""
    deadline=$(($(date +%s) + TIMEOUT))
    while :; do
        seen=$(running_nodes "$n" || true)
        local missing="" w
        for w in ${want//,/ }; do
            [[ ,$seen, == *,$w,* ]] || missing+=" $w"
        done
        [[ -z $missing ]] && return 0
        (($(date +%s) < deadline)) || die_node "$n" "cluster_status still lacks$missing after ${TIMEOUT}s (running: ${seen:-none})"
        sleep 0.5
    done
}

all_names() { echo "$(node_name a),$(node_name b),$(node_name c)"; }

healthy() {
    local n
    for n in "${NODES[@]}"; do
        if [[ -z $(pid_of "$n") ]] || ! port_listening "$(amqp_port "$n")"; then return 1; fi
    done
    [[ $(running_nodes a || true) == "$(all_names)" ]]
}

# SIGTERM (graceful) the given nodes in parallel, SIGKILL whatever is left
# after 20 s. $1 = "own" (this DIR's nodes) or "any" (same names, any DIR).
stop_nodes() {
    local which=$1 n p pids=() deadline
    shift
    for n in "$@"; do
        p=$(pid_of "$n" "$which")
        if [[ -n $p ]]; then
            log "stopping $(node_name "$n") (pid $p)"
            kill -TERM "$p" 2>/dev/null || true
            pids+=("$p")
        fi
    done
    ((${#pids[@]})) || return 0
    deadline=$(($(date +%s) + 20))
    for p in "${pids[@]}"; do
        while kill -0 "$p" 2>/dev/null && (($(date +%s) < deadline)); do sleep 0.1; done
        if kill -0 "$p" 2>/dev/null; then
            log "pid $p still alive after 20 s, SIGKILL"
            kill -KILL "$p" 2>/dev/null || true
        fi
    done
    for p in "${pids[@]}"; do
        while kill -0 "$p" 2>/dev/null; do sleep 0.1; done
    done
}

cmd_start() {
    prepare_dir
    if [[ ${GUICHET_RMQ_FRESH:-0} != 1 ]] && healthy; then
        log "reusing the running cluster"
        urls
        return 0
    fi
    stop_nodes any "${NODES[@]}"
    local n
    for n in "${NODES[@]}"; do
        rm -rf "${DIR:?}/$n/mnesia" "$DIR/$n/pid"
        mkdir -p "$DIR/$n/mnesia"
    done
    # a first, then b and c in parallel: they find a (running) through
    # classic_config peer discovery and join it while booting.
    log "starting $(node_name a)"
    launch a
    await_port a
    log "starting $(node_name b), $(node_name c)"
    launch b
    launch c
    await_port b
    await_port c
    log "nodes up"
    # Fallback: join explicitly a node that booted standalone anyway.
    local seen deadline=$(($(date +%s) + 10))
    while :; do
        seen=$(running_nodes a || true)
        [[ $seen == "$(all_names)" ]] && break
        if (($(date +%s) >= deadline)); then
            for n in b c; do
                [[ ,$seen, == *,$(node_name "$n"),* ]] && continue
                log "$(node_name "$n") is not in the cluster (running: ${seen:-none}), joining it explicitly"
                ctl "$n" stop_app >/dev/null || die_node "$n" "stop_app failed"
                ctl "$n" reset >/dev/null || die_node "$n" "reset failed"
                ctl "$n" join_cluster "$(node_name a)" >/dev/null || die_node "$n" "join_cluster $(node_name a) failed"
                ctl "$n" start_app >/dev/null || die_node "$n" "start_app failed"
            done
            break
        fi
        sleep 0.3
    done
    await_running a "$(all_names)"
    log "cluster ready: $(all_names)"
    urls
}

cmd_kill() {
    local n=$1 p
    p=$(pid_of "$n")
    if [[ -z $p ]]; then
        log "$(node_name "$n") is not running"
        return 0
    fi
    kill -KILL "$p"
    local deadline=$(($(date +%s) + 10))
    while kill -0 "$p" 2>/dev/null; do
        (($(date +%s) < deadline)) || die "pid $p of $(node_name "$n") survived SIGKILL for 10 s"
        sleep 0.05
    done
    log "killed $(node_name "$n") (pid $p)"
}

cmd_restart() {
    local n=$1 m want
    if [[ -z $(pid_of "$n") ]]; then
        log "starting $(node_name "$n")"
        launch "$n"
    else
        log "$(node_name "$n") already running"
    fi
    await_port "$n"
    # It must see itself and every other node that is alive.
    want=$(node_name "$n")
    for m in "${NODES[@]}"; do
        [[ $m != "$n" && -n $(pid_of "$m") ]] && want+=",$(node_name "$m")"
    done
    await_running "$n" "$want"
    log "$(node_name "$n") is running in the cluster"
}

cmd_status() {
    local n p up=() ok=0
    for n in "${NODES[@]}"; do
        p=$(pid_of "$n")
        if [[ -n $p ]]; then
            echo "$(node_name "$n"): pid $p, amqp 127.0.0.1:$(amqp_port "$n")"
            up+=("$n")
        else
            echo "$(node_name "$n"): not running"
        fi
    done
    if ((${#up[@]})); then
        local seen
        seen=$(running_nodes "${up[0]}" || true)
        echo "running_nodes (seen by $(node_name "${up[0]}")): ${seen:-unknown}"
        [[ $seen == "$(all_names)" ]] || ok=1
    else
        ok=1
    fi
    return $ok
}

main() {
    (($# >= 2)) || usage
    local cmd=$1
    DIR=$2
    DIR=$(realpath -m -- "$DIR")
    case $cmd in
        start | stop | status | urls) (($# == 2)) || usage ;;
        kill | restart) (($# == 3)) || usage; idx "$3" >/dev/null ;;
        *) usage ;;
    esac
    [[ $cmd == start ]] || [[ -d $DIR/a ]] || die "$DIR does not hold a cluster (run start first)"
    mkdir -p "$DIR"
    setup_env
    case $cmd in
        start) cmd_start ;;
        kill) cmd_kill "$3" ;;
        restart) prepare_dir; cmd_restart "$3" ;;
        status) cmd_status ;;
        stop) stop_nodes own "${NODES[@]}"; log "stopped" ;;
        urls) urls ;;
    esac
}

main "$@"
