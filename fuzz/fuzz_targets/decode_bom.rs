//! Arbitrary bytes through the Bom decoder (forced, no detection): any
//! input must give a scan or a typed error, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use raincast_algorithms::{decode, Format};

fuzz_target!(|data: &[u8]| {
    if let Ok(scan) = decode::decode(data, None, Some(Format::Bom)) {
        assert_eq!(scan.values.dim(), scan.grid.shape());
    }
});
