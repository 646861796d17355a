//! `raincast verify DIR [--leads ...] [--thresholds 0.5,1,5]`: nowcasts at
//! every start time of a day of scans, scored against the later scans, next
//! to persistence.

use anyhow::{bail, Result};
use chrono::{DateTime, Utc};
use clap::{Args, ValueEnum};
use raincast_algorithms::nowcast::{NowcastConfig, MIN_FRAMES};
use raincast_algorithms::prep::RainField;
use raincast_algorithms::scan::Format;
use raincast_algorithms::verify::{
    verify_series_from, CalibrationFit, Method, Reliability, SeriesFields, SkillSums, VerifyConfig,
    VerifyReport, SERVED_WINDOW_HOURS, SKILL_CSI_THRESHOLDS_MM_H,
};
use raincast_algorithms::Grid;
use std::collections::VecDeque;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Progress on stderr: one line rewritten in place on a terminal, else a
/// line at every tenth (a log file gets no carriage returns); other
/// messages start on a line of their own.
struct Progress {
    tty: bool,
    open: bool,
    tenth: usize,
}

impl Progress {
    fn new() -> Self {
        Self {
            tty: std::io::stderr().is_terminal(),
            open: false,
            tenth: 0,
        }
    }

    fn update(&mut self, done: usize, total: usize, msg: impl FnOnce() -> String) {
        if self.tty {
            eprint!("\r{}", msg());
            self.open = true;
        } else {
            let tenth = done * 10 / total.max(1);
            if tenth > self.tenth || done == total {
                self.tenth = tenth;
                eprintln!("{}", msg());
            }
        }
    }

    fn line(&mut self, msg: &str) {
        self.end();
        eprintln!("{msg}");
    }

    fn end(&mut self) {
        if self.open {
            eprintln!();
            self.open = false;
        }
    }
}

/// A scan found by the first reading: decoded once for its time and grid,
/// then dropped.
struct Found {
    path: PathBuf,
    time: DateTime<Utc>,
    grid: Grid,
}

/// The day's scans for [`verify_series_from`], decoded again when a start
/// time needs them, the last used kept: twice one start time's scans
/// (`working_set`), not the day (session 41: a day of 48 OPERA scans
/// peaked at 1.07 GB when every field was kept).
struct FileSeries {
    found: Vec<Found>,
    format: Option<Format>,
    kept: VecDeque<(usize, Arc<RainField>)>,
    keep: usize,
}

impl FileSeries {
    fn new(found: Vec<Found>, format: Option<Format>) -> Self {
        Self {
            found,
            format,
            kept: VecDeque::new(),
            keep: 2 * (MIN_FRAMES + 1),
        }
    }
}

impl SeriesFields for FileSeries {
    fn times(&self) -> Vec<DateTime<Utc>> {
        self.found.iter().map(|f| f.time).collect()
    }

    fn field(&mut self, i: usize) -> std::result::Result<Arc<RainField>, String> {
        if let Some(at) = self.kept.iter().position(|(k, _)| *k == i) {
            let hit = self.kept.remove(at).expect("position is in range");
            let field = hit.1.clone();
            self.kept.push_back(hit);
            return Ok(field);
        }
        let found = self.found.get(i).ok_or_else(|| format!("no scan {i}"))?;
        let field =
            crate::files::load_field(&found.path, self.format).map_err(|e| format!("{e:#}"))?;
        if field.time != found.time || !field.grid.same_geometry(&found.grid) {
            return Err(format!(
                "{}: changed since it was first read",
                found.path.display()
            ));
        }
        let field = Arc::new(field);
        while self.kept.len() >= self.keep {
            self.kept.pop_front();
        }
        self.kept.push_back((i, field.clone()));
        Ok(field)
    }

