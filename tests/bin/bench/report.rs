//! Results: collected as JSON while the bench runs, summarised as medians, printed as a
//! Markdown table, and written out (raw JSON, SVG charts, the results section of
//! docs/BENCHMARKS.md between its markers).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde_json::{Value, json};

use crate::inproc::InProcess;
use crate::servers::Kind;
use crate::workload::Shape;
use crate::{group, median};

const START: &str = "<!-- bench:results:start -->";
const END: &str = "<!-- bench:results:end -->";

#[derive(Debug)]
pub struct Results {
    smoke: bool,
    targets: Vec<Kind>,
    storms: Vec<Value>,
    inproc: Vec<Value>,
    modes: BTreeMap<String, Vec<Value>>,
    started_unix: u64,
    earlier_shapes: Vec<String>,
    earlier_targets: Vec<String>,
    merged_from: Vec<Value>,
}

fn shape_json(shape: Shape) -> Value {
    json!({"devices": shape.devices, "jobs": shape.jobs, "edits": shape.edits, "label": shape.label()})
}

impl Results {
    pub fn new(smoke: &bool, targets: &[Kind]) -> Self {
        Self {
            smoke: *smoke,
            targets: targets.to_vec(),
            storms: Vec::new(),
            inproc: Vec::new(),
            modes: BTreeMap::new(),
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            earlier_shapes: Vec::new(),
            earlier_targets: Vec::new(),
            merged_from: Vec::new(),
        }
    }

    /// Takes the results of an earlier run (its JSON summary), except what this run measures
    /// again: storms and in-process runs at `shapes`, and the `modes` given. The summary
    /// records which run each result came from.
    pub fn merge(&mut self, earlier: &Value, shapes: &[String], modes: &[String]) {
        let again = |v: &Value| {
            v["shape"]["label"]
                .as_str()
                .is_some_and(|l| shapes.iter().any(|s| s == l))
        };
        let stamp = earlier["started_unix"].clone();
        let tagged = |v: &Value| {
            let mut v = v.clone();
            if v.get("started_unix").is_none() {
                v["started_unix"] = stamp.clone();
            }
            v
        };
        let targets: Vec<&str> = self.targets.iter().map(|k| k.name()).collect();
        let measured = |v: &Value| v["target"].as_str().is_some_and(|t| targets.contains(&t));
        let empty = Vec::new();
        let storms = earlier["storms"].as_array().unwrap_or(&empty);
        self.storms.extend(
            storms
                .iter()
                .filter(|v| !(again(v) && measured(v)))
                .map(tagged),
        );
        let inproc = earlier["inproc"].as_array().unwrap_or(&empty);
        self.inproc
            .extend(inproc.iter().filter(|v| !again(v)).map(tagged));
        for mode in [
            "steady",
            "idle",
            "join",
            "history",
            "backlog",
            "verify",
            "device-open",
            "cold",
            "idle-docs",
        ] {
            let rerun = modes.iter().any(|m| m == mode);
            let earlier = earlier[mode].as_array().unwrap_or(&empty);
            self.modes.entry(mode.to_owned()).or_default().extend(
                earlier
                    .iter()
                    .filter(|v| !(rerun && measured(v)))
                    .map(tagged),
            );
        }
        for shape in earlier["shapes"].as_array().unwrap_or(&empty) {
            if let Some(s) = shape.as_str()
                && !self.earlier_shapes.iter().any(|e| e == s)
            {
                self.earlier_shapes.push(s.to_owned());
            }
        }
        for t in earlier["targets"].as_array().unwrap_or(&empty) {
            if let Some(t) = t.as_str()
                && !self.earlier_targets.iter().any(|e| e == t)
            {
                self.earlier_targets.push(t.to_owned());
            }
        }
        self.merged_from.push(stamp);
    }

    pub fn storm(&mut self, kind: Kind, shape: Shape, run: usize, mut value: Value) {
        value["target"] = json!(kind.name());
        value["shape"] = shape_json(shape);
        value["run"] = json!(run);
        self.storms.push(value);
    }

    pub fn storm_failed(&mut self, kind: Kind, shape: Shape, run: usize, error: &str) {
        self.storms.push(json!({
            "target": kind.name(), "shape": shape_json(shape), "run": run, "error": error,
        }));
    }

    pub fn inproc(&mut self, shape: Shape, run: usize, r: InProcess) {
        let changes = shape.changes() as f64;
        self.inproc.push(json!({
            "shape": shape_json(shape),
            "run": run,
            "sync_secs": r.sync_secs,
            "sync_changes_per_sec": changes / r.sync_secs,
            "apply_changes_secs": r.apply_secs,
            "apply_changes_per_sec": changes / r.apply_secs,
            "load_incremental_secs": r.load_incremental_secs,
            "load_incremental_changes_per_sec": changes / r.load_incremental_secs,
        }));
    }

