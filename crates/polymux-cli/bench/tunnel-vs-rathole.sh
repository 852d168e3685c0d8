#!/usr/bin/env bash
# Side-by-side benchmark of `polymux tunnel` and rathole 0.5.0 on loopback (see
# tunnel_vs_rathole.py for what is measured and how). Builds polymux from this checkout with
# the `dist` profile (LTO, one codegen unit: how a shipped binary is built, as rathole's
# release profile does); rathole is taken from --rathole PATH, or installed from crates.io into a temporary
# root with --install-rathole (never a test dependency). Writes the report to
# crates/polymux-cli/BENCHMARKS.md unless --out says otherwise; extra arguments go to the
# Python script (e.g. --size-mib 256 --trials 1 for a quick look).
#
#   crates/polymux-cli/bench/tunnel-vs-rathole.sh --install-rathole
#   crates/polymux-cli/bench/tunnel-vs-rathole.sh --rathole ~/.cargo/bin/rathole --trials 5
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
rathole=""
install=0
out="$root/crates/polymux-cli/BENCHMARKS.md"
rest=()
while [ $# -gt 0 ]; do
    case "$1" in
        --install-rathole) install=1 ;;
        --rathole) rathole=$2; shift ;;
        --out) out=$2; shift ;;
        *) rest+=("$1") ;;
    esac
    shift
done

if [ "$install" = 1 ]; then
    prefix=$(mktemp -d "${TMPDIR:-/tmp}/rathole-root.XXXXXX")
    # rathole 0.5.0's Cargo.lock pins time 0.3.29, which no longer compiles on Rust >= 1.80
    # (type inference change); fall back to fresh semver-compatible dependencies then.
    if ! cargo install rathole --locked --version 0.5.0 --root "$prefix"; then
        echo "note: --locked build failed (see above); retrying without --locked" >&2
        cargo install rathole --version 0.5.0 --root "$prefix"
    fi
    rathole="$prefix/bin/rathole"
fi
if [ -z "$rathole" ]; then
    echo "usage: $0 (--install-rathole | --rathole PATH) [--out FILE] [script options]" >&2
    exit 2
fi

(cd "$root" && cargo build --profile dist -p polymux-cli)
cd "$root"
exec python3 "$here/tunnel_vs_rathole.py" --polymux "$root/target/dist/polymux" \
    --rathole "$rathole" --out "$out" ${rest[@]+"${rest[@]}"}
