#!/usr/bin/env python3
"""Rough cost of a redirect on a link with a click limit (a durable reservation per
click) against one without, on loopback. Usage: python3 bench/limits.py [path/to/hop]

Starts its own `hop serve` on a temporary data directory and a free port, creates one
link of each kind, then times sequential redirects on one keep-alive connection and
concurrent ones from 16 threads. A rough comparison, not a benchmark: the Python client
is slower than hop, so the unlimited numbers are mostly the client's."""
import http.client, json, os, shutil, subprocess, sys, tempfile, threading, time

binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/hop"
data = tempfile.mkdtemp()
key = subprocess.run([binary, "keys", "create", "--name", "bench", "--admin", "--data-dir", data],
                     capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
server = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--log-format", "json",
                           "--data-dir", data], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True)
port = None
for line in server.stdout:
    if "hop is serving" in line:
        port = int(json.loads(line)["listen"].rsplit(":", 1)[1])
        break
threading.Thread(target=lambda: [None for _ in server.stdout], daemon=True).start()


def request(method, path, body=None, conn=None):
    conn = conn or http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}
    conn.request(method, path, body=json.dumps(body) if body else None, headers=headers)
    response = conn.getresponse()
    response.read()
    return response.status


def sequential(path, n=2000):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    request("GET", path, conn=conn)
    start = time.perf_counter()
    for _ in range(n):
        assert request("GET", path, conn=conn) == 302
    return (time.perf_counter() - start) / n * 1e6


def concurrent(path, n=300, threads=16):
    def work():
        conn = http.client.HTTPConnection("127.0.0.1", port)
        for _ in range(n):
            assert request("GET", path, conn=conn) == 302
    workers = [threading.Thread(target=work) for _ in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return threads * n / (time.perf_counter() - start)


try:
    assert request("POST", "/api/v1/links", {"url": "https://example.com/u", "alias": "unlimited"}) == 201
    assert request("POST", "/api/v1/links",
                   {"url": "https://example.com/l", "alias": "limited", "maxClicks": 10**9}) == 201
    for path in ["/unlimited", "/limited"]:
        print(f"{path:<11} one client: {sequential(path):7.0f} us/redirect")
    for path in ["/unlimited", "/limited"]:
        print(f"{path:<11} 16 clients: {concurrent(path):7.0f} redirects/s")
finally:
    server.terminate()
    server.wait()
    shutil.rmtree(data, ignore_errors=True)
