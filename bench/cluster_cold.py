#!/usr/bin/env python3
"""Does the shared cache (L2 in Redis) help cold redirects on PostgreSQL? Usage:
python3 bench/cluster_cold.py [path/to/hop] [links]

Makes a database of its own on the machine's PostgreSQL (127.0.0.1:5432, dropped at
the end) and uses the machine's Redis (127.0.0.1:6379) under a prefix of its own.
Creates `links` links (3000) through a node, then times one GET of every code, in
order, on one keep-alive connection, on three fresh nodes, so that every redirect
is a miss of the node's own cache (L1):
  - no Redis: the database answers each one (the baseline);
  - Redis, L2 cold: each asks Redis, misses, reads the database and fills L2;
  - Redis, L2 warm (filled by the previous node): Redis answers each one.
Redirect rate limits are off, so only the cache path is measured. Prints microseconds
per cold redirect and the ratio to the baseline, measured in the same run. The
Python client's own time is in every number alike."""
import http.client, json, os, shutil, subprocess, sys, tempfile, threading, time

binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/hop"
count = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
admin = "postgres://postgres@127.0.0.1:5432/postgres"
name = f"hop_bench_{os.getpid()}"
database = f"postgres://postgres@127.0.0.1:5432/{name}"
prefix = f"hopbench:{os.getpid()}:{time.time_ns()}:"


def psql(sql):
    subprocess.run(["psql", admin, "-qc", sql], check=True, capture_output=True)


def start(env):
    data = tempfile.mkdtemp()
    full = dict(os.environ, HOP_DATABASE_URL=database, HOP_RATE_LIMIT_REDIRECT_PER_MINUTE="0",
                HOP_ANALYTICS_ENABLED="false", **env)
    server = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--log-format", "json",
                               "--data-dir", data], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, env=full)
    for line in server.stdout:
        if "hop is serving" in line:
            port = int(json.loads(line)["listen"].rsplit(":", 1)[1])
            break
    threading.Thread(target=lambda: [None for _ in server.stdout], daemon=True).start()
    return server, port, data


def cold_pass(port, codes):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    start = time.perf_counter()
    for code in codes:
        conn.request("GET", "/" + code)
        response = conn.getresponse()
        response.read()
        assert response.status == 302, response.status
    return (time.perf_counter() - start) / len(codes) * 1e6


psql(f"CREATE DATABASE {name}")
servers = []
try:
    key = subprocess.run([binary, "keys", "create", "--name", "bench", "--admin"],
                         capture_output=True, text=True, check=True,
                         env=dict(os.environ, HOP_DATABASE_URL=database)).stdout.splitlines()[-1]
    writer = start({})
    servers.append(writer)
    codes = []
    conn = http.client.HTTPConnection("127.0.0.1", writer[1])
    for start_at in range(0, count, 1000):
        links = [{"url": f"https://example.com/{i}"} for i in range(start_at, min(count, start_at + 1000))]
        conn.request("POST", "/api/v1/links/bulk", json.dumps({"links": links}),
                     {"Authorization": "Bearer " + key, "Content-Type": "application/json"})
        response = conn.getresponse()
        body = json.loads(response.read())
        codes += [item["link"]["code"] for item in body["results"]]
    redis = {"HOP_REDIS_URL": "redis://127.0.0.1:6379/0", "HOP_REDIS_PREFIX": prefix}
    results = []
    for label, env in [("no Redis", {}), ("Redis, L2 cold", redis), ("Redis, L2 warm", redis)]:
        node = start(env)
        servers.append(node)
        time.sleep(0.5)
        results.append((label, cold_pass(node[1], codes)))
    baseline = results[0][1]
    print(f"{count} cold redirects per node ({binary}):")
    for label, us in results:
        print(f"  {label:<15} {us:7.0f} us/redirect  {us / baseline:5.2f} x no Redis")
finally:
    for server, _, data in servers:
        server.terminate()
        server.wait()
        shutil.rmtree(data, ignore_errors=True)
    psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
