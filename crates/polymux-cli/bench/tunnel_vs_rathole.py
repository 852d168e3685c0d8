#!/usr/bin/env python3
"""Side-by-side benchmark of `polymux tunnel` and rathole on loopback, in one run.

Both tunnels run at once, each exposing two services (a sink and an echo backend, separate
Python processes shared by both tunnels); trials alternate between the tunnels so that load
from elsewhere on the machine hits both alike. Measured per tunnel:

- throughput of one 1 GiB upload through the tunnel (plain TCP, TLS, Noise): median of
  --trials, MiB/s, from connect to the sink's byte count coming back (which is checked);
- CPU seconds (user + system of tunnel server + client, from /proc) per GiB moved;
- 200 and 1100 visitors connecting at once and held open together: how many failed to get
  their 16-byte echo within 15 s, and the slowest one's connect + echo time;
- RSS (VmRSS) of server / client: idle after the first echo, with 1000 visitors held open,
  and after the bulk transfers (after a 2 s pause);
- TCP connections between tunnel client and server while 1000 visitors are open;
- reconnect: the server is killed (SIGKILL), stays down 10 s, is started again; the time
  from its restart to the first echo through the tunnel (median of --outages outages, the two
  tunnels alternating: where a restart falls in the client's back-off wait is chance).

Everything listens on and connects to 127.0.0.1; every loop is bounded in count and time.
Writes a markdown report (--out) with the date, CPU model and commit; prints it too.
"""

import argparse
import asyncio
import datetime
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

MiB = 1 << 20
GiB = 1 << 30
TOKEN = "bench-" + os.urandom(16).hex()
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- backends (own processes)