    /// Records a mode's result; in smoke mode a failure fails the run.
    pub fn record(
        &mut self,
        mode: &str,
        kind: Kind,
        result: anyhow::Result<Value>,
        smoke: bool,
    ) -> anyhow::Result<()> {
        let mut value = match result {
            Ok(v) => v,
            Err(e) if smoke => return Err(e.context(format!("{mode} {}", kind.name()))),
            Err(e) => {
                crate::progress(&format!("{} {mode}: FAILED: {e:#}", kind.name()));
                json!({"error": format!("{e:#}")})
            }
        };
        value["target"] = json!(kind.name());
        self.modes.entry(mode.to_owned()).or_default().push(value);
        Ok(())
    }

    /// Keeps the earlier results of `mode` measured by another build than `build` (the
    /// `build` member of each), which `merge` dropped because this run measures the mode.
    pub fn keep_other_builds(&mut self, mode: &str, earlier: &Value, build: &str) {
        let empty = Vec::new();
        let stamp = earlier["started_unix"].clone();
        let rows = self.modes.entry(mode.to_owned()).or_default();
        for v in earlier[mode].as_array().unwrap_or(&empty) {
            if v["build"].as_str().is_some_and(|b| b != build) && !rows.contains(v) {
                let mut v = v.clone();
                if v.get("started_unix").is_none() {
                    v["started_unix"] = stamp.clone();
                }
                rows.push(v);
            }
        }
    }

    /// The summary: machine, raw results and medians per (shape, target).
    pub fn finish(self, shapes: &[Shape]) -> anyhow::Result<Value> {
        let mut all_targets = self.earlier_targets.clone();
        for k in &self.targets {
            if !all_targets.iter().any(|t| t == k.name()) {
                all_targets.push(k.name().to_owned());
            }
        }
        let mut all_shapes = self.earlier_shapes.clone();
        for s in shapes {
            if !all_shapes.contains(&s.label()) {
                all_shapes.push(s.label());
            }
        }
        let mut medians = Vec::new();
        let storms_by = group(
            self.storms
                .iter()
                .filter(|s| s.get("error").is_none())
                .map(|s| {
                    (
                        (
                            s["shape"]["label"].as_str().unwrap_or("").to_owned(),
                            s["target"].as_str().unwrap_or("").to_owned(),
                        ),
                        s,
                    )
                }),
        );
        for ((label, target), runs) in &storms_by {
            let pick = |key: &str| -> Option<f64> {
                let mut v: Vec<f64> = runs.iter().filter_map(|r| r[key].as_f64()).collect();
                median(&mut v)
            };
            medians.push(json!({
                "shape": label,
                "devices": runs[0]["shape"]["devices"],
                "target": target,
                "runs": runs.len(),
                "storm_secs": pick("storm_secs"),
                "changes_per_sec": pick("changes_per_sec"),
                "disk_bytes_per_change": pick("disk_bytes_per_change"),
                "rss_after_storm_kib": pick("rss_after_storm_kib"),
                "peak_rss_kib": pick("peak_rss_kib"),
            }));
        }
        let inproc_by = group(
            self.inproc
                .iter()
                .map(|s| (s["shape"]["label"].as_str().unwrap_or("").to_owned(), s)),
        );
        for (label, runs) in &inproc_by {
            for (target, secs) in [
                ("inproc-sync", "sync_secs"),
                ("inproc-apply", "apply_changes_secs"),
                ("inproc-load", "load_incremental_secs"),
            ] {
                let mut v: Vec<f64> = runs.iter().filter_map(|r| r[secs].as_f64()).collect();
                let s = median(&mut v);
                let changes = runs[0]["shape"]["devices"].as_f64().unwrap_or(0.0)
                    * runs[0]["shape"]["jobs"].as_f64().unwrap_or(0.0)
                    * runs[0]["shape"]["edits"].as_f64().unwrap_or(0.0);
                medians.push(json!({
                    "shape": label,
                    "devices": runs[0]["shape"]["devices"],
                    "target": target,
                    "runs": runs.len(),
                    "storm_secs": s,
                    "changes_per_sec": s.map(|s| changes / s),
                }));
            }
        }
        Ok(json!({
            "smoke": self.smoke,
            "started_unix": self.started_unix,
            "machine": machine(),
            "targets": all_targets,
            "shapes": all_shapes,
            "merged_from": self.merged_from,
            "medians": medians,
            "storms": self.storms,
            "inproc": self.inproc,
            "steady": self.modes.get("steady").cloned().unwrap_or_default(),
            "idle": self.modes.get("idle").cloned().unwrap_or_default(),
            "history": self.modes.get("history").cloned().unwrap_or_default(),
            "join": self.modes.get("join").cloned().unwrap_or_default(),
            "backlog": self.modes.get("backlog").cloned().unwrap_or_default(),
            "verify": self.modes.get("verify").cloned().unwrap_or_default(),
            "device-open": self.modes.get("device-open").cloned().unwrap_or_default(),
            "cold": self.modes.get("cold").cloned().unwrap_or_default(),
            "idle-docs": self.modes.get("idle-docs").cloned().unwrap_or_default(),
        }))
    }
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_default();
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "memory_gib": mem_kib as f64 / 1024.0 / 1024.0,
        "cpu": cpu,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "node": node,
    })
}

