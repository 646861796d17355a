//! Writes tiny seed inputs for the cargo-fuzz decoder targets (fuzz/), so
//! that the mutator starts from valid files of a few hundred bytes instead
//! of multi-megabyte scans.
//!
//! ```text
//! cargo run -p raincast-algorithms --example fuzz_seeds -- OUT_DIR [NEXRAD_MSG31 [NEXRAD_MSG1]]
//! ```
//!
//! Writes `OUT_DIR/<target>/seed-*` for `decode_odim`, `decode_bom`,
//! `decode_mch_gif`, `decode_fmi_pgm` (synthetic 16 × 16 fields from the
//! project's own writers, and for ODIM also a small polar volume; the
//! MeteoSwiss decoder only accepts the 640 × 710 CCS4 screen, so that
//! corpus gets one full-size, mostly dry GIF as well)
//! and, when real NEXRAD volumes are named, `decode_nexrad`: the first
//! messages of each (the coverage pattern and a few radials), uncompressed
//! and as one bzip2 LDM record. Nothing read is written back whole, and
//! nothing here goes into the repository: `scripts/fuzz-run.sh` calls this
//! at run time and keeps the corpora in the cache folder.

use chrono::{DateTime, Utc};
use ndarray::Array2;
use netcdf_writer::{NcAttrValue, NcFileBuilder, NcWriteFormat, NcWriteOptions};
use raincast_algorithms::decode::decode;
use raincast_algorithms::decode::fmi_pgm::SUOMI1;
use raincast_algorithms::encode::{fmi_pgm, mch_gif, odim};
use raincast_algorithms::grid::Grid;
use raincast_algorithms::prep::RainField;
use raincast_algorithms::scan::Format;
use raincast_algorithms::synth::local_grid;
use std::error::Error;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

type Res<T> = Result<T, Box<dyn Error>>;

/// Side of the synthetic grids.
const N: usize = 16;
/// 2021-07-04 16:00 UTC.
const TIME_S: i64 = 1_625_414_400;
/// NEXRAD messages keep their fixed 2432-byte frame, except message 31.
const FRAME: usize = 2432;
/// Radials kept in a cropped NEXRAD seed.
const RADIALS: usize = 3;

/// A 16 × 16 field: a rain blob, a dry corner and a no-data column.
fn rate(rows: usize, cols: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |(r, c)| {
        let d2 = (r as f32 - rows as f32 / 2.0).powi(2) + (c as f32 - cols as f32 / 2.0).powi(2);
        match c {
            0 => f32::NAN,
            _ => (30.0 - d2).max(0.0) * 0.5,
        }
    })
}

fn time() -> Res<DateTime<Utc>> {
    DateTime::from_timestamp(TIME_S, 0).ok_or_else(|| "time out of range".into())
}

fn odim_seeds() -> Res<Vec<(String, Vec<u8>)>> {
    let field = RainField {
        grid: local_grid(4.4, 50.8, N, N, 1000.0)?,
        time: time()?,
        rate_mm_h: rate(N, N),
    };
    let mut out = Vec::new();
    for (name, mut opts) in [
        ("u8", odim::OdimRateOptions::u8("NOD:bejab")),
        ("u16", odim::OdimRateOptions::u16("NOD:bejab")),
    ] {
        opts.deflate_level = None;
        out.push((
            format!("{name}-plain.h5"),
            odim::encode_rate(&field, &opts)?,
        ));
        opts.deflate_level = Some(1);
        out.push((
            format!("{name}-deflate.h5"),
            odim::encode_rate(&field, &opts)?,
        ));
    }
    // A polar volume of two 16-ray sweeps (the gridding path).
    let dbz = rate(N, N).mapv(|v| if v > 0.0 { 20.0 + v } else { v - f32::INFINITY });
    let sweep = |elangle_deg| odim::PolarSweep {
        elangle_deg,
        quantity: "DBZH",
        gate_m: 1000.0,
        rstart_km: 0.0,
        values: &dbz,
    };
    out.push((
        "pvol.h5".into(),
        odim::encode_polar(
            "PVOL",
            (50.8, 4.4, 100.0),
            time()?,
            "NOD:bejab",
            &[sweep(1.5), sweep(0.5)],
        )?,
    ));
    Ok(out)
}

