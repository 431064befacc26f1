//! Hostile connections against the real binary under a small open-file limit: stalled
//! bodies, connection floods from one or many addresses, oversized and slow headers,
//! descriptor exhaustion, and a stalled upload during SIGTERM. Each attack is bounded
//! in count and time and stays on loopback (127.0.0.2 and up are other addresses of
//! the loopback interface); while it runs, another address must be served within
//! 50 ms at the 99th percentile, and afterwards hop's memory must come back to within
//! 20 % of where it started.
//!
//! The attacks run one at a time (a process-wide lock) so their timings don't disturb
//! each other.

mod common;

use common::HopProcess;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Held by each test for its whole run (each test has its own runtime; a tokio mutex
/// works across them).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The address of a served hop.
fn address(server: &HopProcess) -> SocketAddr {
    server.base.trim_start_matches("http://").parse().unwrap()
}

/// A connection to `to` from the loopback address `from`.
async fn connect_from(from: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))?;
    socket.connect(to).await
}

/// One request on a new connection from 127.0.0.1; returns the status and how long
/// connecting, sending and reading the whole answer took.
async fn timed_request(to: SocketAddr, path: &str) -> (u16, Duration) {
    let start = Instant::now();
    let mut stream = TcpStream::connect(to).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let elapsed = start.elapsed();
    let status = std::str::from_utf8(&answer[9..12])
        .unwrap()
        .parse()
        .unwrap();
    (status, elapsed)
}

