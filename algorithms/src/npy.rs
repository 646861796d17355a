//! Minimal writer for NumPy `.npy` files (format version 1.0), enough for
//! float32 2-D arrays in C order.

use ndarray::Array2;

/// Encodes a 2-D f32 array as `.npy` bytes: little-endian `<f4`, C order.
pub fn encode_f32(a: &Array2<f32>) -> Vec<u8> {
    let (rows, cols) = a.dim();
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // magic (6) + version (2) + header length (2) + header + '\n' is a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    header.push_str(&" ".repeat(pad));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + rows * cols * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in a.iter() {
        out.extend_from_slice(&v.to_le_bytes());
    }
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
}
