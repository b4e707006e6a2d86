use marketgate::Denied;

struct AppError;

impl From<Denied> for AppError {
    fn from(_: Denied) -> Self {
        AppError
    }
}

#[marketgate::entitled("export")]
fn export(report: &str) -> Result<String, AppError> {
    let _title = report.;
    Ok(report.to_owned())
}

#[marketgate::main]
fn main() {
    let _ = export("q3");
    let _unfinished = ;
}
