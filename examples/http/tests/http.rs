//! The real binary, under its free and paid codes, against the simulator:
//! HTTP over loopback, SIGTERM to stop it, and the usage the simulator
//! accepted afterwards.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use marketgate_simulator::{Config, Simulator};
use serde_json::Value;

/// Bound on every wait: start-up, one HTTP exchange, the exit after SIGTERM.
const LIMIT: Duration = Duration::from_secs(30);

/// The service, running.
struct Service {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
    state_dir: PathBuf,
}

impl Service {
    /// Starts the binary as task `task` under product `code` and waits for
    /// its `listening on` line.
    fn start(sim: &Simulator, task: &str, code: &str) -> Service {
        Service::start_with(sim, task, code, &[])
    }

    /// [`Service::start`] with more environment variables.
    fn start_with(sim: &Simulator, task: &str, code: &str, env: &[(&str, &str)]) -> Service {
        let state_dir =
            std::env::temp_dir().join(format!("marketgate-http-{task}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&state_dir);
        let mut command = sim.command(env!("CARGO_BIN_EXE_marketgate-example-http"), task);
        command.envs(env.iter().copied());
        let mut child = command
            .env("MARKETGATE_PRODUCT_CODE", code)
            .env("MARKETGATE_STATE_DIR", &state_dir)
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the service");
        // Collect stderr for failure messages; keep draining stdout so the
        // program never blocks on a full pipe.
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        // Returns at the first line, or at EOF if the program exits first.
        stdout.read_line(&mut line).expect("read stdout");
        let mut service = Service {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            stderr,
            state_dir,
        };
        let Some(url) = line.trim().strip_prefix("listening on http://") else {
            let _ = service.child.kill();
            let _ = service.child.wait();
            panic!(
                "the service did not start: first line {line:?}, stderr:\n{}",
                service.stderr()
            );
        };
        service.addr = url.parse().expect("a socket address");
        assert!(service.addr.ip().is_loopback(), "{line}");
        assert_ne!(service.addr.port(), 0, "the bound port, not the asked one");
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        service
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// One HTTP/1.1 request on its own connection; the status, the header
    /// block (lower case) and the body.
    fn exchange(&self, method: &str, target: &str) -> (u16, String, String) {
        let mut stream = TcpStream::connect_timeout(&self.addr, LIMIT).expect("connect");
        stream.set_read_timeout(Some(LIMIT)).expect("timeout");
        stream.set_write_timeout(Some(LIMIT)).expect("timeout");
        write!(
            stream,
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .expect("send");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("read the response");
        let text = String::from_utf8(raw).expect("UTF-8 response");
        let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        let head = head.to_ascii_lowercase();
        assert!(
            !head.contains("transfer-encoding"),
            "expected a sized body: {head}"
        );
        (status, head, body.to_owned())
    }

    /// One HTTP/1.1 request on its own connection; the status and the JSON
    /// body.
    fn request(&self, method: &str, target: &str) -> (u16, Value) {
        let (status, head, body) = self.exchange(method, target);
        assert!(
            head.contains("content-type: application/json"),
            "{method} {target}: {head}"
        );
        let body = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{method} {target}: {e}: {body:?}"));
        (status, body)
    }

    fn get(&self, target: &str) -> (u16, Value) {
        self.request("GET", target)
    }

    /// `GET /metrics`: every sample, `name{labels}` to value.
    fn metrics(&self) -> BTreeMap<String, f64> {
        let (status, head, body) = self.exchange("GET", "/metrics");
        assert_eq!(status, 200, "{body}");
        assert!(head.contains("content-type: text/plain"), "{head}");
        body.lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').expect("`series value`");
                (series.to_owned(), value.parse().expect("a number"))
            })
            .collect()
    }

    /// Sends SIGTERM and returns the exit code, failing past [`LIMIT`].
    fn terminate(mut self) -> Option<i32> {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        let start = Instant::now();
        let code = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status.code();
            }
            if start.elapsed() > LIMIT {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "the service did not exit within {LIMIT:?} of SIGTERM; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = std::fs::remove_dir_all(&self.state_dir);
        code
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // A failed assertion must not leave the process behind.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Units per (product code, dimension) the simulator accepted from `task`.
fn usage_of(sim: &Simulator, task: &str) -> Vec<(String, String, u64)> {
    let mut totals: Vec<(String, String, u64)> = Vec::new();
    for record in sim.usage().iter().filter(|r| r.access_key_id == task) {
        let units = record.quantity.as_whole().expect("whole units");
        match totals
            .iter_mut()
            .find(|(p, d, _)| *p == record.product_code && *d == record.dimension)
        {
            Some(total) => total.2 += units,
            None => totals.push((record.product_code.clone(), record.dimension.clone(), units)),
        }
    }
    totals.sort();
    totals
}

#[tokio::test(flavor = "multi_thread")]
async fn free_code_serves_free_routes_and_denies_paid_and_metered_ones() {
    const TASK: &str = "AKIDHTTPFREE";
    let sim = Simulator::start(Config::example())
        .await
        .expect("simulator");
    let service =
        tokio::task::block_in_place(|| Service::start(&sim, TASK, "mgsim-community-free"));
    tokio::task::block_in_place(|| {
        let (status, body) = service.get("/search?q=rust");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["query"], "rust");
        assert_eq!(body["results"][0], "result for rust");

        let (status, body) = service.request("POST", "/export?report=q3");
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["feature"], "export", "{body}");
        assert_eq!(body["reason"], "free_tier", "{body}");
        assert_eq!(body["product"], "community", "{body}");
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("is free and `export` is a paid feature")),
            "{body}"
        );

        let (status, body) = service.get("/items/7");
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["dimension"], "api_calls", "{body}");
        assert_eq!(body["reason"], "not_in_product", "{body}");
        assert!(body.get("feature").is_none(), "{body}");

        let (status, body) = service.get("/scan?bytes=1");
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["dimension"], "gb_scanned", "{body}");

