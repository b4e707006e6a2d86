//! Benchmarks live in `benches/`; run `cargo bench -p marketgate-benches`
//! and then `python3 benches/ratios.py` for the ratios the README's "Cost" section states.