def serve_sink(port):
    """Reads each connection to EOF, answers with the byte count (8 bytes, big-endian)."""
    listener = socket.create_server(("127.0.0.1", port), backlog=4096)

    def handle(conn):
        buf = bytearray(MiB)
        total = 0
        with conn:
            while True:
                n = conn.recv_into(buf)
                if n == 0:
                    break
                total += n
            conn.sendall(total.to_bytes(8, "big"))

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def serve_echo(port):
    """Echoes every connection until EOF."""

    async def handle(reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# ---------------------------------------------------------------- processes

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def connections_to(port):
    """Established TCP connections (counted once) between a client and 127.0.0.1:port."""
    count = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            local_port = int(parts[1].split(":")[1], 16)
            if local_port == port and parts[3] == "01":
                count += 1
    return count


class Proc:
    def __init__(self, name, argv, env, logdir):
        self.name = name
        self.log = open(os.path.join(logdir, name.replace(" ", "-") + ".log"), "ab")
        self.popen = subprocess.Popen(
            argv, env={**os.environ, **env}, stdin=subprocess.DEVNULL,
            stdout=self.log, stderr=self.log)

    @property
    def pid(self):
        return self.popen.pid

    def stop(self, sig=signal.SIGTERM):
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self.log.close()


# ---------------------------------------------------------------- tunnels

class Tunnel:
    """One tunnel (server + client) exposing `sink` and `echo`."""

    def __init__(self, name, mode, workdir, backends):
        self.name, self.mode, self.workdir, self.backends = name, mode, workdir, backends
        self.control = free_port()
        self.exposed = {"sink": free_port(), "echo": free_port()}
        self.server = self.client = None

    def start(self):
        self.start_server()
        self.client = Proc(f"{self.name}-{self.mode}-client", self.client_argv(),
                           self.env(), self.workdir)
        self.wait_ready(30)

    def start_server(self):
        self.server = Proc(f"{self.name}-{self.mode}-server", self.server_argv(),
                           self.env(), self.workdir)

    def stop(self):
        for p in (self.client, self.server):
            if p:
                p.stop()

    def cpu(self):
        return cpu_seconds(self.server.pid) + cpu_seconds(self.client.pid)

    def rss(self):
        return rss_mb(self.server.pid), rss_mb(self.client.pid)

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if echo_once(self.exposed["echo"], 15):
                return time.monotonic()
            time.sleep(0.02)
        raise RuntimeError(f"{self.name} ({self.mode}) did not carry an echo within {timeout} s")


class Polymux(Tunnel):
    def __init__(self, binary, mode, workdir, backends, security):
        super().__init__("polymux", mode, workdir, backends)
        self.binary, self.security = binary, security

    def env(self):
        return {"POLYMUX_TOKEN": TOKEN}

    def server_argv(self):
        argv = [self.binary, "-q", "tunnel", "server", "--listen", f"127.0.0.1:{self.control}"]
        for svc, port in self.exposed.items():
            argv += ["--expose", f"{svc}=127.0.0.1:{port}"]
        if self.mode == "tls":
            argv += ["--tls-cert", self.security["cert"], "--tls-key", self.security["key"]]
        elif self.mode == "noise":
            argv += ["--noise-key", self.security["noise_key"]]
        return argv

    def client_argv(self):
        argv = [self.binary, "-q", "tunnel", "client", "--server", f"127.0.0.1:{self.control}"]
        for svc, port in self.backends.items():
            argv += ["--target", f"{svc}=127.0.0.1:{port}"]
        if self.mode == "tls":
            argv += ["--tls-ca", self.security["cert"]]
        elif self.mode == "noise":
            argv += ["--noise-pin", self.security["noise_pin"]]
        return argv


class Rathole(Tunnel):
    def __init__(self, binary, mode, workdir, backends, security):
        super().__init__("rathole", mode, workdir, backends)
        self.binary, self.security = binary, security
        self.server_toml = os.path.join(workdir, f"rathole-{mode}-server.toml")
        self.client_toml = os.path.join(workdir, f"rathole-{mode}-client.toml")
        server = [
            "[server]", f'bind_addr = "127.0.0.1:{self.control}"', f'default_token = "{TOKEN}"']
        client = [
            "[client]", f'remote_addr = "127.0.0.1:{self.control}"', f'default_token = "{TOKEN}"']
        if mode == "tls":
            server += ["[server.transport]", 'type = "tls"', "[server.transport.tls]",
                       f'pkcs12 = "{security["pkcs12"]}"', 'pkcs12_password = "bench"']
            client += ["[client.transport]", 'type = "tls"', "[client.transport.tls]",
                       f'trusted_root = "{security["cert"]}"', 'hostname = "localhost"']
        elif mode == "noise":
            server += ["[server.transport]", 'type = "noise"', "[server.transport.noise]",
                       f'local_private_key = "{security["rathole_private"]}"']
            client += ["[client.transport]", 'type = "noise"', "[client.transport.noise]",
                       f'remote_public_key = "{security["rathole_public"]}"']
        for svc, port in self.exposed.items():
            server += [f"[server.services.{svc}]", f'bind_addr = "127.0.0.1:{port}"']
        for svc, port in backends.items():
            client += [f"[client.services.{svc}]", f'local_addr = "127.0.0.1:{port}"']
        with open(self.server_toml, "w") as f:
            f.write("\n".join(server) + "\n")
        with open(self.client_toml, "w") as f:
            f.write("\n".join(client) + "\n")

    def env(self):
        return {"RUST_LOG": "warn"}

    def server_argv(self):
        return [self.binary, "--server", self.server_toml]

    def client_argv(self):
        return [self.binary, "--client", self.client_toml]


# ---------------------------------------------------------------- measurements

def echo_once(port, timeout):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"ping-0123456789ab")
            got = b""
            while len(got) < 17:
                chunk = s.recv(17 - len(got))
                if not chunk:
                    return False
                got += chunk
            return got == b"ping-0123456789ab"
    except OSError:
        return False


CHUNK = memoryview(os.urandom(MiB))


