#!/bin/bash
# Go-to-Go self-test of polymux-go-peer over loopback: for every proto x scenario, a server
# process and a client process; both must print OK, or report "unsupported" (exit 2) exactly
# where expected. Also runs the package's Go tests: the smux roles a Go smux peer cannot drive
# Go-to-Go (halfclose client), the smux echo client's checks of the server, and checks that the
# library behaviours the peer works around or reports (yamux premature EOF, smux v2 FIN/window
# limit) are still there.
#
# Bounded: every peer has its own 60 s deadline; this script additionally kills (by pid) any
# process it started after 75 s. Loopback only. Usage: crates/polymux-testkit/go/selftest.sh [scenario...]
# The smux echo scenarios (echo100, bulk64, open1000, idle) run Go-to-Go with the client's
# "read exactly N bytes, then close" variant (see README.md).
set -u

case "$0" in */*) here=${0%/*} ;; *) here=. ;; esac
here=$(cd "$here" && pwd)
"$here/build.sh" >/dev/null || exit 1
bin="$here/bin/polymux-go-peer"

protos="yamux smux1 smux2"
all_scenarios="echo100 bulk64 open1000 greet halfclose reset-by-client reset-by-server goaway-by-client goaway-by-server ping idle unread"
scenarios=${*:-$all_scenarios}
limit=75

# Expected unsupported roles, stated independently of the program (see crates/polymux-testkit/go/README.md).
expect() { # proto scenario role -> ok | unsupported
    local p=$1 s=$2 r=$3
    if [ "$p" = yamux ]; then
        case "$s/$r" in
            reset-by-client/client | reset-by-server/server) echo unsupported ;;
            *) echo ok ;;
        esac
        return
    fi
    case "$s/$r" in
        reset-by-*/* | goaway-by-*/* | ping/* | halfclose/server) echo unsupported ;;
        greet/client) echo unsupported ;;
        unread/*) [ "$p" = smux1 ] && echo unsupported || echo ok ;;
        *) echo ok ;;
    esac
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# result <rc> <stdout file> -> ok | unsupported | fail
classify() {
    local rc=$1 last
    last=$(tail -n 1 "$2" 2>/dev/null)
    if [ "$rc" = 0 ] && [ "$last" = OK ]; then echo ok
    elif [ "$rc" = 2 ] && [[ "$last" == "FAIL: unsupported: "* ]]; then echo unsupported
    else echo fail; fi
}

# wait_pid <pid> <seconds>: waits, kills the pid after the limit; sets RC to its exit code.
# (Not called in $(...): a subshell cannot wait for this shell's children.)
wait_pid() {
    local pid=$1 t=$2 i=0
    while kill -0 "$pid" 2>/dev/null; do
        if [ $i -ge $((t * 10)) ]; then kill "$pid" 2>/dev/null; break; fi
        sleep 0.1; i=$((i + 1))
    done
    wait "$pid" 2>/dev/null
    RC=$?
}

failures=0
printf '%-6s %-17s %-12s %-12s %s\n' proto scenario server client verdict
for p in $protos; do
    for s in $scenarios; do
        es=$(expect "$p" "$s" server); ec=$(expect "$p" "$s" client)
        so="$tmp/$p.$s.server.out"; co="$tmp/$p.$s.client.out"
        "$bin" -proto "$p" -role server -addr 127.0.0.1:0 -scenario "$s" >"$so" 2>"$so.err" &
        spid=$!
        # wait for LISTENING or an early result (max 5 s)
        for _ in $(seq 50); do
            [ -s "$so" ] && break
            kill -0 "$spid" 2>/dev/null || break
            sleep 0.1
        done
        first=$(head -n 1 "$so" 2>/dev/null)
        sres=; cres=
        if [[ "$first" == "LISTENING "* ]]; then
            addr=${first#LISTENING }
            start=$(date +%s%N)
            "$bin" -proto "$p" -role client -addr "$addr" -scenario "$s" >"$co" 2>"$co.err" &
            cpid=$!
            wait_pid "$cpid" $limit
            cres=$(classify "$RC" "$co")
            if [ "$cres" = unsupported ]; then
                kill "$spid" 2>/dev/null; wait "$spid" 2>/dev/null
                sres="(listened)"
            else
                wait_pid "$spid" $limit
                sres=$(classify "$RC" "$so")
            fi
            ms=$(( ($(date +%s%N) - start) / 1000000 ))
        else
            wait_pid "$spid" 5
            sres=$(classify "$RC" "$so")
            # the client's verdict on an unsupported scenario comes before dialing
            "$bin" -proto "$p" -role client -addr 127.0.0.1:9 -scenario "$s" >"$co" 2>"$co.err" &
            wait_pid $! 10
            cres=$(classify "$RC" "$co")
            [ "$cres" = fail ] && [ "$ec" = ok ] && cres="(no peer)"
            ms=0
        fi
        verdict=pass
        [ "$sres" = "(listened)" ] && [ "$es" = ok ] && sres="(not run)"
        if [ "$sres" != "$es" ] && ! [[ "$sres" == "("* ]]; then verdict=FAIL; fi
        if [ "$cres" != "$ec" ] && ! [[ "$cres" == "("* ]]; then verdict=FAIL; fi
        note=
        if [ "$es" = ok ] && [ "$ec" = ok ]; then note="$((ms / 1000)).$(printf '%03d' $((ms % 1000)))s"; fi
        if [ "$es" != "$ec" ]; then note="go-to-go needs both roles; the supported role is left to the Rust side"; fi
        printf '%-6s %-17s %-12s %-12s %s %s\n' "$p" "$s" "$sres" "$cres" "$verdict" "$note"
        if [ $verdict = FAIL ]; then
            failures=$((failures + 1))
            echo "  server stdout: $(tr '\n' '|' <"$so")"; echo "  server stderr: $(tail -n 5 "$so.err" | tr '\n' '|')"
            echo "  client stdout: $(tr '\n' '|' <"$co" 2>/dev/null)"; echo "  client stderr: $(tail -n 5 "$co.err" 2>/dev/null | tr '\n' '|')"
        fi
    done
done

echo
echo "go test (smux echo both sides, smux halfclose client, library-behaviour checks):"
(
    export GO111MODULE=off GOPATH="$here:/usr/share/gocode" GOFLAGS= GOPROXY=off GOENV=off CGO_ENABLED=0
    [ -n "${GOCACHE:-}" ] || export GOCACHE="$here/../../target/go-build-cache"
    cd "$here/src/polymux-go-peer" && timeout 300 go test -count=1 . 2>&1
) || failures=$((failures + 1))

if [ $failures -gt 0 ]; then
    echo "selftest: $failures failure(s)"
    exit 1
fi
echo "selftest: all passed"
