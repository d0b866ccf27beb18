//! The server's own records (devices, jobs) under its periodic reload from the store.

use std::time::Duration;

use fieldsync_server::auth::Subject;
use fieldsync_shared::ids::{BranchId, DeviceId, TechnicianId};
use fieldsync_shared::keys::KeyPair;
use fieldsync_shared::report::DeviceRecord;
use fieldsync_tests::{TestServer, temp_dir};

/// A reload that ran while this process's own record writes were still queued used to replace
/// the registry with a store that lacked them: a device enrolled a moment before was refused
/// as "not enrolled" (seen first with the JavaScript client, which connects a few hundred
/// milliseconds after enrollment, when the reload timer has ticked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_never_drops_a_record_this_process_is_still_writing() -> anyhow::Result<()> {
    let data = temp_dir()?;
    let server = TestServer::start_in(data.path()).await?;
    for i in 0..20 {
        let device_id = DeviceId::new(format!("dev-{i}"))?;
        let record = DeviceRecord {
            device_id: device_id.clone(),
            branch_id: BranchId::new("north-01")?,
            technician: TechnicianId::new("tech-wang")?,
            public_key: KeyPair::generate()?.public().to_hex(),
            revoked_at: None,
        };
        // Enroll without waiting for the write, and reload at once, as the timer may.
        let pending = server
            .state
            .registry_write()
            .enroll_device(&server.state.store, record)?;
        server.state.reload_registry_if_changed()?;
        assert!(
            server.state.registry_read().device(&device_id).is_some(),
            "device {device_id} is still enrolled after a reload"
        );
        pending.wait()?;
        let token = server
            .state
            .tokens
            .issue(
                &Subject::Device(device_id.clone()),
                Duration::from_secs(60),
                server.now(),
            )
            .map_err(anyhow::Error::msg)?;
        server
            .state
            .authenticate(Some(token))
            .map_err(|e| anyhow::anyhow!("{device_id} refused: {e}"))?;
    }
    server.stop().await?;
    Ok(())
}
