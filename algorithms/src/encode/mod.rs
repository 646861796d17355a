//! Encoders that write fields in real radar formats (used by the synthetic
//! demo radar and by tests that need files of each format). Bytes out, no I/O.

pub mod fmi_pgm;
pub mod mch_gif;
pub mod odim;
