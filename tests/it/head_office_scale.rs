//! Several head-office processes on one archive (issue 16): two real `fieldsync serve`
//! head-office processes share one database (PostgreSQL, or a SQLite file on one machine)
//! behind a TCP load balancer; three branches deliver to whichever process the balancer
//! picks; one process is SIGKILLed while the branches deliver and restarted on its data
//! directory. Every report is archived exactly once and both processes answer the same
//! statistics.
//!
//! The processes run on the wall clock (they are the real binary); the branches and devices
//! run in-process on the chain's manual clock, so the reports are signed in October 2026
//! whatever day the suite runs.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use fieldsync_client::SyncClient;
use fieldsync_server::clock::Clock;
use fieldsync_server::edge::upstream::DELIVERED;
use fieldsync_shared::ids::DeviceId;
use fieldsync_shared::job::ReportOutcome;
use fieldsync_shared::job::doc::read_job;
use fieldsync_shared::keys::KeyPair;
use fieldsync_shared::time::Timestamp;
use fieldsync_tests::balancer::{Balancer, copy_data_dir};
use fieldsync_tests::pg::{PgCluster, TEST_PG_ENV, create_database};
use fieldsync_tests::{
    SETTLE, ServerProcess, TestServer, cli, eventually, fieldsync_binary, temp_dir,
};
use serde_json::Value;
use tempfile::TempDir;

use crate::head_office::CHAIN_NOW;
use crate::reports::{T0, acknowledge, check_out_and_complete, do_the_work, outcome};

struct Branch {
    server: TestServer,
    client: SyncClient,
    device: DeviceId,
    key: KeyPair,
}

impl Branch {
    async fn complete_a_job(&self, technician: &str, at: i64) -> anyhow::Result<String> {
        let created = self.server.create_job(technician).await?;
        self.client.subscribe(created.job);
        anyhow::ensure!(
            self.client
                .wait_for(created.job, SETTLE, |d| read_job(d).is_ok())
                .await,
            "the job did not reach the device"
        );
        do_the_work(&self.client, created.job).await?;
        acknowledge(&self.client, created.job, &self.device, &self.key).await?;
        check_out_and_complete(&self.client, created.job, true, at).await?;
        match outcome(&self.client, created.job).await {
            Some(ReportOutcome::Signed { report_id, .. }) => Ok(report_id),
            other => anyhow::bail!("the branch did not sign: {other:?}"),
        }
    }
}

async fn get(addr: SocketAddr, path: &str, token: &str) -> anyhow::Result<Value> {
    let response = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .bearer_auth(token)
        .send()
        .await?;
    let status = response.status();
    let text = response.text().await?;
    anyhow::ensure!(status.is_success(), "{path}: {status}: {text}");
    Ok(serde_json::from_str(&text)?)
}

