use marketgate::Denied;

struct AppError;

impl From<Denied> for AppError {
    fn from(_: Denied) -> Self {
        AppError
    }
}

#[marketgate::metered(api_calls, gb_scanned)]
fn handle() -> Result<(), AppError> {
    Ok(())
}

fn main() {
    let _ = handle();
}
