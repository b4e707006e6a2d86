use marketgate::Denied;

struct AppError;

impl From<Denied> for AppError {
    fn from(_: Denied) -> Self {
        AppError
    }
}

#[marketgate::metered(gb_scanned, quantity = bytes / 1024)]
fn scan(bytes: i64) -> Result<(), AppError> {
    let _ = bytes;
    Ok(())
}

fn main() {
    let _ = scan(4096);
}