async fn two_head_offices_three_branches(storage_url: String) -> anyhow::Result<()> {
    let binary = fieldsync_binary()?;
    let dirs: Vec<TempDir> = (0..8).map(|_| temp_dir()).collect::<Result<_, _>>()?;
    let (ho_a, ho_b) = (dirs[0].path(), dirs[1].path());
    // The command line speaks for head office (its tokens name head office as issuer).
    let config_dir = temp_dir()?;
    let config = config_dir.path().join("head-office.toml");
    std::fs::write(
        &config,
        "role = \"head-office\"\nbranch_id = \"head-office\"\n",
    )?;
    let config = config.to_str().unwrap_or_default().to_owned();
    let cli = |dir: &Path, args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--config", config.as_str()]);
        cli(dir, &all)
    };
    cli(ho_a, &["keygen"])?;
    let names = ["north-01", "south-02", "east-03"];
    let mut token_files = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let branch_dir = dirs[2 + i].path();
        let data = fieldsync_server::data_dir::DataDir::open(branch_dir)?;
        data.load_or_create_server_key()?;
        let key = data.server_public_key_path();
        let key = key.to_str().unwrap_or_default();
        cli(ho_a, &["branch", "enroll", "--branch", name, "--key", key])?;
        let token = cli(ho_a, &["branch", "token", "--branch", name, "--ttl", "1d"])?;
        let file = branch_dir.join("upstream.token");
        std::fs::write(&file, token)?;
        token_files.push(file);
    }
    copy_data_dir(ho_a, ho_b)?;
    let token = cli(ho_a, &["desk", "token", "--role", "analyst", "--ttl", "1h"])?;

    let env = [("FIELDSYNC_STORAGE_URL", storage_url.as_str())];
    let args = ["--config", config.as_str()];
    let a = ServerProcess::start_with(ho_a, &args, &env)?;
    let b = ServerProcess::start_with(ho_b, &args, &env)?;
    let (addr_a, addr_b) = (a.addr, b.addr);
    let balancer = Balancer::start(Arc::new(Mutex::new(vec![addr_a, addr_b]))).await?;

    let clock = Clock::manual(Timestamp::from_millis(CHAIN_NOW));
    let mut branches = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let server = TestServer::start_named_branch(
            name,
            dirs[2 + i].path(),
            format!("ws://{}/sync", balancer.addr),
            token_files[i].clone(),
            clock.clone(),
        )
        .await?;
        let (device, key) = server.enroll_with_key("tech-wang", &format!("dev-{i}"))?;
        let client = server.connect_device(&device, dirs[5 + i].path()).await?;
        branches.push(Branch {
            server,
            client,
            device,
            key,
        });
    }

    let mut signed = BTreeSet::new();
    for (i, branch) in branches.iter().enumerate() {
        signed.insert(
            branch
                .complete_a_job("tech-wang", T0 + 60_000 * i as i64)
                .await?,
        );
    }
    // Mid-delivery: the branches are delivering their first reports now.
    a.kill()?;
    for (i, branch) in branches.iter().enumerate() {
        signed.insert(
            branch
                .complete_a_job("tech-wang", T0 + 600_000 + 60_000 * i as i64)
                .await?,
        );
    }
    // A killed process is restarted on its data directory (as systemd would): documents it
    // confirmed to a branch but had not archived yet are archived at its start.
    let binary_args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    let a = ServerProcess::start_at(&binary, ho_a, addr_a, &binary_args, &env)?;

    for addr in [addr_a, addr_b] {
        let found = eventually(
            SETTLE,
            "every report archived, seen from both processes",
            || async {
                let list = get(addr, "/api/archive/reports", &token).await.ok()?;
                let ids: Vec<String> = list["reports"]
                    .as_array()?
                    .iter()
                    .filter_map(|r| r["report_id"].as_str().map(str::to_owned))
                    .collect();
                (ids.len() >= signed.len()).then_some(ids)
            },
        )
        .await;
        let ids = match found {
            Ok(ids) => ids,
            Err(e) => {
                let listed = get(addr, "/api/archive/reports", &token).await?;
                let aside = get(addr, "/api/archive/rejected", &token).await?;
                anyhow::bail!(
                    "{e}: signed {signed:?}; {addr} lists {listed}; aside {aside}\n\
                     log A:\n{}\nlog B:\n{}",
                    a.log(),
                    b.log()
                );
            }
        };
        // Exactly once: no report listed twice, none missing, nothing else.
        let unique: BTreeSet<String> = ids.iter().cloned().collect();
        assert_eq!(unique.len(), ids.len(), "a report archived twice: {ids:?}");
        assert_eq!(unique, signed);
    }
    // Each branch recorded every delivery (head office confirmed each report it holds).
    for branch in &branches {
        let delivered = eventually(SETTLE, "the branch records its deliveries", || async {
            let n = branch
                .server
                .state
                .store
                .meta_entries(DELIVERED)
                .ok()?
                .len();
            (n == 2).then_some(n)
        })
        .await?;
        assert_eq!(delivered, 2);
    }
    let month = fieldsync_shared::time::Timestamp::from_millis(CHAIN_NOW).month()?;
    let stats_a = get(a.addr, &format!("/api/stats?month={month}"), &token).await?;
    let stats_b = get(addr_b, &format!("/api/stats?month={month}"), &token).await?;
    assert_eq!(
        stats_a, stats_b,
        "the two processes answer different statistics"
    );
    let reports: u64 = stats_a
        .as_array()
        .map(|branches| {
            branches
                .iter()
                .filter_map(|s| s["summary"]["reports"].as_u64())
                .sum()
        })
        .unwrap_or(0);
    assert_eq!(reports, 6);
    for branch in branches {
        branch.client.close();
        branch.server.stop().await?;
    }
    drop((a, b, balancer));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_head_offices_on_one_postgres_archive_each_report_once_and_equal_stats()
-> anyhow::Result<()> {
    // The CI's cluster when given, else one of our own for this test.
    let (_cluster, server) = match std::env::var(TEST_PG_ENV) {
        Ok(server) => (None, server),
        Err(_) => {
            let cluster = PgCluster::start(false)?;
            let server = cluster.server_url();
            (Some(cluster), server)
        }
    };
    let name = format!("two_ho_{}", std::process::id());
    let url = create_database(&server, &name).await?;
    two_head_offices_three_branches(url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_head_offices_on_one_sqlite_archive_each_report_once_and_equal_stats()
-> anyhow::Result<()> {
    let dir = temp_dir()?;
    let url = format!("sqlite:{}", dir.path().join("archive.sqlite").display());
    two_head_offices_three_branches(url).await
}
