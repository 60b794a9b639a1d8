#!/usr/bin/env bash
# Postfix end to end: Debian's postfix package unpacked into a private tree, run with its
# own throwaway configuration, queue and mailboxes, on 127.0.0.1 and private ports, with
# the milter settings read from packaging/postfix/main.cf.snippet.
#
#   (a) Postfix's own bounce goes through plainbounce (non_smtpd_milters +
#       internal_mail_filter_classes = bounce) and lands rewritten in the sender's mailbox;
#   (b) a DSN arriving over SMTP (smtpd_milters) is rewritten;
#   (c) ordinary mail passes byte-identical;
#   (d) with plainbounce stopped, mail still flows (default_action=accept);
#   (e) Postfix's delay warning for temporary failures (452 mailbox full, 421
#       greylisting) is rewritten too (it is a DSN of the bounce class).
#
# Options: --milter-port PORT --external (plainbounce is already listening there: do not
# start or stop it; used by deb-test.sh) --only "a b" (run only these tests) --unix (the
# milter on a unix socket, where it asks Postfix for no replies at RCPT, DATA and headers).
set -uo pipefail
. "$(dirname "$0")/lib.sh"

MILTER_PORT=
EXTERNAL=
UNIX=
ONLY="a b c d e"
while [ $# -gt 0 ]; do
    case $1 in
    --milter-port) MILTER_PORT=$2; shift 2 ;;
    --external) EXTERNAL=1; shift ;;
    --unix) UNIX=1; shift ;;
    --only) ONLY=$2; shift 2 ;;
    *) echo "usage: $0 [--milter-port PORT] [--external] [--unix] [--only 'a b c d e']" >&2; exit 2 ;;
    esac
done
wants() { [[ " $ONLY " == *" $1 "* ]]; }

note "Postfix (Debian package postfix, private tree)"
make_workdir postfix
ensure_test_user
postfix_tree || { fail "postfix: unpack the Debian package"; summary; exit 1; }

PF=$WORK/postfix
CONF=$PF/etc
SNIPPET=$REPO/packaging/postfix/main.cf.snippet
SMTP_PORT=$(free_port)
[ -n "$MILTER_PORT" ] || MILTER_PORT=$(free_port)
MSG=$E2E_DIR/messages
MAILDIR=$PF/mail
MAILBOXES="alice dsn-smtp ordinary down-dsn down-ordinary carl dora"

configure_postfix() {
    postfix_base_config
    # Each test's recipient gets its own Maildir, named after the local part.
    local box
    for box in $MAILBOXES; do echo "$box@local.test $box/"; done >"$CONF/mailboxes"
    pf postconf -c "$CONF" -e \
        "mydestination =" \
        "mynetworks = 127.0.0.0/8" \
        "local_recipient_maps =" \
        "virtual_mailbox_domains = local.test" \
        "virtual_mailbox_base = $MAILDIR" \
        "virtual_mailbox_maps = texthash:$CONF/mailboxes" \
        "virtual_uid_maps = static:$E2E_UID" \
        "virtual_gid_maps = static:$E2E_GID" \
        "relayhost = [127.0.0.1]:$FAKE_PORT" \
        "queue_run_delay = 1s" \
        "minimal_backoff_time = 1s" \
        "maximal_backoff_time = 2s" \
        "delay_warning_time = 1s"
    # The milter settings exactly as packaging/postfix/main.cf.snippet has them; only the
    # address is moved to this run's private port (or unix socket).
    local line address=inet:127.0.0.1:$MILTER_PORT
    [ -z "$UNIX" ] || address=unix:$MILTER_SOCKET
    while IFS= read -r line; do
        case $line in '' | '#'*) continue ;; esac
        pf postconf -c "$CONF" -e "${line//inet:127.0.0.1:8890/$address}"
    done <"$SNIPPET"
}

# Wait for the one message in mailbox $1 and print its path.
delivered() {
    wait_files "$MAILDIR/$1/new" 1 "${2:-60}" | head -1
}

failure_context() {
    show_log "$PF/maillog" 40
    show_log "$WORK/plainbounce.log" 20
}

# The explanation the knowledge base gives for a reply (what the rewritten text must say).
explanation() { python3 "$E2E_DIR/check.py" explain "$PLAINBOUNCE" "$1"; }

start_fake_smtp
if [ -n "$UNIX" ]; then
    start_milter_unix || { fail "postfix: plainbounce serve did not start on a unix socket"; show_log "$WORK/plainbounce.log"; summary; exit 1; }
elif [ -z "$EXTERNAL" ]; then
    start_milter || { fail "postfix: plainbounce serve did not start"; show_log "$WORK/plainbounce.log"; summary; exit 1; }
fi
if ! configure_postfix || ! start_postfix; then
    fail "postfix: configure and start the private instance"
    failure_context
    summary
    exit 1
fi
note "postfix on 127.0.0.1:$SMTP_PORT, plainbounce milter on ${MILTER_SOCKET:-$MILTER_PORT}, fake remote on $FAKE_PORT"

