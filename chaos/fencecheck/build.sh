#!/usr/bin/env bash
# Build fencecheck (this directory: the fenced register checked by Porcupine, pinned in go.mod and
# verified by go.sum) into <repo>/.tools/bin/fencecheck, unless the binary there was built from these
# very sources: it reports their hash (`fencecheck -version`, stamped at build time). Idempotent.
# Called by .ci/install-tools (the set-up `make test` runs) and, on first use, by chaos/tools.py.
# Prints the binary's path on standard output; anything else goes to standard error.
set -euo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$src/../.." && pwd)"
tools="$root/.tools"
bin="$tools/bin"
binary="$bin/fencecheck"

# The sources' hash: go.mod, go.sum and every .go file, in byte order of their names.
source_hash() {
  (cd "$src" && export LC_ALL=C && cat go.mod go.sum *.go | sha256sum | cut -c1-16)
}

built_from() {  # HASH: true if the binary reports it (`fencecheck HASH porcupine VERSION SUM`)
  [[ -x "$binary" ]] && [[ "$("$binary" -version 2>/dev/null | awk '{print $2}')" == "$1" ]]
}

hash="$(source_hash)"
if ! built_from "$hash"; then
  command -v go >/dev/null 2>&1 || { echo "error: 'go' is not on PATH; it is needed to build $binary" >&2; exit 1; }
  mkdir -p "$bin"
  (
    # Same lock file as chaos/tools.py and .ci/install-tools: never two installs at once.
    exec 9>"$tools/install.lock"
    flock -w 960 9 || { echo "error: timed out waiting for $tools/install.lock" >&2; exit 1; }
    built_from "$hash" && exit 0
    echo "building fencecheck ($hash) into $bin (go build) ..." >&2
    out="$(mktemp "$bin/.fencecheck-XXXXXX")"
    trap 'rm -f "$out"' EXIT
    # -mod=readonly: go.mod and go.sum are the pins; a build never changes them.
    (cd "$src" && CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "-X main.sourceHash=$hash" -o "$out" .)
    mv -f "$out" "$binary"  # rename into place: never a half-written binary
    built_from "$hash" || { echo "error: $binary does not report source $hash" >&2; exit 1; }
    echo "built: $("$binary" -version)" >&2
  )
fi
echo "$binary"
