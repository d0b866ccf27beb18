//! `fieldsync demo` (issue 5): the README's first command runs the whole chain and leaves its
//! data behind.

use fieldsync_server::head_office::{self, Filter};
use fieldsync_storage::{Store, StoreConfig};
use fieldsync_tests::temp_dir;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_the_whole_chain_and_leaves_the_data_for_inspection() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let run = dir.path().join("run");
    fieldsync_server::demo::run(&run).await?;
    // Head office's archive holds the three verified reports, and the devices' stores remain.
    let store = Store::open(
        run.join("head-office").join("fieldsync.sqlite"),
        StoreConfig::default(),
    )?;
    assert_eq!(head_office::archived(&store, &Filter::default())?.len(), 3);
    for name in ["wang", "li", "zhao"] {
        assert!(run.join("devices").join(format!("{name}.sqlite")).exists());
    }
    // A second run into the same place is refused rather than mixed with the first.
    let again = fieldsync_server::demo::run(&run).await;
    assert!(again.is_err_and(|e| e.to_string().contains("not empty")));
    Ok(())
}