/// One Rainfields `prcp-cscn` file (`nc4`: netCDF-4, else classic CDF).
fn rainfields(nc4: bool) -> Res<Vec<u8>> {
    const PERIOD_S: i64 = 360;
    let half = N as f32 / 4.0;
    let xs: Vec<f32> = (0..N).map(|i| i as f32 * 0.5 - half).collect();
    let ys: Vec<f32> = (0..N).map(|i| half - i as f32 * 0.5).collect();
    let raw: Vec<i16> = rate(N, N)
        .iter()
        .map(|&v| {
            if v.is_nan() {
                -32768
            } else {
                (v * 20.0) as i16
            }
        })
        .collect();
    let chars = |s: &str| NcAttrValue::Chars(s.into());
    let mut b = NcFileBuilder::new();
    b.add_attribute("Conventions", chars("CF-1.6"))?;
    let x = b.add_dimension("x", N as u64)?;
    let y = b.add_dimension("y", N as u64)?;
    let valid = b.add_variable::<i32>("valid_time", &[])?;
    let start = b.add_variable::<i32>("start_time", &[])?;
    let seconds = chars("seconds since 1970-01-01 00:00:00 UTC");
    b.add_variable_attribute(valid, "units", seconds.clone())?;
    b.add_variable_attribute(start, "units", seconds)?;
    let proj = b.add_variable::<i8>("proj", &[])?;
    let doubles = |v: &[f64]| NcAttrValue::Doubles(v.to_vec());
    let proj_attrs = [
        ("grid_mapping_name", chars("albers_conical_equal_area")),
        ("semi_major_axis", doubles(&[6_378_137.0])),
        ("inverse_flattening", doubles(&[298.257_222_101])),
        ("standard_parallel", doubles(&[-18.0, -36.0])),
        ("longitude_of_central_meridian", doubles(&[144.752])),
        ("latitude_of_projection_origin", doubles(&[-37.852])),
    ];
    for (name, value) in proj_attrs {
        b.add_variable_attribute(proj, name, value)?;
    }
    let xv = b.add_variable::<f32>("x", &[x])?;
    let yv = b.add_variable::<f32>("y", &[y])?;
    let p = b.add_variable::<i16>("precipitation", &[y, x])?;
    let var_attrs = [
        (xv, "units", chars("km")),
        (yv, "units", chars("km")),
        (p, "grid_mapping", chars("proj")),
        (p, "units", chars("kg m-2")),
        (p, "scale_factor", doubles(&[0.05])),
        (p, "add_offset", doubles(&[0.0])),
    ];
    for (var, name, value) in var_attrs {
        b.add_variable_attribute(var, name, value)?;
    }
    b.set_variable_fill_value(p, -32768i16)?;
    if nc4 {
        b.set_variable_deflate(p, Some(1), false)?;
    }
    b.write_variable(proj, &[0i8])?;
    b.write_variable(valid, &[TIME_S as i32])?;
    b.write_variable(start, &[(TIME_S - PERIOD_S) as i32])?;
    b.write_variable(xv, &xs)?;
    b.write_variable(yv, &ys)?;
    b.write_variable(p, &raw)?;
    let format = if nc4 {
        NcWriteFormat::Nc4
    } else {
        NcWriteFormat::Classic
    };
    Ok(b.to_vec(NcWriteOptions { format })?.1)
}

fn bom_seeds() -> Res<Vec<(String, Vec<u8>)>> {
    Ok(vec![
        ("prcp-cscn-nc4.nc".into(), rainfields(true)?),
        ("prcp-cscn-classic.nc".into(), rainfields(false)?),
    ])
}

fn mch_seeds() -> Res<Vec<(String, Vec<u8>)>> {
    let small: Vec<u8> = rate(N, N)
        .iter()
        .map(|&v| mch_gif::rate_to_index(v))
        .collect();
    let full = Array2::from_shape_fn((640, 710), |(r, c)| {
        if (300..316).contains(&r) && (350..366).contains(&c) {
            5.0
        } else {
            0.0
        }
    });
    Ok(vec![
        (
            "16x16.gif".into(),
            mch_gif::encode_indices(&small, N as u16, N as u16)?,
        ),
        ("ccs4.gif".into(), mch_gif::encode(full.view())?),
    ])
}

fn fmi_seeds() -> Res<Vec<(String, Vec<u8>)>> {
    // The north-west 16 × 16 cells of FMI's own grid.
    let suomi = SUOMI1.grid()?;
    let grid = Grid::new(
        suomi.projection.clone(),
        N,
        N,
        suomi.cell_x_m,
        suomi.cell_y_m,
        suomi.x_west_m,
        suomi.y_north_m,
    )?;
    let field = rate(N, N);
    Ok(vec![
        (
            "16x16.pgm".into(),
            fmi_pgm::encode(field.view(), &grid, time()?, false)?,
        ),
        (
            "16x16.pgm.gz".into(),
            fmi_pgm::encode(field.view(), &grid, time()?, true)?,
        ),
    ])
}

