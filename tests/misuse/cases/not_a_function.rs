use marketgate::Denied;

struct AppError;

impl From<Denied> for AppError {
    fn from(_: Denied) -> Self {
        AppError
    }
}

#[marketgate::entitled("export")]
struct Export;

fn main() {
    let _ = AppError;
}
