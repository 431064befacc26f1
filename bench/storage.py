#!/usr/bin/env python3
"""Bytes per link and per visit on both backends, for docs/capacity.md. Usage:
python3 bench/storage.py [path/to/hop] [links] [visits]

For SQLite (a fresh data directory) and PostgreSQL (a database of its own on the
machine's server, 127.0.0.1:5432, dropped at the end): starts `hop serve`, creates
`links` links (100,000) with the bulk API (URLs like https://example.com/articles/<n>,
about 38 bytes), stops it and measures the store; starts it again, serves `visits`
redirects (100,000) spread over the first 10,000 links from a few browsers, languages
and referrers (raw visits kept, the default), stops it (which stores every visit)
and measures again. Size: SQLite the database file after a checkpoint (hop stops
cleanly, so the WAL is folded in); PostgreSQL pg_database_size less the size of the
freshly migrated database. Indexes, rollups and free space in pages all count, as
they do on a disk."""
import http.client, json, os, shutil, subprocess, sys, tempfile, threading, time

binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/hop"
links = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
visits = int(sys.argv[3]) if len(sys.argv) > 3 else 100_000
admin = "postgres://postgres@127.0.0.1:5432/postgres"
name = f"hop_bench_storage_{os.getpid()}"
database = f"postgres://postgres@127.0.0.1:5432/{name}"
AGENTS = ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
          "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
          "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"]
LANGUAGES = ["en-US,en;q=0.9", "fr-FR,fr;q=0.8", "de"]
REFERRERS = ["https://www.google.com/", "https://t.co/abc", None]


def psql(url, sql):
    return subprocess.run(["psql", url, "-Atqc", sql], check=True, capture_output=True, text=True).stdout.strip()


def start(data, env):
    full = dict(os.environ, HOP_RATE_LIMIT_REDIRECT_PER_MINUTE="0", **env)
    server = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--log-format", "json",
                               "--data-dir", data], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, env=full)
    for line in server.stdout:
        if "hop is serving" in line:
            port = int(json.loads(line)["listen"].rsplit(":", 1)[1])
            break
    threading.Thread(target=lambda: [None for _ in server.stdout], daemon=True).start()
    return server, port


def stop(server):
    server.terminate()
    server.wait()


def measure(label, env, size):
    data = tempfile.mkdtemp()
    try:
        key = subprocess.run([binary, "keys", "create", "--name", "bench", "--admin", "--data-dir", data],
                             capture_output=True, text=True, check=True,
                             env=dict(os.environ, **env)).stdout.splitlines()[-1]
        empty = size(data)
        server, port = start(data, env)
        conn = http.client.HTTPConnection("127.0.0.1", port)
        codes = []
        for start_at in range(0, links, 1000):
            batch = [{"url": f"https://example.com/articles/{i}"} for i in range(start_at, min(links, start_at + 1000))]
            conn.request("POST", "/api/v1/links/bulk", json.dumps({"links": batch}),
                         {"Authorization": "Bearer " + key, "Content-Type": "application/json"})
            body = json.loads(conn.getresponse().read())
            codes += [item["link"]["code"] for item in body["results"] if "link" in item]
        assert len(codes) == links, len(codes)
        stop(server)
        with_links = size(data)
        server, port = start(data, env)
        conn = http.client.HTTPConnection("127.0.0.1", port)
        for n in range(visits):
            headers = {"User-Agent": AGENTS[n % 3], "Accept-Language": LANGUAGES[n // 3 % 3]}
            if REFERRERS[n // 9 % 3]:
                headers["Referer"] = REFERRERS[n // 9 % 3]
            conn.request("GET", "/" + codes[n * 7919 % min(links, 10_000)], headers=headers)
            response = conn.getresponse()
            response.read()
            assert response.status == 302, response.status
        stop(server)
        with_visits = size(data)
        per_link = (with_links - empty) / links
        per_visit = (with_visits - with_links) / visits
        print(f"  {label:<11} {per_link:6.0f} bytes/link  {per_visit:6.1f} bytes/visit"
              f"  ({with_links / 1e6:.1f} MB with links, {with_visits / 1e6:.1f} MB with visits)")
    finally:
        shutil.rmtree(data, ignore_errors=True)


def sqlite_size(data):
    path = os.path.join(data, "hop.db")
    return sum(os.path.getsize(p) for p in [path, path + "-wal"] if os.path.exists(p))


psql(admin, f"CREATE DATABASE {name}")
try:
    print(f"{links} links, {visits} visits over 10,000 of them ({binary}):")
    measure("SQLite", {}, sqlite_size)
    measure("PostgreSQL", {"HOP_DATABASE_URL": database},
            lambda _: int(psql(admin, f"SELECT pg_database_size('{name}')")))
finally:
    psql(admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
