#!/usr/bin/env python3
"""An established connection that goes quiet: GET a file, read it slowly for a while (a small
receive buffer, one small read every --interval seconds, so the client's packets — window
updates — are seconds apart and its flow-table entry sits idle), then read the rest at full
speed. Prints "OK <sha256>" when the whole body arrived, or "BROKEN <reason>" (a reset, a
short body), and exits 0 either way; the caller compares the hash.
"""
import argparse
import hashlib
import socket
import time

p = argparse.ArgumentParser()
p.add_argument("--host", required=True)
p.add_argument("--port", type=int, default=80)
p.add_argument("--local-port", type=int, required=True)
p.add_argument("--path", default="/big")
p.add_argument("--slow-seconds", type=float, default=6.0)
p.add_argument("--interval", type=float, default=0.5)
a = p.parse_args()

try:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.bind(("0.0.0.0", a.local_port))
    s.settimeout(20)
    s.connect((a.host, a.port))
    s.sendall(f"GET {a.path} HTTP/1.0\r\nHost: {a.host}\r\n\r\n".encode())
    data = bytearray()
    end = time.time() + a.slow_seconds
    while time.time() < end:
        chunk = s.recv(512)
        if not chunk:
            break
        data += chunk
        time.sleep(a.interval)
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head, sep, body = bytes(data).partition(b"\r\n\r\n")
    if not sep:
        print(f"BROKEN no HTTP header in {len(data)} bytes")
    else:
        print(f"OK {hashlib.sha256(body).hexdigest()} {len(body)}")
except OSError as e:
    print(f"BROKEN {e}")
