//! The crash loop's short run (issue 13, part 5; the loop is `fieldsync_tests::crash_loop`, the
//! full run `scripts/crash-loop`): the debug `fieldsync` binary as edge and head office, ten
//! SIGKILLs of the edge at random moments, one of head office, two of a device process, with
//! devices working and reports being signed all along. Nothing the edge acknowledged may be
//! lost, every report must exist exactly once at the edge and at head office, and every
//! database must pass its integrity check. The seed is printed; `FIELDSYNC_CRASH_SEED` repeats
//! a run's choices.

use fieldsync_tests::crash_loop::{self, Config};
use fieldsync_tests::{fieldsync_binary, temp_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_loses_nothing_acknowledged_and_delivers_each_report_once() -> anyhow::Result<()>
{
    let dir = temp_dir()?;
    let seed = match std::env::var("FIELDSYNC_CRASH_SEED") {
        Ok(seed) => seed.parse()?,
        Err(_) => crash_loop::random_seed(),
    };
    let config = Config::short(
        fieldsync_binary()?,
        env!("CARGO_BIN_EXE_crash-loop").into(),
        dir.path().to_owned(),
        seed,
    );
    // An error of the loop itself (a process that did not start, a wait that timed out)
    // names the seed too, so the run can be replayed, and keeps the databases.
    let counts = match crash_loop::run(config).await {
        Ok(counts) => counts,
        Err(e) => {
            let kept = dir.keep();
            return Err(e.context(format!(
                "crash loop, seed {seed} (FIELDSYNC_CRASH_SEED), data kept in {}",
                kept.display()
            )));
        }
    };
    eprint!("{counts}");
    let failures = counts.failures();
    if !failures.is_empty() {
        // The databases are the evidence: keep them.
        let kept = dir.keep();
        panic!(
            "seed {seed}, data kept in {}:\n{}",
            kept.display(),
            failures.join("\n")
        );
    }
    assert_eq!(
        (
            counts.edge_kills,
            counts.head_office_kills,
            counts.device_kills
        ),
        (10, 1, 2)
    );
    // The loop did what it is for: the edge acknowledged changes, signed reports and
    // delivered them, and the device process had edits returned before it was killed.
    assert!(counts.changes_acknowledged > 0, "{counts}");
    assert!(counts.reports_signed > 0, "{counts}");
    assert_eq!(
        counts.reports_at_head_office, counts.reports_signed,
        "{counts}"
    );
    assert!(counts.writer_edits_returned > 0, "{counts}");
    Ok(())
}
