//! The product code comes from the deployment (`MARKETGATE_PRODUCT_CODE`).

use marketgate_example_tiers::{export_to_sso_share, search};

#[marketgate::main]
fn main() {
    let product = marketgate::status().product.map_or("?", |p| p.name);
    println!("running as: {product}");
    match search("rust") {
        Ok(n) => println!("search: {n}"),
        Err(denied) => println!("search: DENIED ({denied})"),
    }
    match export_to_sso_share("q3") {
        Ok(done) => println!("export_to_sso_share: {done}"),
        Err(denied) => println!("export_to_sso_share: DENIED ({denied})"),
    }
}
