use marketgate::Denied;

struct AppError;

impl From<Denied> for AppError {
    fn from(_: Denied) -> Self {
        AppError
    }
}

#[marketgate::metered(api_calls, quantity = -1)]
fn refund() -> Result<(), AppError> {
    Ok(())
}

#[marketgate::metered(gb_scanned, quantity = 1.5)]
fn scan_fraction() -> Result<(), AppError> {
    Ok(())
}

#[marketgate::metered(gb_scanned, quantity = delta)]
fn scan_delta(delta: i64) -> Result<(), AppError> {
    let _ = delta;
    Ok(())
}

fn main() {
    let _ = (refund(), scan_fraction(), scan_delta(1));
}