        let (status, health) = service.get("/healthz");
        assert_eq!(status, 200, "{health}");
        assert_eq!(health["state"], "running", "{health}");
        assert_eq!(health["product"]["code"], "mgsim-community-free");
        assert_eq!(health["product"]["tier"], "free");
        assert_eq!(health["features"], serde_json::json!(["search"]));
        assert_eq!(health["dimensions"], serde_json::json!([]));
        assert!(health["metering"].is_null(), "{health}");

        assert_eq!(service.terminate(), Some(0));
    });
    assert_eq!(usage_of(&sim, TASK), []);
    let meter_calls: Vec<_> = sim
        .calls()
        .into_iter()
        .filter(|c| c.access_key_id.as_deref() == Some(TASK) && c.operation == "MeterUsage")
        .collect();
    assert!(meter_calls.is_empty(), "{meter_calls:#?}");
    assert!(
        sim.calls()
            .iter()
            .any(|c| c.access_key_id.as_deref() == Some(TASK) && c.operation == "RegisterUsage"),
        "the free hourly listing is verified with RegisterUsage"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn paid_code_serves_everything_and_reports_each_billed_call_after_sigterm() {
    const TASK: &str = "AKIDHTTPPAID";
    const CALLS: u64 = 5;
    let sim = Simulator::start(Config::example())
        .await
        .expect("simulator");
    let service = tokio::task::block_in_place(|| Service::start(&sim, TASK, "mgsim-usage-custom"));
    tokio::task::block_in_place(|| {
        let (status, health) = service.get("/healthz");
        assert_eq!(status, 200, "{health}");
        assert_eq!(health["state"], "running", "{health}");
        assert_eq!(health["product"]["code"], "mgsim-usage-custom");
        assert_eq!(
            health["features"],
            serde_json::json!(["export", "search"]),
            "{health}"
        );
        assert_eq!(
            health["dimensions"],
            serde_json::json!(["api_calls", "gb_scanned"])
        );

        let (status, body) = service.request("POST", "/export?report=q3");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["file"], "q3.csv");

        let (status, body) = service.get("/search?q=rust");
        assert_eq!(status, 200, "{body}");

        for id in 1..=CALLS {
            let (status, body) = service.get(&format!("/items/{id}"));
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["id"], id);
        }
        // An error answer is not billed.
        let (status, body) = service.get("/items/0");
        assert_eq!(status, 404, "{body}");

        let (status, health) = service.get("/healthz");
        assert_eq!(status, 200, "{health}");
        assert_eq!(health["recorded"]["api_calls"], CALLS, "{health}");
        assert_eq!(health["recorded"]["gb_scanned"], 0, "{health}");

        assert_eq!(service.terminate(), Some(0), "main returned on SIGTERM");
    });
    // The start-up dry runs record nothing; the exit reported the calls.
    assert_eq!(
        usage_of(&sim, TASK),
        [(
            "mgsim-usage-custom".to_owned(),
            "api_calls".to_owned(),
            CALLS
        )]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn paid_code_bills_scans_per_started_gib() {
    const TASK: &str = "AKIDHTTPSCAN";
    let sim = Simulator::start(Config::example())
        .await
        .expect("simulator");
    let service = tokio::task::block_in_place(|| Service::start(&sim, TASK, "mgsim-usage-custom"));
    tokio::task::block_in_place(|| {
        let (status, body) = service.get(&format!("/scan?bytes={}", (3u64 << 30) + 1));
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["gb_scanned"], 4);
        let (status, body) = service.get("/scan?bytes=1");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["gb_scanned"], 1);
        // A malformed query is refused by the extractor, before the
        // metered handler runs.
        let mut stream = TcpStream::connect(service.addr).expect("connect");
        stream.set_read_timeout(Some(LIMIT)).expect("timeout");
        write!(
            stream,
            "GET /scan?bytes=lots HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read");
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

        assert_eq!(service.terminate(), Some(0));
    });
    assert_eq!(
        usage_of(&sim, TASK),
        [("mgsim-usage-custom".to_owned(), "gb_scanned".to_owned(), 5)]
    );
}

