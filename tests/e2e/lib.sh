# Shared helpers for the end-to-end scripts (sourced, not run).
#
# Each MTA script sources this, makes its own throwaway directory ($WORK), registers
# cleanup with `on_exit`, and reports with `pass`/`fail`. Nothing here listens anywhere
# but 127.0.0.1.

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$E2E_DIR/../.." && pwd)
# True if other users may pass through every directory from / down to $1.
world_traversable() {
    local d=$1
    while [ "$d" != / ]; do
        [ -n "$(find "$d" -maxdepth 0 -perm -o+x)" ] || return 1
        d=$(dirname "$d")
    done
}

# Downloaded .debs, the private trees they unpack into, and each run's directory. The
# MTAs' unprivileged users run binaries and write mail there, so every directory above
# must let them through: target/e2e/ when it does (kept between runs), else a directory
# of our own under /var/lib, which run-all.sh removes at the end.
if [ -n "${E2E_CACHE:-}" ]; then
    CACHE=$E2E_CACHE
elif world_traversable "$REPO/target"; then
    CACHE=$REPO/target/e2e
else
    CACHE=/var/lib/plainbounce-e2e
fi
PLAINBOUNCE=${PLAINBOUNCE:-$REPO/target/release/plainbounce}
# The user that owns the MTAs' queues and mailboxes during the tests.
E2E_USER=pbe2e
E2E_DROP_GROUP=pbe2e-drop

