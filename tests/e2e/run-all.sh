#!/usr/bin/env bash
# Every end-to-end test against the real MTAs from Debian's packages, one after another:
# Postfix (bounces, then reply footers), Sendmail, Exim (each unpacked into a private tree
# under target/e2e/, run on 127.0.0.1 and private ports, stopped and cleaned up
# afterwards), then the Debian package (built, installed, tested against Postfix, purged).
#
# Runs as root, non-interactively (CI=true is fine). Prints PASS:/FAIL: lines and, last,
# exactly "N passed, N failed"; exits non-zero if anything failed.
#
#   E2E_ONLY="postfix exim"   run only these parts (postfix postfix-unix footers sendmail exim deb)
#   E2E_KEEP=1                keep the run directories under target/e2e/run/ for a look
set -uo pipefail
E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$E2E_DIR/../.." && pwd)
PARTS=${E2E_ONLY:-postfix postfix-unix footers sendmail exim deb}
export DEBIAN_FRONTEND=noninteractive
export PLAINBOUNCE=${PLAINBOUNCE:-$REPO/target/release/plainbounce}

passed=0
failed=0
started=$(date +%s)

if [ "$(id -u)" -ne 0 ]; then
    echo "FAIL: e2e: must run as root (it starts MTAs and installs a package)"
    echo "0 passed, 1 failed"
    exit 1
fi

echo "---- apt-get update (the MTAs come from Debian's archive)"
if ! apt-get update -qq >/dev/null 2>&1; then
    echo "FAIL: e2e: apt-get update"
    failed=$((failed + 1))
fi

echo "---- cargo build --release"
if ! (cd "$REPO" && cargo build --release --quiet 2>&1 | tail -20); then
    echo "FAIL: e2e: cargo build --release"
    echo "0 passed, 1 failed"
    exit 1
fi

for part in $PARTS; do
    script=$E2E_DIR/$part.sh
    args=()
    [ "$part" = deb ] && script=$E2E_DIR/deb-test.sh
    # The milter on a unix socket, with unanswered stages: rewriting and pass-through.
    [ "$part" = postfix-unix ] && script=$E2E_DIR/postfix.sh && args=(--unix --only "a b c")
    log=$(mktemp)
    # Each part cleans up after itself (traps); the timeout is a last resort.
    timeout --kill-after=30 900 bash "$script" "${args[@]}" 2>&1 | tee "$log" | grep -Ev '^[0-9]+ passed, [0-9]+ failed$'
    rc=${PIPESTATUS[0]}
    p=$(grep -c '^PASS:' "$log")
    f=$(grep -c '^FAIL:' "$log")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL: $part: the script exited with status $rc"
        f=1
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    rm -f "$log"
done

# The fallback cache (see lib.sh) is ours alone: leave nothing behind.
rm -rf /var/lib/plainbounce-e2e

echo "---- end-to-end tests took $(($(date +%s) - started)) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
