//! The cost of `#[entitled]` and `#[metered]` against the same function
//! unannotated and against the hand-written alternatives (`RwLock<HashSet>`, `ArcSwap`,
//! `metrics::counter!`, `Mutex<HashMap>`), in
//! one run. Read the results as ratios (`benches/ratios.py`), never as
//! absolute times: these machines are shared and noisy.

// Every variant keeps the annotated functions' signature, so that only the
// gate differs.
#![allow(clippy::unnecessary_wraps)]

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use criterion::{Criterion, criterion_group, criterion_main};
use marketgate::{Denied, entitled, metered};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};

#[derive(Debug)]
struct Refused;

impl From<Denied> for Refused {
    fn from(_: Denied) -> Self {
        Refused
    }
}

/// The work every variant does: small, so overhead dominates.
#[inline]
fn work(x: u64) -> u64 {
    x.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17)
}

#[inline(never)]
fn plain(x: u64) -> Result<u64, Refused> {
    Ok(work(x))
}

#[inline(never)]
#[entitled("export")]
fn annotated_entitled(x: u64) -> Result<u64, Refused> {
    Ok(work(x))
}

#[inline(never)]
fn rwlock_entitled(features: &RwLock<HashSet<String>>, x: u64) -> Result<u64, Refused> {
    let granted = features.read().is_ok_and(|set| set.contains("export"));
    if !granted {
        return Err(Refused);
    }
    Ok(work(x))
}

#[inline(never)]
fn arcswap_entitled(features: &ArcSwap<HashSet<String>>, x: u64) -> Result<u64, Refused> {
    if !features.load().contains("export") {
        return Err(Refused);
    }
    Ok(work(x))
}

#[inline(never)]
#[metered(api_calls)]
fn annotated_metered(x: u64) -> Result<u64, Refused> {
    Ok(work(x))
}

#[inline(never)]
fn metrics_metered(x: u64) -> Result<u64, Refused> {
    let out = work(x);
    metrics::counter!("api_calls").increment(1);
    Ok(out)
}

#[inline(never)]
fn mutex_metered(counts: &Mutex<HashMap<String, u64>>, x: u64) -> Result<u64, Refused> {
    let out = work(x);
    if let Ok(mut map) = counts.lock() {
        *map.entry("api_calls".to_owned()).or_default() += 1;
    }
    Ok(out)
}

/// A recorder as a production `metrics` setup has one: a registry of
/// atomic counters, looked up by key on every `counter!`.
struct RegistryRecorder(Registry<Key, AtomicStorage>);

impl Recorder for RegistryRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.0
            .get_or_create_counter(key, |c| Counter::from_arc(Arc::clone(c)))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.0
            .get_or_create_gauge(key, |g| Gauge::from_arc(Arc::clone(g)))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.0
            .get_or_create_histogram(key, |h| Histogram::from_arc(Arc::clone(h)))
    }
}

/// `draw!` of one unit of the drawdown entitlement `Scans`.
#[inline(never)]
fn drawn(x: u64) -> Result<u64, Refused> {
    marketgate::draw!("Scans", 1)?;
    Ok(x.wrapping_mul(3))
}

fn setup() {
    let catalog = marketgate::catalog!();
    marketgate::testing::activate(catalog, "usage").expect("activate the bench product");
    marketgate::testing::open_drawdown("Scans");
    metrics::set_global_recorder(RegistryRecorder(Registry::atomic()))
        .expect("install the metrics recorder");
}

fn entitled_group(c: &mut Criterion) {
    let rw = RwLock::new(HashSet::from(["export".to_owned(), "sso".to_owned()]));
    let swap = ArcSwap::from_pointee(HashSet::from(["export".to_owned(), "sso".to_owned()]));
    let mut g = c.benchmark_group("entitled");
    g.bench_function("plain", |b| b.iter(|| plain(black_box(7))));
    g.bench_function("annotated", |b| b.iter(|| annotated_entitled(black_box(7))));
    g.bench_function("rwlock_hashset", |b| {
        b.iter(|| rwlock_entitled(&rw, black_box(7)));
    });
    g.bench_function("arcswap_hashset", |b| {
        b.iter(|| arcswap_entitled(&swap, black_box(7)));
    });
    g.finish();
}

/// Time per call when `threads` threads each make `iters` calls at once.
fn parallel<F: Fn(u64) + Sync>(threads: usize, iters: u64, f: F) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for i in 0..iters {
                    f(black_box(i));
                }
            });
        }
    });
    start.elapsed()
}

fn metered_group(c: &mut Criterion) {
    let counts = Mutex::new(HashMap::new());
    for threads in [1usize, 2] {
        let mut g = c.benchmark_group(format!("metered_{threads}t"));
        g.bench_function("plain", |b| {
            b.iter_custom(|n| parallel(threads, n, |x| drop(black_box(plain(x)))));
        });
        g.bench_function("annotated", |b| {
            b.iter_custom(|n| parallel(threads, n, |x| drop(black_box(annotated_metered(x)))));
        });
        g.bench_function("metrics_counter", |b| {
            b.iter_custom(|n| parallel(threads, n, |x| drop(black_box(metrics_metered(x)))));
        });
        g.bench_function("mutex_hashmap", |b| {
            b.iter_custom(|n| parallel(threads, n, |x| drop(black_box(mutex_metered(&counts, x)))));
        });
        // `draw!` counts like `#[metered]`: it belongs in the same run.
        g.bench_function("draw", |b| {
            b.iter_custom(|n| parallel(threads, n, |x| drop(black_box(drawn(x)))));
        });
        g.finish();
    }
}

fn all(c: &mut Criterion) {
    setup();
    entitled_group(c);
    metered_group(c);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = all
}
criterion_main!(benches);