PASSED=0
FAILED=0
pass() { echo "PASS: $*"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL: $*"; FAILED=$((FAILED + 1)); }
note() { echo "---- $*"; }

# Run "$@" as one test called $1; its output is shown only if it fails. It runs in this
# shell (not a subshell), so what it starts and registers with on_exit stays ours.
check() {
    local name=$1 out rc
    shift
    out=$(mktemp)
    "$@" >"$out" 2>&1
    rc=$?
    if [ "$rc" -eq 0 ]; then
        pass "$name"
    else
        fail "$name"
        sed 's/^/    /' "$out"
    fi
    rm -f "$out"
    return "$rc"
}

summary() {
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
}

# Cleanup actions run in reverse order at exit, whatever happened.
CLEANUPS=()
on_exit() { CLEANUPS+=("$*"); }
run_cleanups() {
    local i
    for ((i = ${#CLEANUPS[@]} - 1; i >= 0; i--)); do
        eval "${CLEANUPS[$i]}" >/dev/null 2>&1 || true
    done
}
trap run_cleanups EXIT
trap 'exit 130' INT TERM

# Stop process $1: SIGTERM, up to 10 s for it to go, then SIGKILL.
stop_pid() {
    local i
    kill "$1" 2>/dev/null || return 0
    for ((i = 0; i < 100; i++)); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$1" 2>/dev/null
}

# Not under /tmp: Sendmail refuses files below a world-writable directory.
make_workdir() {
    mkdir -p "$CACHE/run"
    WORK=$(mktemp -d "$CACHE/run/$1.XXXXXX")
    chmod 755 "$WORK"
    if [ -z "${E2E_KEEP:-}" ]; then on_exit "rm -rf '$WORK'"; fi
}

# A free TCP port on 127.0.0.1 (the kernel picks it).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# True if something listens on 127.0.0.1:$1.
port_in_use() {
    python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)' "$1" 2>/dev/null
}

# Wait until something listens on 127.0.0.1:$1 (up to $2 seconds, default 20).
wait_port() {
    python3 - "$1" "${2:-20}" <<'EOF'
import socket, sys, time
port, limit = int(sys.argv[1]), float(sys.argv[2])
end = time.time() + limit
while time.time() < end:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(f"nothing listens on 127.0.0.1:{port} after {limit}s")
EOF
}

# Wait until directory $1 holds at least $2 files (up to $3 seconds); print their paths.
wait_files() {
    local dir=$1 want=$2 limit=${3:-60} i
    for ((i = 0; i < limit * 5; i++)); do
        if [ -d "$dir" ] && [ "$(find "$dir" -type f | wc -l)" -ge "$want" ]; then
            find "$dir" -type f | sort
            return 0
        fi
        sleep 0.2
    done
    echo "timed out after ${limit}s waiting for $want file(s) in $dir" >&2
    find "$dir" -type f 2>/dev/null >&2
    return 1
}

# Unpack Debian packages into a private tree $CACHE/root-$1 (no install, no conflicts).
# Usage: unpack_debs NAME pkg...
unpack_debs() {
    local name=$1 tree=$CACHE/root-$1 pkg deb
    shift
    mkdir -p "$CACHE/debs"
    if [ -f "$tree/.complete" ] && [ "$(cat "$tree/.complete")" = "$*" ]; then
        echo "$tree"
        return 0
    fi
    rm -rf "$tree"
    mkdir -p "$tree"
    for pkg in "$@"; do
        deb=$(ls "$CACHE/debs/${pkg}"_*.deb 2>/dev/null | head -1)
        if [ -z "$deb" ]; then
            (cd "$CACHE/debs" && apt-get download "$pkg" >&2 2>/dev/null) ||
                (apt-get update -qq >&2 && cd "$CACHE/debs" && apt-get download "$pkg" >&2) || return 1
            deb=$(ls "$CACHE/debs/${pkg}"_*.deb | head -1)
        fi
        dpkg-deb -x "$deb" "$tree" || return 1
    done
    echo "$*" >"$tree/.complete"
    echo "$tree"
}

# A system user (with its own group): created if missing, removed at exit if we made it.
ensure_system_user() {
    if ! getent passwd "$1" >/dev/null; then
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin "$1" || return 1
        on_exit "remove_system_user '$1'"
    fi
}

# userdel refuses while a process of the user lives; the MTAs' children may take a moment.
remove_system_user() {
    local i
    for ((i = 0; i < 50; i++)); do
        userdel "$1" 2>/dev/null && break
        sleep 0.2
    done
    ! getent group "$1" >/dev/null || groupdel "$1"
}

# The test user and set-gid group, created if missing and removed at exit if we made them.
ensure_test_user() {
    if ! getent group "$E2E_DROP_GROUP" >/dev/null; then
        groupadd --system "$E2E_DROP_GROUP"
        on_exit "groupdel '$E2E_DROP_GROUP'"
    fi
    ensure_system_user "$E2E_USER"
    E2E_UID=$(id -u "$E2E_USER")
    E2E_GID=$(id -g "$E2E_USER")
}

# Start the fake remote SMTP server; sets FAKE_PORT, saves accepted mail in $WORK/remote.
start_fake_smtp() {
    python3 "$E2E_DIR/fake-smtp.py" --port-file "$WORK/fake.port" --sink "$WORK/remote" \
        >"$WORK/fake-smtp.log" 2>&1 &
    local pid=$!
    on_exit "stop_pid $pid"
    local i
    for ((i = 0; i < 100; i++)); do
        [ -s "$WORK/fake.port" ] && break
        sleep 0.1
    done
    FAKE_PORT=$(cat "$WORK/fake.port")
}

# Start `plainbounce serve` on 127.0.0.1:$MILTER_PORT; sets PB_PID.
start_milter() {
    "$PLAINBOUNCE" serve --socket "inet:$MILTER_PORT@127.0.0.1" ${1:+--config "$1"} \
        >>"$WORK/plainbounce.log" 2>&1 &
    PB_PID=$!
    on_exit "stop_pid $PB_PID"
    wait_port "$MILTER_PORT" 20
}

# Start `plainbounce serve` on a unix socket that Postfix's user can connect to (a
# configuration file with only those keys: the rest take their defaults); sets PB_PID and
# MILTER_SOCKET. The socket lives in a short /tmp directory: a socket path may not exceed
# 107 bytes.
start_milter_unix() {
    local dir i
    dir=$(mktemp -d /tmp/plainbounce-e2e.XXXXXX) && chmod 755 "$dir" || return 1
    on_exit "rm -rf '$dir'"
    MILTER_SOCKET=$dir/milter.sock
    printf 'socket = "unix:%s"\nsocket_mode = "0666"\nlog_level = "info,plainbounce::milter=debug"\n' \
        "$MILTER_SOCKET" >"$WORK/plainbounce-unix.toml"
    "$PLAINBOUNCE" serve --config "$WORK/plainbounce-unix.toml" >>"$WORK/plainbounce.log" 2>&1 &
    PB_PID=$!
    on_exit "stop_pid $PB_PID"
    for ((i = 0; i < 200; i++)); do
        [ -S "$MILTER_SOCKET" ] && return 0
        kill -0 "$PB_PID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

stop_milter() {
    kill "$PB_PID" 2>/dev/null || true
    wait "$PB_PID" 2>/dev/null || true
}

# Send message file $3 over SMTP to 127.0.0.1:$1 with MAIL FROM $2 (use "" for <>) to the
# remaining arguments.
smtp_send() {
    python3 "$E2E_DIR/check.py" send "$@"
}

# Print a log file indented, for a failure's context.
show_log() {
    [ -f "$1" ] && { echo "    --- $1 (last ${2:-30} lines)"; tail -n "${2:-30}" "$1" | sed 's/^/    /'; }
    return 0
}

# ---- A private Postfix instance (postfix.sh, footers.sh)

# Debian's postfix package unpacked into $TREE; `pf` runs its commands.
postfix_tree() {
    TREE=$(unpack_debs postfix postfix) || return 1
    # Debian keeps these under /usr/share/postfix; Postfix looks for them in meta_directory.
    cp -n "$TREE"/usr/share/postfix/{dynamicmaps.cf,makedefs.out} "$TREE/etc/postfix/"
    cp -n "$TREE/usr/share/postfix/main.cf.dist" "$TREE/etc/postfix/main.cf.proto"
    cp -n "$TREE/usr/share/postfix/master.cf.dist" "$TREE/etc/postfix/master.cf.proto"
}

pf() { LD_LIBRARY_PATH=$TREE/usr/lib/postfix "$TREE/usr/sbin/$1" "${@:2}"; }

# The base of a private instance under $PF with its configuration in $CONF: paths into
# $TREE, owned by the test user, smtpd unchrooted on 127.0.0.1:$SMTP_PORT, no TLS,
# log in $PF/maillog, mailboxes under $MAILDIR. Each part adds its own settings.
postfix_base_config() {
    mkdir -p "$CONF" "$PF/spool" "$PF/data" "$MAILDIR"
    chown "$E2E_USER:$E2E_USER" "$MAILDIR" "$PF/data"
    : >"$CONF/main.cf"
    # The smtpd listener on a private port; no chroot (the private tree has no jail).
    sed -E "s/^smtp( +)inet /127.0.0.1:$SMTP_PORT inet /" \
        "$TREE/usr/share/postfix/master.cf.dist" >"$CONF/master.cf"
    pf postconf -c "$CONF" -F '*/*/chroot = n'
    pf postconf -c "$CONF" -e \
        "compatibility_level = 3.6" \
        "queue_directory = $PF/spool" \
        "data_directory = $PF/data" \
        "daemon_directory = $TREE/usr/lib/postfix/sbin" \
        "command_directory = $TREE/usr/sbin" \
        "shlib_directory = $TREE/usr/lib/postfix" \
        "meta_directory = $TREE/etc/postfix" \
        "sendmail_path = $TREE/usr/sbin/sendmail" \
        "import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C LD_LIBRARY_PATH=$TREE/usr/lib/postfix" \
        "mail_owner = $E2E_USER" \
        "setgid_group = $E2E_DROP_GROUP" \
        "maillog_file_prefixes = $PF" \
        "maillog_file = $PF/maillog" \
        "inet_interfaces = 127.0.0.1" \
        "inet_protocols = ipv4" \
        "myhostname = mx.local.test" \
        "mydomain = local.test" \
        "myorigin = local.test" \
        "alias_maps =" \
        "alias_database =" \
        "smtp_tls_security_level = none" \
        "smtpd_tls_security_level = none" \
        "biff = no"
}

# Start the instance in $CONF (stopped at exit) and wait for its smtpd.
start_postfix() {
    on_exit "LD_LIBRARY_PATH='$TREE/usr/lib/postfix' '$TREE/usr/sbin/postfix' -c '$CONF' stop"
    pf postfix -c "$CONF" start >"$PF/start.log" 2>&1 || { cat "$PF/start.log"; return 1; }
    wait_port "$SMTP_PORT" 30
}
