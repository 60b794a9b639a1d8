#!/usr/bin/env bash
# Reply footers end to end: Debian's postfix package in a private tree (see lib.sh) with
# smtpd_reject_footer_maps = socketmap:inet:127.0.0.1:PORT:footer answered by
# `plainbounce serve-socketmap`. The SMTP client on 127.0.0.1 is outside mynetworks and
# not authenticated, so it may not relay; local.test is delivered locally (local(8)).
#
#   (a) a relay attempt gets "554 5.7.1 ... Relay access denied" followed by the footer;
#   (b) an unknown local recipient gets "550 5.1.1 ... User unknown in local recipient
#       table" followed by the user-unknown footer;
#   (c) a reply the knowledge base only knows generically (an access-map rule) gets none;
#   (d) with plainbounce stopped, the relay attempt gets Postfix's reply unchanged and
#       mail to a local user is still delivered.
set -uo pipefail
. "$(dirname "$0")/lib.sh"

note "Postfix reply footers (Debian package postfix, private tree, socketmap)"
make_workdir footers
ensure_test_user
postfix_tree || { fail "footers: unpack the Debian package"; summary; exit 1; }

PF=$WORK/postfix
CONF=$PF/etc
MAILDIR=$PF/mail
SMTP_PORT=$(free_port)
MAP_PORT=$(free_port)
# The one local user that receives mail; "ruled" exists but an access rule refuses it.
LOCAL_USER=$E2E_USER
RELAY_REPLY="554 5.7.1 <bob@example.net>: Relay access denied"
UNKNOWN_REPLY="550 5.1.1 <nobody@local.test>: Recipient address rejected: User unknown in local recipient table"
RULE_REPLY="550 5.0.0 <ruled@local.test>: Recipient address rejected: Nope, local rule 123"

configure_footers() {
    postfix_base_config
    printf '%s x\nruled x\n' "$LOCAL_USER" >"$CONF/local-users"
    printf 'ruled@local.test 550 5.0.0 Nope, local rule 123\n' >"$CONF/access"
    # Mailboxes: local(8) delivers as the recipient user to $MAILDIR/USER/ (Maildir).
    pf postconf -c "$CONF" -e \
        "mydestination = local.test" \
        "mynetworks = 127.0.0.2/32" \
        "local_recipient_maps = texthash:$CONF/local-users" \
        "mail_spool_directory = $MAILDIR/" \
        "home_mailbox =" \
        "mailbox_command =" \
        "forward_path =" \
        "smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination" \
        "smtpd_recipient_restrictions = check_recipient_access texthash:$CONF/access" \
        "smtpd_reject_footer_maps = socketmap:inet:127.0.0.1:$MAP_PORT:footer"
}

start_socketmap() {
    "$PLAINBOUNCE" serve-socketmap --socketmap "inet:$MAP_PORT@127.0.0.1" \
        >>"$WORK/plainbounce.log" 2>&1 &
    MAP_PID=$!
    on_exit "stop_pid $MAP_PID"
    wait_port "$MAP_PORT" 20
}

failure_context() {
    show_log "$PF/maillog" 30
    show_log "$WORK/plainbounce.log" 20
}

# RCPT TO:<$2> from sender $1; the reply lines as sent go to $WORK/$3.reply.
rcpt_reply() {
    python3 "$E2E_DIR/check.py" rcpt "$SMTP_PORT" "$1" "$2" >"$WORK/$3.reply"
}

# The knowledge base must treat this reply as generic (only its basic reply code known),
# or (c) would test nothing.
is_generic() {
    "$PLAINBOUNCE" explain --json --smtpd "$1" |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["matched"], d["evidence"]); sys.exit(d["evidence"] != "reply_code")'
}

test_footer() { # name sender rcpt reply phrase...
    local name=$1 sender=$2 rcpt=$3 reply=$4 phrases=() p
    for p in "${@:5}"; do phrases+=(--phrase "$p"); done
    rcpt_reply "$sender" "$rcpt" "$name" &&
        python3 "$E2E_DIR/check.py" footer "$WORK/$name.reply" --reply "$reply" \
            --explained-by "$PLAINBOUNCE" "${phrases[@]}"
}

test_no_footer() { # name sender rcpt reply
    rcpt_reply "$2" "$3" "$1" &&
        python3 "$E2E_DIR/check.py" footer "$WORK/$1.reply" --reply "$4"
}

test_down_relay() {
    test_no_footer down-relay alice@local.test bob@example.net "$RELAY_REPLY" || return 1
    # Postfix did look the footer up, and carried on when it failed.
    grep -F "lookup error for \"$RELAY_REPLY\"" "$PF/maillog" ||
        { echo "no failed footer lookup logged"; return 1; }
}

test_down_delivery() {
    printf 'From: alice@local.test\r\nTo: %s@local.test\r\nSubject: still flowing\r\nMessage-ID: <down@local.test>\r\n\r\nplainbounce is down.\r\n' \
        "$LOCAL_USER" >"$WORK/down.eml"
    python3 "$E2E_DIR/check.py" send "$SMTP_PORT" alice@local.test "$WORK/down.eml" "$LOCAL_USER@local.test" &&
        wait_files "$MAILDIR/$LOCAL_USER/new" 1 30 >/dev/null &&
        grep -l '^Subject: still flowing' "$MAILDIR/$LOCAL_USER/new"/*
}

run() {
    local before=$FAILED
    check "$@"
    [ "$FAILED" -eq "$before" ] || failure_context
}

start_socketmap || { fail "footers: plainbounce serve-socketmap did not start"; failure_context; summary; exit 1; }
if ! configure_footers || ! start_postfix; then
    fail "footers: configure and start the private instance"
    failure_context
    summary
    exit 1
fi
note "postfix on 127.0.0.1:$SMTP_PORT, plainbounce socketmap on $MAP_PORT"

run "footers (a): a relay attempt gets Relay access denied with the footer" \
    test_footer relay alice@local.test bob@example.net "$RELAY_REPLY" "log in" "authentication for outgoing mail"
run "footers (b): an unknown local recipient gets the user-unknown footer" \
    test_footer unknown alice@local.test nobody@local.test "$UNKNOWN_REPLY"
if check "footers (c): the knowledge base explains the access-map reply only generically" is_generic "$RULE_REPLY"; then
    run "footers (c): a reply without a rule gets no footer" \
        test_no_footer rule alice@local.test ruled@local.test "$RULE_REPLY"
fi
stop_pid "$MAP_PID"
run "footers (d): plainbounce down, the relay attempt gets Postfix's reply unchanged" test_down_relay
run "footers (d): plainbounce down, mail to a local user is still delivered" test_down_delivery
summary
