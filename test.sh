#!/usr/bin/env bash
# Runs every test, as CI does. The S3 tests need a real S3-compatible
# server, versitygw (Apache-2.0): it is built once per version into
# ~/.cache/cassback-tools (about 5 minutes on a fresh machine) and the tests
# start it on free 127.0.0.1 ports themselves. Then the garbage collector's
# protocol simulator runs 10,000 schedules and its hole search (sim.sh),
# without the race detector, one process per core. With -short, only the
# quick tests run.
set -euo pipefail
cd "$(dirname "$0")"
VGW_VERSION=v1.8.0
VGW_DIR="${HOME}/.cache/cassback-tools/versitygw-${VGW_VERSION}"
# The KMS key-slot tests need a KMS emulator, local-kms (MIT), installed
# the same way (about 2 minutes on a fresh machine; remote/s3/kmstest).
LKMS_VERSION=v0.0.0-20260228092603-2a5e92d09ab6
LKMS_DIR="${HOME}/.cache/cassback-tools/local-kms-${LKMS_VERSION}"
tools() {
  if [ ! -x "${VGW_DIR}/versitygw" ]; then
    echo "building versitygw ${VGW_VERSION} into ${VGW_DIR} (once, about 5 minutes)"
    GOBIN="${VGW_DIR}" go install -ldflags='-s -w' "github.com/versity/versitygw/cmd/versitygw@${VGW_VERSION}"
  fi
  if [ ! -x "${LKMS_DIR}/local-kms" ]; then
    echo "building local-kms ${LKMS_VERSION} into ${LKMS_DIR} (once, about 2 minutes)"
    GOBIN="${LKMS_DIR}" go install -ldflags='-s -w' "github.com/nsmithuk/local-kms@${LKMS_VERSION}"
  fi
}
# The tools download and build while go vet and the portability build run.
toolslog="$(mktemp)"
tools > "$toolslog" 2>&1 &
toolspid=$!
go vet ./...
GOOS=darwin go build ./... # the engine stays portable (platform code behind _linux.go files)
if ! wait "$toolspid"; then
  cat "$toolslog"
  exit 1
fi
cat "$toolslog"
rm -f "$toolslog"
export CASSBACK_VERSITYGW="${VGW_DIR}/versitygw"
export CASSBACK_LOCALKMS="${LKMS_DIR}/local-kms"
# The root package's tests take most of the time, much of it waiting
# (leases, fsyncs, timers): they run as three processes, beside the other
# packages'. The manifest package's memory bounds, which decode hundreds of
# MiB and take minutes under the race detector, skip there and run here
# without it, as do the largest cases of remote/crypt's reader attacks and
# its check that sealing reuses its buffers (sync.Pool drops some under
# the race detector).
others=$(go list ./... | grep -v '^github.com/cassback/cassback$')
pids=()
go test -race -timeout 40m "$@" $others &
pids+=($!)
go test -race -timeout 40m "$@" -run '^Test[A-K]' . &
pids+=($!)
go test -race -timeout 40m "$@" -run '^Test[L-R]' . &
pids+=($!)
go test -race -timeout 40m "$@" -skip '^Test[A-R]' . &
pids+=($!)
go test -timeout 20m "$@" -run 'MemBound$' ./manifest/ &
pids+=($!)
go test -timeout 20m "$@" -run '^TestAttack|^TestSealReader' ./remote/crypt/ & # their largest cases
pids+=($!)
fail=0
for p in "${pids[@]}"; do wait "$p" || fail=1; done
[ "$fail" = 0 ] || exit 1

for a in "$@"; do
  if [ "$a" = "-short" ] || [ "$a" = "-test.short" ]; then exit 0; fi
done
# 10,000 seeded schedules with no violation, and each hole of
# docs/design.md §4.7 put back and found (SIM_SCHEDULES overrides the count).
./sim.sh "${SIM_SCHEDULES:-10000}"
