//! What a sync-path run reports: one row per configuration (the keys the issue asks for, then the
//! details), the table printed with the ratio to the raw ceilings of the same run, the JSON file,
//! and an SVG plot (rates per configuration beside the raw ceilings).

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::pipeline::Cpu;

/// The paper has no throughput figure; its per-epoch ReEnc time is the nearest (Table 1, PC).
pub const PAPER_NOTE: &str = "paper: no throughput figure; ReEnc 4.22-6.13 ms once per \
    (epoch, attribute set, receiver) on a PC (Table 1), not per message";

/// One configuration's figures.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SyncRow {
    /// at-ingest processes.
    pub bridges: usize,
    /// at-reencrypt processes.
    pub workers: usize,
    /// Services granted on every twin (each twin's devices receive its changes besides).
    pub receivers_per_twin: usize,
    /// Raw MQTT ceiling, messages per second.
    pub raw_mqtt_msgs_per_s: f64,
    /// Raw Kafka ceiling, messages per second.
    pub raw_kafka_msgs_per_s: f64,
    /// Changes per second through the pipeline, received by every service.
    pub pipeline_msgs_per_s: f64,
    /// pipeline / min(raw MQTT, raw Kafka).
    pub ratio: f64,
    /// Latency at half the maximum rate (ms), `null` if not measured.
    pub p50_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// 99.9th percentile.
    pub p999_ms: Option<f64>,
    /// CPU of bridges and workers per change (µs), brokers excluded.
    pub cloud_cpu_us_per_msg: f64,
    /// CPU ms per 1,000 changes by process (the maximum-rate phase).
    pub cpu_ms_per_1000: Cpu,
    /// Devices publishing.
    pub devices: usize,
    /// Twins they belong to.
    pub twins: usize,
    /// Devices of each twin (each receives its twin's changes: its siblings' and its own echo).
    pub devices_per_twin: usize,
    /// Changes of the maximum-rate phase.
    pub changes: u64,
    /// Envelope size in bytes (the raw runs' payload size).
    pub payload_bytes: usize,
    /// Deliveries the workers produced per change.
    pub deliveries_per_change: f64,
    /// Deliveries the devices received on their downlinks in the whole run.
    pub device_deliveries: u64,
    /// Copies the services dropped as duplicates.
    pub duplicates: u64,
    /// Uplink publishes each bridge took (maximum-rate phase): how the shared subscription split.
    pub uplinks_per_bridge: Vec<f64>,
    /// Records each worker consumed (maximum-rate phase): how the consumer group split.
    pub records_per_worker: Vec<f64>,
    /// The rate of the latency phase, per second.
    pub latency_rate_per_s: Option<f64>,
    /// Changes in the latency phase.
    pub latency_samples: Option<usize>,
    /// The crypto backend.
    pub backend: String,
    /// Messages mosquitto held when the run began (`null`: not read).
    pub mqtt_stored_at_start: Option<u64>,
}

/// Prints the table and writes the JSON to `out` and the plot beside it (`.svg`).
pub fn report(out: Option<&Path>, rows: &[SyncRow]) -> anyhow::Result<()> {
    println!();
    println!("Sync path, changes per second (one run; {PAPER_NOTE})");
    println!(
        "{:>3} {:>3} {:>4} | {:>9} {:>9} | {:>9} {:>6} | {:>7} {:>7} {:>7} | {:>8} {:>8} {:>8} {:>8}",
        "br", "wk", "rcv", "raw MQTT", "raw Kafka", "pipeline", "ratio", "p50 ms", "p99 ms",
        "p99.9", "cloud µs", "kafka µs", "mqtt µs", "bench µs"
    );
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
    for r in rows {
        println!(
            "{:>3} {:>3} {:>4} | {:>9.0} {:>9.0} | {:>9.0} {:>6.2} | {:>7} {:>7} {:>7} | {:>8.0} {:>8.0} {:>8.0} {:>8.0}",
            r.bridges,
            r.workers,
            r.receivers_per_twin,
            r.raw_mqtt_msgs_per_s,
            r.raw_kafka_msgs_per_s,
            r.pipeline_msgs_per_s,
            r.ratio,
            opt(r.p50_ms),
            opt(r.p99_ms),
            opt(r.p999_ms),
            r.cloud_cpu_us_per_msg,
            r.cpu_ms_per_1000.kafka,
            r.cpu_ms_per_1000.mosquitto,
            r.cpu_ms_per_1000.bench,
        );
    }
    println!("(cloud µs: bridges + workers CPU per change; targets: ratio >= 0.5 at 1 bridge and 2 workers, p99 <= 50 ms, cloud <= 100 µs at 1 receiver)");
    if let Some(out) = out {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out, serde_json::to_vec_pretty(rows)?)?;
        let svg = out.with_extension("svg");
        std::fs::write(&svg, plot(rows))?;
        println!("wrote {} and {}", out.display(), svg.display());
    }
    Ok(())
}

