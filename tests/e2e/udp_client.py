#!/usr/bin/env python3
"""UDP request/response through a VIP: N requests, each from a new socket (a new source port),
up to 3 tries; prints "ok=N fail=N" and the count per backend name."""
import collections
import socket
import sys

vip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ok, fail, by = 0, 0, collections.Counter()
for i in range(n):
    s = socket.socket(socket.AF_INET6 if ":" in vip else socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.5)
    s.connect((vip, port))
    msg = f"req-{i}".encode()
    got = None
    for _ in range(3):
        s.send(msg)
        try:
            data = s.recv(2048)
        except (socket.timeout, ConnectionRefusedError):
            continue
        name, _, echo = data.partition(b" ")
        if echo == msg:
            got = name.decode()
            break
    s.close()
    if got is None:
        fail += 1
    else:
        ok += 1
        by[got] += 1
print(f"ok={ok} fail={fail} " + " ".join(f"{k}={v}" for k, v in sorted(by.items())))
