//! Arbitrary bytes through the MchGif decoder (forced, no detection; a valid
//! AQC file name so that the time stamp does not stop every input): any
//! input must give a scan or a typed error, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use raincast_algorithms::{decode, Format};

fuzz_target!(|data: &[u8]| {
    if let Ok(scan) = decode::decode(
        data,
        Some("AQC161932100V_00005.801.gif"),
        Some(Format::MchGif),
    ) {
        assert_eq!(scan.values.dim(), scan.grid.shape());
    }
});