/// Two panels, one group of bars per configuration: above, raw MQTT, raw Kafka and the pipeline
/// on one linear scale (the pipeline's ratio written above its bar); below, the pipeline alone on
/// its own scale, with its rate and p99 latency.
pub fn plot(rows: &[SyncRow]) -> String {
    let w = 140.0 * rows.len().max(1) as f64 + 120.0;
    let (panel_h, left) = (300.0, 80.0);
    let h = 2.0 * panel_h + 200.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let colours = [
        ("raw MQTT", "#8fb3d9"),
        ("raw Kafka", "#b9a3d6"),
        ("pipeline", "#e0873a"),
    ];
    let top: Vec<[f64; 3]> = rows
        .iter()
        .map(|r| {
            [
                r.raw_mqtt_msgs_per_s,
                r.raw_kafka_msgs_per_s,
                r.pipeline_msgs_per_s,
            ]
        })
        .collect();
    let labels_above: Vec<String> = rows
        .iter()
        .map(|r| format!("{:.0}%", r.ratio * 100.0))
        .collect();
    panel(
        &mut s,
        (left, 50.0, w, panel_h),
        "Messages per second: the pipeline beside the raw brokers (same run; % = pipeline / min(raw))",
        &top,
        &colours,
        &labels_above,
    );
    let bottom: Vec<[f64; 3]> = rows
        .iter()
        .map(|r| [f64::NAN, f64::NAN, r.pipeline_msgs_per_s])
        .collect();
    let labels_below: Vec<String> = rows
        .iter()
        .map(|r| match r.p99_ms {
            Some(p) => format!("{:.0}/s, p99 {p:.0} ms", r.pipeline_msgs_per_s),
            None => format!("{:.0}/s", r.pipeline_msgs_per_s),
        })
        .collect();
    panel(
        &mut s,
        (left, panel_h + 110.0, w, panel_h),
        "The pipeline alone: changes per second received by every service (p99 latency at half that rate)",
        &bottom,
        &colours,
        &labels_below,
    );
    for (i, r) in rows.iter().enumerate() {
        let x = left + 20.0 + 140.0 * i as f64 + 52.0;
        let _ = write!(
            s,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{} bridge{}, {} worker{}</text><text x="{x:.1}" y="{:.1}" text-anchor="middle">{} service{}/twin</text>"#,
            2.0 * panel_h + 128.0,
            r.bridges,
            if r.bridges == 1 { "" } else { "s" },
            r.workers,
            if r.workers == 1 { "" } else { "s" },
            2.0 * panel_h + 144.0,
            r.receivers_per_twin,
            if r.receivers_per_twin == 1 { "" } else { "s" },
        );
    }
    for (j, (name, colour)) in colours.iter().enumerate() {
        let x = left + 20.0 + 120.0 * j as f64;
        let _ = write!(
            s,
            r#"<rect x="{x}" y="{:.1}" width="12" height="12" fill="{colour}"/><text x="{}" y="{:.1}">{name}</text>"#,
            h - 22.0,
            x + 16.0,
            h - 12.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// One panel at (`left`, `top`) of width `w` and height `ph`: a group of up to three bars per row
/// (NaN: no bar), gridlines, and `labels[i]` above row i's last bar.
fn panel(
    s: &mut String,
    (left, top, w, ph): (f64, f64, f64, f64),
    title: &str,
    values: &[[f64; 3]],
    colours: &[(&str, &str); 3],
    labels: &[String],
) {
    let max = values
        .iter()
        .flatten()
        .filter(|v| v.is_finite())
        .fold(1.0, |a, b| f64::max(a, *b))
        * 1.1;
    let scale = ph / max;
    let base = top + ph;
    let _ = write!(
        s,
        r#"<text x="{left}" y="{:.1}" font-size="14">{title}</text>"#,
        top - 18.0
    );
    for i in 0..=5 {
        let v = max * f64::from(i) / 5.0;
        let y = base - v * scale;
        let _ = write!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{v:.0}</text>"##,
            w - 20.0,
            left - 6.0,
            y + 4.0
        );
    }
    for (i, row) in values.iter().enumerate() {
        let x0 = left + 20.0 + 140.0 * i as f64;
        for (j, v) in row.iter().enumerate() {
            if !v.is_finite() {
                continue;
            }
            let bh = v * scale;
            let _ = write!(
                s,
                r#"<rect x="{:.1}" y="{:.1}" width="32" height="{bh:.1}" fill="{}"/>"#,
                x0 + 36.0 * j as f64,
                base - bh,
                colours[j].1
            );
        }
        if let (Some(label), Some(last)) = (labels.get(i), row.get(2)) {
            let y = base - if last.is_finite() { last * scale } else { 0.0 } - 6.0;
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{y:.1}" text-anchor="middle">{label}</text>"#,
                x0 + 72.0 + 16.0
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(b: usize, rate: f64) -> SyncRow {
        SyncRow {
            bridges: b,
            workers: 2,
            receivers_per_twin: 1,
            raw_mqtt_msgs_per_s: 4000.0,
            raw_kafka_msgs_per_s: 9000.0,
            pipeline_msgs_per_s: rate,
            ratio: rate / 4000.0,
            p50_ms: None,
            p99_ms: None,
            p999_ms: None,
            cloud_cpu_us_per_msg: 0.0,
            cpu_ms_per_1000: Cpu::default(),
            devices: 100,
            twins: 50,
            devices_per_twin: 2,
            changes: 0,
            payload_bytes: 0,
            deliveries_per_change: 0.0,
            device_deliveries: 0,
            duplicates: 0,
            uplinks_per_bridge: vec![],
            records_per_worker: vec![],
            latency_rate_per_s: None,
            latency_samples: None,
            backend: "test".into(),
            mqtt_stored_at_start: None,
        }
    }

    #[test]
    fn the_plot_has_a_bar_per_figure_and_the_ratio() {
        let svg = plot(&[row(1, 2000.0), row(2, 1000.0)]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // Three bars per configuration above, one below, three legend swatches, the background.
        assert_eq!(svg.matches("<rect").count(), 2 * 3 + 2 + 3 + 1);
        assert!(svg.contains(">50%<") && svg.contains(">25%<"));
        assert!(svg.contains(">2000/s<") && svg.contains(">1000/s<"));
        assert!(svg.contains("2 bridges, 2 workers"));
    }
}
