//! A load generator for the crash tests: several threads call a metered
//! function until SIGTERM; the main thread prints the exact count of
//! successful calls every few milliseconds (`R <count>`), and on SIGTERM
//! stops the threads, prints the final count (`F <count>`) and the status
//! (`S <json>`), and returns from main so marketgate flushes.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use marketgate_tests::AppError;

#[marketgate::metered(api_calls)]
fn unit() -> Result<(), AppError> {
    Ok(())
}

#[marketgate::main]
fn main() {
    let stop = Arc::new(AtomicBool::new(false));
    let recorded = Arc::new(AtomicU64::new(0));
    // `ready` is printed only once SIGTERM is caught here too: a signal that
    // came earlier would reach only the runtime, and main would never stop.
    let (registered, wait_registered) = std::sync::mpsc::channel();
    {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .expect("signal");
                let _ = registered.send(());
                term.recv().await;
                // A buyer's program that goes on after SIGTERM until killed.
                if std::env::args().any(|a| a == "--ignore-sigterm") {
                    std::future::pending::<()>().await;
                }
            });
            stop.store(true, Ordering::SeqCst);
        });
    }
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, recorded) = (Arc::clone(&stop), Arc::clone(&recorded));
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if unit().is_ok() {
                        recorded.fetch_add(1, Ordering::SeqCst);
                    }
                    std::thread::sleep(Duration::from_micros(500));
                }
            })
        })
        .collect();
    let _ = wait_registered.recv();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ready");
    while !stop.load(Ordering::SeqCst) {
        let _ = writeln!(out, "R {}", recorded.load(Ordering::SeqCst));
        let _ = out.flush();
        std::thread::sleep(Duration::from_millis(5));
    }
    for worker in workers {
        let _ = worker.join();
    }
    let _ = writeln!(out, "F {}", recorded.load(Ordering::SeqCst));
    let status = serde_json::to_string(&marketgate::status()).unwrap_or_default();
    let _ = writeln!(out, "S {status}");
    let _ = out.flush();
}
