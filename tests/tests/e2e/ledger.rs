//! The recordings ledger against real sessions: console sessions through `sekisho serve`
//! (OpenSSH client → Sekisho → OpenSSH `sshd` as app02's console) are sealed into the ledger;
//! `serve` signs a checkpoint at shutdown; then the recordings and the catalogue are damaged
//! as an intruder with file and database access would, one way at a time, and
//! `sekisho ledger verify` must name each.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use crate::ssh::ssh_peers::{
    self, DEMO_PASSWORD, askpass, console_inventory, console_secrets, recording_path,
};
use crate::support::{InstanceOptions, SekishoInstance, require_peers};

const TANAKA_DESKTOP: &str = "127.0.10.11";

/// `sekisho ledger verify ARGS`: (exit code, stdout).
fn verify(sekisho: &SekishoInstance, extra: &[&str]) -> Result<(Option<i32>, String)> {
    let mut args = vec!["ledger", "verify"];
    args.extend_from_slice(extra);
    let out = sekisho.cli(&args)?;
    Ok((
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

/// Runs SQL on the stopped instance's SQLite catalogue.
fn sql(sekisho: &SekishoInstance, statement: &str) -> Result<()> {
    let url = format!("sqlite://{}", sekisho.path("data/sekisho.db").display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&url).await?;
        sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
            .execute(&mut c)
            .await?;
        c.close().await?;
        anyhow::Ok(())
    })
}

fn expect_finding(sekisho: &SekishoInstance, extra: &[&str], needle: &str) -> Result<String> {
    let (code, out) = verify(sekisho, extra)?;
    ensure!(
        code == Some(1),
        "ledger verify should fail ({needle}):\n{out}"
    );
    ensure!(out.contains(needle), "no {needle:?} in:\n{out}");
    ensure!(out.contains("ledger NOT intact"), "{out}");
    Ok(out)
}

#[test]
fn ledger_verify_names_each_deleted_replaced_truncated_added_recording_and_changed_row()
-> Result<()> {
    if !require_peers(&["ssh", "sshd"])? {
        return Ok(());
    }
    let sshd = ssh_peers::start_sshd(&[])?;
    let mut sekisho = SekishoInstance::start_with(
        &console_inventory(14501, sshd.port),
        InstanceOptions {
            secrets: Some(console_secrets()),
            ..InstanceOptions::default()
        },
    )?;
    let askpass = askpass(sekisho.dir.path(), DEMO_PASSWORD, None)?;
    for i in 0..4 {
        let mut s = ssh_peers::ssh_tt(
            &askpass,
            sekisho.listen.ssh.port(),
            TANAKA_DESKTOP,
            "tanaka+app02",
        )?;
        s.wait_for("this session is recorded", Duration::from_secs(30))?;
        s.send(format!("echo LEDGER-{i}-$((6*7)); exit\n").as_bytes())?;
        s.wait_for(&format!("LEDGER-{i}-42"), Duration::from_secs(30))?;
        s.wait_exit(Duration::from_secs(20))?;
    }
    let rows = sekisho.wait_until(Duration::from_secs(20), "four sealed sessions", || {
        let rows = sekisho.sessions()?;
        Ok(
            (rows.len() == 4 && rows.iter().all(|r| r["recording_state"] == "complete"))
                .then_some(rows),
        )
    })?;
    // Oldest first, as the ledger has them.
    let files: Vec<PathBuf> = rows
        .iter()
        .rev()
        .map(|r| recording_path(&sekisho, r))
        .collect::<Result<_>>()?;
    // Stopped: serve signs the shutdown checkpoint, and the files and database are still.
    sekisho.stop()?;

    let (code, out) = verify(&sekisho, &[])?;
    ensure!(code == Some(0), "a clean ledger does not verify:\n{out}");
    ensure!(
        out.contains("ledger intact: 4 rows") && out.contains("4 recordings checked"),
        "{out}"
    );
    // The auditor keeps the signed checkpoints outside.
    let outside = tempfile::tempdir()?;
    let export = outside.path().join("checkpoints.json");
    let out = sekisho.cli(&["ledger", "export", "-o", &export.display().to_string()])?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exported: serde_json::Value = serde_json::from_slice(&std::fs::read(&export)?)?;
    ensure!(
        exported["checkpoints"]
            .as_array()
            .is_some_and(|c| c.iter().any(|cp| cp["seq"] == 4)),
        "no shutdown checkpoint of row 4: {exported}"
    );
    let with_export = ["--checkpoints", &export.display().to_string()];

    // 1. A recording deleted.
    std::fs::remove_file(&files[0])?;
    expect_finding(
        &sekisho,
        &[],
        "is gone, and no ledger row records its deletion",
    )?;
    // 2. A recording replaced by another validly signed one.
    std::fs::copy(&files[2], &files[1])?;
    expect_finding(&sekisho, &[], "was replaced")?;
    // 3. A recording truncated.
    let len = std::fs::metadata(&files[2])?.len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&files[2])?
        .set_len(len / 2)?;
    expect_finding(&sekisho, &[], "is truncated")?;
    // 4. A recording added beside them.
    let added = files[3]
        .parent()
        .context("dir")?
        .join(format!("{}.skrec", uuid::Uuid::now_v7()));
    std::fs::copy(&files[3], &added)?;
    expect_finding(&sekisho, &[], "is in storage but not in the ledger")?;
    // 5. A ledger row changed (say, to point row 1 at a file that is still there).
    sql(
        &sekisho,
        &format!(
            "UPDATE ledger SET location = '{}' WHERE seq = 1",
            relative(&sekisho, &files[3])
        ),
    )?;
    expect_finding(&sekisho, &[], "ledger row 1 was changed")?;
    // 6. A row dropped in the middle.
    sql(&sekisho, "DELETE FROM ledger WHERE seq = 2")?;
    expect_finding(&sekisho, &[], "ledger row 2 is missing")?;
    // 7. The last row dropped and the head wound back, as a careful intruder would: only the
    //    checkpoints tell, the one kept outside included.
    sql(&sekisho, "DELETE FROM ledger WHERE seq = 4")?;
    sql(
        &sekisho,
        "UPDATE ledger_head SET seq = 3, hash = (SELECT hash FROM ledger WHERE seq = 3)",
    )?;
    sql(&sekisho, "DELETE FROM ledger_checkpoints")?;
    let out = expect_finding(&sekisho, &with_export, "ledger rows after 3 were dropped")?;
    println!("ledger verify after every kind of damage:\n{out}");
    Ok(())
}

/// `file` as the catalogue stores it: relative to the instance directory.
fn relative(sekisho: &SekishoInstance, file: &Path) -> String {
    file.strip_prefix(sekisho.dir.path())
        .unwrap_or(file)
        .display()
        .to_string()
}
