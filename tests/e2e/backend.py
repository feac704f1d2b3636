#!/usr/bin/env python3
"""A backend for fiberlb's end-to-end test: answers with its own name.

HTTP on 0.0.0.0:80 (GET / -> "NAME\n", GET /big -> the file DIR/big.bin), and a UDP responder
on each address given with --udp ADDR (replies "NAME <payload>" from that address, so a dsr
reply leaves from the VIP). Every request is logged as "tcp|udp CLIENT_IP CLIENT_PORT PATH TIME_NS" to
--log, so the test can tell which backend served which client port.
"""
import argparse
import http.server
import os
import socket
import socketserver
import threading
import time

p = argparse.ArgumentParser()
p.add_argument("--name", required=True)
p.add_argument("--dir", required=True)
p.add_argument("--log", required=True)
p.add_argument("--port", type=int, default=80)
p.add_argument("--udp", action="append", default=[])
p.add_argument("--udp-port", type=int, default=5353)
p.add_argument("--bind", default="0.0.0.0", help="HTTP address; '::' serves IPv6 and IPv4")
a = p.parse_args()

log_lock = threading.Lock()
log = open(a.log, "a", buffering=1)


def note(kind, addr, path):
    with log_lock:
        log.write(f"{kind} {addr[0]} {addr[1]} {path} {time.time_ns()}\n")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        if self.path.startswith("/big"):
            path = os.path.join(a.dir, "big.bin")
            size = os.path.getsize(path)
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            with open(path, "rb") as f:
                while True:
                    chunk = f.read(65536)
                    if not chunk:
                        break
                    self.wfile.write(chunk)
        else:
            body = (a.name + "\n").encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        note("tcp", self.client_address, self.path)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def udp(addr):
    s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, a.udp_port))
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(a.name.encode() + b" " + data, peer)
        note("udp", peer, addr)


for addr in a.udp:
    threading.Thread(target=udp, args=(addr,), daemon=True).start()
if ":" in a.bind:
    Server.address_family = socket.AF_INET6
Server((a.bind, a.port), Handler).serve_forever()
