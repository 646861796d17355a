//! One field as a tiled GeoTIFF with overviews, written in memory.
//!
//! Layout: Float32 samples (mm/h for rain), NaN as no data (`GDAL_NODATA`
//! "nan"), 256 × 256 tiles, Deflate with the floating-point predictor, the
//! grid's CRS as GeoKeys ([`super::crs`]) and its geotransform as
//! `ModelPixelScale` + `ModelTiepoint` (the north-west outer corner, pixel
//! is area). Overviews follow as reduced-resolution images (`NewSubfileType`
//! = 1) at factors 2, 4, 8, … while the overview's longer side is at least
//! [`MIN_OVERVIEW_SIDE`] cells; an overview cell is the mean of the finite
//! cells of its block (GDAL's `AVERAGE`), NaN only where the whole block is.
//! The TIFF container (IFDs, tile offsets, compression) is written by the
//! `tiff-writer` crate; this module only cuts the field into tiles.

use super::ExportError;
use crate::Grid;
use geotiff_core::tags;
use ndarray::{Array2, ArrayView2};
use std::io::Cursor;
use tiff_core::{Compression, Predictor, Tag, TagValue};
use tiff_writer::{ImageBuilder, TiffWriter, WriteOptions};

/// Tile side, cells.
pub const TILE: usize = 256;
/// Overviews stop before the longer side drops below this many cells.
pub const MIN_OVERVIEW_SIDE: usize = 32;
/// GDAL's metadata tag (XML).
const TAG_GDAL_METADATA: u16 = 42112;

/// Extra description of the band, written as GDAL metadata.
#[derive(Debug, Clone, Default)]
pub struct BandInfo {
    /// Unit of the values, e.g. `mm/h`.
    pub unit: String,
    /// Band description, e.g. `rain rate`.
    pub description: String,
    /// Dataset metadata items (name, value), e.g. the valid time.
    pub items: Vec<(String, String)>,
}

/// The overview factors for a `rows × cols` raster (2, 4, 8, …).
pub fn overview_factors(rows: usize, cols: usize) -> Vec<usize> {
    let side = rows.max(cols);
    (1..)
        .map(|k| 1usize << k)
        .take_while(|f| side.div_ceil(*f) >= MIN_OVERVIEW_SIDE)
        .collect()
}

