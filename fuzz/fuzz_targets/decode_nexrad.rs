//! Arbitrary bytes through the NEXRAD Level II wrapper (forced, no
//! detection), the way a service calls it: one gridder kept across inputs
//! (its bounded mapping cache), and a file name whose ICAO places legacy
//! volumes that carry no location. Any input must give a scan or a typed
//! error, never a panic, a hang or an unbounded allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use raincast_algorithms::decode::nexrad::{self, NexradOptions};
use raincast_algorithms::polar::PolarGridder;
use std::cell::RefCell;

const NAME: &str = "KLOT20030101_000000";

thread_local! {
    static GRIDDER: RefCell<PolarGridder> = RefCell::new(PolarGridder::default());
}

fuzz_target!(|data: &[u8]| {
    let _ = nexrad::looks_like(data, Some(NAME));
    let result = GRIDDER.with(|g| {
        nexrad::decode_with(data, Some(NAME), &NexradOptions::default(), &mut g.borrow_mut())
    });
    if let Ok(scan) = result {
        assert_eq!(scan.values.dim(), scan.grid.shape());
    }
});
