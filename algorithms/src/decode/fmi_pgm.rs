//! FMI radar composite: an 8-bit binary PGM (`P5`), usually gzip-compressed,
//! whose `#` comment lines carry the metadata.
//!
//! * Header: `P5`, comment lines `# key value…` (`obstime`,
//!   `metersperpixel_x`/`_y`, `type stereographic`, `centrallongitude`,
//!   `centrallatitude`, `truelatitude`, `bottomleft lon lat`,
//!   `topright lon lat`, …), then `width height`, then the maximum value,
//!   which FMI also uses as the **missing value** (NaN). Uncompressed `P5`
//!   files are accepted too.
//! * Pixels: dBZ = (pixel − 64) / 2; pixel 0 stays −32 dBZ (as in pysteps'
//!   `import_fmi_pgm`, only the missing value is masked).
//! * Grid: polar stereographic on FMI's sphere,
//!   `+proj=stere +lon_0=… +lat_0=… +lat_ts=… +a=6371288 +x_0=380886.310 +y_0=3395677.920`
//!   (the angles from the header, the sphere and false origin hard-wired
//!   as the files do not carry them). `bottomleft`/`topright` are the
//!   **outer** corners of the raster: projected, they span exactly
//!   `width × metersperpixel_x` by `height × metersperpixel_y`.
//! * Time: `obstime` (`YYYYmmddHHMM`, UTC).
//!
//! Output: [`Quantity::Reflectivity`] in dBZ, shape `(height, width)`, row 0
//! north, `zr_hint` = FMI's Z = 223·R^1.53.

use crate::decode::hex_head;
use crate::grid::{Grid, MAX_GRID_SIDE};
use crate::scan::{
    check_cells, DecodeError, Format, Quantity, RadarScan, DEFAULT_MAX_CELLS, MAX_CELLS, ZR,
};
use chrono::{DateTime, NaiveDateTime, Utc};
use flate2::bufread::MultiGzDecoder;
use ndarray::Array2;
use std::io::{self, Read};

const FORMAT: Format = Format::FmiPgm;

/// Radius (m) of the sphere FMI's stereographic composites are drawn on.
pub const FMI_SPHERE_RADIUS_M: f64 = 6_371_288.0;
/// False easting / northing (m) of FMI's composite projection: they put the
/// south-west corner of the Finnish composite at about (0, 0).
pub const FMI_FALSE_ORIGIN: &str = "+x_0=380886.310 +y_0=3395677.920";
/// The header (magic, comments, sizes) must end within this many bytes.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Largest raster accepted (cells = bytes). The Finnish composite has 0.93 M
/// cells; this bounds the memory a gzip bomb can make us allocate (~250 MB
/// with the f32 field) before [`MAX_CELLS`] would.
pub const MAX_PGM_CELLS: u64 = 50_000_000;
/// After the raster, at most this many more decompressed bytes are read (to
/// reach the gzip trailer and check its CRC); anything beyond is ignored.
const MAX_TRAILING_BYTES: u64 = 64 * 1024;

/// `dBZ = (pixel − 64) / 2`.
pub fn pixel_dbz(pixel: u8) -> f32 {
    (f32::from(pixel) - 64.0) / 2.0
}

/// The 256-entry pixel → dBZ table for a file whose missing value is
/// `missing` (that pixel maps to NaN).
pub fn dbz_lut(missing: u8) -> [f32; 256] {
    let mut lut = [0f32; 256];
    for (p, v) in lut.iter_mut().enumerate() {
        let p = p as u8;
        *v = if p == missing { f32::NAN } else { pixel_dbz(p) };
    }
    lut
}

/// FMI's stereographic PROJ string for the header's angles (degrees).
pub fn stere_projection(central_lon: f64, central_lat: f64, true_lat: f64) -> String {
    format!(
        "+proj=stere +lon_0={central_lon} +lat_0={central_lat} +lat_ts={true_lat} +a={FMI_SPHERE_RADIUS_M} {FMI_FALSE_ORIGIN} +no_defs"
    )
}

/// The geometry an FMI header describes (all angles in degrees, lon/lat on
/// the projection's sphere as FMI writes them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StereGeometry {
    /// `centrallongitude` (`+lon_0`).
    pub central_lon: f64,
    /// `centrallatitude` (`+lat_0`).
    pub central_lat: f64,
    /// `truelatitude` (`+lat_ts`).
    pub true_lat: f64,
    /// `bottomleft`: lon/lat of the south-west outer corner.
    pub bottom_left: (f64, f64),
    /// `topright`: lon/lat of the north-east outer corner.
    pub top_right: (f64, f64),
    /// `metersperpixel_x`.
    pub cell_x_m: f64,
    /// `metersperpixel_y`.
    pub cell_y_m: f64,
    /// Raster height.
    pub rows: usize,
    /// Raster width.
    pub cols: usize,
}

