//! Figures of the service report (issue 15): how long printing a typical job takes and how
//! big the PDF is, preview and signed, in Chinese and English. Run in release:
//! `cargo run --release -p fieldsync-tests --bin print-figures [RUNS]`. Prints the median
//! and the spread; never a pass/fail on time.

use std::time::Instant;

use fieldsync_report_print::{Language, PrintOptions, Zone, render, sample::typical_job};
use fieldsync_shared::keys::KeyPair;
use fieldsync_shared::report::SignedReport;
use fieldsync_shared::time::Timestamp;

fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(50);
    let job = typical_job();
    let key = KeyPair::from_seed(&[9; 32]);
    let report = SignedReport::sign(
        &job,
        vec!["ab".repeat(32)],
        Timestamp::from_millis(1_790_061_000_000),
        None,
        &key,
    )?;
    println!("print figures: typical repair job (2 parts, strokes signature), {runs} runs each");
    println!("| report | language | median ms | min ms | max ms | PDF bytes | text bytes |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for (name, signed) in [("preview", None), ("signed", Some(&report))] {
        for language in [Language::Zh, Language::En] {
            let options = PrintOptions::new(language, Zone::china());
            let mut times = Vec::with_capacity(runs);
            let mut last = None;
            for _ in 0..runs.max(1) {
                let started = Instant::now();
                let printed = render(&job, signed, &options)?;
                times.push(started.elapsed().as_secs_f64() * 1000.0);
                last = Some(printed);
            }
            times.sort_by(f64::total_cmp);
            let printed = last.ok_or_else(|| anyhow::anyhow!("no run"))?;
            println!(
                "| {name} | {} | {:.1} | {:.1} | {:.1} | {} | {} |",
                language.tag(),
                times[times.len() / 2],
                times[0],
                times[times.len() - 1],
                printed.pdf.len(),
                printed.text.len()
            );
        }
    }
    Ok(())
}
