use marketgate::Denied;

struct AppError;

impl From<Denied> for AppError {
    fn from(_: Denied) -> Self {
        AppError
    }
}

#[marketgate::entitled("export", on_denied = 0)]
#[must_use]
fn export() -> u32 {
    1
}

#[deny(unused_must_use)]
fn main() {
    export();
    let _ = AppError;
}