/// The Finnish composite `FIN`/`SUOMI1` (760 × 1226 px, ~1 km) as in the
/// 2016 archive files.
pub const SUOMI1: StereGeometry = StereGeometry {
    central_lon: 25.0,
    central_lat: 90.0,
    true_lat: 60.0,
    bottom_left: (18.6, 57.93),
    top_right: (34.903, 69.005),
    cell_x_m: 999.674053,
    cell_y_m: 999.62859,
    rows: 1226,
    cols: 760,
};

impl StereGeometry {
    /// Builds the grid: origin at the projected corners, cell size from
    /// `metersperpixel`. Fails when the corners and the cell size disagree by
    /// more than one cell.
    pub fn grid(&self) -> Result<Grid, DecodeError> {
        let grid_err = |source| DecodeError::Grid {
            format: FORMAT,
            source,
        };
        let projection = stere_projection(self.central_lon, self.central_lat, self.true_lat);
        let probe = Grid::new(
            projection.clone(),
            self.rows,
            self.cols,
            self.cell_x_m,
            self.cell_y_m,
            0.0,
            0.0,
        )
        .map_err(grid_err)?;
        let (x1, y1) = probe
            .lonlat_to_xy(self.bottom_left.0, self.bottom_left.1)
            .map_err(grid_err)?;
        let (x2, y2) = probe
            .lonlat_to_xy(self.top_right.0, self.top_right.1)
            .map_err(grid_err)?;
        for (field, span, cells, cell) in [
            ("topright longitude", x2 - x1, self.cols, self.cell_x_m),
            ("topright latitude", y2 - y1, self.rows, self.cell_y_m),
        ] {
            let want = cells as f64 * cell;
            // Written so that a NaN span (failed projection) is rejected too.
            let within_one_cell = (span - want).abs() <= cell;
            if !within_one_cell {
                return Err(DecodeError::BadValue {
                    format: FORMAT,
                    field: field.into(),
                    value: format!("{:?}", self.top_right),
                    reason: format!(
                        "the corners span {span:.1} m but {cells} pixels x {cell} m = {want:.1} m"
                    ),
                });
            }
        }
        Grid::new(
            projection,
            self.rows,
            self.cols,
            self.cell_x_m,
            self.cell_y_m,
            x1,
            y2,
        )
        .map_err(grid_err)
    }
}

/// A parsed `P5` header.
#[derive(Debug, Clone, PartialEq)]
pub struct PgmHeader {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// Maximum value (FMI: also the missing value).
    pub maxval: u32,
    /// Comment lines, without the `#` and surrounding blanks, in order.
    pub comments: Vec<String>,
    /// Offset of the first raster byte in the (decompressed) stream.
    pub data_offset: usize,
}

impl PgmHeader {
    /// The values of the last comment line whose first word is `key` (lines
    /// with fewer than two words are skipped, as pysteps does).
    pub fn field(&self, key: &str) -> Option<Vec<&str>> {
        self.comments.iter().rev().find_map(|line| {
            let mut words = line.split_whitespace();
            if words.next() != Some(key) {
                return None;
            }
            let values: Vec<&str> = words.collect();
            (!values.is_empty()).then_some(values)
        })
    }
}

fn is_pnm_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c')
}

