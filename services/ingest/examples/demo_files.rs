//! Writes the demo radar's synthetic ODIM_H5 volumes for benchmarks:
//!
//!     cargo run -p raincast-ingest --example demo_files -- DIR N [SIDE]
//!
//! N volumes, 5 minutes apart and ending now, SIDE × SIDE cells (default
//! 64), under DIR/demo/{yyyy}/{mm}/{dd}/ (the default key layout).

use raincast_ingest::demo::{DemoOptions, DemoRadar};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: demo_files DIR N [SIDE]";
    let dir = args.next().ok_or(usage)?;
    let n: i64 = args.next().ok_or(usage)?.parse()?;
    let side: usize = args.next().map_or(Ok(64), |s| s.parse())?;
    let radar = DemoRadar::new(DemoOptions {
        side,
        step_s: 300,
        backfill: chrono::Duration::minutes(5 * (n.max(1) - 1)),
        ..DemoOptions::new(dir)
    })?;
    let written = radar.backfill(chrono::Utc::now())?;
    println!("{written}");
    Ok(())
}
