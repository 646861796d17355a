//! A fast GIF LZW encoder for small palettes.
//!
//! The `gif` crate's own encoder is general (any code size, hashing); our
//! frames use a 5-bit palette, so a dense `code × symbol` table makes the
//! dictionary lookup one array read per input byte, several times faster.
//!
//! Format (GIF89a, appendix F): variable-width codes packed LSB first,
//! starting at `min_code_size + 1` bits; a clear code `1 << min_code_size`
//! first, the end-of-information code `clear + 1` last. The code width grows
//! after the dictionary entry `1 << width` is assigned (the decoder, which
//! adds its entries one code later, counts codes read and so agrees); when
//! code 4094 has been assigned a clear code resets the dictionary.

#[inline]
fn put(code: u32, width: u32, out: &mut Vec<u8>, acc: &mut u64, nbits: &mut u32) {
    *acc |= (code as u64) << *nbits;
    *nbits += width;
    while *nbits >= 8 {
        out.push(*acc as u8);
        *acc >>= 8;
        *nbits -= 8;
    }
}

/// Largest code the encoder assigns before emitting a clear code.
const MAX_ASSIGNED: u32 = 4094;
const NO_CHILD: u16 = 0;

/// LZW-compresses palette indices for a GIF image block. Returns the
/// minimum code size byte followed by the packed codes (not yet split into
/// sub-blocks), the layout `gif::Encoder::write_lzw_pre_encoded_frame` takes.
///
/// Every index must be below `1 << min_code_size`; `min_code_size` is
/// clamped to `2..=8`. Indices out of range are masked (never panics).
pub fn encode(indices: &[u8], min_code_size: u8) -> Vec<u8> {
    LzwEncoder::default().encode(indices, min_code_size)
}

/// An LZW encoder that keeps its dictionary table between calls, so that
/// encoding many frames allocates it once.
#[derive(Debug, Default)]
pub struct LzwEncoder {
    /// `child[code * alphabet + symbol]` = code of string(code) + symbol;
    /// 0 = none (0 is never a child: children are ≥ the first free code).
    child: Vec<u16>,
    /// Length of the prefix of `child` that may hold entries.
    dirty: usize,
}

impl LzwEncoder {
    /// See [`encode`].
    pub fn encode(&mut self, indices: &[u8], min_code_size: u8) -> Vec<u8> {
        let m = min_code_size.clamp(2, 8) as u32;
        let alphabet = 1usize << m;
        let mask = (alphabet - 1) as u8;
        let clear = 1u32 << m;
        let eoi = clear + 1;
        let first_free = clear + 2;
        if self.child.len() < 4096 * alphabet {
            self.child = vec![NO_CHILD; 4096 * alphabet];
        } else {
            self.child[..self.dirty].fill(NO_CHILD);
        }
        let child = &mut self.child;

        let mut out = Vec::with_capacity(indices.len() / 8 + 16);
        out.push(m as u8);
        let (mut acc, mut nbits) = (0u64, 0u32);
        let mut width = m + 1;
        let mut next = first_free;
        put(clear, width, &mut out, &mut acc, &mut nbits);
        let mut iter = indices.iter();
        if let Some(&first) = iter.next() {
            let mut prefix = (first & mask) as u32;
            for &b in iter {
                let sym = (b & mask) as usize;
                let slot = prefix as usize * alphabet + sym;
                let c = child[slot];
                if c != NO_CHILD {
                    prefix = c as u32;
                    continue;
                }
                put(prefix, width, &mut out, &mut acc, &mut nbits);
                if next >= (1 << width) && width < 12 {
                    width += 1;
                }
                if next > MAX_ASSIGNED {
                    put(clear, width, &mut out, &mut acc, &mut nbits);
                    child[..next as usize * alphabet].fill(NO_CHILD);
                    width = m + 1;
                    next = first_free;
                } else {
                    child[slot] = next as u16;
                    next += 1;
                }
                prefix = sym as u32;
            }
            put(prefix, width, &mut out, &mut acc, &mut nbits);
            if next >= (1 << width) && width < 12 {
                width += 1;
            }
        }
        put(eoi, width, &mut out, &mut acc, &mut nbits);
        if nbits > 0 {
            out.push(acc as u8);
        }
        self.dirty = next as usize * alphabet;
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::borrow::Cow;

    /// Wraps indices in a one-frame GIF with our encoder and decodes them
    /// with the `gif` crate.
    fn round_trip(indices: &[u8], w: u16, h: u16, m: u8) -> Vec<u8> {
        let colours = 1usize << m.clamp(2, 8);
        let palette: Vec<u8> = (0..colours * 3).map(|i| i as u8).collect();
        let mut enc = gif::Encoder::new(Vec::new(), w, h, &palette).unwrap();
        let frame = gif::Frame {
            width: w,
            height: h,
            buffer: Cow::Owned(encode(indices, m)),
            ..gif::Frame::default()
        };
        enc.write_lzw_pre_encoded_frame(&frame).unwrap();
        let bytes = enc.into_inner().unwrap();
        let mut opts = gif::DecodeOptions::new();
        opts.set_color_output(gif::ColorOutput::Indexed);
        let mut d = opts.read_info(std::io::Cursor::new(bytes)).unwrap();
        let f = d.read_next_frame().unwrap().unwrap();
        f.buffer.to_vec()
    }

    #[test]
    fn long_runs_and_table_resets() {
        // Runs, noise and gradients; 300k symbols overflow the table many times.
        let mut data = vec![0u8; 100_000];
        let mut x = 12345u32;
        for v in data.iter_mut().skip(40_000) {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *v = ((x >> 16) % 23) as u8;
        }
        data.extend((0..100_000u32).map(|i| ((i / 7) % 32) as u8));
        data.extend(std::iter::repeat_n(5u8, 100_000));
        assert_eq!(round_trip(&data, 1000, 300, 5), data);
        // A reused encoder gives the same bytes as a fresh one.
        let mut enc = LzwEncoder::default();
        let a = enc.encode(&data, 5);
        let b = enc.encode(&data[..5000], 5);
        assert_eq!(a, encode(&data, 5));
        assert_eq!(b, encode(&data[..5000], 5));
    }

    #[test]
    fn tiny_inputs() {
        assert_eq!(round_trip(&[3], 1, 1, 2), vec![3]);
        assert_eq!(round_trip(&[0, 1], 2, 1, 2), vec![0, 1]);
        assert_eq!(round_trip(&[255; 9], 3, 3, 8), vec![255; 9]);
    }

    proptest! {
        #[test]
        fn round_trips_through_the_gif_decoder(
            m in 2u8..=8,
            seed in proptest::collection::vec(any::<u8>(), 1..3000),
            run in 1usize..50,
        ) {
            let mask = ((1u16 << m) - 1) as u8;
            let data: Vec<u8> = seed
                .iter()
                .flat_map(|b| std::iter::repeat_n(b & mask, 1 + (*b as usize % run)))
                .collect();
            let w = data.len().min(4000) as u16;
            let data = &data[..w as usize];
            prop_assert_eq!(round_trip(data, w, 1, m), data.to_vec());
        }
    }
}