fn bad(field: &str, value: impl Into<String>, reason: impl Into<String>) -> DecodeError {
    DecodeError::BadValue {
        format: FORMAT,
        field: field.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

/// Parses a `P5` header from the start of `buf`. `Ok(None)` means the header
/// is not complete within `buf`.
pub fn parse_header(buf: &[u8]) -> Result<Option<PgmHeader>, DecodeError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    if &buf[..2] != b"P5" {
        return Err(DecodeError::BadMagic {
            format: FORMAT,
            expected: "P5 (binary PGM), optionally gzip-compressed",
            found: hex_head(buf),
        });
    }
    let mut pos = 2;
    match buf.get(pos) {
        None => return Ok(None),
        Some(&b) if is_pnm_space(b) || b == b'#' => {}
        Some(&b) => {
            return Err(bad(
                "PGM magic",
                format!("P5{}", b as char),
                "no space after P5",
            ))
        }
    }
    let names = ["width", "height", "maximum value"];
    let mut numbers = [0u64; 3];
    let mut comments = Vec::new();
    for (name, slot) in names.iter().zip(numbers.iter_mut()) {
        // Blanks and comment lines before the number.
        loop {
            match buf.get(pos) {
                None => return Ok(None),
                Some(&b) if is_pnm_space(b) => pos += 1,
                Some(b'#') => {
                    let Some(len) = buf[pos..].iter().position(|&b| b == b'\n' || b == b'\r')
                    else {
                        return Ok(None);
                    };
                    let text = String::from_utf8_lossy(&buf[pos + 1..pos + len]);
                    comments.push(text.trim().to_string());
                    pos += len;
                }
                Some(_) => break,
            }
        }
        let start = pos;
        while pos < buf.len() && buf[pos].is_ascii_digit() {
            pos += 1;
        }
        if pos == buf.len() {
            return Ok(None);
        }
        let digits = &buf[start..pos];
        if digits.is_empty() || !is_pnm_space(buf[pos]) {
            let end = buf.len().min(start + 16);
            return Err(bad(
                &format!("PGM {name}"),
                // Escaped: a header's newlines and controls stay on one line.
                String::from_utf8_lossy(&buf[start..end])
                    .escape_debug()
                    .to_string(),
                "expected a decimal number followed by a blank",
            ));
        }
        if digits.len() > 12 {
            return Err(DecodeError::AbsurdSize {
                format: FORMAT,
                field: format!("PGM {name} ({} digits)", digits.len()),
                value: u64::MAX,
                limit: MAX_PGM_CELLS,
            });
        }
        *slot = digits
            .iter()
            .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
    }
    // Exactly one blank separates the maximum value from the raster.
    let [width, height, maxval] = numbers;
    for (field, v) in [("PGM width", width), ("PGM height", height)] {
        if v == 0 {
            return Err(bad(field, "0", "must be positive"));
        }
        if v > MAX_GRID_SIDE as u64 {
            return Err(DecodeError::AbsurdSize {
                format: FORMAT,
                field: field.into(),
                value: v,
                limit: MAX_GRID_SIDE as u64,
            });
        }
    }
    if maxval == 0 || maxval > 65535 {
        return Err(bad(
            "PGM maximum value",
            maxval.to_string(),
            "must be 1..=65535",
        ));
    }
    Ok(Some(PgmHeader {
        width: width as usize,
        height: height as usize,
        maxval: maxval as u32,
        comments,
        data_offset: pos + 1,
    }))
}

fn gzip_error(e: io::Error) -> DecodeError {
    DecodeError::Container {
        format: FORMAT,
        layer: "gzip",
        reason: e.to_string(),
    }
}

/// Reads the header and exactly `width × height` raster bytes from a
/// (possibly decompressing) reader, never holding more than the header
/// window plus the declared raster in memory.
fn read_pgm(
    mut reader: impl Read,
    gzipped: bool,
    max_cells: u64,
) -> Result<(PgmHeader, Vec<u8>), DecodeError> {
    let mut head = Vec::with_capacity(8192);
    (&mut reader)
        .take(MAX_HEADER_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(gzip_error)?;
    let header = match parse_header(&head)? {
        Some(h) => h,
        None if head.len() >= MAX_HEADER_BYTES => {
            return Err(DecodeError::AbsurdSize {
                format: FORMAT,
                field: "PGM header length (bytes)".into(),
                value: head.len() as u64,
                limit: MAX_HEADER_BYTES as u64,
            })
        }
        None => {
            return Err(DecodeError::Truncated {
                format: FORMAT,
                what: "PGM header",
                needed: head.len() + 1,
                available: head.len(),
            })
        }
    };
    let cells = header.width as u64 * header.height as u64;
    check_cells(
        FORMAT,
        "PGM height x width",
        header.height as u64,
        header.width as u64,
        max_cells.min(MAX_CELLS),
    )?;
    let limit = MAX_PGM_CELLS.min(MAX_CELLS);
    if cells > limit {
        return Err(DecodeError::AbsurdSize {
            format: FORMAT,
            field: "PGM width x height".into(),
            value: cells,
            limit,
        });
    }
    if header.maxval > 255 {
        return Err(DecodeError::Unsupported {
            format: FORMAT,
            what: format!("16-bit PGM (maximum value {})", header.maxval),
        });
    }
    let needed = cells as usize;
    let mut raster = Vec::with_capacity(needed);
    let from_head = head.len().min(header.data_offset + needed);
    raster.extend_from_slice(&head[header.data_offset.min(from_head)..from_head]);
    let rest = (needed - raster.len()) as u64;
    (&mut reader)
        .take(rest)
        .read_to_end(&mut raster)
        .map_err(gzip_error)?;
    if raster.len() < needed {
        return Err(DecodeError::Truncated {
            format: FORMAT,
            what: "PGM raster",
            needed: header.data_offset + needed,
            available: header.data_offset + raster.len(),
        });
    }
    if gzipped {
        // Let the decoder reach the member's end and check its CRC.
        io::copy(&mut reader.take(MAX_TRAILING_BYTES), &mut io::sink()).map_err(gzip_error)?;
    }
    Ok((header, raster))
}

fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

fn is_p5(head: &[u8]) -> bool {
    head.len() >= 3 && &head[..2] == b"P5" && (is_pnm_space(head[2]) || head[2] == b'#')
}

/// True for raw `P5` bytes, or gzip whose first decompressed bytes are `P5`.
pub fn looks_like(bytes: &[u8], _file_name: Option<&str>) -> bool {
    if is_gzip(bytes) {
        let mut head = Vec::with_capacity(3);
        let mut dec = MultiGzDecoder::new(bytes).take(3);
        return dec.read_to_end(&mut head).is_ok() && is_p5(&head);
    }
    is_p5(bytes)
}

fn missing(key: &str) -> DecodeError {
    DecodeError::Missing {
        format: FORMAT,
        path: format!("PGM header comment `{key}`"),
    }
}

/// The `n`-th value of header field `key` as a finite number within `range`.
fn number(
    header: &PgmHeader,
    key: &str,
    n: usize,
    range: std::ops::RangeInclusive<f64>,
) -> Result<f64, DecodeError> {
    let values = header.field(key).ok_or_else(|| missing(key))?;
    let text = values.get(n).ok_or_else(|| {
        bad(
            key,
            values.join(" "),
            format!("expected at least {} values", n + 1),
        )
    })?;
    let v: f64 = text.parse().map_err(|_| bad(key, *text, "not a number"))?;
    if !(v.is_finite() && range.contains(&v)) {
        return Err(bad(
            key,
            *text,
            format!("outside {}..={}", range.start(), range.end()),
        ));
    }
    Ok(v)
}

/// The grid geometry described by the header comments.
pub fn geometry(header: &PgmHeader) -> Result<StereGeometry, DecodeError> {
    let kind = header.field("type").ok_or_else(|| missing("type"))?;
    if kind.first() != Some(&"stereographic") {
        return Err(DecodeError::Unsupported {
            format: FORMAT,
            what: format!("projection type {:?} (only stereographic)", kind.join(" ")),
        });
    }
    let lon = -180.0..=360.0;
    let lat = -90.0..=90.0;
    let cell = 1e-3..=1e6;
    Ok(StereGeometry {
        central_lon: number(header, "centrallongitude", 0, lon.clone())?,
        central_lat: number(header, "centrallatitude", 0, lat.clone())?,
        true_lat: number(header, "truelatitude", 0, lat.clone())?,
        bottom_left: (
            number(header, "bottomleft", 0, lon.clone())?,
            number(header, "bottomleft", 1, lat.clone())?,
        ),
        top_right: (
            number(header, "topright", 0, lon)?,
            number(header, "topright", 1, lat)?,
        ),
        cell_x_m: number(header, "metersperpixel_x", 0, cell.clone())?,
        cell_y_m: number(header, "metersperpixel_y", 0, cell)?,
        rows: header.height,
        cols: header.width,
    })
}

/// `obstime` (`YYYYmmddHHMM`, UTC).
pub fn obs_time(header: &PgmHeader) -> Result<DateTime<Utc>, DecodeError> {
    let values = header.field("obstime").ok_or_else(|| missing("obstime"))?;
    let text = values[0];
    NaiveDateTime::parse_from_str(text, "%Y%m%d%H%M")
        .map(|t| t.and_utc())
        .map_err(|e| bad("obstime", text, format!("expected YYYYmmddHHMM: {e}")))
}

/// Decodes an FMI PGM (gzip-compressed or raw). Returns reflectivity in dBZ.
pub fn decode(bytes: &[u8], file_name: Option<&str>) -> Result<RadarScan, DecodeError> {
    decode_limited(bytes, file_name, DEFAULT_MAX_CELLS)
}

/// [`decode`], rejecting a declared raster above `max_cells` cells
/// ([`DecodeError::TooLarge`]) before inflating it.
pub fn decode_limited(
    bytes: &[u8],
    _file_name: Option<&str>,
    max_cells: u64,
) -> Result<RadarScan, DecodeError> {
    let (header, raster) = if is_gzip(bytes) {
        read_pgm(MultiGzDecoder::new(bytes), true, max_cells)?
    } else if bytes.starts_with(b"P5") {
        read_pgm(bytes, false, max_cells)?
    } else {
        return Err(DecodeError::BadMagic {
            format: FORMAT,
            expected: "gzip (1f 8b) or P5 (binary PGM)",
            found: hex_head(bytes),
        });
    };
    let time = obs_time(&header)?;
    let grid = geometry(&header)?.grid()?;
    let missing_value = header.maxval as u8; // <= 255, checked in read_pgm
    if let Some(&p) = raster.iter().find(|&&p| p > missing_value) {
        return Err(bad(
            "PGM pixel",
            p.to_string(),
            format!("larger than the maximum value {missing_value}"),
        ));
    }
    let lut = dbz_lut(missing_value);
    let values: Vec<f32> = raster.iter().map(|&p| lut[usize::from(p)]).collect();
    let values = Array2::from_shape_vec((header.height, header.width), values).map_err(|e| {
        DecodeError::Shape {
            format: FORMAT,
            field: "PGM raster".into(),
            expected: format!("{} x {}", header.height, header.width),
            found: e.to_string(),
        }
    })?;
    let source = match header.field("composite_area") {
        Some(area) => format!("FMI composite {}", area.join(" ")),
        None => "FMI".to_string(),
    };
    Ok(RadarScan {
        format: FORMAT,
        source,
        time,
        quantity: Quantity::Reflectivity,
        grid,
        values,
        zr_hint: Some(ZR::FMI),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::encode::fmi_pgm as writer;
    use chrono::TimeZone;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    /// A small valid header in FMI's layout; `extra` is inserted before the
    /// size line.
    fn header(width: usize, height: usize, maxval: u32, extra: &str) -> String {
        format!(
            "P5\n# obstime 202001021530\n# metersperpixel_x 1000\n# metersperpixel_y 1000\n\
             # projection radar {{\n# type stereographic\n# centrallongitude 25\n\
             # centrallatitude 90\n# truelatitude 60\n# bottomleft 18.6 57.93\n\
             # topright {} {}\n# }}\n{extra}{width} {height}\n{maxval}\n",
            TOP_RIGHT_4X3.0, TOP_RIGHT_4X3.1
        )
    }

    /// Top-right lon/lat of a 4 × 3 km grid whose bottom-left is 18.6E 57.93N,
    /// computed independently with PROJ 9 (pyproj 3.7).
    const TOP_RIGHT_4X3: (f64, f64) = (18.661_107_915, 57.960_497_396);

    fn small_file(extra: &str) -> Vec<u8> {
        let mut b = header(4, 3, 255, extra).into_bytes();
        b.extend_from_slice(&[0, 1, 64, 84, 255, 254, 100, 2, 3, 4, 5, 255]);
        b
    }

    #[test]
    fn small_file_decodes_raw_and_gzipped() {
        for bytes in [small_file(""), gz(&small_file(""))] {
            assert!(looks_like(&bytes, None));
            let scan = decode(&bytes, None).unwrap();
            assert_eq!(scan.values.dim(), (3, 4));
            assert_eq!(scan.quantity, Quantity::Reflectivity);
            assert_eq!(scan.zr_hint, Some(ZR::FMI));
            assert_eq!(
                scan.time,
                Utc.with_ymd_and_hms(2020, 1, 2, 15, 30, 0).unwrap()
            );
            assert_eq!(scan.source, "FMI");
            assert_eq!(scan.values[[0, 0]], -32.0);
            assert_eq!(scan.values[[0, 2]], 0.0);
            assert_eq!(scan.values[[0, 3]], 10.0);
            assert!(scan.values[[1, 0]].is_nan());
            assert_eq!(scan.values[[1, 1]], 95.0);
            assert_eq!(scan.values.iter().filter(|v| v.is_nan()).count(), 2);
            let (lon, lat) = scan.grid.rowcol_to_lonlat(3.0, 0.0).unwrap();
            assert!((lon - 18.6).abs() < 1e-7 && (lat - 57.93).abs() < 1e-7);
            let (lon, lat) = scan.grid.rowcol_to_lonlat(0.0, 4.0).unwrap();
            assert!((lon - TOP_RIGHT_4X3.0).abs() < 1e-6, "{lon}");
            assert!((lat - TOP_RIGHT_4X3.1).abs() < 1e-6, "{lat}");
        }
    }

    #[test]
    fn header_parsing_details() {
        // CRLF line ends, comment before the maximum value, blank-only lines.
        let text = "P5\r\n# obstime 1\r\n#\r\n# key a b\r\n4 3\n# mid\n255\n";
        let h = parse_header(text.as_bytes()).unwrap().unwrap();
        assert_eq!((h.width, h.height, h.maxval), (4, 3, 255));
        assert_eq!(h.data_offset, text.len());
        assert_eq!(h.field("key"), Some(vec!["a", "b"]));
        assert_eq!(h.field("obstime"), Some(vec!["1"]));
        assert_eq!(h.field("mid"), None); // one word only: skipped, as pysteps does
                                          // Incomplete headers.
        for cut in [0, 1, 2, 5, text.len() - 1] {
            assert_eq!(
                parse_header(&text.as_bytes()[..cut]).unwrap(),
                None,
                "{cut}"
            );
        }
        // Later duplicates win.
        let h = parse_header(b"P5 #k 1\n#k 2\n1 1 255\n").unwrap().unwrap();
        assert_eq!(h.field("k"), Some(vec!["2"]));
    }

    #[test]
    fn malformed_inputs_are_typed_errors() {
        let good = small_file("");
        let code = |b: &[u8]| decode(b, None).unwrap_err().code();
        assert_eq!(code(b"P6\n1 1\n255\n\0"), "bad_magic");
        assert_eq!(code(b"hello"), "bad_magic");
        assert_eq!(code(b""), "bad_magic");
        assert_eq!(code(b"\x1f\x8b\x08\x00garbage"), "container");
        assert!(!looks_like(b"P6\n", None) && !looks_like(b"P55", None));
        assert!(!looks_like(&gz(b"GIF89a"), None));
        // Truncated everywhere, raw and compressed.
        let gzipped = gz(&good);
        for cut in 0..good.len() {
            assert!(decode(&good[..cut], None).is_err(), "raw cut {cut}");
        }
        for cut in 0..gzipped.len() - 8 {
            assert!(decode(&gzipped[..cut], None).is_err(), "gz cut {cut}");
        }
        assert_eq!(code(&good[..good.len() - 1]), "truncated");
        // A corrupted gzip CRC is detected.
        let mut bad_crc = gzipped.clone();
        let n = bad_crc.len();
        bad_crc[n - 6] ^= 0xff;
        assert_eq!(code(&bad_crc), "container");
        // Garbage header fields.
        let cases: [(&str, &str, &str); 9] = [
            ("P5\n4\x003\n255\n", "width", "bad_value"),
            ("P5\nx 3\n255\n", "width", "bad_value"),
            ("P5\n4 -3\n255\n", "height", "bad_value"),
            ("P5\n4 3\n255x", "maximum value", "bad_value"),
            ("P5\n0 3\n255\n", "width", "bad_value"),
            ("P5\n4 3\n0\n", "maximum value", "bad_value"),
            ("P5\n4 3\n300\n", "16-bit", "unsupported"),
            ("P5\n4 3 99999999\n", "maximum value", "bad_value"),
            ("P5\n4 99999999999999 255\n", "height", "absurd_size"),
        ];
        for (text, needle, want) in cases {
            let mut b = text.as_bytes().to_vec();
            b.extend_from_slice(&[0; 12]);
            let err = decode(&b, None).unwrap_err();
            assert_eq!(err.code(), want, "{text:?}: {err}");
            assert!(err.to_string().contains(needle), "{text:?}: {err}");
            // The header's bytes are quoted escaped: one line per error.
            assert!(!err.to_string().contains('\n'), "{text:?}: {err}");
        }
        // Metadata: missing, not numbers, out of range, inconsistent.
        let edit = |from: &str, to: &str| {
            let text = String::from_utf8_lossy(&good).replacen(from, to, 1);
            decode(text.as_bytes(), None).map(|_| ()).unwrap_err()
        };
        let cases = [
            ("# obstime 202001021530\n", "", "missing", "obstime"),
            (
                "obstime 202001021530",
                "obstime 202013021530",
                "bad_value",
                "obstime",
            ),
            (
                "type stereographic",
                "type mercator",
                "unsupported",
                "mercator",
            ),
            (
                "centrallongitude 25",
                "centrallongitude east",
                "bad_value",
                "east",
            ),
            (
                "truelatitude 60",
                "truelatitude 600",
                "bad_value",
                "truelatitude",
            ),
            (
                "bottomleft 18.6 57.93",
                "bottomleft 18.6",
                "bad_value",
                "bottomleft",
            ),
            (
                "metersperpixel_x 1000",
                "metersperpixel_x nan",
                "bad_value",
                "_x",
            ),
            (
                "metersperpixel_y 1000",
                "metersperpixel_y -5",
                "bad_value",
                "-5",
            ),
            (
                "metersperpixel_y 1000",
                "metersperpixel_y 3000",
                "bad_value",
                "corners span",
            ),
            ("# topright", "# top_right", "missing", "topright"),
        ];
        for (from, to, want, needle) in cases {
            let err = edit(from, to);
            assert_eq!(err.code(), want, "{to:?}: {err}");
            assert!(err.to_string().contains(needle), "{to:?}: {err}");
        }
        // A pixel above the declared maximum value.
        let mut over = header(4, 3, 200, "").into_bytes();
        over.extend_from_slice(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 201]);
        assert_eq!(code(&over), "bad_value");
        let last = over.len() - 1;
        over[last] = 200;
        let scan = decode(&over, None).unwrap();
        assert!(scan.values[[2, 3]].is_nan());
    }

    #[test]
    fn absurd_sizes_and_gzip_bombs() {
        let code = |b: &[u8]| decode(b, None).unwrap_err().code();
        // Declared sides beyond the grid limit, and an area beyond MAX_PGM_CELLS.
        assert_eq!(code(header(20_001, 3, 255, "").as_bytes()), "absurd_size");
        let big = header(10_000, 10_000, 255, "");
        assert_eq!(code(big.as_bytes()), "too_large");
        assert_eq!(code(&gz(big.as_bytes())), "too_large");
        let err = decode(big.as_bytes(), None).unwrap_err();
        assert!(
            err.to_string()
                .contains("10000 x 10000 = 100000000 cells, above the limit max_cells = 25000000"),
            "{err}"
        );
        // A bomb: 64 MiB of comment text that never ends the header.
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(b"P5\n# ").unwrap();
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..64 {
            e.write_all(&chunk).unwrap();
        }
        let bomb = e.finish().unwrap();
        assert!(bomb.len() < 1 << 19, "{}", bomb.len());
        let err = decode(&bomb, None).unwrap_err();
        assert_eq!(err.code(), "absurd_size", "{err}");
        assert!(looks_like(&bomb, None));
        // A valid small file followed by 64 MiB of zeros: only a bounded tail
        // is decompressed, the file decodes.
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(&small_file("")).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            e.write_all(&zeros).unwrap();
        }
        let tail_bomb = e.finish().unwrap();
        assert_eq!(decode(&tail_bomb, None).unwrap().values.dim(), (3, 4));
    }

    fn synthetic_rate(rows: usize, cols: usize) -> Array2<f32> {
        let mut rate = Array2::<f32>::zeros((rows, cols));
        for ((r, c), v) in rate.indexed_iter_mut() {
            *v = match (r * 5 + c * 3) % 13 {
                0 => f32::NAN,
                1 => 0.0,
                k => 0.005 * 2.5f32.powi(k as i32 - 2) * (1.0 + (c % 7) as f32 * 0.05),
            };
        }
        rate
    }

    #[test]
    fn round_trip_through_the_writer() {
        let grid = SUOMI1.grid().unwrap();
        let rate = synthetic_rate(grid.rows, grid.cols);
        let time = Utc.with_ymd_and_hms(2016, 9, 28, 14, 45, 0).unwrap();
        for gzip in [false, true] {
            let bytes = writer::encode(rate.view(), &grid, time, gzip).unwrap();
            assert_eq!(bytes.starts_with(&[0x1f, 0x8b]), gzip);
            assert_eq!(crate::decode::detect(&bytes, None), Some(Format::FmiPgm));
            let scan = decode(&bytes, None).unwrap();
            assert_eq!(scan.time, time);
            assert_eq!(scan.source, "FMI composite SYNTHETIC");
            assert!(
                scan.grid.same_geometry(&grid),
                "{:?} vs {grid:?}",
                scan.grid
            );
            let back = crate::prep::to_rain_rate(&scan, None).rate_mm_h;
            // ±0.25 dBZ with b = 1.53.
            let tol = 10f32.powf(0.025 / 1.53) - 1.0 + 1e-4;
            let floor = ZR::FMI.rate_mm_h(-32.0) as f32;
            for ((r, c), &v) in rate.indexed_iter() {
                let d = back[[r, c]];
                assert_eq!(v.is_nan(), d.is_nan(), "NaN mask at {r},{c}");
                if v.is_nan() {
                    continue;
                }
                if v <= floor {
                    assert_eq!(d, floor, "{r},{c}");
                } else {
                    assert!((d - v).abs() <= tol * v, "{r},{c}: {v} -> {d}");
                }
            }
        }
    }

    #[test]
    fn suomi1_grid_matches_independent_projection() {
        let grid = SUOMI1.grid().unwrap();
        // Outer corners projected by PROJ 9 (pyproj 3.7) from pysteps' string
        // `+proj=stere +lon_0=25E +lat_0=90N +lat_ts=60 +a=6371288 ...`.
        let (x1, y1) = grid.rowcol_to_xy(grid.rows as f64, 0.0);
        let (x2, y2) = grid.rowcol_to_xy(0.0, grid.cols as f64);
        for (got, want) in [
            (x1, 0.004_982),
            (y1, 0.009_732),
            (x2, 759_752.285),
            (y2, 1_225_544.659),
        ] {
            assert!((got - want).abs() < 0.01, "{got} vs {want}");
        }
        // The small test header's top-right corner is consistent too.
        let small = StereGeometry {
            rows: 3,
            cols: 4,
            cell_x_m: 1000.0,
            cell_y_m: 1000.0,
            top_right: TOP_RIGHT_4X3,
            ..SUOMI1
        };
        let g = small.grid().unwrap();
        let (lon, lat) = g.rowcol_to_lonlat(0.0, 4.0).unwrap();
        assert!((lon - TOP_RIGHT_4X3.0).abs() < 1e-6 && (lat - TOP_RIGHT_4X3.1).abs() < 1e-6);
    }

    #[test]
    fn real_files_decode() {
        let Some(files) = crate::decode::shared_data_files("fmi", ".pgm") else {
            return;
        };
        assert!(!files.is_empty());
        for path in &files {
            let bytes = std::fs::read(path).unwrap();
            let name = path.file_name().unwrap().to_str().unwrap();
            assert_eq!(
                crate::decode::detect(&bytes, Some(name)),
                Some(Format::FmiPgm)
            );
            let scan = decode(&bytes, Some(name)).unwrap();
            assert_eq!(scan.values.dim(), (1226, 760), "{name}");
            assert_eq!(scan.source, "FMI composite FIN");
            assert_eq!(scan.time.format("%Y%m%d%H%M").to_string(), name[..12]);
            // Grid corners against the header's own lon/lat.
            let mut raw = Vec::new();
            MultiGzDecoder::new(&bytes[..])
                .read_to_end(&mut raw)
                .unwrap();
            let text = String::from_utf8_lossy(&raw[..2000]);
            let corner = |key: &str| -> (f64, f64) {
                let line = text
                    .lines()
                    .find(|l| l.starts_with(&format!("# {key} ")))
                    .unwrap();
                let v: Vec<f64> = line
                    .split_whitespace()
                    .skip(2)
                    .map(|t| t.parse().unwrap())
                    .collect();
                (v[0], v[1])
            };
            let (bl, tr) = (corner("bottomleft"), corner("topright"));
            let g = &scan.grid;
            let got_bl = g.rowcol_to_lonlat(g.rows as f64, 0.0).unwrap();
            let got_tr = g.rowcol_to_lonlat(0.0, g.cols as f64).unwrap();
            for (got, want) in [(got_bl, bl), (got_tr, tr)] {
                assert!(
                    (got.0 - want.0).abs() < 1e-6 && (got.1 - want.1).abs() < 1e-6,
                    "{got:?} {want:?}"
                );
            }
            assert!(g.same_geometry(&SUOMI1.grid().unwrap()));
            // The raster is the last rows*cols bytes; 255 is the missing value.
            let raster = &raw[raw.len() - 1226 * 760..];
            assert!(text.contains("\n760 1226\n255\n"));
            let missing = raster.iter().filter(|&&p| p == 255).count();
            let nan = scan.values.iter().filter(|v| v.is_nan()).count();
            assert_eq!(nan, missing, "{name}");
            assert!(missing > 0 && missing < raster.len());
            let zeros = raster.iter().filter(|&&p| p == 0).count();
            assert_eq!(scan.values.iter().filter(|&&v| v == -32.0).count(), zeros);
        }
    }
}
