//! NumPy `.npy` output (format 1.0, through the `ndarray-npy` crate), for
//! float32 2-D fields in C order. Bytes out, no file system.

use ndarray::Array2;
use ndarray_npy::WriteNpyExt;

/// Encodes a 2-D f32 array (any unit; NaN stays NaN) as `.npy` bytes:
/// little-endian `<f4`, C order, shape `(rows, cols)`, header padded so the
/// data starts on a 64-byte boundary.
pub fn encode_f32(a: &Array2<f32>) -> Vec<u8> {
    let (rows, cols) = a.dim();
    let mut out = Vec::with_capacity(128 + rows * cols * 4);
    // ndarray-npy writes a Fortran-order array as such: keep the output C
    // order whatever the memory layout (no copy when it already is).
    let a = a.as_standard_layout();
    // Writing into a `Vec` cannot fail, and the header of an `f32` array of
    // any shape can always be formatted: the only errors `write_npy` has.
    #[allow(clippy::expect_used)]
    a.write_npy(&mut out)
        .expect("an f32 array always encodes as .npy into memory");
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned_and_data_follows() {
        let a = Array2::from_shape_vec((2, 3), vec![0.0, 1.0, 2.0, 3.0, f32::NAN, 5.0]).unwrap();
        let b = encode_f32(&a);
        let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        let header = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
        assert!(header.contains("'shape': (2, 3)"));
        assert_eq!(b.len(), 10 + hlen + 24);
        let v4 = f32::from_le_bytes(b[10 + hlen + 16..10 + hlen + 20].try_into().unwrap());
        assert!(v4.is_nan());
    }

    #[test]
    fn round_trips_through_ndarray_npy() {
        use ndarray_npy::ReadNpyExt;
        let a = Array2::from_shape_fn((5, 7), |(r, c)| r as f32 * 10.0 + c as f32);
        let b = encode_f32(&a);
        assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
        let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
        let header = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
        assert!(header.contains("'descr': '<f4'"), "{header}");
        assert!(header.contains("'fortran_order': False"), "{header}");
        let back = Array2::<f32>::read_npy(&b[..]).unwrap();
        assert_eq!(back, a);
        // A transposed (Fortran-order) array is still written in C order.
        let t = a.t().to_owned();
        let bt = encode_f32(&t);
        let hlen = u16::from_le_bytes([bt[8], bt[9]]) as usize;
        let header = std::str::from_utf8(&bt[10..10 + hlen]).unwrap();
        assert!(header.contains("'fortran_order': False"), "{header}");
        assert!(header.contains("'shape': (7, 5)"), "{header}");
        assert_eq!(Array2::<f32>::read_npy(&bt[..]).unwrap(), t);
    }
}