    fn working_set(&mut self, scans: usize) {
        self.keep = 2 * scans.max(1);
    }
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// A folder holding consecutive scans of one radar (searched recursively).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Lead times in minutes. Default: every scan interval up to 60 min.
    #[arg(
        long,
        value_delimiter = ',',
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u32).range(1..=raincast_algorithms::nowcast::MAX_LEAD_MIN as i64)
    )]
    pub leads: Option<Vec<u32>>,
    /// Thresholds of the CSI columns, mm/h.
    #[arg(long, value_delimiter = ',', default_value = "0.5,1,5")]
    pub thresholds: Vec<f32>,
    /// Force a decoder instead of detecting the format.
    #[arg(long, value_name = "F")]
    pub format: Option<Format>,
    /// Latest scans used per nowcast (3 to 12, as `[nowcast] frames`).
    #[arg(
        long,
        default_value_t = MIN_FRAMES,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(3..=12)
    )]
    pub frames: usize,
    /// Event of the probability (reliability, Brier score, calibration),
    /// mm/h: rain at or above this rate. The service's default is 0.1.
    #[arg(long, default_value_t = 1.0)]
    pub prob_threshold: f32,
    /// Fit cells a lead needs before its probability is calibrated (the
    /// `[nowcast] min_samples` of the service).
    #[arg(long, default_value_t = 2000)]
    pub min_samples: u64,
    /// Experiment (not what the service does): weight the fit cases by age,
    /// halving every this many minutes before the middle of the day.
    #[arg(long, value_name = "MIN")]
    pub calibration_half_life: Option<f64>,
    /// The calibration the second half of the day is scored with:
    /// `first-half`, one fit on the cases verified in the first half (issue
    /// 17's check); `served`, before each case a fit on every case verified
    /// by its issue time in the last 24 h, as the nowcast service calibrates
    /// what it serves. Neither sees a scan after the case's issue time.
    #[arg(long, value_enum, default_value = "first-half")]
    pub calibration_fit: FitArg,
}

/// `--calibration-fit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FitArg {
    FirstHalf,
    Served,
}

