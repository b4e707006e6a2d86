//! Counted units from a process of its own, for `tests/tests/units.rs`.
//!
//! - `hold <n>`: takes `n` floating `Jobs` units one at a time, printing
//!   `held` or `denied <reason>` for each, then `ready`; holds what it got
//!   until a line `release` (or the end of stdin), then drops the guards,
//!   prints `released` and returns from main.
//! - `scan <threads>`: draws 1 GB of `Scans` at a time from `threads`
//!   threads until stdin ends, printing `counted <ms> <total>` after each
//!   (milliseconds since start, units counted so far: at most one per thread
//!   behind what `draw!` has counted), and `denied <reason>` once a draw is
//!   denied.

use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use marketgate::DenialReason;
use marketgate_tests::{AppError, scan, start_job};

fn wait_for_release() {
    for line in std::io::stdin().lock().lines() {
        match line {
            Ok(line) if line.trim() == "release" => return,
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

async fn hold(n: usize) {
    let mut held = Vec::new();
    for _ in 0..n {
        match start_job().await {
            Ok(job) => {
                println!("held");
                held.push(job);
            }
            Err(denied) => println!("denied {:?}", denied.reason()),
        }
    }
    println!("ready");
    tokio::task::spawn_blocking(wait_for_release)
        .await
        .expect("stdin");
    drop(held);
    println!("released");
}

fn scans(threads: usize) {
    let total = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (total, stop) = (total.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    match scan(1) {
                        Ok(_) => {
                            let n = total.fetch_add(1, Ordering::AcqRel) + 1;
                            println!("counted {} {n}", started.elapsed().as_millis());
                        }
                        // A restart waits for the journal's unanswered
                        // batches to be answered before it draws again.
                        Err(AppError::Denied(denied))
                            if matches!(denied.reason(), DenialReason::Unavailable { .. }) =>
                        {
                            std::thread::sleep(Duration::from_millis(5));
                            continue;
                        }
                        Err(AppError::Denied(denied)) => {
                            println!("denied {:?}", denied.reason());
                            stop.store(true, Ordering::Release);
                        }
                        Err(other) => panic!("{other:?}"),
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        })
        .collect();
    println!("ready");
    std::thread::spawn(move || {
        wait_for_release();
        stop.store(true, Ordering::Release);
    });
    for w in workers {
        w.join().expect("worker");
    }
    println!("final {}", total.load(Ordering::Acquire));
}

#[marketgate::main]
#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let count = |i: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(1);
    match args.first().map(String::as_str) {
        Some("hold") => hold(count(1)).await,
        Some("scan") => {
            let threads = count(1);
            tokio::task::spawn_blocking(move || scans(threads))
                .await
                .expect("scans");
        }
        _ => eprintln!("usage: units_worker hold <n> | scan <threads>"),
    }
}
