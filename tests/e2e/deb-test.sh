#!/usr/bin/env bash
# The Debian package end to end: build it with cargo-deb, install it, check what it
# installed, start the installed binary the way the systemd unit does (as the unit's
# user, with the unit's command line and the installed configuration; systemd itself
# may not run here), run the Postfix tests (a) and (b) against that service, reload and
# stop it, then purge the package. The machine is left as it was found.
set -uo pipefail
. "$(dirname "$0")/lib.sh"

CARGO_DEB_VERSION=3.8.0
UNIT=/usr/lib/systemd/system/plainbounce.service

note "Debian package (cargo-deb $CARGO_DEB_VERSION)"
make_workdir deb

if dpkg-query -W -f='${Status}' plainbounce 2>/dev/null | grep -q 'ok installed'; then
    fail "deb: plainbounce is already installed here; purge it first (dpkg --purge plainbounce)"
    summary
    exit 1
fi

build_deb() {
    if ! cargo deb --version >/dev/null 2>&1; then
        cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked || return 1
    fi
    (cd "$REPO" && cargo deb --output "$WORK/") >"$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log"; return 1; }
    DEB=$(ls "$WORK"/plainbounce_*.deb 2>/dev/null | head -1)
    [ -n "$DEB" ]
}

install_deb() {
    local had_user=
    getent passwd plainbounce >/dev/null && had_user=1
    on_exit "dpkg --purge plainbounce"
    [ -n "$had_user" ] || on_exit "remove_system_user plainbounce"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$DEB" >"$WORK/install.log" 2>&1 ||
        { tail -20 "$WORK/install.log"; return 1; }
}

# What the package must have put where.
check_files() {
    local f missing=0
    for f in /usr/sbin/plainbounce /etc/plainbounce/plainbounce.toml "$UNIT" \
        /usr/share/plainbounce/templates/bounce.txt.hbs /usr/share/plainbounce/templates/bounce.html.hbs \
        /usr/share/plainbounce/templates/lang/en.toml /usr/share/plainbounce/kb/causes.toml \
        /usr/share/man/man8/plainbounce.8.gz /usr/share/man/man5/plainbounce.toml.5.gz \
        /usr/share/doc/plainbounce/examples/postfix/main.cf.snippet \
        /usr/share/doc/plainbounce/examples/sendmail/plainbounce.mc \
        /usr/share/doc/plainbounce/examples/exim/plainbounce.conf \
        /usr/share/doc/plainbounce/integration.md /usr/share/doc/plainbounce/copyright; do
        [ -e "$f" ] || { echo "missing: $f"; missing=1; }
    done
    [ -x /usr/sbin/plainbounce ] || { echo "/usr/sbin/plainbounce is not executable"; missing=1; }
    cmp -s "$REPO/config/plainbounce.toml" /etc/plainbounce/plainbounce.toml ||
        { echo "/etc/plainbounce/plainbounce.toml differs from config/plainbounce.toml"; missing=1; }
    dpkg-query -W -f='${Conffiles}\n' plainbounce | grep -q '/etc/plainbounce/plainbounce.toml' ||
        { echo "/etc/plainbounce/plainbounce.toml is not a conffile"; missing=1; }
    return $missing
}

check_version() {
    local want got
    want=$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/Cargo.toml" | head -1)
    got=$(/usr/sbin/plainbounce --version) || return 1
    [ "$got" = "plainbounce $want" ] || { echo "--version says '$got', Cargo.toml has $want"; return 1; }
}

check_user() {
    local entry shell
    entry=$(getent passwd plainbounce) || { echo "no user plainbounce"; return 1; }
    shell=${entry##*:}
    [ "$(echo "$entry" | cut -d: -f3)" -lt 1000 ] || { echo "plainbounce is not a system user: $entry"; return 1; }
    case $shell in */nologin | */false) ;; *) echo "plainbounce has a login shell: $entry"; return 1 ;; esac
}

# Both man pages render without warnings from man/groff.
check_man() {
    local page out
    for page in /usr/share/man/man8/plainbounce.8.gz /usr/share/man/man5/plainbounce.toml.5.gz; do
        out=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)
        [ -z "$out" ] || { echo "$page: $out"; return 1; }
        MANWIDTH=80 man -l "$page" 2>/dev/null | grep -q 'plainbounce' || { echo "$page renders empty"; return 1; }
    done
}

# The commands the man page documents all exist in the installed binary.
check_man_commands() {
    local cmd bad=0
    for cmd in $(zcat /usr/share/man/man8/plainbounce.8.gz | sed -n 's/^\.B plainbounce \([a-z\\-]*\).*/\1/p' | tr -d '\\' | sort -u); do
        /usr/sbin/plainbounce "$cmd" --help >/dev/null 2>&1 || { echo "plainbounce(8) documents '$cmd', the binary lacks it"; bad=1; }
    done
    return $bad
}

check_unit_hardening() {
    local out score
    out=$(systemd-analyze security --offline=yes "$UNIT" 2>&1) || { echo "$out" | tail -5; return 1; }
    score=$(echo "$out" | sed -n 's/.*Overall exposure level for plainbounce.service: \([0-9.]*\).*/\1/p')
    note "systemd-analyze security: exposure $score"
    awk -v s="$score" 'BEGIN { exit !(s != "" && s < 2.0) }' || { echo "exposure $score, want < 2.0"; return 1; }
}

