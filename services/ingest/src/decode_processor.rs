//! The real [`ScanProcessor`]: decode, hot prep, sparse encoding.

use crate::config::{IngestSettings, RadarConfig};
use crate::process::{ProcessedScan, Rejection, ScanProcessor};
use raincast_algorithms::decode::{self, nexrad};
use raincast_algorithms::polar::PolarGridder;
use raincast_algorithms::prep::{self, PrepOptions};
use raincast_algorithms::scan::{DecodeError, RadarScan};
use raincast_algorithms::sparse::{self, SparseOptions};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The real processor: `decode::decode` (format forced or detected), the hot
/// prep with the radar's Z–R, then the sparse encoding.
///
/// Polar volumes (NEXRAD, ODIM `PVOL`/`SCAN`) are gridded through a
/// [`PolarGridder`] kept per radar, so the polar → grid mapping is computed
/// once per site and geometry rather than for every volume.
#[derive(Debug, Clone)]
pub struct DecodeProcessor {
    prep: PrepOptions,
    sparse: SparseOptions,
    /// Largest declared grid accepted by the decoders.
    max_cells: u64,
    gridders: Arc<Mutex<HashMap<String, PolarGridder>>>,
}

impl DecodeProcessor {
    pub fn new(settings: &IngestSettings) -> Self {
        Self {
            prep: PrepOptions {
                zr: None,
                threshold_mm_h: settings.threshold_mm_h,
                speckle_filter: settings.speckle_filter,
            },
            sparse: SparseOptions {
                tile_size: settings.tile_size,
            },
            max_cells: settings.max_cells,
            gridders: Arc::default(),
        }
    }

    /// Decodes one file; polar data (NEXRAD, ODIM `PVOL`/`SCAN`) goes
    /// through the radar's gridder, which other files leave alone. The
    /// radar id doubles as the NEXRAD site for volumes that carry no
    /// location (legacy ones without an ICAO in the header or file name),
    /// and the radar's configured `location` places legacy volumes of sites
    /// the registry does not list (retired ones).
    fn decode(
        &self,
        radar: &RadarConfig,
        file_name: &str,
        bytes: &[u8],
    ) -> Result<RadarScan, DecodeError> {
        let format = radar
            .format
            .or_else(|| decode::detect(bytes, Some(file_name)));
        let options = decode::DecodeOptions {
            max_cells: self.max_cells,
            nexrad: nexrad::NexradOptions {
                site: Some(radar.id.clone()),
                location: radar.location.map(|l| nexrad::SiteLocation {
                    lat_deg: l.lat,
                    lon_deg: l.lon,
                    height_m: 0.0,
                }),
                max_cells: Some(self.max_cells),
                ..nexrad::NexradOptions::default()
            },
        };
        let lock = || self.gridders.lock().unwrap_or_else(|p| p.into_inner());
        // Taken out while decoding so other radars are not held up.
        let mut gridder = lock().remove(&radar.id).unwrap_or_default();
        let scan =
            decode::decode_with_gridder(bytes, Some(file_name), format, &options, &mut gridder);
        lock().insert(radar.id.clone(), gridder);
        scan
    }
}

