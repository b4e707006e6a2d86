use marketgate::Denied;

struct AppError;

impl From<Denied> for AppError {
    fn from(_: Denied) -> Self {
        AppError
    }
}

#[derive(Debug)]
struct OtherError;

#[marketgate::entitled("export")]
fn export() -> Result<u32, OtherError> {
    Ok(1)
}

fn main() {
    let _ = export();
    let _ = AppError;
}
