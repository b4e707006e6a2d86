//! Runs only once the MeterUsage dry run accepted every dimension (or,
//! under the free code, RegisterUsage verified).

#[marketgate::main]
fn main() {
    for line in marketgate_example_custom::workload() {
        println!("{line}");
    }
}
