#!/usr/bin/env bash
# Sendmail end to end: Debian's sendmail-bin + sendmail-cf (and m4) unpacked into a
# private tree; sendmail.cf built with the sendmail-cf macros from a test .mc that
# includes packaging/sendmail/plainbounce.mc unchanged; the daemon runs on 127.0.0.1 and a
# private port with its own queue, delivering local.test mail into Maildirs.
#
#   - a DSN arriving over SMTP is rewritten through INPUT_MAIL_FILTER;
#   - ordinary mail passes unchanged;
#   - with plainbounce stopped, mail still flows (no F= flag: the filter is skipped).
set -uo pipefail
. "$(dirname "$0")/lib.sh"

note "Sendmail (Debian packages sendmail-bin, sendmail-cf, private tree)"
make_workdir sendmail
TREE=$(unpack_debs sendmail sendmail-bin sendmail-cf m4 libwrap0) ||
    { fail "sendmail: unpack the Debian packages"; summary; exit 1; }

# The binary is set-gid in the package; the loader would then ignore LD_LIBRARY_PATH
# (libwrap0 lives in the private tree too). We run it as root anyway.
chmod g-s "$TREE/usr/libexec/sendmail/sendmail"

SM=$WORK/sendmail
SMTP_PORT=$(free_port)
MILTER_PORT=$(free_port)
MSG=$E2E_DIR/messages
MAILDIR=$SM/mail
export LD_LIBRARY_PATH=$TREE/usr/lib/x86_64-linux-gnu

# Sendmail sleeps 60 s at every start when the host name has no dot and does not resolve
# to one; give it a qualified name in a UTS namespace of its own when we can.
# A command array, not a function: started with &, a function would run in a subshell and
# $! would not be sendmail's pid.
SENDMAIL=("$TREE/usr/libexec/sendmail/sendmail" -C "$SM/sendmail.cf")
if unshare --uts true 2>/dev/null; then
    SENDMAIL=(unshare --uts sh -c 'hostname mx.local.test && exec "$@"' sh "${SENDMAIL[@]}")
fi

# The local mailer: one recipient per call, message on stdin, into $MAILDIR/<user>/new.
write_deliver_script() {
    cat >"$SM/deliver" <<EOF
#!/bin/sh
set -e
box="$MAILDIR/\$1"
mkdir -p "\$box/tmp" "\$box/new"
name="\$(date +%s.%N).\$\$"
cat >"\$box/tmp/\$name"
mv "\$box/tmp/\$name" "\$box/new/\$name"
EOF
    chmod 755 "$SM/deliver"
}