def upload(tunnel, size):
    """One upload of `size` bytes to the sink: (MiB/s, CPU s per GiB)."""
    cpu0 = tunnel.cpu()
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", tunnel.exposed["sink"]), timeout=120) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sent = 0
        while sent < size:
            s.sendall(CHUNK)
            sent += len(CHUNK)
        s.shutdown(socket.SHUT_WR)
        answer = b""
        while len(answer) < 8:
            chunk = s.recv(8 - len(answer))
            if not chunk:
                raise RuntimeError(f"{tunnel.name}: the sink's count did not come back")
            answer += chunk
    elapsed = time.perf_counter() - t0
    cpu = tunnel.cpu() - cpu0
    got = int.from_bytes(answer, "big")
    if got != size:
        raise RuntimeError(f"{tunnel.name}: the sink counted {got} bytes, not {size}")
    return size / MiB / elapsed, cpu / (size / GiB)


async def hold(port, n, while_open=None):
    """n visitors connect at once, echo 16 bytes each, stay open until all are done (then
    `while_open` runs), and close: (failures, slowest seconds)."""
    all_done = asyncio.Event()
    release = asyncio.Event()
    remaining = [n]

    async def visitor(i):
        t0 = time.perf_counter()
        writer = None
        ok = False
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port), 15)
            msg = b"%016d" % i
            writer.write(msg)
            await writer.drain()
            ok = await asyncio.wait_for(reader.readexactly(16), 15) == msg
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            ok = False
        elapsed = time.perf_counter() - t0
        remaining[0] -= 1
        if remaining[0] == 0:
            all_done.set()
        await asyncio.wait_for(release.wait(), 90)
        if writer:
            writer.close()
        return ok, elapsed

    async def observer():
        await asyncio.wait_for(all_done.wait(), 60)
        if while_open:
            while_open()
        release.set()

    results = await asyncio.gather(*(visitor(i) for i in range(n)), observer())
    results = results[:n]
    return sum(1 for ok, _ in results if not ok), max(e for _, e in results)


def reconnect(tunnel, outage):
    tunnel.server.stop(signal.SIGKILL)
    time.sleep(outage)
    t0 = time.monotonic()
    tunnel.start_server()
    return tunnel.wait_ready(60) - t0


# ---------------------------------------------------------------- the run

def median(xs):
    return statistics.median(xs) if xs else float("nan")


