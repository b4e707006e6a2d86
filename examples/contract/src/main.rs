//! Runs only with a license; checks the seat back in when main returns.

use marketgate_example_contract::{dashboard, sso_login};

#[marketgate::main]
#[tokio::main(flavor = "current_thread")]
async fn main() {
    match dashboard() {
        Ok(page) => println!("dashboard: {page}"),
        Err(denied) => println!("dashboard: DENIED ({denied})"),
    }
    match sso_login("ana") {
        Ok(session) => println!("sso_login: {session}"),
        Err(denied) => println!("sso_login: DENIED ({denied})"),
    }
    let status = marketgate::status();
    if let Some(license) = status.license {
        println!(
            "license: {} until {}",
            license.license_arn, license.expiration
        );
    }
}