pub fn run(mut args: VerifyArgs) -> Result<()> {
    if let Some(leads) = args.leads.as_mut() {
        let mut seen = std::collections::BTreeSet::new();
        leads.retain(|l| seen.insert(*l));
    }
    if !(args.prob_threshold.is_finite() && args.prob_threshold > 0.0) {
        bail!(
            "--prob-threshold must be a positive number, got {}",
            args.prob_threshold
        );
    }
    if args
        .calibration_half_life
        .is_some_and(|h| !(h.is_finite() && h > 0.0))
    {
        bail!("--calibration-half-life must be a positive number of minutes");
    }
    if args.calibration_half_life.is_some() && args.calibration_fit == FitArg::Served {
        bail!("--calibration-half-life weights the first half's fit; it does not apply to --calibration-fit served");
    }
    if args.thresholds.iter().any(|t| !(t.is_finite() && *t > 0.0)) {
        bail!(
            "--thresholds must be positive numbers, got {:?}",
            args.thresholds
        );
    }
    let started = Instant::now();
    let files = crate::files::files_below(&args.dir)?;
    if files.is_empty() {
        bail!("{}: no files found", args.dir.display());
    }
    // Every scan's time and grid, each field dropped once read: the
    // start times decode the scans they need again.
    let mut progress = Progress::new();
    let mut fields: Vec<Found> = Vec::with_capacity(files.len());
    for (i, path) in files.iter().enumerate() {
        match crate::files::load_field(path, args.format) {
            Ok(f) => fields.push(Found {
                path: path.clone(),
                time: f.time,
                grid: f.grid,
            }),
            Err(e) => progress.line(&format!("verify: skipping {e:#}")),
        }
        progress.update(i + 1, files.len(), || {
            format!(
                "verify: read {}/{} files, {} scans decoded",
                i + 1,
                files.len(),
                fields.len()
            )
        });
    }
    progress.end();
    // Keep the scans on the grid of the majority (one radar).
    let Some(first) = fields.first() else {
        bail!("{}: no scan could be decoded", args.dir.display());
    };
    let mut grid = first.grid.clone();
    let mut best = 0;
    for f in &fields {
        let n = fields
            .iter()
            .filter(|g| g.grid.same_geometry(&f.grid))
            .count();
        if n > best {
            best = n;
            grid = f.grid.clone();
        }
    }
    let (kept, other): (Vec<Found>, Vec<Found>) = fields
        .into_iter()
        .partition(|f| f.grid.same_geometry(&grid));
    if let Some(o) = other.first() {
        eprintln!(
            "verify: ignoring {} scans on another grid than the majority's ({} scans), e.g. {}",
            other.len(),
            kept.len(),
            o.path.display()
        );
    }
    // One scan per time: a copy of a scan under another name (or two
    // products of one time) would count each case twice.
    let mut fields: Vec<Found> = Vec::with_capacity(kept.len());
    let mut at: std::collections::HashMap<DateTime<Utc>, usize> = Default::default();
    for f in kept {
        match at.get(&f.time) {
            Some(&i) => eprintln!(
                "verify: ignoring {}: a scan of the same time ({}) was read from {}",
                f.path.display(),
                f.time.format("%Y-%m-%dT%H:%M:%SZ"),
                fields[i].path.display()
            ),
            None => {
                at.insert(f.time, fields.len());
                fields.push(f);
            }
        }
    }
    let cfg = VerifyConfig {
        leads_min: args.leads.clone(),
        thresholds: args.thresholds.clone(),
        nowcast: NowcastConfig {
            frames: args.frames,
            ..Default::default()
        },
        // The pooled table is the live skill's: its 10-km FSS window.
        pooled_fss_window: Some(raincast_nowcast::skill::fss_window_cells(grid.cell_m())),
        prob_threshold: args.prob_threshold,
        min_samples: args.min_samples,
        calibration_half_life_min: args.calibration_half_life,
        calibration_fit: match args.calibration_fit {
            FitArg::FirstHalf => CalibrationFit::FirstHalf,
            FitArg::Served => CalibrationFit::Served,
        },
        ..Default::default()
    };
    let t0 = Instant::now();
    let scans = fields.len();
    let times: Vec<DateTime<Utc>> = fields.iter().map(|f| f.time).collect();
    // A lead the scans cannot verify: said now, not as "too few scans"
    // after the whole day.
    let mut sorted_times = times.clone();
    sorted_times.sort();
    if let (Some(step_s), Some(leads)) = (
        raincast_algorithms::nowcast::modal_step(&sorted_times),
        &cfg.leads_min,
    ) {
        for l in leads
            .iter()
            .filter(|l| (**l as i64 * 60) % step_s.max(1) != 0)
        {
            eprintln!(
                "verify: --leads {l}: not a multiple of the scans' interval ({} s), so no scan verifies it",
                step_s
            );
        }
    }
    let series = FileSeries::new(fields, args.format);
    let report = verify_series_from(series, &cfg, &mut |done, total| {
        progress.update(done, total, || {
            format!(
                "verify: start time {done}/{total} ({:.0} s)",
                t0.elapsed().as_secs_f64()
            )
        });
    });
    progress.end();
    for (t, why) in &report.skipped {
        eprintln!("verify: skipped start time {t}: {why}");
    }
    if report.cases == 0 {
        let span = match (times.iter().min(), times.iter().max()) {
            (Some(a), Some(b)) => format!(
                "{} scans from {} to {}",
                scans,
                a.format("%Y-%m-%dT%H:%M:%SZ"),
                b.format("%Y-%m-%dT%H:%M:%SZ")
            ),
            _ => "no scans".into(),
        };
        let leads = match &cfg.leads_min {
            Some(l) => format!("the leads {l:?} min"),
            None => "a lead (every scan interval up to 60 min)".into(),
        };
        bail!(
            "{span}: no start time had {} equally spaced past scans and a later scan at {leads}; \
             a day needs at least {} scans in a row",
            cfg.nowcast.frames.max(MIN_FRAMES),
            cfg.nowcast.frames.max(MIN_FRAMES) + 1
        );
    }
    print!("{}", format_report(&report, &cfg, scans));
    eprintln!("verify: done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn cell(v: Option<f64>) -> String {
    v.map_or_else(|| "   -  ".to_string(), |x| format!("{x:6.3}"))
}

/// The pooled scores of every lead, as the nowcast service's live skill
/// keeps and serves them (`GET /v1/radars/{id}/skill`): a replayed day's
/// live scores can be read against these line by line.
fn format_pooled<'a>(
    s: &mut String,
    rows: impl Iterator<Item = (u32, &'a [SkillSums; 2])>,
    cfg: &VerifyConfig,
) {
    use std::fmt::Write;
    let _ = writeln!(
        s,
        "\nPooled over the cases (sums of every case's cells, not means), as the nowcast service's live \
         skill keeps them (GET /v1/radars/{{id}}/skill): Raincast and persistence on the cells where the \
         observation and both are known; FSS {} mm/h in a window of {} px (the service's 10 km); Brier \
         score of the probability of rain >= {} mm/h (the service's is 0.1 by default: --prob-threshold 0.1).",
        cfg.fss_threshold,
        cfg.pooled_fss_window.unwrap_or(cfg.fss_window),
        cfg.prob_threshold
    );
    // Groups of a 9-character label and two 8-character columns (a space,
    // then 7 characters: MAE values reach tens of mm/h).
    let value = |v: Option<f64>| v.map_or_else(|| format!(" {:>7}", "-"), |x| format!(" {x:7.3}"));
    let mut labels: Vec<String> = SKILL_CSI_THRESHOLDS_MM_H
        .iter()
        .map(|t| format!("CSI>={t}"))
        .collect();
    labels.extend(["FSS", "MAE wet", "Brier"].map(String::from));
    let mut head = String::from("lead_min cases");
    for l in &labels {
        let _ = write!(head, " | {l:<9}    pers   rainc");
    }
    let _ = writeln!(s, "{head}");
    for (lead_min, [rc, pe]) in rows {
        let mut line = format!("{lead_min:8} {:5}", rc.cases);
        let scores = (0..SKILL_CSI_THRESHOLDS_MM_H.len())
            .map(|i| [pe, rc].map(|m| m.contingency(i).csi()))
            .chain(
                [SkillSums::fss, SkillSums::mae_wet, SkillSums::brier]
                    .into_iter()
                    .map(|score| [pe, rc].map(score)),
            );
        for [p, r] in scores {
            let _ = write!(line, " | {:9}{}{}", "", value(p), value(r));
        }
        let _ = writeln!(s, "{line}");
    }
}

/// The text report: one skill table, the pooled table of the live skill,
/// then the reliability of the probability.
pub fn format_report(report: &VerifyReport, cfg: &VerifyConfig, scans: usize) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Raincast verification: {scans} scans every {} s, {} nowcast start times.",
        report.step_s, report.cases
    );
    let _ = writeln!(
        s,
        "Means of per-case scores, on the cells where the observation and every forecast are known."
    );
    let _ = writeln!(
        s,
        "Columns per score: persistence | extrapolation (no smoothing) | raincast."
    );
    let mut head = String::from("lead_min cases");
    for t in &cfg.thresholds {
        let _ = write!(head, " | CSI>={t:<4} pers  extr  rainc");
    }
    let _ = write!(
        head,
        " | FSS {} mm/h {} px  pers  extr  rainc",
        cfg.fss_threshold, cfg.fss_window
    );
    let _ = writeln!(s, "{head}");
    for row in &report.rows {
        let mut line = format!("{:8} {:5}", row.lead_min, row.cases);
        for t in 0..cfg.thresholds.len() {
            line.push_str(" |         ");
            for m in 0..Method::ALL.len() {
                line.push_str(&cell(row.methods[m].csi[t].get()));
            }
        }
        line.push_str(" |                 ");
        for m in 0..Method::ALL.len() {
            line.push_str(&cell(row.methods[m].fss.get()));
        }
        let _ = writeln!(s, "{line}");
    }
    let pooled = report.rows.iter().map(|r| (r.lead_min, &r.pooled));
    format_pooled(&mut s, pooled, cfg);
    // Reliability over all leads.
    let mut all = Reliability::new(10);
    for row in &report.rows {
        for (a, b) in all.bins.iter_mut().zip(&row.reliability.bins) {
            a.0 += b.0;
            a.1 += b.1;
            a.2 += b.2;
        }
    }
    let _ = writeln!(
        s,
        "\nReliability of the Raincast probability of rain >= {} mm/h (all leads):",
        cfg.prob_threshold
    );
    let _ = writeln!(s, "  forecast p   cells        mean p  observed freq");
    for (lo, hi, n, p, o) in all.table() {
        let _ = writeln!(s, "  {lo:.1}-{hi:.1}   {n:>11}  {p:6.3}  {o:6.3}");
    }
    if let Some(b) = all.brier_approx() {
        let _ = writeln!(s, "  Brier score (from bin means): {b:.4}");
    }
    match cfg.calibration_fit {
        CalibrationFit::FirstHalf => {
            let _ = writeln!(
                s,
                "\nCalibration of that probability: fitted (isotonic, 10 bins) on the cases verified in the \
                 first half of the day, scored on the cases issued in the second half; a lead with fewer \
                 than {} fit cells stays raw.",
                cfg.min_samples
            );
        }
        CalibrationFit::Served => {
            let _ = writeln!(
                s,
                "\nCalibration of that probability as the service serves it: before each case issued in the \
                 second half of the day, fitted (isotonic, 10 bins) on every case verified before its issue time \
                 in the last {SERVED_WINDOW_HOURS} h; raw while fewer than {} cells are verified. \
                 fit_cells: the first half's.",
                cfg.min_samples
            );
        }
    }
    if let Some(h) = cfg.calibration_half_life_min {
        let _ = writeln!(
            s,
            "Experiment: fit cases weighted by age, halving every {h} min before the middle of the day."
        );
    }
    let _ = writeln!(
        s,
        "lead_min   fit_cells calibrated  test_cells  BSS raw   BSS cal  ECE raw  ECE cal"
    );
    for row in &report.rows {
        let (raw, cal) = (&row.held_out_raw, &row.held_out_calibrated);
        let _ = writeln!(
            s,
            "{:8} {:11} {:>10} {:11} {} {} {} {}",
            row.lead_min,
            row.fit.cells,
            match (row.held_out_calibrated_cases, row.held_out_cases) {
                (0, _) => "no",
                (c, n) if c == n => "yes",
                _ => "some",
            },
            raw.cells,
            cell(raw.bss()),
            cell(cal.bss()),
            cell(raw.reliability.ece()),
            cell(cal.reliability.ece()),
        );
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The day's scans are decoded when a start time needs them and at most
    /// twice a start time's are held; one dropped is decoded again, the same.
    #[test]
    fn the_series_holds_a_bounded_number_of_fields() {
        use raincast_algorithms::encode::odim::{encode_rate, OdimRateOptions};
        let dir = raincast_testkit::TempDir::new("raincast-verify-series");
        let grid = Grid::new(
            "+proj=aeqd +lat_0=47 +lon_0=8 +ellps=WGS84 +units=m",
            16,
            16,
            1000.0,
            1000.0,
            -8000.0,
            8000.0,
        )
        .unwrap();
        let t0 = DateTime::parse_from_rfc3339("2024-06-16T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let n = 30;
        let found: Vec<Found> = (0..n)
            .map(|k| {
                let rf = RainField {
                    grid: grid.clone(),
                    time: t0 + chrono::Duration::minutes(5 * k as i64),
                    rate_mm_h: ndarray::Array2::from_elem((16, 16), k as f32 * 0.1),
                };
                let bytes = encode_rate(&rf, &OdimRateOptions::u16("NOD:xxtst")).unwrap();
                let path = dir.path().join(format!("scan_{k:03}.h5"));
                std::fs::write(&path, bytes).unwrap();
                Found {
                    path,
                    time: rf.time,
                    grid: grid.clone(),
                }
            })
            .collect();
        let mut series = FileSeries::new(found, None);
        series.working_set(8);
        let first = series.field(0).unwrap();
        for k in 0..n {
            let f = series.field(k).unwrap();
            assert_eq!(f.time, t0 + chrono::Duration::minutes(5 * k as i64));
            assert!(series.kept.len() <= 16);
        }
        assert!(
            series.kept.iter().all(|(k, _)| *k != 0),
            "scan 0 still held"
        );
        let again = series.field(0).unwrap();
        assert_eq!(
            (again.time, &again.rate_mm_h),
            (first.time, &first.rate_mm_h)
        );
        // A file changed since the first reading is named, not used.
        std::fs::copy(&series.found[1].path, &series.found[2].path).unwrap();
        series.kept.clear();
        let err = series.field(2).unwrap_err();
        assert!(
            err.contains("scan_002.h5") && err.contains("changed"),
            "{err}"
        );
    }

    /// Persistence before Raincast in every group, and every value its own
    /// column even when it has two digits before the point (MAE in mm/h).
    #[test]
    fn the_pooled_table_keeps_its_columns() {
        let mut rc = SkillSums {
            cases: 3,
            ..Default::default()
        };
        rc.hits = [8, 6, 1];
        rc.misses = [2, 2, 1];
        rc.false_alarms = [0, 2, 2];
        (rc.fss_num, rc.fss_den) = (1.0, 4.0);
        (rc.abs_err_mm_h, rc.wet_cells) = (10.5, 1);
        (rc.brier_sum, rc.brier_cells) = (1.0, 8);
        let pe = SkillSums {
            cases: 3,
            hits: [1, 1, 0],
            misses: [1, 3, 0],
            abs_err_mm_h: 123.25,
            wet_cells: 10,
            ..Default::default()
        };
        let sums = [rc, pe];
        let mut s = String::new();
        format_pooled(
            &mut s,
            std::iter::once((30, &sums)),
            &VerifyConfig::default(),
        );
        let lines: Vec<&str> = s.lines().collect();
        let (head, row) = (lines[lines.len() - 2], lines[lines.len() - 1]);
        let cells: Vec<&str> = row.split_whitespace().filter(|w| *w != "|").collect();
        assert_eq!(
            cells,
            [
                "30", "3", "0.500", "0.800", "0.250", "0.600", "-", "0.250", "-", "0.750",
                "12.325", "10.500", "-", "0.125"
            ],
            "{s}"
        );
        // Each value ends under the end of its column's name.
        for name in ["pers", "rainc"] {
            let mut from = 0;
            while let Some(i) = head[from..].find(name) {
                let end = from + i + name.len();
                assert!(
                    row[..end].ends_with(|c: char| c.is_ascii_digit() || c == '-'),
                    "{name} at {end}:\n{head}\n{row}"
                );
                from = end;
            }
        }
    }
}
