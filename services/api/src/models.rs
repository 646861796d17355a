//! Response types shared by several resources.

use raincast_algorithms::Grid;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A WGS84 position in degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LonLat {
    /// Longitude, degrees east.
    pub lon: f64,
    /// Latitude, degrees north.
    pub lat: f64,
}

/// A lon/lat box in degrees: where to place a map-ready image.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"west": 143.3, "south": -39.0, "east": 146.2, "north": -36.7}))]
pub struct Bounds {
    pub west: f64,
    pub south: f64,
    pub east: f64,
    pub north: f64,
}

impl Bounds {
    /// The box of a map-ready raster, rounded to 6 decimals.
    pub fn of_raster(r: &raincast_algorithms::render::MapRaster) -> Self {
        Self {
            west: round6(r.west),
            south: round6(r.south),
            east: round6(r.east),
            north: round6(r.north),
        }
    }

    /// `[[south, west], [north, east]]`, Leaflet's `LatLngBounds` order.
    pub fn leaflet(&self) -> [[f64; 2]; 2] {
        [[self.south, self.west], [self.north, self.east]]
    }
}

/// A GeoJSON Polygon geometry (RFC 7946): rings of `[lon, lat]` positions,
/// the first and last position of each ring equal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"type": "Polygon", "coordinates": [[[143.3, -36.7], [146.2, -36.7], [146.2, -39.0], [143.3, -39.0], [143.3, -36.7]]]}))]
pub struct GeoJsonPolygon {
    /// Always `Polygon`.
    #[serde(rename = "type")]
    pub geometry_type: String,
    /// Linear rings of `[lon, lat]` positions.
    pub coordinates: Vec<Vec<Vec<f64>>>,
}

/// The grid a field is defined on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GridInfo {
    /// PROJ string of the projection.
    pub projection: String,
    /// Rows (north to south).
    pub rows: usize,
    /// Columns (west to east).
    pub cols: usize,
    /// Cell width, projected metres.
    pub cell_x_m: f64,
    /// Cell height, projected metres.
    pub cell_y_m: f64,
    /// Projected x of the west edge, metres.
    pub x_west_m: f64,
    /// Projected y of the north edge, metres.
    pub y_north_m: f64,
}

impl From<&Grid> for GridInfo {
    fn from(g: &Grid) -> Self {
        Self {
            projection: g.projection.trim().to_string(),
            rows: g.rows,
            cols: g.cols,
            cell_x_m: g.cell_x_m,
            cell_y_m: g.cell_y_m,
            x_west_m: g.x_west_m,
            y_north_m: g.y_north_m,
        }
    }
}

/// The outline of a grid as a GeoJSON polygon (edges sampled every 1/8 side).
pub fn grid_outline(g: &Grid) -> Option<GeoJsonPolygon> {
    let (r, c) = (g.rows as f64, g.cols as f64);
    let n = 8;
    let mut ring = Vec::with_capacity(4 * n + 1);
    // Clockwise from the north-west corner: north, east, south, west edges.
    let at = |edge: usize, t: f64| match edge {
        0 => (0.0, t * c),
        1 => (t * r, c),
        2 => (r, (1.0 - t) * c),
        _ => ((1.0 - t) * r, 0.0),
    };
    for edge in 0..4 {
        for i in 0..n {
            let (row, col) = at(edge, i as f64 / n as f64);
            let (lon, lat) = g.rowcol_to_lonlat(row, col).ok()?;
            ring.push(vec![round6(lon), round6(lat)]);
        }
    }
    ring.push(ring[0].clone());
    Some(GeoJsonPolygon {
        geometry_type: "Polygon".into(),
        coordinates: vec![ring],
    })
}

/// Rounds degrees to 6 decimals (0.1 m).
pub fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}