/// The `factor` overview of `field`: block means of the finite cells, NaN
/// where a block has none. Shape `(ceil(rows/f), ceil(cols/f))`.
pub fn overview(field: ArrayView2<f32>, factor: usize) -> Array2<f32> {
    let (rows, cols) = field.dim();
    let (orows, ocols) = (rows.div_ceil(factor), cols.div_ceil(factor));
    let mut sums = vec![0f64; ocols];
    let mut counts = vec![0u32; ocols];
    let mut out = Array2::from_elem((orows, ocols), f32::NAN);
    for orow in 0..orows {
        sums.iter_mut().for_each(|s| *s = 0.0);
        counts.iter_mut().for_each(|c| *c = 0);
        for row in field.rows().into_iter().skip(orow * factor).take(factor) {
            for (c, v) in row.iter().enumerate() {
                if v.is_finite() {
                    sums[c / factor] += f64::from(*v);
                    counts[c / factor] += 1;
                }
            }
        }
        for oc in 0..ocols {
            if counts[oc] > 0 {
                out[[orow, oc]] = (sums[oc] / f64::from(counts[oc])) as f32;
            }
        }
    }
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn gdal_metadata(info: &BandInfo) -> String {
    let mut xml = String::from("<GDALMetadata>");
    for (k, v) in &info.items {
        xml.push_str(&format!(
            "<Item name=\"{}\">{}</Item>",
            xml_escape(k),
            xml_escape(v)
        ));
    }
    if !info.unit.is_empty() {
        xml.push_str(&format!(
            "<Item name=\"UNITTYPE\" sample=\"0\" role=\"unittype\">{}</Item>",
            xml_escape(&info.unit)
        ));
    }
    if !info.description.is_empty() {
        xml.push_str(&format!(
            "<Item name=\"DESCRIPTION\" sample=\"0\" role=\"description\">{}</Item>",
            xml_escape(&info.description)
        ));
    }
    xml.push_str("</GDALMetadata>");
    xml
}

fn tiff_err(e: tiff_writer::Error) -> ExportError {
    ExportError::Tiff(e.to_string())
}

fn image(cols: usize, rows: usize) -> Result<ImageBuilder, ExportError> {
    let (w, h) = (
        u32::try_from(cols).map_err(|_| ExportError::Tiff(format!("{cols} columns")))?,
        u32::try_from(rows).map_err(|_| ExportError::Tiff(format!("{rows} rows")))?,
    );
    Ok(ImageBuilder::new(w, h)
        .sample_type::<f32>()
        .compression(Compression::Deflate)
        .predictor(Predictor::FloatingPoint)
        .tiles(TILE as u32, TILE as u32))
}

/// Writes every tile of `field` (row-major tile order, edge tiles padded with NaN).
fn write_tiles<W: std::io::Write + std::io::Seek>(
    w: &mut TiffWriter<W>,
    handle: &tiff_writer::ImageHandle,
    field: ArrayView2<f32>,
) -> Result<(), ExportError> {
    let (rows, cols) = field.dim();
    let (down, across) = (rows.div_ceil(TILE), cols.div_ceil(TILE));
    let mut block = vec![f32::NAN; TILE * TILE];
    for tr in 0..down {
        for tc in 0..across {
            block.iter_mut().for_each(|v| *v = f32::NAN);
            let (r0, c0) = (tr * TILE, tc * TILE);
            let ncols = TILE.min(cols - c0);
            for r in 0..TILE.min(rows - r0) {
                let src = field.row(r0 + r);
                for (dst, v) in block[r * TILE..r * TILE + ncols]
                    .iter_mut()
                    .zip(src.iter().skip(c0))
                {
                    *dst = *v;
                }
            }
            w.write_block(handle, tr * across + tc, &block)
                .map_err(tiff_err)?;
        }
    }
    Ok(())
}

/// Encodes `field` (mm/h, `(rows, cols)` of `grid`, NaN = no data) as a
/// GeoTIFF; returns the file's bytes.
pub fn encode_geotiff(
    grid: &Grid,
    field: ArrayView2<f32>,
    info: &BandInfo,
) -> Result<Vec<u8>, ExportError> {
    super::check_shape(grid, field.dim())?;
    let crs = super::crs::Crs::from_proj4(&grid.projection)?;
    let (directory, doubles, ascii) = crs
        .geokeys()
        .serialize()
        .map_err(|e| ExportError::Tiff(format!("GeoKeys: {e}")))?;
    let mut base = image(grid.cols, grid.rows)?
        .tag(Tag::new(
            tags::TAG_MODEL_PIXEL_SCALE,
            TagValue::Double(vec![grid.cell_x_m, grid.cell_y_m, 0.0]),
        ))
        .tag(Tag::new(
            tags::TAG_MODEL_TIEPOINT,
            TagValue::Double(vec![0.0, 0.0, 0.0, grid.x_west_m, grid.y_north_m, 0.0]),
        ))
        .tag(Tag::new(
            tags::TAG_GEO_KEY_DIRECTORY,
            TagValue::Short(directory),
        ))
        .tag(Tag::new(
            tags::TAG_GDAL_NODATA,
            TagValue::Ascii("nan".into()),
        ))
        .tag(Tag::new(
            TAG_GDAL_METADATA,
            TagValue::Ascii(gdal_metadata(info)),
        ));
    if !doubles.is_empty() {
        base = base.tag(Tag::new(
            tags::TAG_GEO_DOUBLE_PARAMS,
            TagValue::Double(doubles),
        ));
    }
    if !ascii.is_empty() {
        base = base.tag(Tag::new(tags::TAG_GEO_ASCII_PARAMS, TagValue::Ascii(ascii)));
    }
    let mut w =
        TiffWriter::new(Cursor::new(Vec::new()), WriteOptions::default()).map_err(tiff_err)?;
    let handle = w.add_image(base).map_err(tiff_err)?;
    write_tiles(&mut w, &handle, field)?;
    for f in overview_factors(grid.rows, grid.cols) {
        let ov = overview(field, f);
        let (r, c) = ov.dim();
        let handle = w.add_image(image(c, r)?.overview()).map_err(tiff_err)?;
        write_tiles(&mut w, &handle, ov.view())?;
    }
    Ok(w.finish().map_err(tiff_err)?.into_inner())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn overview_means_ignore_no_data() {
        let f = Array2::from_shape_vec(
            (3, 3),
            vec![1.0, 3.0, 5.0, f32::NAN, 2.0, 7.0, f32::NAN, f32::NAN, 9.0],
        )
        .unwrap_or_default();
        let o = overview(f.view(), 2);
        assert_eq!(o.dim(), (2, 2));
        assert_eq!(o[[0, 0]], 2.0); // (1 + 3 + 2) / 3
        assert_eq!(o[[0, 1]], 6.0);
        assert!(o[[1, 0]].is_nan());
        assert_eq!(o[[1, 1]], 9.0);
    }

    #[test]
    fn overviews_stop_at_the_minimum_side() {
        assert_eq!(overview_factors(512, 512), vec![2, 4, 8, 16]);
        assert_eq!(overview_factors(64, 80), vec![2]);
        assert!(overview_factors(20, 20).is_empty());
    }

    #[test]
    fn a_wrong_shape_is_refused() {
        let grid = Grid::new(
            "+proj=aeqd +lat_0=47 +lon_0=8",
            4,
            5,
            1000.0,
            1000.0,
            0.0,
            0.0,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let e =
            encode_geotiff(&grid, Array2::zeros((5, 4)).view(), &BandInfo::default()).unwrap_err();
        assert!(e.to_string().contains("shape"), "{e}");
    }
}
