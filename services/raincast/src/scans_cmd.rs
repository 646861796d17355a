//! `raincast scans list|quarantined --radar ID [--store …]`.

use crate::cli::{parse_rfc3339, process_env, runtime, ConfigArgs};
use anyhow::Result;
use chrono::{DateTime, TimeZone, Utc};
use clap::{Args, Subcommand};
use raincast_ingest::connect::Connector;
use raincast_ingest::Overrides;
use serde_json::json;
use std::io::Write;

#[derive(Args, Debug)]
pub struct ScansArgs {
    #[command(subcommand)]
    pub command: ScansCommand,
}

#[derive(Subcommand, Debug)]
pub enum ScansCommand {
    /// One JSON line per stored scan: time, rain_cells, bytes, tiles.
    List(ListArgs),
    /// One JSON line per quarantined file: key, reason.
    Quarantined(QuarantinedArgs),
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// The radar.
    #[arg(long, value_name = "ID")]
    pub radar: String,
    /// Only scans at or after this time (RFC 3339).
    #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
    pub from: Option<DateTime<Utc>>,
    /// Only scans at or before this time (RFC 3339).
    #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
    pub to: Option<DateTime<Utc>>,
    #[command(flatten)]
    pub cfg: ConfigArgs,
}

#[derive(Args, Debug)]
pub struct QuarantinedArgs {
    /// The radar.
    #[arg(long, value_name = "ID")]
    pub radar: String,
    #[command(flatten)]
    pub cfg: ConfigArgs,
}

pub fn run(args: ScansArgs) -> Result<()> {
    let env = process_env();
    match args.command {
        ScansCommand::List(a) => {
            let cfg = a.cfg.load(&env, Overrides::default())?;
            raincast_store::model::validate_radar_id(&a.radar)?;
            if let (Some(from), Some(to)) = (a.from, a.to) {
                if from > to {
                    anyhow::bail!("--from ({from}) is after --to ({to}): no scan can be in it");
                }
            }
            runtime()?.block_on(async {
                let stores = Connector::new(&cfg, &env).existing_stores().await?;
                let from = a
                    .from
                    .unwrap_or_else(|| Utc.timestamp_opt(0, 0).single().unwrap_or_default());
                let to =
                    a.to.or_else(|| Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).single())
                        .unwrap_or_else(Utc::now);
                let scans = stores
                    .scans
                    .list_scans(&a.radar, from, to, Utc::now())
                    .await?;
                let mut out = std::io::stdout().lock();
                for m in scans {
                    let line = json!({
                        "time": m.time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                        "rain_cells": m.rain_cells,
                        "bytes": m.bytes,
                        "tiles": m.tiles.len(),
                        "format": m.format,
                        "source_key": m.source_key,
                    });
                    if !emit(&mut out, &line)? {
                        break;
                    }
                }
                Ok(())
            })
        }
        ScansCommand::Quarantined(a) => {
            let cfg = a.cfg.load(&env, Overrides::default())?;
            raincast_store::model::validate_radar_id(&a.radar)?;
            runtime()?.block_on(async {
                let stores = Connector::new(&cfg, &env).existing_stores().await?;
                let mut out = std::io::stdout().lock();
                for q in stores.state.list_quarantined(&a.radar).await? {
                    let line = json!({
                        "key": q.key,
                        "reason_code": q.reason_code,
                        "reason": q.reason,
                        "time": q.time.map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
                        "recorded_at": q.recorded_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    });
                    if !emit(&mut out, &line)? {
                        break;
                    }
                }
                Ok(())
            })
        }
    }
}

/// Writes one JSON line; false when the reader went away (`| head`).
fn emit(out: &mut impl Write, line: &serde_json::Value) -> Result<bool> {
    match writeln!(out, "{line}") {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e.into()),
    }
}