impl ScanProcessor for DecodeProcessor {
    fn process(
        &self,
        radar: &RadarConfig,
        file_name: &str,
        bytes: &[u8],
    ) -> Result<ProcessedScan, Rejection> {
        let scan = self
            .decode(radar, file_name, bytes)
            .map_err(|e| Rejection {
                code: e.code().to_string(),
                reason: e.to_string(),
            })?;
        let opts = PrepOptions {
            zr: radar.zr,
            ..self.prep
        };
        let field = prep::prep(&scan, &opts);
        let rain_cells = field.rain_cells() as u64;
        let encoded = sparse::encode(&field, &self.sparse).map_err(|e| Rejection {
            code: format!("sparse_{}", e.code()),
            reason: e.to_string(),
        })?;
        Ok(ProcessedScan {
            time: field.time,
            format: scan.format.name().to_string(),
            header: encoded.header,
            rain_cells,
            tiles: encoded.tiles,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::{Config, Overrides, SourceSpec};
    use crate::layout::{KeyTemplate, DEFAULT_TEMPLATE};
    use raincast_algorithms::scan::Format;
    use std::collections::HashMap;

    #[test]
    fn odim_polar_volumes_reuse_the_radar_gridder() {
        use raincast_algorithms::encode::odim::{encode_polar, PolarSweep};
        // 40 dBZ on every ray from 20 to 30 km, undetect elsewhere.
        let values = ndarray::Array2::from_shape_fn((360, 60), |(_, b)| {
            if (20..30).contains(&b) {
                40.0
            } else {
                f32::NEG_INFINITY
            }
        });
        let sweep = PolarSweep {
            elangle_deg: 0.5,
            quantity: "DBZH",
            gate_m: 1000.0,
            rstart_km: 0.0,
            values: &values,
        };
        let time = chrono::DateTime::from_timestamp(1_625_414_400, 0).unwrap();
        let bytes = encode_polar("PVOL", (50.9, 4.5, 100.0), time, "NOD:bezav", &[sweep]).unwrap();
        let p = DecodeProcessor::new(&IngestSettings::default());
        let radar = RadarConfig::ad_hoc("bezav", &KeyTemplate::parse(DEFAULT_TEMPLATE).unwrap());
        let a = p.process(&radar, "bezav.pvol.h5", &bytes).unwrap();
        let b = p.process(&radar, "bezav.pvol.h5", &bytes).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.format, "odim");
        assert!(a.rain_cells > 1000, "{}", a.rain_cells);
        let gridders = p.gridders.lock().unwrap();
        assert_eq!(gridders["bezav"].mapping_builds(), 1, "mapping built once");
    }

    #[test]
    fn nexrad_volumes_reuse_the_radar_gridder() {
        let Some(data) = raincast_testkit::shared_data() else {
            return;
        };
        let bytes = std::fs::read(data.join("nexrad/example_nexrad_archive_msg31_compressed.ar2v"))
            .unwrap();
        let p = DecodeProcessor::new(&IngestSettings::default());
        let radar = RadarConfig::ad_hoc("katx", &KeyTemplate::parse(DEFAULT_TEMPLATE).unwrap());
        let a = p
            .process(&radar, "KATX20130717_195021_V06", &bytes)
            .unwrap();
        let b = p
            .process(&radar, "KATX20130717_195021_V06", &bytes)
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.format, "nexrad");
        assert!(a.rain_cells > 0);
        let gridders = p.gridders.lock().unwrap();
        assert_eq!(gridders["katx"].mapping_builds(), 1, "mapping built once");
        drop(gridders);
        // Corrupt volumes are rejected with the decoder's reason code.
        let rej = p
            .process(&radar, "x", &bytes[..bytes.len() / 2])
            .unwrap_err();
        assert_eq!(rej.code, "truncated");
    }

    #[test]
    fn a_legacy_volume_of_an_unlisted_site_is_placed_by_the_radar_location() {
        let Some(data) = raincast_testkit::shared_data() else {
            return;
        };
        // The legacy KLOT 2003 volume: message 1 only, no ICAO in its
        // header; the radar id (`klix`, a retired site) is in no registry.
        let legacy = std::fs::read(data.join("nexrad/example_nexrad_archive_msg1.bz2")).unwrap();
        let p = DecodeProcessor::new(&IngestSettings::default());
        let mut radar = RadarConfig::ad_hoc("klix", &KeyTemplate::parse(DEFAULT_TEMPLATE).unwrap());
        let rej = p.process(&radar, "klix.ar2", &legacy).unwrap_err();
        assert_eq!(rej.code, "bad_value", "{}", rej.reason);
        radar.location = Some(crate::config::Location {
            lat: 30.3367,
            lon: -89.8256,
        });
        let scan = p.process(&radar, "klix.ar2", &legacy).unwrap();
        assert_eq!(scan.format, "nexrad");
        assert!(scan.rain_cells > 0);
        let grid = raincast_algorithms::sparse::header_info(&scan.header)
            .unwrap()
            .grid;
        let (lon, lat) = grid.rowcol_to_lonlat(250.0, 250.0).unwrap();
        assert!((lat - 30.3367).abs() < 1e-6 && (lon + 89.8256).abs() < 1e-6);
    }

    #[test]
    fn the_nexrad_example_configuration_is_valid() {
        let path = raincast_testkit::workspace_root().join("examples/nexrad-katx.toml");
        let c = Config::load(Some(&path), &HashMap::new(), &Overrides::default()).unwrap();
        assert_eq!(
            c.source,
            SourceSpec::S3 {
                url: "s3://unidata-nexrad-level2".into()
            }
        );
        assert_eq!(
            c.aws.s3_anonymous, None,
            "unsigned only without credentials"
        );
        assert_eq!(c.radars.len(), 1);
        let katx = &c.radars[0];
        assert_eq!(
            (katx.id.as_str(), katx.format),
            ("katx", Some(Format::Nexrad))
        );
        let t = &katx.key_template;
        assert!(t.time_in_key());
        let m = t
            .match_key("katx", "2013/07/17/KATX/KATX20130717_195021_V06")
            .unwrap();
        assert_eq!(m.time.unwrap().to_rfc3339(), "2013-07-17T19:50:21+00:00");
        assert!(t
            .match_key("katx", "2013/07/17/KATX/KATX20130717_195021_V06_MDM")
            .is_none());
        assert_eq!(
            t.prefix_for(
                "katx",
                chrono::NaiveDate::from_ymd_opt(2013, 7, 17).unwrap()
            ),
            "2013/07/17/KATX/"
        );
    }
}
