//! The bitmap font of frame labels, legends and place names: the X11
//! "misc-fixed" 6×10 font, public domain, with every Latin-1 character
//! (U+0020..=U+00FF), so that place names keep their case and accents
//! ("Zürich", not "ZURICH"). The glyph table is generated (see
//! `font_6x10.rs` for its origin); docs/ARCHITECTURE.md records the licence.
//!
//! Each glyph is a cell of 6 × 10 font pixels: row 0 holds the accents of
//! capitals, capitals and digits stand on rows 1–7 ([`CAP_TOP`], [`CAP_H`]),
//! rows 8–9 are descenders. Ordinary glyphs ink at most the 5 left columns,
//! so the cell's sixth column is the gap to the next character. Characters
//! outside Latin-1 are folded (minus sign and dashes to `-`) or drawn as `?`.

#[path = "font_6x10.rs"]
mod font_6x10;

/// Glyph cell width in font pixels.
pub const GLYPH_W: u32 = 6;
/// Glyph cell height in font pixels.
pub const GLYPH_H: u32 = 10;
/// Rows above the capitals (accents of capitals): text drawn at `y` puts the
/// top of its capitals at `y` and this many rows above it.
pub const CAP_TOP: u32 = 1;
/// Height of capitals and digits in font pixels.
pub const CAP_H: u32 = 7;
/// Horizontal advance of an ordinary character in font pixels (5 inked
/// columns + 1 blank); see [`ink_columns`] for the narrow punctuation and the
/// few glyphs that use all six columns.
pub const ADVANCE: u32 = 6;
/// Blank columns between two characters, font pixels.
pub const GAP: u32 = 1;

/// The first character of the table.
const FIRST: u32 = 0x20;

/// Folds a character onto the font's set: Latin-1 as it is, a few common
/// dashes onto `-`, everything else (and the C1 controls) onto `?`.
fn fold(c: char) -> char {
    match c {
        '\u{2212}' | '\u{2013}' | '\u{2014}' => '-',
        c if (' '..='~').contains(&c) || ('\u{a0}'..='\u{ff}').contains(&c) => c,
        _ => '?',
    }
}

/// The 6×10 bitmap of `c`: ten rows, bit 5 of each the leftmost pixel.
pub fn glyph(c: char) -> [u8; 10] {
    font_6x10::LATIN1[(fold(c) as u32 - FIRST) as usize]
}

/// The inked columns of `c` as `(first column, width)`. Digits, letters and
/// the rest use 5 columns (so numbers line up), or 6 for the few glyphs whose
/// ink reaches the sixth column (`Æ`, `æ`, `«`, `»`, `¼`, `½`); the narrow
/// punctuation `. : , ' !` is trimmed to its ink so that labels such as `0.5`
/// stay compact. Characters are drawn `width + GAP` apart.
pub fn ink_columns(c: char) -> (u32, u32) {
    let all = glyph(c).iter().fold(0u8, |a, r| a | r);
    if !matches!(c, '.' | ':' | ',' | '\'' | '!') || all == 0 {
        let width = if all & 1 != 0 { GLYPH_W } else { GLYPH_W - 1 };
        return (0, width);
    }
    // Bit 5 is column 0.
    let first = (all.leading_zeros() - 2).min(GLYPH_W - 1);
    let last = GLYPH_W - 1 - all.trailing_zeros();
    (first, last + 1 - first)
}

/// Width in output pixels of `text` drawn at integer `scale` (no trailing gap).
pub fn text_width(text: &str, scale: u32) -> u32 {
    let n: u32 = text.chars().map(|c| ink_columns(c).1 + GAP).sum();
    n.saturating_sub(GAP) * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_character_has_ink_and_fits() {
        let set = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ:-+/.,()%<>='!_#&";
        let mut seen = std::collections::HashSet::new();
        for c in set.chars() {
            let g = glyph(c);
            assert!(g.iter().any(|r| *r != 0), "{c} has no ink");
            // Column 5 (bit 0) is the gap: the glyph is at most 5 wide.
            assert!(g.iter().all(|r| *r < 64 && r & 1 == 0), "{c} wider than 5");
            // No two characters share a bitmap (legibility).
            assert!(seen.insert(g), "{c} duplicates another glyph");
        }
        assert_eq!(glyph(' '), [0; 10]);
    }

    #[test]
    fn folding_and_fallback() {
        // Lower case and accents are drawn as such (no folding onto
        // capitals or base letters any more): see `zurich_keeps_its_umlaut`.
        assert_ne!(glyph('a'), glyph('A'));
        assert_ne!(glyph('é'), glyph('E'));
        assert_ne!(glyph('Ö'), glyph('O'));
        assert_eq!(glyph('€'), glyph('?'));
        assert_eq!(glyph('\u{2212}'), glyph('-'));
        assert_eq!(glyph('\u{85}'), glyph('?'), "C1 controls have no glyph");
        assert_eq!(text_width("", 2), 0);
        assert_eq!(text_width("AB", 1), 11);
        assert_eq!(text_width("AB", 3), 33);
        // Narrow punctuation: '.' is inked in columns 1-3 only.
        assert_eq!(ink_columns('.'), (1, 3));
        assert_eq!(ink_columns('A'), (0, 5));
        assert_eq!(text_width("0.5", 1), 5 + 1 + 3 + 1 + 5);
        // The few six-column glyphs keep their sixth column.
        assert_eq!(ink_columns('Æ'), (0, 6));
    }

    #[test]
    fn zurich_keeps_its_umlaut() {
        // Every Latin-1 letter has ink.
        for c in ('A'..='Z').chain('a'..='z').chain('\u{c0}'..='\u{ff}') {
            if c != '\u{d7}' && c != '\u{f7}' {
                assert!(glyph(c).iter().any(|r| *r != 0), "{c} has no ink");
            }
        }
        // "Zürich" in one-bit pixels, one row per font row.
        let render = |text: &str| -> Vec<Vec<bool>> {
            (0..GLYPH_H as usize)
                .map(|row| {
                    text.chars()
                        .flat_map(|c| {
                            let bits = glyph(c)[row];
                            (0..ADVANCE).map(move |col| bits & (1 << (GLYPH_W - 1 - col)) != 0)
                        })
                        .collect()
                })
                .collect()
        };
        let with = render("Zürich");
        let without = render("Zurich");
        let cols = |img: &[Vec<bool>], k: usize| -> Vec<Vec<bool>> {
            let k = k * ADVANCE as usize;
            img.iter()
                .map(|r| r[k..k + ADVANCE as usize].to_vec())
                .collect()
        };
        // The 'ü' cell differs from 'u' (its dots above); the others agree.
        assert_ne!(cols(&with, 1), cols(&without, 1));
        for k in [0, 2, 3, 4, 5] {
            assert_eq!(cols(&with, k), cols(&without, k));
        }
        // The dots sit in the rows above the x-height, where 'u' has no ink.
        assert!(without[1][ADVANCE as usize..2 * ADVANCE as usize]
            .iter()
            .all(|p| !p));
        assert!(with[1][ADVANCE as usize..2 * ADVANCE as usize]
            .iter()
            .any(|p| *p));
        // Lower case, not capitals: 'u' differs from 'U'.
        assert_ne!(glyph('u'), glyph('U'));
        assert_eq!(text_width("Zürich", 1), text_width("Zurich", 1));
    }
}