/// Polls `done` every 20 ms until it holds, failing past [`LIMIT`] with
/// `what` and the service's stderr.
fn eventually(service: &Service, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < LIMIT,
            "timed out waiting for {what}; stderr:\n{}",
            service.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread")]
// The values compared are whole numbers, rendered and parsed exactly.
#[allow(clippy::float_cmp)]
async fn metrics_show_the_units_the_simulator_billed_after_a_simulated_hour() {
    const TASK: &str = "AKIDHTTPMETRICS";
    const CALLS: u64 = 4;
    const REPORTED: &str = "marketgate_metering_reported_units_total{dimension=\"api_calls\"}";
    // Five minutes into 2026-11-26T10:00:00Z, frozen: only the test moves time, and the
    // service follows the simulator's clock.
    let mut config = Config::example();
    config.clock.start = Some(UNIX_EPOCH + Duration::from_hours(498_802) + Duration::from_mins(5));
    config.clock.frozen = true;
    let sim = Simulator::start(config).await.expect("simulator");
    let service = tokio::task::block_in_place(|| {
        Service::start_with(
            &sim,
            TASK,
            "mgsim-usage-custom",
            &[
                ("MARKETGATE_DEV_CLOCK", "simulator"),
                ("MARKETGATE_CHECKPOINT_INTERVAL_MS", "50"),
            ],
        )
    });
    tokio::task::block_in_place(|| {
        for id in 1..=CALLS {
            let (status, body) = service.get(&format!("/items/{id}"));
            assert_eq!(status, 200, "{body}");
        }
        // The recorder is installed in `main`'s body, after start-up: the
        // runtime's next publication fills it in.
        eventually(&service, "the runtime's state published", || {
            service
                .metrics()
                .get("marketgate_runtime_state{state=\"running\"}")
                == Some(&1.0)
        });
        let metrics = service.metrics();
        assert!(
            metrics.contains_key("marketgate_startup_verification_duration_seconds"),
            "published although measured before the recorder existed: {metrics:#?}"
        );
        assert_eq!(metrics.get(REPORTED), None, "nothing reported yet");
        // The open hour's units are checkpointed before the hour ends.
        eventually(&service, "the calls checkpointed", || {
            service
                .metrics()
                .get("marketgate_metering_recorded_units_total{dimension=\"api_calls\"}")
                == Some(&4.0)
        });
        sim.clock().advance(Duration::from_hours(1));
        eventually(&service, "the hour billed", || {
            usage_of(&sim, TASK)
                .iter()
                .any(|(_, d, _)| d == "api_calls")
        });
        let billed = usage_of(&sim, TASK);
        assert_eq!(
            billed,
            [(
                "mgsim-usage-custom".to_owned(),
                "api_calls".to_owned(),
                CALLS
            )]
        );
        let mut metrics = service.metrics();
        eventually(&service, "the report published", || {
            metrics = service.metrics();
            metrics.contains_key(REPORTED)
        });
        #[allow(clippy::cast_precision_loss)] // a handful of units
        let billed = billed[0].2 as f64;
        assert_eq!(metrics[REPORTED], billed, "{metrics:#?}");
        assert_eq!(
            metrics["marketgate_metering_oldest_unreported_age_seconds"], 0.0,
            "{metrics:#?}"
        );
        assert!(
            metrics["marketgate_aws_calls_total{operation=\"MeterUsage\",outcome=\"ok\"}"] >= 3.0,
            "the dry runs and the record: {metrics:#?}"
        );
        assert!(
            metrics.contains_key(
                "marketgate_aws_call_duration_seconds_bucket{operation=\"MeterUsage\",outcome=\"ok\",le=\"+Inf\"}"
            ),
            "latency as a Prometheus histogram: {metrics:#?}"
        );
        assert_eq!(metrics["marketgate_journal_writable"], 1.0);
        assert_eq!(service.terminate(), Some(0));
    });
}
