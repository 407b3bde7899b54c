#!/usr/bin/env bash
# Runs every fuzz target of the module for a while each (default 60 s), one
# after the other, and prints one line per target: its package, name, the
# executions it made and whether it failed. The long mode of the decoders'
# tests; CI runs only their seed corpora (go test). "ok*" is a run that Go
# 1.26 ended with its own deadline race (go.dev/issue/75804) and no failing
# input.
#   ./fuzz.sh            # 60 s per target
#   FUZZTIME=10s ./fuzz.sh
#   ./fuzz.sh ./index/...   # the targets of some packages only
set -uo pipefail
cd "$(dirname "$0")"
fuzztime="${FUZZTIME:-60s}"
pkgs=("${@:-./...}")
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
fail=0
while read -r dir; do
  pkg="./${dir#"$PWD"/}"
  [ "$dir" = "$PWD" ] && pkg=.
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz'); do
    corpus="$dir/testdata/fuzz/$target"
    before="$(ls "$corpus" 2>/dev/null | wc -l)"
    if go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime 10s -parallel 1 "$pkg" >"$log" 2>&1; then
      result=ok
    elif grep -q 'context deadline exceeded' "$log" && [ "$(ls "$corpus" 2>/dev/null | wc -l)" = "$before" ]; then
      # Go 1.26's fuzz coordinator can report its own -fuzztime deadline as
      # a failure (go.dev/issue/75804, fixed in Go 1.27): no input failed.
      result=ok*
    else
      result=FAIL
      fail=1
    fi
    execs="$(grep -o 'execs: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)"
    printf '%-4s %-28s %-26s %12s execs\n' "$result" "$pkg" "$target" "${execs:-?}"
    if [ "$result" = FAIL ]; then sed -n '/--- FAIL/,$p' "$log" | head -40; fi
  done
done < <(go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.Dir}}{{end}}' "${pkgs[@]}" | sed '/^$/d')
exit $fail