def run(args):
    workdir = tempfile.mkdtemp(prefix="tunnel-vs-rathole-")
    procs = []
    tunnels = []
    results = {"polymux": {}, "rathole": {}}
    try:
        # Backends.
        backends = {"sink": free_port(), "echo": free_port()}
        for svc, port in backends.items():
            procs.append(Proc(f"backend-{svc}", [sys.executable, __file__, "--serve", svc,
                                                 str(port)], {}, workdir))
        deadline = time.monotonic() + 10
        for port in backends.values():
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("backends did not start")
                    time.sleep(0.05)

        # Keys and certificates.
        sec = {"cert": os.path.join(workdir, "cert.pem"), "key": os.path.join(workdir, "key.pem"),
               "pkcs12": os.path.join(workdir, "id.p12"),
               "noise_key": os.path.join(workdir, "noise.key")}
        subprocess.run([args.polymux, "cert", "--cert", sec["cert"], "--key", sec["key"]],
                       check=True, capture_output=True)
        subprocess.run(["openssl", "pkcs12", "-export", "-out", sec["pkcs12"], "-inkey",
                        sec["key"], "-in", sec["cert"], "-passout", "pass:bench"], check=True)
        sec["noise_pin"] = subprocess.run(
            [args.polymux, "keygen", "--out", sec["noise_key"]], check=True,
            capture_output=True, text=True).stdout.strip()
        lines = subprocess.run([args.rathole, "--genkey"], check=True, capture_output=True,
                               text=True).stdout.split()
        sec["rathole_private"] = lines[lines.index("Private") + 2]
        sec["rathole_public"] = lines[lines.index("Public") + 2]

        def pair(mode):
            return [Polymux(args.polymux, mode, workdir, backends, sec),
                    Rathole(args.rathole, mode, workdir, backends, sec)]

        size = args.size_mib * MiB
        for mode in ["plain", "tls", "noise"]:
            pm, rh = pair(mode)
            tunnels += [pm, rh]
            for t in (pm, rh):
                t.start()
                log(f"{t.name} {mode} up")
            if mode == "plain":
                for t in (pm, rh):
                    results[t.name]["rss idle"] = t.rss()
                for n in (200, 1100):
                    for t in (pm, rh):
                        results[t.name][f"burst {n}"] = asyncio.run(hold(t.exposed["echo"], n))
                        log(f"{t.name}: {n} at once: {results[t.name][f'burst {n}']}")
                for t in (pm, rh):
                    def snapshot(t=t):
                        results[t.name]["rss 1000"] = t.rss()
                        results[t.name]["control conns"] = connections_to(t.control)
                    failed = asyncio.run(hold(t.exposed["echo"], 1000, snapshot))
                    results[t.name]["held 1000"] = failed
                    log(f"{t.name}: 1000 held: {failed}, rss {results[t.name]['rss 1000']}")
            speeds = {pm.name: [], rh.name: []}
            cpus = {pm.name: [], rh.name: []}
            for trial in range(args.trials):
                for t in ((pm, rh) if trial % 2 == 0 else (rh, pm)):
                    speed, cpu = upload(t, size)
                    speeds[t.name].append(speed)
                    cpus[t.name].append(cpu)
                    log(f"{t.name} {mode} trial {trial}: {speed:.0f} MiB/s, {cpu:.2f} CPU s/GiB")
            for t in (pm, rh):
                results[t.name][f"speed {mode}"] = (median(speeds[t.name]), speeds[t.name])
                results[t.name][f"cpu {mode}"] = median(cpus[t.name])
            if mode == "plain":
                time.sleep(2)
                for t in (pm, rh):
                    results[t.name]["rss bulk"] = t.rss()
                outages = {pm.name: [], rh.name: []}
                for _ in range(args.outages):
                    for t in (pm, rh):
                        outages[t.name].append(reconnect(t, args.outage))
                        log(f"{t.name}: reconnect {outages[t.name][-1]:.2f} s")
                for t in (pm, rh):
                    results[t.name]["reconnect"] = median(outages[t.name])
                    results[t.name]["reconnects"] = outages[t.name]
            for t in (pm, rh):
                t.stop()
    finally:
        for t in tunnels:
            t.stop()
        for p in procs:
            p.stop(signal.SIGKILL)
    return results, workdir


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def report(results, args):
    p, r = results["polymux"], results["rathole"]
    rows = []

    def row(what, pv, rv, better, fmt):
        if better == "higher":
            win = "polymux" if pv >= rv else "rathole"
        elif better == "lower":
            win = "polymux" if pv <= rv else "rathole"
        else:
            win = better
        rows.append(f"| {what} | {fmt(pv)} | {fmt(rv)} | {win} |")

    size = f"{args.size_mib / 1024:g} GiB" if args.size_mib >= 1024 else f"{args.size_mib} MiB"
    for mode, label in [("plain", "TCP"), ("tls", "TLS"), ("noise", "Noise")]:
        row(f"throughput, {size} upload, {label} (MiB/s, median of {args.trials})",
            p[f"speed {mode}"][0], r[f"speed {mode}"][0], "higher", lambda v: f"{v:.0f}")
    for mode, label in [("plain", "TCP"), ("tls", "TLS"), ("noise", "Noise")]:
        row(f"CPU per GiB, {label} (s, server + client)", p[f"cpu {mode}"], r[f"cpu {mode}"],
            "lower", lambda v: f"{v:.2f}")
    for n in (200, 1100):
        pf, ps = p[f"burst {n}"]
        rf, rs = r[f"burst {n}"]
        win = "polymux" if (pf, ps) <= (rf, rs) else "rathole"
        rows.append(f"| {n} visitors at once: failed / slowest connect+echo | {pf} / {ps:.2f} s "
                    f"| {rf} / {rs:.2f} s | {win} |")
    for key, label in [("rss idle", "RSS idle"), ("rss 1000", "RSS with 1000 visitors open"),
                       ("rss bulk", f"RSS after {args.trials} × {size} over TCP")]:
        pv, rv = p[key], r[key]
        win = "polymux" if sum(pv) <= sum(rv) else "rathole"
        rows.append(f"| {label}, server / client (MB) | {pv[0]:.1f} / {pv[1]:.1f} "
                    f"| {rv[0]:.1f} / {rv[1]:.1f} | {win} |")
    row("TCP connections client↔server with 1000 visitors open", p["control conns"],
        r["control conns"], "lower", str)
    row(f"reconnect after a {args.outage:g} s server outage (s, restart → first echo, "
        f"median of {args.outages})",
        p["reconnect"], r["reconnect"], "lower", lambda v: f"{v:.2f}")

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    version_text = subprocess.run([args.rathole, "--version"], capture_output=True,
                                  text=True).stdout
    rathole_version = "rathole " + next(
        (line.split(":", 1)[1].strip() for line in version_text.splitlines()
         if line.startswith("Build Version")), "(unknown version)")
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    trials = " / ".join(
        f"{name} {mode}: " + ", ".join(f"{v:.0f}" for v in results[name][f"speed {mode}"][1])
        for mode in ("plain", "tls", "noise") for name in ("polymux", "rathole"))
    return "\n".join([
        "# polymux tunnel vs rathole",
        "",
        f"Generated by `crates/polymux-cli/bench/tunnel-vs-rathole.sh` on {date}: "
        f"{cpu_model()} ({os.cpu_count()} CPUs, shared with other work), Linux "
        f"{platform.release()}, polymux commit {commit}{' (+ local changes)' if dirty else ''} "
        f"(`dist` profile: release with LTO, `--protocol yamux`, default flags), {rathole_version} "
        "(crates.io, default features; TLS via native-tls/OpenSSL). Loopback only; both "
        "tunnels run at once and trials alternate between them. 1-minute load average "
        f"{results['load'][0]:.1f} at the start, {results['load'][1]:.1f} at the end: with "
        "other work on the machine, single trials vary widely (see the trials below).",
        "",
        "| | polymux | rathole | better |",
        "|---|---|---|---|",
        *rows,
        "",
        "How: the visitor (Python) uploads to a sink behind the tunnel, which answers with the "
        "byte count (checked); CPU is user + system time of the tunnel's two processes from "
        "/proc; visitors connect at once and hold their connections until all have echoed "
        "16 bytes or failed (15 s limit each); RSS is VmRSS; the outage is a SIGKILL of the "
        f"server, {args.outage:g} s down, then a restart on the same port, timed until an echo "
        "goes through. TLS uses one certificate from `polymux cert` for both (rathole: as PKCS#12, "
        "trusted_root = the certificate); Noise: polymux `Noise_NX_25519_ChaChaPoly_BLAKE2s` "
        "(ring), rathole its default `Noise_NK_25519_ChaChaPoly_BLAKE2s`.",
        "",
        f"Trials (MiB/s): {trials}.",
        "",
        "Reconnects (s): " + " / ".join(
            f"{name}: " + ", ".join(f"{v:.2f}" for v in results[name].get("reconnects", []))
            for name in ("polymux", "rathole")) + ".",
        "",
    ])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--polymux", help="the polymux binary (dist profile)")
    ap.add_argument("--rathole", help="the rathole binary")
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--outage", type=float, default=10.0)
    ap.add_argument("--outages", type=int, default=3)
    ap.add_argument("--out", help="write the markdown report here")
    ap.add_argument("--serve", nargs=2, metavar=("KIND", "PORT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        kind, port = args.serve
        return {"sink": serve_sink, "echo": serve_echo}[kind](int(port))
    if not (args.polymux and args.rathole):
        ap.error("--polymux and --rathole are required")
    load_before = os.getloadavg()[0]
    results, workdir = run(args)
    results["load"] = (load_before, os.getloadavg()[0])
    text = report(results, args)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
        log(f"wrote {args.out}; process logs in {workdir}")


if __name__ == "__main__":
    sys.exit(main())
