//! `raincast prep FILE|DIR [--format F] [--npy OUT.npy]`.

use crate::files::{files_below, write_atomically};
use anyhow::{bail, Context, Result};
use clap::Args;
use raincast_algorithms::decode::nexrad::SiteLocation;
use raincast_algorithms::decode::{self, DecodeOptions};
use raincast_algorithms::npy;
use raincast_algorithms::prep::{self, PrepOptions};
use raincast_algorithms::scan::Format;
use raincast_algorithms::sparse::{self, SparseOptions};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args, Debug)]
pub struct PrepArgs {
    /// A radar file (ODIM_H5, BOM netCDF4, MeteoSwiss GIF, FMI PGM[.gz],
    /// NEXRAD Level II) or a folder of them.
    pub path: PathBuf,
    /// Force a decoder instead of detecting the format from the content:
    /// odim, bom, mch-gif, fmi-pgm, nexrad.
    #[arg(long, value_name = "F")]
    pub format: Option<Format>,
    /// NEXRAD only: the radar's ICAO (e.g. KLOT), used when the volume says
    /// nothing about its location (legacy message-1 volumes whose header and
    /// file name carry no ICAO).
    #[arg(long, value_name = "ICAO")]
    pub site: Option<String>,
    /// NEXRAD only: where the radar stands, as LAT,LON[,HEIGHT_M] (degrees,
    /// metres above sea level), used last: for a legacy volume of a site the
    /// registry does not list (retired sites, e.g. KLIX before 2023).
    #[arg(long, value_name = "LAT,LON[,HEIGHT_M]", value_parser = parse_site_location)]
    pub site_location: Option<SiteLocation>,
    /// Write the decoded rain rate before thresholding to this .npy file
    /// (float32 mm/h, C order, row 0 north, NaN = no data). Single file only.
    #[arg(long, value_name = "OUT.npy")]
    pub npy: Option<PathBuf>,
    /// Rain threshold in mm/h; lower rates count as no rain.
    #[arg(long, default_value_t = 0.1, value_name = "MM_H")]
    pub threshold: f32,
    /// Remove isolated single rain cells (speckle).
    #[arg(long)]
    pub speckle: bool,
}

/// `LAT,LON[,HEIGHT_M]` for `--site-location`; the ranges are checked by
/// the decoder, which names the field.
fn parse_site_location(s: &str) -> std::result::Result<SiteLocation, String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let number = |name: &str, v: &str| {
        v.parse::<f64>()
            .map_err(|_| format!("{name} {v:?} is not a number (expected LAT,LON[,HEIGHT_M])"))
    };
    match parts.as_slice() {
        [lat, lon] | [lat, lon, _] => Ok(SiteLocation {
            lat_deg: number("latitude", lat)?,
            lon_deg: number("longitude", lon)?,
            height_m: match parts.get(2) {
                Some(h) => number("height", h)?,
                None => 0.0,
            },
        }),
        _ => Err(format!(
            "expected LAT,LON[,HEIGHT_M] (e.g. 30.3367,-89.8256,7), got {s:?}"
        )),
    }
}

pub fn run(args: PrepArgs) -> Result<()> {
    let opts = PrepOptions {
        zr: None,
        threshold_mm_h: args.threshold,
        speckle_filter: args.speckle,
    };
    if !(args.threshold.is_finite() && args.threshold >= 0.0) {
        bail!(
            "--threshold must be a finite number >= 0, got {}",
            args.threshold
        );
    }
    let mut decode_opts = DecodeOptions::default();
    decode_opts.nexrad.site = args.site.clone();
    decode_opts.nexrad.location = args.site_location;
    if args.path.is_dir() {
        if args.npy.is_some() {
            bail!(
                "--npy takes a single FILE, but {} is a folder",
                args.path.display()
            );
        }
        return run_dir(&args.path, args.format, &decode_opts, &opts);
    }
    let summary = prep_file(
        &args.path,
        args.format,
        &decode_opts,
        &opts,
        args.npy.as_deref(),
    )?;
    println!("{summary}");
    Ok(())
}