/// Decompressed messages of an Archive II file: the 24-byte volume header
/// and every message of every LDM record (or of the legacy frames).
fn archive_messages(path: &Path) -> Res<(Vec<u8>, Vec<u8>)> {
    let raw = std::fs::read(path)?;
    let file = if raw.starts_with(b"BZh") {
        let mut out = Vec::new();
        bzip2::read::MultiBzDecoder::new(&raw[..]).read_to_end(&mut out)?;
        out
    } else {
        raw
    };
    let header = file
        .get(..24)
        .ok_or("shorter than a volume header")?
        .to_vec();
    let body = &file[24..];
    if body.starts_with(&[0, 0, 0, 0]) {
        return Ok((header, body.to_vec())); // legacy frames
    }
    let mut messages = Vec::new();
    let mut rest = body;
    while rest.len() >= 4 {
        let size = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]).unsigned_abs() as usize;
        let record = rest.get(4..4 + size).ok_or("truncated LDM record")?;
        bzip2::read::BzDecoder::new(record).read_to_end(&mut messages)?;
        rest = &rest[4 + size..];
    }
    Ok((header, messages))
}

/// The first message 5 (coverage pattern) and the first `RADIALS` radials
/// (message 31 or 1) of a message stream, in their original order.
fn crop_messages(messages: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut vcp, mut radials) = (false, 0);
    let mut at = 0;
    while radials < RADIALS && at + 16 <= messages.len() {
        let halfwords = usize::from(u16::from_be_bytes([messages[at + 12], messages[at + 13]]));
        let kind = messages[at + 15];
        let len = if kind == 31 {
            12 + 2 * halfwords
        } else {
            FRAME
        };
        let Some(message) = messages.get(at..at + len) else {
            break;
        };
        if (kind == 5 && !vcp) || kind == 1 || kind == 31 {
            out.extend_from_slice(message);
            vcp |= kind == 5;
            radials += usize::from(kind != 5);
        }
        at += len;
    }
    out
}

fn nexrad_seeds(paths: &[PathBuf]) -> Res<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let (header, messages) = archive_messages(path)?;
        let mut cropped = crop_messages(&messages);
        // Uncompressed messages are read as legacy frames, which start with
        // the 12 zero bytes of the CTM header.
        cropped.get_mut(..12).ok_or("no message to keep")?.fill(0);
        let mut plain = header.clone();
        plain.extend_from_slice(&cropped);
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
        bz.write_all(&cropped)?;
        let record = bz.finish()?;
        let mut ldm = header;
        ldm.extend_from_slice(&i32::try_from(record.len())?.to_be_bytes());
        ldm.extend_from_slice(&record);
        out.push((format!("{i}-plain.ar2v"), plain));
        out.push((format!("{i}-ldm-bzip2.ar2v"), ldm));
    }
    Ok(out)
}

fn main() -> Res<()> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let Some((out_dir, nexrad)) = args.split_first() else {
        return Err("usage: fuzz_seeds OUT_DIR [NEXRAD_FILE ...]".into());
    };
    let mut targets = vec![
        ("decode_odim", Format::Odim, odim_seeds()?),
        ("decode_bom", Format::Bom, bom_seeds()?),
        ("decode_mch_gif", Format::MchGif, mch_seeds()?),
        ("decode_fmi_pgm", Format::FmiPgm, fmi_seeds()?),
    ];
    if !nexrad.is_empty() {
        targets.push(("decode_nexrad", Format::Nexrad, nexrad_seeds(nexrad)?));
    }
    for (target, format, seeds) in targets {
        let dir = out_dir.join(target);
        std::fs::create_dir_all(&dir)?;
        for (name, bytes) in seeds {
            let path = dir.join(format!("seed-{name}"));
            std::fs::write(&path, &bytes)?;
            // The file names the fuzz targets pass: the MeteoSwiss time
            // stamp; the NEXRAD site of legacy volumes.
            let file_name = match format {
                Format::Nexrad => "KLOT20030101_000000".to_string(),
                _ => mch_gif::file_name(time()?),
            };
            let decoded = decode(&bytes, Some(&file_name), Some(format));
            let status = match decoded {
                Ok(scan) => format!("decodes to {:?}", scan.values.dim()),
                Err(e) => format!("does not decode: {e}"),
            };
            println!("{} ({} bytes) {status}", path.display(), bytes.len());
        }
    }
    Ok(())
}
