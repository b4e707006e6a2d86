//! Shows the three contract models: reads what the buyer bought, runs three
//! jobs on a pool of two, scans some data, and prints what it used.

use std::time::Duration;

use marketgate_example_units::{JobError, provisioned_users, reports, run_job, scan};

#[marketgate::main]
#[tokio::main]
async fn main() {
    match provisioned_users() {
        Ok(users) => println!("users: provisioning {users} accounts"),
        Err(denied) => println!("users: DENIED ({denied})"),
    }
    match reports() {
        Ok(page) => println!("reports: {page}"),
        Err(denied) => println!("reports: DENIED ({denied})"),
    }
    let jobs = ["a", "b", "c"].map(|name| run_job(name, Duration::from_millis(300)));
    for result in futures_join(jobs).await {
        match result {
            Ok(done) => println!("{done}"),
            Err(JobError::TryLater) => println!("job: every unit in use, try later"),
            Err(JobError::Denied(denied)) => println!("job: DENIED ({denied})"),
        }
    }
    for gigabytes in [120, 80] {
        match scan(gigabytes) {
            Ok(gb) => println!("scanned {gb} GB"),
            Err(denied) => println!("scan: DENIED ({denied})"),
        }
    }
    if let Ok(scans) = marketgate::entitlement!("Scans") {
        println!(
            "scans: {} GB bought, {} GB drawn, {} GB to draw",
            scans.max_count.unwrap_or(0),
            scans.drawn,
            scans.pending
        );
    }
}

/// Runs the jobs concurrently (the third finds the pool of two in use).
async fn futures_join<F: Future<Output = T> + Send + 'static, T: Send + 'static>(
    jobs: [F; 3],
) -> Vec<T> {
    let handles: Vec<_> = jobs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.expect("job task"));
    }
    out
}
