#!/usr/bin/env bash
# Fill fuzz/corpus/<target>/ (gitignored) from the shared bounce corpus and fuzz/seeds/.
# Run time only: corpus files are never committed.
set -euo pipefail
fuzz="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$fuzz")"
src="${PLAINBOUNCE_CORPUS:-}"
for c in "$src" "$repo/../shared/corpus" /work/shared/corpus; do
    [ -n "$c" ] && [ -d "$c/emails" ] && { src="$c"; break; }
done
messages=()
if [ -d "$src/emails" ]; then
    mapfile -t messages < <(find "$src/emails" -name '*.eml' -type f | sort)
else
    echo "seed-corpus: no shared corpus found; seeding from fuzz/seeds only" >&2
fi
mapfile -t own < <(find "$fuzz/seeds" -name '*.eml' -type f | sort)

for target in parse rewrite; do
    mkdir -p "$fuzz/corpus/$target"
    for f in "${messages[@]}" "${own[@]}"; do
        cp -f "$f" "$fuzz/corpus/$target/$(basename "$(dirname "$f")")-$(basename "$f")"
    done
done

# classify reads reply texts: one Diagnostic-Code (or quoted reply) per file.
mkdir -p "$fuzz/corpus/classify"
n=0
for f in "${messages[@]}" "${own[@]}"; do
    while IFS= read -r line; do
        n=$((n + 1))
        printf '%s' "$line" > "$fuzz/corpus/classify/diag-$n"
    done < <(grep -aihE '^(Diagnostic-Code|X-Postfix-Sender|Status):|^ *[45][0-9][0-9][ -]' "$f" | tr -d '\r' | head -n 5)
done
echo "seed-corpus: ${#messages[@]} shared messages, ${#own[@]} own fixtures, $n reply texts (from ${src:-nowhere})"
