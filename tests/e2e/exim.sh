#!/usr/bin/env bash
# Exim end to end: Debian's exim4-daemon-light (+ exim4-base, libidn12) unpacked into a
# private tree and run with its own configuration file (exim -C), spool and Maildirs, on
# 127.0.0.1 and a private port. The local delivery transport includes
# packaging/exim/plainbounce.conf unchanged (transport_filter running `plainbounce
# rewrite` for the null sender only).
#
#   - Exim's own bounce for a failed delivery lands rewritten in the sender's mailbox;
#   - a DSN arriving over SMTP is rewritten on local delivery, parts 2..n byte-identical;
#   - ordinary mail passes unchanged (the filter does not run);
#   - a non-bounce with the null sender goes through the filter byte-identical.
set -uo pipefail
. "$(dirname "$0")/lib.sh"

note "Exim (Debian package exim4-daemon-light, private tree)"
make_workdir exim
# The Debian binary looks up its compiled-in user at start, whatever the configuration says.
# With -C (a configuration not in Debian's trusted list) Exim's re-executed delivery
# processes keep only this user's privileges, so mailboxes belong to it too.
ensure_system_user Debian-exim || { fail "exim: create the Debian-exim user"; summary; exit 1; }
TREE=$(unpack_debs exim exim4-daemon-light exim4-base libidn12) ||
    { fail "exim: unpack the Debian packages"; summary; exit 1; }
# Set-uid in the package; the loader would ignore LD_LIBRARY_PATH (libidn12 is in the
# private tree). We start it as root anyway.
chmod u-s "$TREE/usr/sbin/exim4"

EX=$WORK/exim
# The filter runs as Debian-exim, which may not be allowed into the source tree: give it
# a copy of the binary under the run directory.
install -m 755 "$PLAINBOUNCE" "$WORK/plainbounce"
SMTP_PORT=$(free_port)
MSG=$E2E_DIR/messages
MAILDIR=$EX/mail
MAILBOXES="alice dsn-smtp ordinary null-sender"
export LD_LIBRARY_PATH=$TREE/usr/lib/x86_64-linux-gnu

# A command array, not a function: started with &, a function would run in a subshell and
# $! would not be Exim's pid.
EXIM=("$TREE/usr/sbin/exim4" -C "$EX/exim.conf")

configure_exim() {
    mkdir -p "$EX/spool" "$EX/log" "$MAILDIR"
    chown Debian-exim:Debian-exim "$EX/spool" "$EX/log" "$MAILDIR"
    cat >"$EX/exim.conf" <<EOF
PLAINBOUNCE = $WORK/plainbounce
exim_path = $TREE/usr/sbin/exim4
keep_environment = LD_LIBRARY_PATH
spool_directory = $EX/spool
log_file_path = $EX/log/%slog
pid_file_path = $EX/exim.pid
primary_hostname = mx.local.test
qualify_domain = local.test
domainlist local_domains = local.test
daemon_smtp_ports = $SMTP_PORT
local_interfaces = 127.0.0.1
host_lookup =
rfc1413_hosts =
tls_advertise_hosts =
acl_smtp_rcpt = acl_check_rcpt
log_selector = +received_recipients +delivery_size

begin acl
acl_check_rcpt:
  accept hosts = 127.0.0.1

begin routers
remote:
  driver = manualroute
  domains = ! +local_domains
  route_list = * 127.0.0.1
  self = send
  transport = remote_smtp
  no_more

local:
  driver = accept
  domains = +local_domains
  local_parts = ${MAILBOXES// / : }
  transport = local_maildir

begin transports
remote_smtp:
  driver = smtp
  port = $FAKE_PORT
  allow_localhost
  hosts_try_fastopen = :

local_maildir:
  driver = appendfile
  directory = $MAILDIR/\${local_part_data}
  maildir_format
  create_directory
  user = Debian-exim
  group = Debian-exim
  return_path_add
  delivery_date_add
  envelope_to_add
.include $REPO/packaging/exim/plainbounce.conf

begin retry
*   *   F,10m,1m
EOF
    "${EXIM[@]}" -bV >"$EX/bV.log" 2>&1 || { cat "$EX/bV.log"; return 1; }
}

start_exim() {
    "${EXIM[@]}" -bdf -q10s >"$EX/daemon.log" 2>&1 &
    local pid=$!
    on_exit "stop_pid $pid"
    wait_port "$SMTP_PORT" 30
}

delivered() { wait_files "$MAILDIR/$1/new" 1 "${2:-60}" | head -1; }

failure_context() {
    show_log "$EX/log/mainlog" 30
    show_log "$EX/log/paniclog" 10
    show_log "$EX/daemon.log" 10
}

explanation() { python3 "$E2E_DIR/check.py" explain "$PLAINBOUNCE" "$1"; }

test_own_bounce() {
    local name=$1 file
    printf 'From: %s@local.test\r\nTo: relaying@remote.test, unknown@remote.test\r\nSubject: figures\r\nDate: Mon, 23 Nov 2026 10:00:00 +0100\r\nMessage-ID: <%s@local.test>\r\n\r\nThe figures, as promised.\r\n' \
        "$name" "$name" >"$WORK/$name.eml"
    smtp_send "$SMTP_PORT" "$name@local.test" "$WORK/$name.eml" relaying@remote.test unknown@remote.test &&
        file=$(delivered "$name") || return 1
    python3 "$E2E_DIR/check.py" rewritten "$file" \
        --recipient relaying@remote.test --recipient unknown@remote.test \
        --dsn-field "Action: failed" --dsn-field "Status: 5.0.0" \
        --expect "553 sorry, relaying denied from your location" \
        --expect "550 5.1.1 <unknown@remote.test>: Recipient address rejected: User unknown" \
        --expect "$(explanation "553 sorry, relaying denied from your location")"
}

test_smtp_dsn() {
    local name=$1 file
    smtp_send "$SMTP_PORT" "" "$MSG/dsn-remote.eml" "$name@local.test" &&
        file=$(delivered "$name") || return 1
    python3 "$E2E_DIR/check.py" rewritten "$file" --original "$MSG/dsn-remote.eml" \
        --recipient carol@relay.example.test --recipient dave@remote.test \
        --expect "553 sorry, relaying denied from your location" \
        --expect "$(explanation "553 sorry, relaying denied from your location")"
}

test_unchanged() {
    local name=$1 msg=$2 sender=$3 file
    smtp_send "$SMTP_PORT" "$sender" "$msg" "$name@local.test" &&
        file=$(delivered "$name") || return 1
    python3 "$E2E_DIR/check.py" unchanged "$file" "$msg"
}

run() {
    local before=$FAILED
    check "$@"
    [ "$FAILED" -eq "$before" ] || failure_context
}

start_fake_smtp
if ! configure_exim || ! start_exim; then
    fail "exim: configure and start the private instance"
    failure_context
    summary
    exit 1
fi
note "exim on 127.0.0.1:$SMTP_PORT, fake remote on $FAKE_PORT"

run "exim: Exim's own bounce is rewritten by the transport_filter" test_own_bounce alice
run "exim: a DSN arriving over SMTP is rewritten on local delivery" test_smtp_dsn dsn-smtp
run "exim: ordinary mail passes unchanged" test_unchanged ordinary "$MSG/ordinary.eml" bob@elsewhere.test
run "exim: a non-bounce with the null sender passes the filter byte-identical" test_unchanged null-sender "$MSG/ordinary.eml" ""
summary