/// Decodes and preps one file and returns its JSON summary.
pub fn prep_file(
    path: &Path,
    format: Option<Format>,
    decode_opts: &DecodeOptions,
    opts: &PrepOptions,
    npy_out: Option<&Path>,
) -> Result<Value> {
    let bytes = crate::files::read_scan(path)?;
    let name = path.file_name().and_then(|n| n.to_str());
    let scan = decode::decode_with_options(&bytes, name, format, decode_opts)
        .with_context(|| format!("{}: cannot decode", path.display()))?;
    let raw = prep::to_rain_rate(&scan, opts.zr);
    if let Some(out) = npy_out {
        write_atomically(out, &npy::encode_f32(&raw.rate_mm_h))
            .with_context(|| format!("{}: cannot write .npy", out.display()))?;
    }
    let field = prep::prep(&scan, opts);
    let (rows, cols) = field.grid.shape();
    let encoded = sparse::encode(&field, &SparseOptions::default())
        .with_context(|| format!("{}: cannot encode the sparse rain array", path.display()))?;
    Ok(json!({
        "file": path.display().to_string(),
        "format": scan.format.name(),
        "source": scan.source,
        "time": scan.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "rows": rows,
        "cols": cols,
        "cell_m": field.grid.cell_m(),
        "projection": field.grid.projection,
        "nodata_cells": field.nodata_cells(),
        "rain_cells": field.rain_cells(),
        "max_mm_h": round3(field.max_mm_h() as f64),
        "mean_mm_h": round3(field.mean_mm_h()),
        "dense_bytes": rows * cols * 4,
        "sparse_bytes": encoded.total_bytes(),
        "tiles": encoded.tiles.len(),
    }))
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn run_dir(
    dir: &Path,
    format: Option<Format>,
    decode_opts: &DecodeOptions,
    opts: &PrepOptions,
) -> Result<()> {
    let files = files_below(dir)?;
    let started = Instant::now();
    let (mut ok, mut failed) = (0usize, 0usize);
    let stdout = std::io::stdout();
    for (i, path) in files.iter().enumerate() {
        let line = match prep_file(path, format, decode_opts, opts, None) {
            Ok(v) => {
                ok += 1;
                v
            }
            Err(e) => {
                failed += 1;
                json!({"file": path.display().to_string(), "error": format!("{e:#}")})
            }
        };
        let mut out = stdout.lock();
        writeln!(out, "{line}")?;
        out.flush()?;
        eprintln!(
            "prep: [{}/{}] {} ({:.1} s elapsed)",
            i + 1,
            files.len(),
            path.display(),
            started.elapsed().as_secs_f64()
        );
    }
    println!(
        "{}",
        json!({"summary": {"files": files.len(), "ok": ok, "failed": failed,
               "seconds": round3(started.elapsed().as_secs_f64())}})
    );
    if failed > 0 {
        bail!("{failed} of {} files failed", files.len());
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use raincast_algorithms::encode::mch_gif;

    /// A scratch folder removed on drop.
    struct Scratch(PathBuf);
    impl Scratch {
        fn new(tag: &str) -> Self {
            let p =
                std::env::temp_dir().join(format!("raincast-prep-{tag}-{}", std::process::id()));
            std::fs::create_dir_all(&p).unwrap();
            Self(p)
        }
    }
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A synthetic MeteoSwiss GIF with rain in two places, no data in a
    /// corner: the JSON summary reports the sparse encoding of the prepped field.
    #[test]
    fn summary_reports_the_sparse_encoding() {
        let dir = Scratch::new("sparse");
        let rate = ndarray::Array2::from_shape_fn((640, 710), |(r, c)| {
            if r < 40 && c < 40 {
                f32::NAN
            } else if (100..150).contains(&r) && (300..420).contains(&c) {
                5.0
            } else if r > 600 && c > 690 {
                1.0
            } else {
                0.0
            }
        });
        let time = chrono::DateTime::from_timestamp(1_468_250_700, 0).unwrap();
        let path = dir.0.join(mch_gif::file_name(time));
        std::fs::write(&path, mch_gif::encode(rate.view()).unwrap()).unwrap();
        let v = prep_file(
            &path,
            None,
            &DecodeOptions::default(),
            &PrepOptions::default(),
            None,
        )
        .unwrap();
        // Rain in tile (0, 1) (rows 100..150, columns 300..420) and in the
        // south-east tile (2, 2).
        assert_eq!(v["tiles"], 2, "{v}");
        let sparse_bytes = v["sparse_bytes"].as_u64().unwrap();
        let dense = v["dense_bytes"].as_u64().unwrap();
        assert_eq!(dense, 640 * 710 * 4);
        assert!(sparse_bytes > 0 && sparse_bytes * 100 < dense, "{v}");
        assert_eq!(v["rain_cells"], 50 * 120 + 39 * 19);
        assert_eq!(v["nodata_cells"], 40 * 40);

        let dry = dir
            .0
            .join(mch_gif::file_name(time + chrono::Duration::minutes(5)));
        let zeros = ndarray::Array2::<f32>::zeros((640, 710));
        std::fs::write(&dry, mch_gif::encode(zeros.view()).unwrap()).unwrap();
        let v = prep_file(
            &dry,
            None,
            &DecodeOptions::default(),
            &PrepOptions::default(),
            None,
        )
        .unwrap();
        assert_eq!(v["tiles"], 0, "{v}");
        assert!(v["sparse_bytes"].as_u64().unwrap() < 500, "{v}");
    }

    #[test]
    fn site_location_takes_lat_lon_and_an_optional_height() {
        let l = parse_site_location("30.3367, -89.8256").unwrap();
        assert_eq!((l.lat_deg, l.lon_deg, l.height_m), (30.3367, -89.8256, 0.0));
        let l = parse_site_location("30.3367,-89.8256,7").unwrap();
        assert_eq!(l.height_m, 7.0);
        let e = parse_site_location("30.3,x").unwrap_err();
        assert!(e.contains("longitude \"x\""), "{e}");
        let e = parse_site_location("30.3").unwrap_err();
        assert!(e.contains("LAT,LON[,HEIGHT_M]"), "{e}");
    }
}