# The guide shows each snippet's settings as the snippet files have them.
check_docs_snippets() {
    local f line bad=0
    for f in packaging/postfix/main.cf.snippet packaging/sendmail/plainbounce.mc packaging/exim/plainbounce.conf; do
        while IFS= read -r line; do
            case $line in '' | '#'* | dnl* | .*) continue ;; esac
            [[ $line =~ ^[A-Z_]+\ = ]] && continue # an Exim macro default
            grep -qF -- "$line" "$REPO/docs/integration.md" ||
                { echo "$f: '$line' is not in docs/integration.md"; bad=1; }
        done <"$REPO/$f"
    done
    return $bad
}

# Start the installed binary as the unit does: its User=, Group=, ExecStart= and
# NoNewPrivileges=, with stderr (the journal's stand-in) in a file.
start_like_unit() {
    local user group cmd
    user=$(sed -n 's/^User=//p' "$UNIT")
    group=$(sed -n 's/^Group=//p' "$UNIT")
    cmd=$(sed -n 's/^ExecStart=//p' "$UNIT")
    [ -n "$user" ] && [ -n "$group" ] && [ -n "$cmd" ] || { echo "unit lacks User=, Group= or ExecStart="; return 1; }
    grep -q '^NoNewPrivileges=yes' "$UNIT" || { echo "unit lacks NoNewPrivileges=yes"; return 1; }
    # shellcheck disable=SC2086 # ExecStart= is a plain word list here
    setpriv --reuid="$user" --regid="$group" --init-groups --no-new-privs -- $cmd \
        >"$WORK/service.log" 2>&1 &
    SERVICE_PID=$!
    on_exit "stop_pid $SERVICE_PID"
    wait_port 8890 20 || { show_log "$WORK/service.log"; return 1; }
    local uid
    uid=$(awk '/^Uid:/ { print $2 }' "/proc/$SERVICE_PID/status")
    [ "$uid" = "$(id -u "$user")" ] || { echo "service runs as uid $uid, not $user"; return 1; }
}

# The installed service logged the two bounces it rewrote.
check_service_log() {
    local n
    n=$(grep -c 'message handled.*action="modified"' "$WORK/service.log")
    [ "$n" -ge 2 ] || { echo "expected 2 'message handled ... action=\"modified\"' lines, found $n"; show_log "$WORK/service.log"; return 1; }
}

check_reload_and_stop() {
    kill -HUP "$SERVICE_PID"
    sleep 1
    kill -0 "$SERVICE_PID" 2>/dev/null || { echo "service died on SIGHUP (ExecReload)"; show_log "$WORK/service.log"; return 1; }
    wait_port 8890 5 || return 1
    kill -TERM "$SERVICE_PID"
    local i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$SERVICE_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$SERVICE_PID" 2>/dev/null; then echo "still running 10 s after SIGTERM"; return 1; fi
    wait "$SERVICE_PID"
    local rc=$?
    [ "$rc" -eq 0 ] || { echo "exit status $rc after SIGTERM"; show_log "$WORK/service.log"; return 1; }
}

check_purge() {
    dpkg --purge plainbounce >"$WORK/purge.log" 2>&1 || { cat "$WORK/purge.log"; return 1; }
    local f
    for f in /usr/sbin/plainbounce /etc/plainbounce "$UNIT" /usr/share/plainbounce; do
        [ ! -e "$f" ] || { echo "still there after purge: $f"; return 1; }
    done
}

if ! check "deb: cargo deb builds the package" build_deb; then summary; exit 1; fi
note "built $(basename "$DEB")"
if ! check "deb: the package installs with apt-get" install_deb; then summary; exit 1; fi
check "deb: files in place, config is a conffile" check_files
check "deb: plainbounce --version matches Cargo.toml" check_version
check "deb: postinst created the system user plainbounce" check_user
check "deb: the installed configuration passes check-config (as user plainbounce)" \
    setpriv --reuid=plainbounce --regid=plainbounce --init-groups \
    /usr/sbin/plainbounce check-config /etc/plainbounce/plainbounce.toml
if command -v man >/dev/null; then
    check "deb: man pages render without warnings" check_man
else
    note "skipped: man pages not rendered (man-db is not installed)"
fi
check "deb: every command in plainbounce(8) exists" check_man_commands
check "deb: docs/integration.md shows the snippets as shipped" check_docs_snippets
if command -v systemd-analyze >/dev/null; then
    check "deb: the unit is hardened (systemd-analyze security --offline)" check_unit_hardening
fi
if port_in_use 8890; then
    fail "deb: 127.0.0.1:8890 (the installed config's socket) is taken by another process"
elif check "deb: the installed service starts as the unit does (user plainbounce)" start_like_unit; then
    PLAINBOUNCE=/usr/sbin/plainbounce bash "$E2E_DIR/postfix.sh" --external --milter-port 8890 --only "a b" \
        | tee "$WORK/postfix.out" | grep -v '^[0-9]* passed, [0-9]* failed$'
    PASSED=$((PASSED + $(grep -c '^PASS:' "$WORK/postfix.out")))
    FAILED=$((FAILED + $(grep -c '^FAIL:' "$WORK/postfix.out")))
    grep -q '^PASS:' "$WORK/postfix.out" || fail "deb: the Postfix tests against the installed service did not run"
    check "deb: the installed service logged one line per rewritten bounce" check_service_log
    check "deb: the service survives SIGHUP (reload) and stops on SIGTERM" check_reload_and_stop
fi
check "deb: dpkg --purge removes everything" check_purge
summary
