use marketgate::Denied;

struct AppError;

impl From<Denied> for AppError {
    fn from(_: Denied) -> Self {
        AppError
    }
}

#[marketgate::entitled("export")]
fn export() -> Result<(), AppError> {
    Ok(())
}

fn main() {
    let _ = export();
}