test_own_bounce() { # (a)
    local name=$1 file
    printf 'From: %s@local.test\r\nTo: relaying@remote.test, unknown@remote.test\r\nSubject: figures\r\nDate: Mon, 23 Nov 2026 10:00:00 +0100\r\nMessage-ID: <%s@local.test>\r\n\r\nThe figures, as promised.\r\n' \
        "$name" "$name" >"$WORK/$name.eml"
    smtp_send "$SMTP_PORT" "$name@local.test" "$WORK/$name.eml" relaying@remote.test unknown@remote.test &&
        file=$(delivered "$name") || return 1
    cp "$file" "$WORK/$name.delivered"
    python3 "$E2E_DIR/check.py" rewritten "$file" \
        --recipient relaying@remote.test --recipient unknown@remote.test \
        --dsn-field "Action: failed" --dsn-field "Status: 5.1.1" \
        --expect "553 sorry, relaying denied from your location" \
        --expect "550 5.1.1 <unknown@remote.test>: Recipient address rejected: User unknown" \
        --expect "$(explanation "553 sorry, relaying denied from your location")"
}

test_smtp_dsn() { # (b)
    local name=$1 file
    smtp_send "$SMTP_PORT" "" "$MSG/dsn-remote.eml" "$name@local.test" &&
        file=$(delivered "$name") || return 1
    python3 "$E2E_DIR/check.py" rewritten "$file" --original "$MSG/dsn-remote.eml" \
        --recipient carol@relay.example.test --recipient dave@remote.test \
        --expect "553 sorry, relaying denied from your location" \
        --expect "$(explanation "553 sorry, relaying denied from your location")"
}

# (c), (d): $2 arrives byte-identical from sender $3; $4 = "--without-header Return-Path" where Postfix
# drops a header of the original (message_drop_headers has Return-Path).
test_unchanged() {
    local name=$1 msg=$2 sender=$3 file
    smtp_send "$SMTP_PORT" "$sender" "$msg" "$name@local.test" &&
        file=$(delivered "$name") || return 1
    python3 "$E2E_DIR/check.py" unchanged "$file" "$msg" ${4:-}
}

test_delay_warning() { # (e)
    local name=$1 file
    printf 'From: %s@local.test\r\nTo: full@remote.test, greylist@remote.test\r\nSubject: agenda\r\nDate: Mon, 23 Nov 2026 10:00:00 +0100\r\nMessage-ID: <%s@local.test>\r\n\r\nThe agenda for Monday.\r\n' \
        "$name" "$name" >"$WORK/$name.eml"
    smtp_send "$SMTP_PORT" "$name@local.test" "$WORK/$name.eml" full@remote.test greylist@remote.test &&
        file=$(delivered "$name" 90) || return 1
    python3 "$E2E_DIR/check.py" rewritten "$file" \
        --recipient full@remote.test --recipient greylist@remote.test --dsn-field "Action: delayed" \
        --expect "452 4.2.2 Mailbox full" --expect "421 4.7.0 greylisted, try again later" \
        --expect "$(explanation "452 4.2.2 Mailbox full")" \
        --expect "$(explanation "421 4.7.0 greylisted, try again later")"
}

test_own_bounce_untouched() { # (d): Postfix's own bounce still arrives, as Postfix wrote it
    local name=$1 file
    printf 'From: %s@local.test\r\nTo: unknown@remote.test\r\nSubject: hello\r\n\r\nhello\r\n' "$name" >"$WORK/$name.eml"
    smtp_send "$SMTP_PORT" "$name@local.test" "$WORK/$name.eml" unknown@remote.test &&
        file=$(delivered "$name") || return 1
    grep -q '^Subject: Undelivered Mail Returned to Sender' "$file" || { echo "not a Postfix bounce"; return 1; }
    if grep -qi '^X-Plainbounce:' "$file"; then echo "rewritten although plainbounce is down"; return 1; fi
    grep -q '^Status: 5.1.1' "$file" || { echo "no Status: 5.1.1 in the bounce"; return 1; }
}

run() {
    local before=$FAILED
    check "$@"
    [ "$FAILED" -eq "$before" ] || failure_context
}

T=${UNIX:+ (unix socket)}
wants a && run "postfix$T (a): Postfix's own bounce is rewritten via non_smtpd_milters" test_own_bounce alice
wants b && run "postfix$T (b): a DSN arriving over SMTP is rewritten via smtpd_milters" test_smtp_dsn dsn-smtp
wants e && run "postfix$T (e): Postfix's delay warning is rewritten" test_delay_warning dora
wants c && run "postfix$T (c): ordinary mail passes byte-identical" test_unchanged ordinary "$MSG/ordinary.eml" bob@elsewhere.test
# Postfix did take up the unanswered stages (the milter logs each negotiation at debug).
negotiated_unanswered() {
    grep -q 'unanswered=true' "$WORK/plainbounce.log" || { echo "no session negotiated unanswered stages"; return 1; }
    if grep -q 'unanswered=false' "$WORK/plainbounce.log"; then echo "a session kept its replies"; return 1; fi
}
[ -n "$UNIX" ] && run "postfix (unix socket): Postfix agreed to leave RCPT, DATA and headers unanswered" negotiated_unanswered
if wants d && [ -z "$EXTERNAL" ]; then
    stop_milter
    run "postfix (d): plainbounce down, a DSN over SMTP still arrives unchanged" test_unchanged down-dsn "$MSG/dsn-remote.eml" "" "--without-header Return-Path"
    run "postfix (d): plainbounce down, ordinary mail still arrives unchanged" test_unchanged down-ordinary "$MSG/ordinary.eml" bob@elsewhere.test
    run "postfix (d): plainbounce down, Postfix's own bounce still arrives" test_own_bounce_untouched carl
fi
summary
