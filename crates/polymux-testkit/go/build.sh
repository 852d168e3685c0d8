#!/bin/sh
# Builds the Go interop peer to crates/polymux-testkit/go/bin/polymux-go-peer (gitignored).
# Offline, GOPATH mode, against the Debian-packaged libraries in /usr/share/gocode:
#   apt-get install golang-go golang-github-hashicorp-yamux-dev golang-github-xtaci-smux-dev
# Idempotent: re-running rebuilds only if something changed (Go build cache) and replaces the
# binary atomically. Prints the binary's path on success.
set -eu

case "$0" in */*) here=${0%/*} ;; *) here=. ;; esac
here=$(cd "$here" && pwd)
repo=$(cd "$here/../../.." && pwd)
gocode=/usr/share/gocode
pkgs="golang-go golang-github-hashicorp-yamux-dev golang-github-xtaci-smux-dev"

missing() {
    echo "crates/polymux-testkit/go/build.sh: $1" >&2
    echo "crates/polymux-testkit/go/build.sh: install the Debian packages: apt-get install $pkgs" >&2
    exit 1
}

command -v go >/dev/null 2>&1 || missing "the go toolchain is not installed (no 'go' in PATH)"
[ -f "$gocode/src/github.com/hashicorp/yamux/session.go" ] ||
    missing "hashicorp/yamux sources not found in $gocode/src/github.com/hashicorp/yamux"
[ -f "$gocode/src/github.com/xtaci/smux/session.go" ] ||
    missing "xtaci/smux sources not found in $gocode/src/github.com/xtaci/smux"

# GOPATH mode, no network, no user go env file.
export GO111MODULE=off
export GOPATH="$here:$gocode"
export GOFLAGS=
export GOPROXY=off
export GOSUMDB=off
export GOTOOLCHAIN=local
export GOENV=off
export CGO_ENABLED=0
if [ -z "${GOCACHE:-}" ]; then
    export GOCACHE="$repo/target/go-build-cache"
fi
mkdir -p "$GOCACHE" "$here/bin"

out="$here/bin/polymux-go-peer"
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
(cd "$here/src/polymux-go-peer" && go build -o "$tmp" .) || {
    echo "crates/polymux-testkit/go/build.sh: go build failed (go: $(go version 2>/dev/null || echo '?'))" >&2
    exit 1
}
mv -f "$tmp" "$out"
echo "$out"