configure_sendmail() {
    mkdir -p "$SM/queue" "$MAILDIR"
    chmod 700 "$SM/queue"
    : >"$SM/aliases"
    write_deliver_script
    cat >"$SM/test.mc" <<EOF
divert(-1)dnl
include(\`$TREE/usr/share/sendmail/cf/m4/cf.m4')dnl
VERSIONID(\`plainbounce end-to-end test')dnl
OSTYPE(\`linux')dnl
define(\`confDOMAIN_NAME', \`mx.local.test')dnl
define(\`confDONT_PROBE_INTERFACES', \`True')dnl
define(\`QUEUE_DIR', \`$SM/queue')dnl
define(\`ALIAS_FILE', \`$SM/aliases')dnl
define(\`STATUS_FILE', \`$SM/statistics')dnl
define(\`HELP_FILE', \`$SM/helpfile')dnl
define(\`confPID_FILE', \`$SM/sendmail.pid')dnl
define(\`confCW_FILE', \`-o $SM/local-host-names')dnl
define(\`confPRIVACY_FLAGS', \`goaway')dnl
define(\`confLOG_LEVEL', \`14')dnl
dnl A checkout under /tmp (world-writable, sticky) must count as a safe path: otherwise
dnl sendmail refuses to build the alias database there, and queues every message for
dnl later ("alias database unavailable", "Recipient ok (will queue)").
define(\`confDONT_BLAME_SENDMAIL', \`TrustStickyBit')dnl
dnl Deliver at once however loaded the machine is (by default sendmail queues above a
dnl load of 8 per CPU and refuses connections above 12 per CPU).
define(\`confQUEUE_LA', \`1000')dnl
define(\`confREFUSE_LA', \`1000')dnl
define(\`LOCAL_MAILER_PATH', \`$SM/deliver')dnl
define(\`LOCAL_MAILER_ARGS', \`deliver \$u')dnl
define(\`LOCAL_MAILER_FLAGS', \`SPn9')dnl
MODIFY_MAILER_FLAGS(\`LOCAL', \`-w')dnl
FEATURE(\`no_default_msa')dnl
FEATURE(\`accept_unresolvable_domains')dnl
DAEMON_OPTIONS(\`Family=inet, Addr=127.0.0.1, Port=$SMTP_PORT, Name=MTA')dnl
LOCAL_DOMAIN(\`local.test')dnl
define(\`PLAINBOUNCE_SOCKET', \`inet:$MILTER_PORT@127.0.0.1')dnl
include(\`$REPO/packaging/sendmail/plainbounce.mc')dnl
MAILER(\`local')dnl
MAILER(\`smtp')dnl
EOF
    "$TREE/usr/bin/m4" "$SM/test.mc" >"$SM/sendmail.cf" || return 1
    grep -q "^Xplainbounce, S=inet:$MILTER_PORT@127.0.0.1" "$SM/sendmail.cf" ||
        { echo "sendmail.cf has no plainbounce filter line"; return 1; }
    "${SENDMAIL[@]}" -bi >/dev/null 2>&1 || true
}

start_sendmail() {
    # -bD: daemon in the foreground (we own its pid); -X: SMTP traffic log for failures.
    "${SENDMAIL[@]}" -bD -X "$SM/traffic.log" >"$SM/sendmail.log" 2>&1 &
    local pid=$!
    on_exit "stop_pid $pid"
    wait_port "$SMTP_PORT" 150
}

delivered() { wait_files "$MAILDIR/$1/new" 1 "${2:-60}" | head -1; }

failure_context() {
    show_log "$SM/sendmail.log" 20
    show_log "$SM/traffic.log" 30
    show_log "$WORK/plainbounce.log" 20
}

explanation() { python3 "$E2E_DIR/check.py" explain "$PLAINBOUNCE" "$1"; }

test_smtp_dsn() {
    local name=$1 file
    smtp_send "$SMTP_PORT" "" "$MSG/dsn-remote.eml" "$name@local.test" &&
        file=$(delivered "$name") || return 1
    python3 "$E2E_DIR/check.py" rewritten "$file" --original "$MSG/dsn-remote.eml" \
        --recipient carol@relay.example.test --recipient dave@remote.test \
        --expect "553 sorry, relaying denied from your location" \
        --expect "$(explanation "553 sorry, relaying denied from your location")"
}

# $2 arrives unchanged from sender $3; $4 = "--without-header Return-Path": Sendmail itself drops the
# sender's Return-Path: header (it always does, and writes its own).
test_unchanged() {
    local name=$1 msg=$2 sender=$3 file
    smtp_send "$SMTP_PORT" "$sender" "$msg" "$name@local.test" &&
        file=$(delivered "$name") || return 1
    python3 "$E2E_DIR/check.py" unchanged "$file" "$msg" ${4:-}
}

run() {
    local before=$FAILED
    check "$@"
    [ "$FAILED" -eq "$before" ] || failure_context
}

start_milter || { fail "sendmail: plainbounce serve did not start"; show_log "$WORK/plainbounce.log"; summary; exit 1; }
if ! configure_sendmail || ! start_sendmail; then
    fail "sendmail: configure and start the private instance"
    failure_context
    summary
    exit 1
fi
note "sendmail on 127.0.0.1:$SMTP_PORT, plainbounce milter on $MILTER_PORT"

run "sendmail: a DSN arriving over SMTP is rewritten via INPUT_MAIL_FILTER" test_smtp_dsn dsn-smtp
run "sendmail: ordinary mail passes unchanged" test_unchanged ordinary "$MSG/ordinary.eml" bob@elsewhere.test
stop_milter
run "sendmail: plainbounce down, a DSN over SMTP still arrives unchanged" test_unchanged down-dsn "$MSG/dsn-remote.eml" "" "--without-header Return-Path"
run "sendmail: plainbounce down, ordinary mail still arrives unchanged" test_unchanged down-ordinary "$MSG/ordinary.eml" bob@elsewhere.test
summary
