#!/usr/bin/env bash
# Regenerate the Go code in proto/go/bullyproofv1 from proto/bullyproof/v1/bullyproof.proto
# (or, with --check, fail if the checked-in code differs from what the pinned generators produce).
#
#   bash proto/gen_go.sh          # rewrite proto/go/bullyproofv1/*.pb.go
#   bash proto/gen_go.sh --check  # CI: exit 1 if regenerating would change anything
#
# The compiler is the protoc inside grpcio-tools (pinned in pyproject.toml, already in the venv for
# proto/gen.py); the two small Go plugins are installed with `go install` at pinned versions into
# <repo>/.tools/bin if missing. (buf, used before, took minutes to build on a fresh machine.)
set -euo pipefail

PROTOC_GEN_GO_VERSION="1.36.12"       # same as google.golang.org/protobuf in proto/go/go.mod
PROTOC_GEN_GO_GRPC_VERSION="1.6.2"

proto="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$proto")"
tools="$root/.tools"
python="${PYTHON:-$root/.venv/bin/python}"
bin="$tools/bin"
out="$proto/go/bullyproofv1"

check=0
case "${1:-}" in
  "") ;;
  --check) check=1 ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

version_of() {  # BINARY: the last word of `BINARY --version`, without a leading "v"
  [[ -x "$1" ]] || return 0
  local v
  v="$("$1" --version 2>&1 | awk 'END {print $NF}')" || return 0
  echo "${v#v}"
}

# go_tool NAME VERSION PACKAGE@VERSION: install into .tools/bin unless it already reports VERSION.
go_tool() {
  local name="$1" version="$2" package="$3"
  [[ "$(version_of "$bin/$name")" == "$version" ]] && return 0
  command -v go >/dev/null 2>&1 || { echo "error: 'go' is not on PATH; it is needed to install $name into $bin" >&2; exit 1; }
  mkdir -p "$bin"
  (
    # Same lock file as chaos/tools.py and .ci/install-tools: never two installs at once.
    exec 9>"$tools/install.lock"
    flock -w 960 9 || { echo "error: timed out waiting for $tools/install.lock" >&2; exit 1; }
    [[ "$(version_of "$bin/$name")" == "$version" ]] && exit 0
    echo "installing $package into $bin (go install) ..." >&2
    gobin="$(mktemp -d "$tools/gobin-XXXXXX")"
    trap 'rm -rf "$gobin"' EXIT
    GOBIN="$gobin" CGO_ENABLED=0 go install "$package"
    mv -f "$gobin/$name" "$bin/$name"  # rename into place: never a half-written binary
    [[ "$(version_of "$bin/$name")" == "$version" ]] || { echo "error: $bin/$name is not version $version" >&2; exit 1; }
  )
}

go_tool protoc-gen-go "$PROTOC_GEN_GO_VERSION" "google.golang.org/protobuf/cmd/protoc-gen-go@v$PROTOC_GEN_GO_VERSION"
go_tool protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION" "google.golang.org/grpc/cmd/protoc-gen-go-grpc@v$PROTOC_GEN_GO_GRPC_VERSION"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# The .proto has no go_package option (the contract stays language-neutral): M maps it to the Go
# package, and module= strips the module path so the files land in $tmp/bullyproofv1.
go_opt="module=bullyproof/proto/go,Mbullyproof/v1/bullyproof.proto=bullyproof/proto/go/bullyproofv1"
[[ -x "$python" ]] || { echo "error: $python not found; run make setup (grpcio-tools provides protoc)" >&2; exit 1; }
(cd "$proto" && "$python" -m grpc_tools.protoc -I. \
  --plugin=protoc-gen-go="$bin/protoc-gen-go" --plugin=protoc-gen-go-grpc="$bin/protoc-gen-go-grpc" \
  --go_out="$tmp" --go_opt="$go_opt" --go-grpc_out="$tmp" --go-grpc_opt="$go_opt" \
  bullyproof/v1/bullyproof.proto)

if (( check )); then
  if ! diff -ru "$out" "$tmp/bullyproofv1"; then
    echo "generated Go code is stale: proto/go/bullyproofv1; run: bash proto/gen_go.sh" >&2
    exit 1
  fi
  echo "proto/go/bullyproofv1 is up to date"
else
  mkdir -p "$out"
  rm -f "$out"/*.pb.go
  cp "$tmp"/bullyproofv1/*.pb.go "$out"/
  echo "wrote $(cd "$out" && ls *.pb.go | tr '\n' ' ')into proto/go/bullyproofv1"
fi