fn f(v: &Value, digits: usize) -> String {
    v.as_f64()
        .map(|x| format!("{x:.digits$}"))
        .unwrap_or_else(|| "–".into())
}

fn thousands(v: &Value) -> String {
    let Some(x) = v.as_f64() else {
        return "–".into();
    };
    let n = x.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// The start of an error (a storm's may list every device's), for the table.
fn short(error: &str) -> String {
    let first: String = error.chars().take(140).collect();
    if first.len() < error.len() {
        format!("{first}… (the JSON has it all)")
    } else {
        first
    }
}

/// A table row for a mode that failed for this target.
fn failed_row(s: &Value, columns: usize) -> Option<String> {
    let error = s.get("error")?.as_str()?;
    let mut row = format!(
        "| {} | failed: {} |",
        target_name(s["target"].as_str().unwrap_or("")),
        short(error).replace('|', "/")
    );
    for _ in 1..columns {
        row.push_str(" |");
    }
    Some(row)
}

fn target_name(t: &str) -> &str {
    match t {
        "fieldsync" => "fieldsync (SQLite, auth on)",
        "fieldsync-unchecked" => "fieldsync without write-authority checks (measurement build)",
        "js" => "JS sync server (automerge-repo 2.5.6, NodeFS)",
        "samod" => "samod 0.16 (in memory, no auth)",
        "inproc-sync" => "in-process: sync protocol",
        "inproc-apply" => "in-process: apply_changes batch",
        "inproc-load" => "in-process: load_incremental",
        other => other,
    }
}

/// The Markdown results section.
pub fn table(summary: &Value) -> String {
    let mut out = String::new();
    let m = &summary["machine"];
    let _ = writeln!(
        out,
        "Machine: {} cores ({}), {:.1} GiB memory, Linux {}, Node {}.\n",
        m["nproc"],
        m["cpu"].as_str().unwrap_or(""),
        m["memory_gib"].as_f64().unwrap_or(0.0),
        m["kernel"].as_str().unwrap_or(""),
        m["node"].as_str().unwrap_or("–"),
    );
    let empty = Vec::new();
    let medians = summary["medians"].as_array().unwrap_or(&empty);
    let shapes = summary["shapes"].as_array().unwrap_or(&empty);
    for shape in shapes {
        let label = shape.as_str().unwrap_or("");
        let rows: Vec<&Value> = medians.iter().filter(|r| r["shape"] == *shape).collect();
        if rows.is_empty() {
            continue;
        }
        let fieldsync = rows
            .iter()
            .find(|r| r["target"] == "fieldsync")
            .and_then(|r| r["changes_per_sec"].as_f64());
        let runs = rows
            .iter()
            .filter_map(|r| r["runs"].as_u64())
            .max()
            .unwrap_or(0);
        let changes: usize = label
            .split('x')
            .filter_map(|p| p.parse::<usize>().ok())
            .product();
        let _ = writeln!(
            out,
            "**Reconnect storm {label}** ({} changes; median of {runs} run{})\n",
            thousands(&json!(changes)),
            if runs == 1 { "" } else { "s" }
        );
        let _ = writeln!(
            out,
            "| server | storm (s) | changes/s | fieldsync ÷ this | disk bytes/change | server RSS after (MiB) |"
        );
        let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: |");
        for r in &rows {
            let ratio = match (fieldsync, r["changes_per_sec"].as_f64()) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
                _ => "–".into(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                target_name(r["target"].as_str().unwrap_or("")),
                f(&r["storm_secs"], 2),
                thousands(&r["changes_per_sec"]),
                ratio,
                f(&r["disk_bytes_per_change"], 0),
                r["rss_after_storm_kib"]
                    .as_f64()
                    .map(|k| format!("{:.0}", k / 1024.0))
                    .unwrap_or_else(|| "–".into()),
            );
        }
        let failures: Vec<String> = summary["storms"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .filter(|s| s["shape"]["label"] == *shape && s.get("error").is_some())
            .map(|s| {
                format!(
                    "{} run {}: {}",
                    target_name(s["target"].as_str().unwrap_or("")),
                    s["run"].as_u64().unwrap_or(0) + 1,
                    short(s["error"].as_str().unwrap_or(""))
                )
            })
            .collect();
        for fail in failures {
            let _ = writeln!(out, "\nFailed: {fail}");
        }
        out.push('\n');
    }

    // Cost against N.
    let mut scale: BTreeMap<u64, BTreeMap<String, f64>> = BTreeMap::new();
    let mut columns: Vec<String> = Vec::new();
    for r in medians {
        if let (Some(n), Some(t), Some(s)) = (
            r["devices"].as_u64(),
            r["target"].as_str(),
            r["storm_secs"].as_f64(),
        ) {
            let base = shapes.first().and_then(|s| s.as_str()).unwrap_or("");
            let same_mk = base.split_once('x').map(|(_, rest)| rest)
                == r["shape"]
                    .as_str()
                    .and_then(|s| s.split_once('x'))
                    .map(|(_, rest)| rest);
            if same_mk && t != "inproc-apply" && t != "inproc-load" {
                scale.entry(n).or_default().insert(t.to_owned(), s);
                if !columns.iter().any(|c| c == t) {
                    columns.push(t.to_owned());
                }
            }
        }
    }
    if scale.len() > 1 {
        let _ = writeln!(
            out,
            "**Storm time (s) against devices** (jobs and edits as in the first shape)\n"
        );
        let _ = writeln!(
            out,
            "| devices | {} |",
            columns
                .iter()
                .map(|c| target_name(c))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let _ = writeln!(out, "| ---: |{}", " ---: |".repeat(columns.len()));
        for (n, row) in &scale {
            let cells: Vec<String> = columns
                .iter()
                .map(|c| {
                    row.get(c)
                        .map(|s| format!("{s:.2}"))
                        .unwrap_or_else(|| "–".into())
                })
                .collect();
            let _ = writeln!(out, "| {n} | {} |", cells.join(" | "));
        }
        out.push('\n');
    }

    let steady = summary["steady"].as_array().unwrap_or(&empty);
    if !steady.is_empty() {
        let _ = writeln!(
            out,
            "**Steady editing: latency of one edit from device A to device B**\n"
        );
        let _ = writeln!(
            out,
            "| server | pairs × rate × s | edits | p50 (ms) | p99 (ms) |"
        );
        let _ = writeln!(out, "| --- | --- | ---: | ---: | ---: |");
        for s in steady {
            if let Some(row) = failed_row(s, 4) {
                let _ = writeln!(out, "{row}");
                continue;
            }
            let _ = writeln!(
                out,
                "| {} | {} × {}/s × {}s | {} | {} | {} |",
                target_name(s["target"].as_str().unwrap_or("")),
                s["pairs"],
                s["rate_per_sec"],
                s["secs"],
                s["edits"],
                f(&s["p50_ms"], 2),
                f(&s["p99_ms"], 2),
            );
        }
        out.push('\n');
    }
    let idle = summary["idle"].as_array().unwrap_or(&empty);
    if !idle.is_empty() {
        let _ = writeln!(out, "**Idle connections: server memory**\n");
        let _ = writeln!(
            out,
            "| server | connections | RSS before (MiB) | RSS connected (MiB) | KiB per connection |"
        );
        let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: |");
        for s in idle {
            if let Some(row) = failed_row(s, 4) {
                let _ = writeln!(out, "{row}");
                continue;
            }
            let mib = |v: &Value| {
                v.as_f64()
                    .map(|k| format!("{:.0}", k / 1024.0))
                    .unwrap_or_else(|| "–".into())
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                target_name(s["target"].as_str().unwrap_or("")),
                s["connections"],
                mib(&s["rss_base_kib"]),
                mib(&s["rss_connected_kib"]),
                f(&s["kib_per_connection"], 1),
            );
        }
        out.push('\n');
    }
    let joins = summary["join"].as_array().unwrap_or(&empty);
    if !joins.is_empty() {
        let first = joins
            .iter()
            .find(|j| j.get("error").is_none())
            .unwrap_or(&joins[0]);
        let _ = writeln!(
            out,
            "**One more device joining a loaded server** ({} devices connected, {} jobs each, \
             {} documents; medians of {} newcomers) **and memory per document and device**\n",
            first["devices"], first["jobs_per_device"], first["documents"], first["extra"]
        );
        let _ = writeln!(
            out,
            "| server | join handshake (ms) | join + fetch its {} jobs (ms) | KiB per loaded document | KiB per connected device (with its sessions) |",
            first["jobs_per_device"]
        );
        let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: |");
        for j in joins {
            if let Some(row) = failed_row(j, 4) {
                let _ = writeln!(out, "{row}");
                continue;
            }
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                target_name(j["target"].as_str().unwrap_or("")),
                f(&j["join_ms_p50"], 2),
                f(&j["fetch_ms_p50"], 2),
                f(&j["kib_per_loaded_document"], 1),
                f(&j["kib_per_connected_device"], 1),
            );
        }
        out.push('\n');
    }
    let backlog = summary["backlog"].as_array().unwrap_or(&empty);
    if !backlog.is_empty() {
        let devices = backlog
            .iter()
            .find_map(|b| b["devices"].as_u64())
            .unwrap_or(0);
        let _ = writeln!(
            out,
            "**Reconnect storm of {devices} devices with one job each, by accept backlog** \
             (each run on its own; the kernel's ListenOverflows counted across the storm)\n"
        );
        let _ = writeln!(
            out,
            "| accept backlog | run | storm (s) | device converged, median (ms) | slowest (ms) | slowest / median | listen overflows |"
        );
        let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
        for b in backlog {
            if let Some(row) = failed_row(b, 6) {
                let _ = writeln!(out, "{row}");
                continue;
            }
            let (p50, max) = (
                b["device_converged_ms_p50"].as_f64().unwrap_or(0.0),
                b["device_converged_ms_max"].as_f64().unwrap_or(0.0),
            );
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                b["backlog"]
                    .as_str()
                    .map_or_else(|| b["backlog"].to_string(), str::to_owned),
                b["run"].as_u64().map_or(1, |r| r + 1),
                f(&b["storm_secs"], 2),
                f(&b["device_converged_ms_p50"], 0),
                f(&b["device_converged_ms_max"], 0),
                if p50 > 0.0 {
                    format!("{:.1}×", max / p50)
                } else {
                    "–".into()
                },
                b["listen_overflows"],
            );
        }
        out.push('\n');
    }
    let history = summary["history"].as_array().unwrap_or(&empty);
    if !history.is_empty() {
        let lengths: Vec<u64> = history
            .iter()
            .flat_map(|h| h["points"].as_array().cloned().unwrap_or_default())
            .filter_map(|p| p["history"].as_u64())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let jobs = history.iter().find_map(|h| h["jobs"].as_u64()).unwrap_or(0);
        let _ = writeln!(
            out,
            "**Reconnect of one device with {jobs} unchanged jobs (ms, median of 5) against history length (changes per job)**\n"
        );
        let _ = writeln!(
            out,
            "| server | {} |",
            lengths
                .iter()
                .map(|l| l.to_string())
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let _ = writeln!(out, "| --- |{}", " ---: |".repeat(lengths.len()));
        let mut notes = Vec::new();
        for h in history {
            if h.get("points").is_none()
                && let Some(row) = failed_row(h, lengths.len())
            {
                let _ = writeln!(out, "{row}");
                continue;
            }
            let points = h["points"].as_array().cloned().unwrap_or_default();
            for p in &points {
                if let Some(e) = p["error"].as_str() {
                    notes.push(format!(
                        "{} at {} changes per job: {}",
                        target_name(h["target"].as_str().unwrap_or("")),
                        p["history"],
                        short(e)
                    ));
                }
            }
            let cells: Vec<String> = lengths
                .iter()
                .map(|l| {
                    points
                        .iter()
                        .find(|p| p["history"].as_u64() == Some(*l))
                        .map(|p| {
                            if p.get("error").is_some() {
                                "failed".into()
                            } else {
                                f(&p["reconnect_ms"], 1)
                            }
                        })
                        .unwrap_or_else(|| "–".into())
                })
                .collect();
            let _ = writeln!(
                out,
                "| {} | {} |",
                target_name(h["target"].as_str().unwrap_or("")),
                cells.join(" | ")
            );
        }
        for note in notes {
            let _ = writeln!(out, "\nFailed: {note}");
        }
        out.push('\n');
    }
    verify_table(summary, &mut out);
    out.push_str(&device_open_table(summary));
    out.push_str(&cold_table(summary));
    out.push_str(&idle_docs_table(summary));
    out
}

/// Writes raw JSON, charts, and the results section of BENCHMARKS.md under `out`.
pub fn write(out: &Path, summary: &Value) -> anyhow::Result<()> {
    let raw = out.join("bench-results");
    std::fs::create_dir_all(&raw)?;
    let text = serde_json::to_string_pretty(summary)?;
    std::fs::write(raw.join("latest.json"), &text)?;
    let stamp = summary["started_unix"].as_u64().unwrap_or(0);
    std::fs::write(raw.join(format!("run-{stamp}.json")), &text)?;

    let empty = Vec::new();
    let medians = summary["medians"].as_array().unwrap_or(&empty);
    let base_mk = summary["shapes"][0]
        .as_str()
        .and_then(|s| s.split_once('x'))
        .map(|(_, rest)| rest.to_owned())
        .unwrap_or_default();
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for r in medians {
        let same = r["shape"]
            .as_str()
            .and_then(|s| s.split_once('x'))
            .map(|(_, rest)| rest)
            == Some(base_mk.as_str());
        if let (true, Some(n), Some(t), Some(s)) = (
            same,
            r["devices"].as_f64(),
            r["target"].as_str(),
            r["storm_secs"].as_f64(),
        ) && t != "inproc-load"
        {
            series
                .entry(target_name(t).to_owned())
                .or_default()
                .push((n, s));
        }
    }
    let series: Vec<(String, Vec<(f64, f64)>)> = series
        .into_iter()
        .map(|(k, mut v)| {
            v.sort_by(|a, b| a.0.total_cmp(&b.0));
            (k, v)
        })
        .collect();
    std::fs::write(
        out.join("bench-cost-vs-devices.svg"),
        svg_chart(
            &format!("Reconnect storm: time against devices (×{base_mk})"),
            "devices",
            "storm seconds",
            &series,
        ),
    )?;
    let history = summary["history"].as_array().unwrap_or(&empty);
    let series: Vec<(String, Vec<(f64, f64)>)> = history
        .iter()
        .filter_map(|h| {
            let points = h["points"].as_array()?;
            Some((
                target_name(h["target"].as_str()?).to_owned(),
                points
                    .iter()
                    .filter_map(|p| Some((p["history"].as_f64()?, p["reconnect_ms"].as_f64()?)))
                    .collect(),
            ))
        })
        .collect();
    std::fs::write(
        out.join("bench-reconnect-vs-history.svg"),
        svg_chart(
            "Reconnect with unchanged jobs: time against history length",
            "changes per job",
            "reconnect ms",
            &series,
        ),
    )?;

    if let Some(svg) = cold_chart(summary) {
        std::fs::write(out.join("bench-cold-start-vs-jobs.svg"), svg)?;
    }
    write_device_open_chart(out, summary)?;

    let doc = out.join("BENCHMARKS.md");
    let current =
        std::fs::read_to_string(&doc).with_context(|| format!("read {}", doc.display()))?;
    let (Some(a), Some(b)) = (current.find(START), current.find(END)) else {
        anyhow::bail!("{} has no {START} … {END} section", doc.display());
    };
    let updated = format!(
        "{}{START}\n{}\n{}",
        &current[..a],
        table(summary).trim_end(),
        &current[b..]
    );
    std::fs::write(&doc, updated)?;
    Ok(())
}

const COLORS: [&str; 6] = [
    "#1b6ac9", "#d9480f", "#2b8a3e", "#862e9c", "#495057", "#c2255c",
];

/// A plain line chart: linear axes from zero, a legend, one polyline per series.
pub fn svg_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> String {
    let (w, h) = (720.0, 420.0);
    let (left, right, top, bottom) = (70.0, 250.0, 40.0, 50.0);
    let pw = w - left - right;
    let ph = h - top - bottom;
    let xmax = nice(
        series
            .iter()
            .flat_map(|s| s.1.iter().map(|p| p.0))
            .fold(0.0, f64::max),
    );
    let ymax = nice(
        series
            .iter()
            .flat_map(|s| s.1.iter().map(|p| p.1))
            .fold(0.0, f64::max),
    );
    let x = |v: f64| left + v / xmax * pw;
    let y = |v: f64| top + ph - v / ymax * ph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#,
        left + pw / 2.0,
        esc(title)
    );
    for i in 0..=5 {
        let vx = xmax * i as f64 / 5.0;
        let vy = ymax * i as f64 / 5.0;
        let _ = writeln!(
            s,
            r##"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" stroke="#eee"/><text x="{0:.1}" y="{3}" text-anchor="middle">{4}</text>"##,
            x(vx),
            top,
            top + ph,
            top + ph + 18.0,
            tick(vx)
        );
        let _ = writeln!(
            s,
            r##"<line x1="{0}" y1="{1:.1}" x2="{2}" y2="{1:.1}" stroke="#eee"/><text x="{3}" y="{4:.1}" text-anchor="end">{5}</text>"##,
            left,
            y(vy),
            left + pw,
            left - 6.0,
            y(vy) + 4.0,
            tick(vy)
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        left + pw / 2.0,
        h - 10.0,
        esc(x_label)
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(18,{}) rotate(-90)" text-anchor="middle">{}</text>"#,
        top + ph / 2.0,
        esc(y_label)
    );
    for (i, (name, points)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> = points
            .iter()
            .map(|(a, b)| format!("{:.1},{:.1}", x(*a), y(*b)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        for (a, b) in points {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
                x(*a),
                y(*b)
            );
        }
        let ly = top + 10.0 + 20.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{0}" y1="{ly}" x2="{1}" y2="{ly}" stroke="{color}" stroke-width="3"/><text x="{2}" y="{3}">{4}</text>"#,
            left + pw + 12.0,
            left + pw + 32.0,
            left + pw + 38.0,
            ly + 4.0,
            esc(name)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn nice(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(max.log10().floor());
    for step in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if step * mag >= max {
            return step * mag;
        }
    }
    10.0 * mag
}

fn tick(v: f64) -> String {
    if v >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The `verify` mode's table (issue 17): reports verified and signed per second on one
/// thread; `before` rows come from a run of the bench built before the change (merged).
fn verify_table(summary: &Value, out: &mut String) {
    let empty = Vec::new();
    let verify = summary["verify"].as_array().unwrap_or(&empty);
    if verify.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "**Head office verifying, the branch signing: reports per second on one thread** \
         (median of the runs; genuine reports with a job history, every check made)\n"
    );
    let _ = writeln!(
        out,
        "| build | reports | history (changes) | branches enrolled | verified at receipt / s | archive audited (stored content) / s | archive audited (--full) / s | signed / s | signed and exported / s | signed from the stored job / s |"
    );
    let _ = writeln!(
        out,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for v in verify {
        if let Some(row) = failed_row(v, 9) {
            let _ = writeln!(out, "{row}");
            continue;
        }
        // A build from before the audit and the export while signing has no such figures
        // ("–"); its `signed / s` is the signature and the export then.
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            v["build"].as_str().unwrap_or("this build"),
            v["reports"],
            v["history"],
            v["branches"],
            thousands(&v["verified_per_sec"]),
            thousands(&v["audited_per_sec"]),
            thousands(&v["audited_full_per_sec"]),
            thousands(&v["signed_per_sec"]),
            thousands(&v["signed_exported_per_sec"]),
            thousands(&v["signed_from_store_per_sec"]),
        );
    }
    out.push('\n');
}

/// The `device-open` results (issue 17): open + list against jobs, before and after.
fn device_open_table(summary: &Value) -> String {
    let mut out = String::new();
    let empty = Vec::new();
    for d in summary["device-open"].as_array().unwrap_or(&empty) {
        if let Some(error) = d["error"].as_str() {
            let _ = writeln!(out, "**Device open**: failed: {}\n", short(error));
            continue;
        }
        let _ = writeln!(
            out,
            "**A technician's device opening its store and listing its jobs with their state \
             (ms, median of {}; {} edits per job)**\n",
            d["runs"], d["edits_per_job"]
        );
        let _ = writeln!(
            out,
            "| jobs | before, as edited | before, compacted | after: summaries | speed-up | first open (makes the summaries) |"
        );
        let _ = writeln!(out, "| ---: | ---: | ---: | ---: | ---: | ---: |");
        for p in d["points"].as_array().unwrap_or(&empty) {
            let (b, c, a) = (
                p["before_ms"].as_f64(),
                p["before_compacted_ms"].as_f64(),
                p["after_ms"].as_f64(),
            );
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                thousands(&p["jobs"]),
                f(&p["before_ms"], 1),
                f(&p["before_compacted_ms"], 1),
                f(&p["after_ms"], 1),
                match (b, c, a) {
                    (Some(b), Some(c), Some(a)) if a > 0.0 =>
                        format!("{:.0}× / {:.0}×", b / a, c / a),
                    _ => "–".into(),
                },
                f(&p["first_open_ms"], 0),
            );
        }
        out.push('\n');
    }
    out
}

/// `bench-device-open-vs-jobs.svg`: open + list time against jobs, before and after.
fn write_device_open_chart(out: &Path, summary: &Value) -> anyhow::Result<()> {
    let empty = Vec::new();
    let runs = summary["device-open"].as_array().unwrap_or(&empty);
    let Some(d) = runs.iter().find(|d| d.get("points").is_some()) else {
        return Ok(());
    };
    let points = d["points"].as_array().unwrap_or(&empty);
    let line = |key: &str| -> Vec<(f64, f64)> {
        points
            .iter()
            .filter_map(|p| Some((p["jobs"].as_f64()?, p[key].as_f64()?)))
            .collect()
    };
    let series = vec![
        ("before, as edited".to_owned(), line("before_ms")),
        ("before, compacted".to_owned(), line("before_compacted_ms")),
        ("after: summaries".to_owned(), line("after_ms")),
    ];
    std::fs::write(
        out.join("bench-device-open-vs-jobs.svg"),
        svg_chart(
            "A device opening its store and listing its jobs",
            "jobs in the store",
            "open + list ms",
            &series,
        ),
    )?;
    Ok(())
}

/// The `cold` mode's table (issue 17): a branch with N stored jobs starting up, before and
/// after, first and second start.
fn cold_table(summary: &Value) -> String {
    let empty = Vec::new();
    let mut out = String::new();
    let runs = summary["cold"].as_array().unwrap_or(&empty);
    if runs.is_empty() {
        return out;
    }
    let mib = |v: &Value| {
        v.as_f64()
            .map_or("–".to_owned(), |k| format!("{:.0}", k / 1024.0))
    };
    out.push_str(
        "### Cold start with stored jobs (issue 17)\n\n\
         A branch with N stored jobs (generated through the storage crate) and its enrolled \
         devices starting up: time from spawn to `/healthz` (ready) and to `GET \
         /api/approvals` answering (the desk's queue), RSS once ready and once settled, the \
         first device's fetch of its assignment index and jobs, and its reconnect. `first`: \
         the first start on the generated data; `second`: the next start.\n\n\
         | stored jobs | devices | binary | start | ready ms | approvals ms | RSS ready MiB | \
         RSS settled MiB | first fetch ms | reconnect ms |\n\
         |---:|---:|---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for run in runs {
        if let Some(e) = run["error"].as_str() {
            let _ = writeln!(out, "\nFailed: {}", short(e));
            continue;
        }
        for p in run["points"].as_array().unwrap_or(&empty) {
            for binary in ["before", "after"] {
                for s in p[binary]["starts"].as_array().unwrap_or(&empty) {
                    let _ = writeln!(
                        out,
                        "| {} | {} | {binary} | {} | {} | {} | {} | {} | {} | {} |",
                        thousands(&p["stored_jobs"]),
                        p["devices"],
                        s["start"].as_str().unwrap_or(""),
                        f(&s["ready_ms"], 0),
                        f(&s["approvals_ms"], 0),
                        mib(&s["rss_ready_kib"]),
                        mib(&s["rss_settled_kib"]),
                        f(&s["first_fetch_ms"], 1),
                        f(&s["reconnect_ms"], 1),
                    );
                }
            }
        }
    }
    out.push('\n');
    out
}

/// Cold start (the second start, ready and approvals) against stored jobs, per binary.
fn cold_chart(summary: &Value) -> Option<String> {
    let run = summary["cold"]
        .as_array()?
        .iter()
        .rfind(|r| r.get("error").is_none())?;
    let points = run["points"].as_array()?;
    let mut series = Vec::new();
    for binary in ["before", "after"] {
        for (what, key) in [("ready", "ready_ms"), ("approvals", "approvals_ms")] {
            let line: Vec<(f64, f64)> = points
                .iter()
                .filter_map(|p| {
                    let s = p[binary]["starts"].as_array()?.last()?;
                    Some((p["stored_jobs"].as_f64()?, s[key].as_f64()?))
                })
                .collect();
            if !line.is_empty() {
                series.push((format!("{binary}: {what}"), line));
            }
        }
    }
    (!series.is_empty()).then(|| {
        svg_chart(
            "Cold start: time to ready against stored jobs",
            "stored jobs",
            "ms from spawn",
            &series,
        )
    })
}

/// The `idle-docs` mode's table (issue 17): memory per loaded idle document on the desk's
/// path (created, fetched once by its device, idle).
fn idle_docs_table(summary: &Value) -> String {
    let empty = Vec::new();
    let mut out = String::new();
    let runs = summary["idle-docs"].as_array().unwrap_or(&empty);
    if runs.is_empty() {
        return out;
    }
    let mib = |v: &Value| {
        v.as_f64()
            .map_or("–".to_owned(), |k| format!("{:.0}", k / 1024.0))
    };
    out.push_str(
        "### Memory per idle document (issue 17)\n\n\
         Jobs created through `POST /api/jobs`, each fetched once by its device (which then \
         disconnects), then idle; RSS from /proc once settled. KiB per document: (RSS after \
         the fetch − RSS before the jobs) ÷ documents loaded; dormant: the same once every \
         loaded document keeps only its saved bytes (`limits.document_dormant`, 120 s).\n\n\
         | binary | devices × jobs | docs loaded | RSS base MiB | after create MiB | after \
         fetch MiB | KiB/doc after create | KiB/doc after fetch | dormant MiB | KiB/doc \
         dormant |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for run in runs {
        if let Some(e) = run["error"].as_str() {
            let _ = writeln!(out, "\nFailed: {}", short(e));
            continue;
        }
        for binary in ["before", "after"] {
            let r = &run[binary];
            if r.is_null() {
                continue;
            }
            let _ = writeln!(
                out,
                "| {binary} | {}×{} | {} | {} | {} | {} | {} | {} | {} | {} |",
                run["devices"],
                run["jobs_per_device"],
                r["loaded_documents"],
                mib(&r["rss_base_kib"]),
                mib(&r["rss_created_kib"]),
                mib(&r["rss_fetched_kib"]),
                f(&r["kib_per_document_created"], 1),
                f(&r["kib_per_document_fetched"], 1),
                mib(&r["rss_dormant_kib"]),
                f(&r["kib_per_document_dormant"], 1),
            );
        }
    }
    out.push('\n');
    out
}
