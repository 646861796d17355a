//! A compact 5×7 pixel font for frame labels, legends and place names.
//!
//! The glyphs were drawn for Raincast (not taken from any published font).
//! Each glyph is 5 pixels wide and 7 tall, written below as seven rows of
//! `#` (ink) and `.` (paper) and packed at compile time into one byte per row
//! (bit 4 = leftmost column). Characters advance by 6 pixels (one blank
//! column). Lower-case letters are drawn as capitals, common accented Latin
//! letters as their base letter, and anything else as `?`.

/// Glyph width in font pixels.
pub const GLYPH_W: u32 = 5;
/// Glyph height in font pixels.
pub const GLYPH_H: u32 = 7;
/// Horizontal advance per full-width character in font pixels (glyph + 1
/// blank column); see [`ink_columns`] for the narrow punctuation.
pub const ADVANCE: u32 = 6;

/// Packs seven rows of `#`/`.` into bit rows.
const fn g(rows: [&str; 7]) -> [u8; 7] {
    let mut out = [0u8; 7];
    let mut r = 0;
    while r < 7 {
        let b = rows[r].as_bytes();
        let mut c = 0;
        while c < 5 {
            if b[c] == b'#' {
                out[r] |= 1 << (4 - c);
            }
            c += 1;
        }
        r += 1;
    }
    out
}

const QUESTION: [u8; 7] = g([
    ".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#..",
]);

/// The bitmap of one upper-case ASCII character (after folding).
fn ascii_glyph(c: char) -> [u8; 7] {
    match c {
        ' ' => [0; 7],
        '0' => g([
            ".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###.",
        ]),
        '1' => g([
            "..#..", ".##..", "#.#..", "..#..", "..#..", "..#..", "#####",
        ]),
        '2' => g([
            ".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####",
        ]),
        '3' => g([
            "####.", "....#", "....#", ".###.", "....#", "....#", "####.",
        ]),
        '4' => g([
            "...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#.",
        ]),
        '5' => g([
            "#####", "#....", "####.", "....#", "....#", "#...#", ".###.",
        ]),
        '6' => g([
            "..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###.",
        ]),
        '7' => g([
            "#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#...",
        ]),
        '8' => g([
            ".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###.",
        ]),
        '9' => g([
            ".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##..",
        ]),
        'A' => g([
            ".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#",
        ]),
        'B' => g([
            "####.", "#...#", "#...#", "####.", "#...#", "#...#", "####.",
        ]),
        'C' => g([
            ".###.", "#...#", "#....", "#....", "#....", "#...#", ".###.",
        ]),
        'D' => g([
            "###..", "#..#.", "#...#", "#...#", "#...#", "#..#.", "###..",
        ]),
        'E' => g([
            "#####", "#....", "#....", "####.", "#....", "#....", "#####",
        ]),
        'F' => g([
            "#####", "#....", "#....", "####.", "#....", "#....", "#....",
        ]),
        'G' => g([
            ".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####",
        ]),
        'H' => g([
            "#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#",
        ]),
        'I' => g([
            ".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###.",
        ]),
        'J' => g([
            "..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##..",
        ]),
        'K' => g([
            "#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#",
        ]),
        'L' => g([
            "#....", "#....", "#....", "#....", "#....", "#....", "#####",
        ]),
        'M' => g([
            "#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#",
        ]),
        'N' => g([
            "#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#",
        ]),
        'O' => g([
            ".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###.",
        ]),
        'P' => g([
            "####.", "#...#", "#...#", "####.", "#....", "#....", "#....",
        ]),
        'Q' => g([
            ".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#",
        ]),
        'R' => g([
            "####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#",
        ]),
        'S' => g([
            ".####", "#....", "#....", ".###.", "....#", "....#", "####.",
        ]),
        'T' => g([
            "#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#..",
        ]),
        'U' => g([
            "#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###.",
        ]),
        'V' => g([
            "#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#..",
        ]),
        'W' => g([
            "#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#.",
        ]),
        'X' => g([
            "#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#",
        ]),
        'Y' => g([
            "#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#..",
        ]),
        'Z' => g([
            "#####", "....#", "...#.", "..#..", ".#...", "#....", "#####",
        ]),
        ':' => g([
            ".....", ".....", "..#..", ".....", ".....", "..#..", ".....",
        ]),
        '-' => g([
            ".....", ".....", ".....", ".###.", ".....", ".....", ".....",
        ]),
        '+' => g([
            ".....", "..#..", "..#..", "#####", "..#..", "..#..", ".....",
        ]),
        '/' => g([
            "....#", "....#", "...#.", "..#..", ".#...", "#....", "#....",
        ]),
        '.' => g([
            ".....", ".....", ".....", ".....", ".....", ".##..", ".##..",
        ]),
        ',' => g([
            ".....", ".....", ".....", ".....", ".##..", "..#..", ".#...",
        ]),
        '(' => g([
            "...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#.",
        ]),
        ')' => g([
            ".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#...",
        ]),
        '%' => g([
            "##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##",
        ]),
        '<' => g([
            "...#.", "..#..", ".#...", "#....", ".#...", "..#..", "...#.",
        ]),
        '>' => g([
            ".#...", "..#..", "...#.", "....#", "...#.", "..#..", ".#...",
        ]),
        '=' => g([
            ".....", ".....", "#####", ".....", "#####", ".....", ".....",
        ]),
        '\'' => g([
            "..#..", "..#..", ".#...", ".....", ".....", ".....", ".....",
        ]),
        '!' => g([
            "..#..", "..#..", "..#..", "..#..", "..#..", ".....", "..#..",
        ]),
        '_' => g([
            ".....", ".....", ".....", ".....", ".....", ".....", "#####",
        ]),
        '#' => g([
            ".#.#.", "#####", ".#.#.", ".#.#.", ".#.#.", "#####", ".#.#.",
        ]),
        '&' => g([
            ".##..", "#..#.", "#.#..", ".#...", "#.#.#", "#..#.", ".##.#",
        ]),
        _ => QUESTION,
    }
}

