//! One module and one `router()` per resource; merged in `lib.rs`.

pub mod basemap;
pub mod darksky;
pub mod forecast;
pub mod gis;
pub mod health;
pub mod nowcast;
pub mod openapi;
pub mod page;
pub mod radars;
pub mod scans;
pub mod skill;
pub mod subscriptions;
pub mod tiles;
