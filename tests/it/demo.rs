//! `fieldsync demo` (issue 5): the README's first command runs the whole chain and leaves its
//! data behind.

use fieldsync_server::head_office::archive::{self as head_office, Filter};
use fieldsync_server::head_office::store::HeadOfficeStore;
use fieldsync_storage::{Store, StoreConfig};
use fieldsync_tests::temp_dir;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_the_whole_chain_and_leaves_the_data_for_inspection() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let run = dir.path().join("run");
    fieldsync_server::demo::run(&run).await?;
    // Head office's archive holds the three verified reports, and the devices' stores remain.
    let store = HeadOfficeStore::Sqlite(std::sync::Arc::new(Store::open(
        run.join("head-office").join("fieldsync.sqlite"),
        StoreConfig::default(),
    )?));
    assert_eq!(
        head_office::archived(&store, &Filter::default())
            .await?
            .len(),
        3
    );
    // R22: the complaint the desk registered while the link was down reached head office,
    // and the CLI's R22 report counts it against the three reported jobs.
    let complaints =
        fieldsync_server::head_office::complaints::archived_complaints(&store, None, None).await?;
    assert_eq!(complaints.len(), 1);
    let month = complaints[0].month;
    let output = std::process::Command::new(crate::durability::binary()?)
        .args(["stats", "--complaints", "--format", "csv", "--month"])
        .arg(month.to_string())
        .arg("--data-dir")
        .arg(run.join("head-office"))
        .output()?;
    let csv = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{csv} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        csv.contains(&format!(
            "north-01,{month},complaint rate (per report verified),0.333"
        )),
        "{csv}"
    );
    for name in ["wang", "li", "zhao"] {
        assert!(run.join("devices").join(format!("{name}.sqlite")).exists());
    }
    // A second run into the same place is refused rather than mixed with the first.
    let again = fieldsync_server::demo::run(&run).await;
    assert!(again.is_err_and(|e| e.to_string().contains("not empty")));
    Ok(())
}