/// Serves `rounds` requests to other clients (a health check and an unknown code, so
/// the store is read too) and asserts their p99 is under 50 ms.
async fn others_are_served(to: SocketAddr, rounds: usize) {
    let mut latencies = Vec::new();
    for round in 0..rounds {
        let path = if round % 2 == 0 {
            "/healthz"
        } else {
            "/zzzzzz1"
        };
        let (status, elapsed) = timed_request(to, path).await;
        assert!(status == 200 || status == 404, "status {status} for {path}");
        latencies.push(elapsed);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    latencies.sort();
    // Nearest rank: with 200 rounds the second slowest, so one scheduling hiccup on a
    // shared machine is not mistaken for a client that was kept waiting.
    let p99 = latencies[(latencies.len() * 99).div_ceil(100) - 1];
    assert!(
        p99 < Duration::from_millis(50),
        "p99 {p99:?} during the attack; slowest {:?}",
        latencies.last()
    );
}

/// hop's resident memory, in KiB.
fn rss_kib(server: &HopProcess) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A metric's value from `/metrics` (the first line that starts with `name`).
async fn metric(to: SocketAddr, name: &str) -> u64 {
    let text = reqwest::get(format!("http://{to}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|line| line.starts_with(name))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// Warms hop up (first requests allocate what every later one reuses) and returns its
/// memory then.
async fn baseline_rss(server: &HopProcess, to: SocketAddr) -> u64 {
    for _ in 0..50 {
        timed_request(to, "/healthz").await;
        timed_request(to, "/zzzzzz2").await;
    }
    rss_kib(server)
}

/// Waits until hop holds at most `open` connections besides the one asking.
async fn connections_drop_to(to: SocketAddr, open: u64, limit: Duration) {
    let start = Instant::now();
    loop {
        let now = metric(to, "hop_connections_open").await;
        if now <= open + 1 {
            return;
        }
        assert!(start.elapsed() < limit, "{now} connections still open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (up to 10 s: the allocator gives freed pages back within about a second)
/// until hop's memory is within 20 % of `start_kib`.
async fn assert_memory_returned(server: &HopProcess, start_kib: u64) {
    let start = Instant::now();
    loop {
        let now_kib = rss_kib(server);
        if now_kib * 10 <= start_kib * 12 {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "memory {now_kib} KiB 10 s after the attack, {start_kib} KiB before"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A password-form POST whose body stops after its first field, like the reproduction
/// in the hardening issue.
const STALLED_FORM: &[u8] = b"POST /abcdefg HTTP/1.1\r\nHost: 127.0.0.1\r\n\
Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\npassword=";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_with_stalled_bodies_cannot_keep_others_out() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = common::data_dir();
    let server =
        HopProcess::start_with_file_limit(dir.path(), &[("HOP_REQUEST_TIMEOUT_MS", "4000")], 512);
    let to = address(&server);
    assert_eq!(metric(to, "hop_connections_max").await, 448);
    let start_kib = baseline_rss(&server, to).await;

    // 600 stalled uploads from one address against a 512-descriptor limit.
    let mut stalled = Vec::new();
    for _ in 0..600 {
        if let Ok(mut stream) = connect_from("127.0.0.2", to).await
            && stream.write_all(STALLED_FORM).await.is_ok()
        {
            stalled.push(stream);
        }
    }
    let attack_started = Instant::now();
    others_are_served(to, 200).await;
    let open = metric(to, "hop_connections_open").await;
    assert!((129..=130).contains(&open), "{open} open");
    assert!(
        metric(
            to,
            "hop_connections_refused_total{limit=\"max_connections_per_client\"}"
        )
        .await
            >= 472
    );

    // Every admitted upload is cut off at request_timeout_ms with 408 and closed.
    let mut timed_out = 0;
    for stream in &mut stalled {
        let mut answer = Vec::new();
        match tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await {
            Ok(Ok(_)) if answer.starts_with(b"HTTP/1.1 408") => timed_out += 1,
            // Refused at accept: closed (or reset) with no answer.
            Ok(_) => assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer)),
            Err(_) => panic!("a stalled upload was held for more than 10 s"),
        }
    }
    assert_eq!(timed_out, 128);
    assert!(attack_started.elapsed() < Duration::from_secs(8));
    drop(stalled);
    connections_drop_to(to, 0, Duration::from_secs(5)).await;
    assert_memory_returned(&server, start_kib).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_addresses_together_cannot_take_the_last_connections() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = common::data_dir();
    let server = HopProcess::start_with_file_limit(dir.path(), &[], 512);
    let to = address(&server);
    let start_kib = baseline_rss(&server, to).await;

    // Eight addresses open 128 idle connections each: 1,024 against 448 places.
    let mut held = Vec::new();
    for n in 2..10 {
        for _ in 0..128 {
            if let Ok(stream) = connect_from(&format!("127.0.0.{n}"), to).await {
                held.push(stream);
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let open = metric(to, "hop_connections_open").await;
    assert!(open <= 448, "{open} open");
    assert!(metric(to, "hop_connections_refused_total{limit=\"nearly_full\"}").await > 0);
    others_are_served(to, 200).await;
    drop(held);
    connections_drop_to(to, 0, Duration::from_secs(5)).await;
    assert_memory_returned(&server, start_kib).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_are_capped_in_size_and_time() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = common::data_dir();
    let server = HopProcess::start_with_file_limit(
        dir.path(),
        &[
            ("HOP_HEADER_READ_TIMEOUT_MS", "3000"),
            ("HOP_MAX_CONNECTIONS_PER_CLIENT", "0"),
        ],
        1024,
    );
    let to = address(&server);

    // Over max_header_bytes (16 KiB): 431, and the connection is closed.
    let mut big = TcpStream::connect(to).await.unwrap();
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let _ = big.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = big.read_to_end(&mut answer).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // 300 connections each send 15 KiB of headers and stop: before the cap each could
    // buffer about 500 KB for 30 s.
    let start_kib = baseline_rss(&server, to).await;
    let padding = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: {}\r\n",
        "b".repeat(15_000)
    );
    let mut slow = Vec::new();
    for n in 0..300 {
        let mut stream = connect_from(&format!("127.0.1.{}", n % 200 + 1), to)
            .await
            .unwrap();
        stream.write_all(padding.as_bytes()).await.unwrap();
        slow.push(stream);
    }
    let started = Instant::now();
    others_are_served(to, 200).await;
    let during_kib = rss_kib(&server);
    // Each connection holds at most its 16 KiB buffer and bookkeeping.
    assert!(
        during_kib < start_kib + 300 * 40,
        "{during_kib} KiB with 300 slow headers, {start_kib} KiB before"
    );
    // Cut off at header_read_timeout_ms (3 s), well before the old 30 s.
    for stream in &mut slow {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(8), stream.read_to_end(&mut rest));
        assert!(read.await.is_ok(), "slow headers were held past 8 s");
    }
    assert!(started.elapsed() < Duration::from_secs(8));
    drop(slow);
    connections_drop_to(to, 0, Duration::from_secs(5)).await;
    assert_memory_returned(&server, start_kib).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_neither_stops_accepting_nor_floods_the_log() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = common::data_dir();
    // A max_connections above the descriptor limit lets accept() itself fail.
    let server = HopProcess::start_with_file_limit(
        dir.path(),
        &[
            ("HOP_MAX_CONNECTIONS", "1000"),
            ("HOP_MAX_CONNECTIONS_PER_CLIENT", "0"),
        ],
        256,
    );
    let to = address(&server);
    let mut held = Vec::new();
    for _ in 0..400 {
        if let Ok(stream) = connect_from("127.0.0.2", to).await {
            held.push(stream);
        }
    }
    // Accept fails with EMFILE for a while (the kernel still queues connections).
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(held);
    // Once descriptors are free again, new clients are served at once.
    let (status, elapsed) =
        tokio::time::timeout(Duration::from_secs(5), timed_request(to, "/healthz"))
            .await
            .expect("hop accepts again after running out of descriptors");
    assert_eq!(status, 200);
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    server.signal("TERM");
    let (_, logs, _) = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap();
    let failures = logs
        .iter()
        .filter(|line| line.contains("accept failed"))
        .count();
    assert!(
        (1..=2).contains(&failures),
        "{failures} accept-failure lines for a second of failures"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_does_not_hold_up_shutdown() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = common::data_dir();
    let server = HopProcess::start(
        dir.path(),
        &[
            ("HOP_REQUEST_TIMEOUT_MS", "1500"),
            ("HOP_HEADER_READ_TIMEOUT_MS", "1500"),
        ],
    );
    let to = address(&server);
    let mut stalled = TcpStream::connect(to).await.unwrap();
    stalled.write_all(STALLED_FORM).await.unwrap();
    let mut half_headers = TcpStream::connect(to).await.unwrap();
    half_headers
        .write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let signalled = Instant::now();
    server.signal("TERM");
    let mut answer = Vec::new();
    stalled.read_to_end(&mut answer).await.unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let (ok, _, _) = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap();
    assert!(ok);
    let took = signalled.elapsed();
    assert!(
        took < Duration::from_millis(1500 + 1000),
        "shutdown took {took:?} with stalled clients (both timeouts 1500 ms)"
    );
}