/// Folds a character onto the drawable set: capitals, digits, punctuation.
fn fold(c: char) -> char {
    let c = c.to_ascii_uppercase();
    match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' => 'A',
        'ç' | 'Ç' => 'C',
        'è' | 'é' | 'ê' | 'ë' | 'È' | 'É' | 'Ê' | 'Ë' => 'E',
        'ì' | 'í' | 'î' | 'ï' | 'Ì' | 'Í' | 'Î' | 'Ï' => 'I',
        'ñ' | 'Ñ' => 'N',
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' | 'Ø' => 'O',
        'ù' | 'ú' | 'û' | 'ü' | 'Ù' | 'Ú' | 'Û' | 'Ü' => 'U',
        'ý' | 'ÿ' | 'Ý' => 'Y',
        'ß' => 'S',
        '\u{2212}' | '\u{2013}' | '\u{2014}' => '-',
        c => c,
    }
}

/// The 5×7 bitmap of `c`: seven rows, bit 4 of each the leftmost pixel.
pub fn glyph(c: char) -> [u8; 7] {
    ascii_glyph(fold(c))
}

/// The inked columns of `c` as `(first column, width)`. Digits and letters
/// use the full 5 columns (so numbers line up); the narrow punctuation
/// `. : , ' !` is trimmed to its ink so that labels such as `0.5` stay compact.
pub fn ink_columns(c: char) -> (u32, u32) {
    if !matches!(c, '.' | ':' | ',' | '\'' | '!') {
        return (0, GLYPH_W);
    }
    let all = glyph(c).iter().fold(0u8, |a, r| a | r);
    if all == 0 {
        return (0, GLYPH_W);
    }
    // Bit 4 is column 0.
    let first = (all.leading_zeros() - 3).min(GLYPH_W - 1);
    let last = GLYPH_W - 1 - all.trailing_zeros();
    (first, last + 1 - first)
}

/// Width in output pixels of `text` drawn at integer `scale` (no trailing gap).
pub fn text_width(text: &str, scale: u32) -> u32 {
    let n: u32 = text
        .chars()
        .map(|c| ink_columns(c).1 + (ADVANCE - GLYPH_W))
        .sum();
    n.saturating_sub(ADVANCE - GLYPH_W) * scale
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
            assert!(g.iter().all(|r| *r < 32), "{c} wider than 5");
            // No two characters share a bitmap (legibility).
            assert!(seen.insert(g), "{c} duplicates another glyph");
        }
        assert_eq!(glyph(' '), [0; 7]);
    }

    #[test]
    fn folding_and_fallback() {
        assert_eq!(glyph('a'), glyph('A'));
        assert_eq!(glyph('é'), glyph('E'));
        assert_eq!(glyph('Ö'), glyph('O'));
        assert_eq!(glyph('€'), glyph('?'));
        assert_eq!(text_width("", 2), 0);
        assert_eq!(text_width("AB", 1), 11);
        assert_eq!(text_width("AB", 3), 33);
        // Narrow punctuation: '.' is inked in columns 1-2 only.
        assert_eq!(ink_columns('.'), (1, 2));
        assert_eq!(ink_columns('A'), (0, 5));
        assert_eq!(text_width("0.5", 1), 5 + 1 + 2 + 1 + 5);
    }
}
