//! The operators' commands, run as the real binary: exit codes, JSON shapes and messages as
//! interfaces.md fixes them.

use anyhow::{Context, Result};

use crate::support::{InstanceOptions, SekishoInstance, demo_inventory, workspace_root};

fn cli_only(inventory: &str) -> Result<SekishoInstance> {
    SekishoInstance::start_with(
        inventory,
        InstanceOptions {
            no_serve: true,
            ..InstanceOptions::default()
        },
    )
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_shipped_example_is_valid() -> Result<()> {
    let example = workspace_root().join("examples/sekisho.toml");
    let sekisho = cli_only(&demo_inventory())?;
    let out = sekisho.cli_raw(&["check-config", "--config", &example.display().to_string()])?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("valid"), "{}", stdout(&out));
    // The example ships without a secrets file: a warning, not an error.
    assert!(stderr(&out).contains("secrets"), "{}", stderr(&out));
    Ok(())
}

#[test]
fn check_config_reports_every_mistake_with_file_line_and_key() -> Result<()> {
    let broken = demo_inventory()
        .replace(
            "networks = [\"127.0.10.0/24\"]",
            "networks = [\"127.0.10.0/33\"]",
        )
        .replace(
            "targets = [\"app02\"]",
            "targets = [\"app02\", \"nosuch01\"]\ncolour = \"blue\"",
        );
    let sekisho = cli_only(&broken)?;
    let out = sekisho.cli(&["check-config"])?;
    assert_eq!(out.status.code(), Some(2), "invalid config must exit 2");
    let err = stderr(&out);
    let config = sekisho.config.display().to_string();
    for needle in ["networks", "nosuch01", "colour"] {
        let line = err
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no error mentions {needle}:\n{err}"));
        assert!(line.starts_with(&config), "error without file name: {line}");
        let after = &line[config.len()..];
        assert!(
            after.starts_with(':')
                && after[1..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_digit()),
            "error without line number: {line}"
        );
    }
    Ok(())
}

#[test]
fn policy_check_explains_decisions_with_exit_codes_and_json() -> Result<()> {
    let sekisho = cli_only(&demo_inventory())?;
    // Wednesday 10:00 in Tokyo.
    let at = "2026-11-25T10:00:00+09:00";
    let check = |args: &[&str]| -> Result<(Option<i32>, serde_json::Value)> {
        let mut full = vec!["policy", "check", "--json", "--at", at];
        full.extend_from_slice(args);
        let out = sekisho.cli(&full)?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| anyhow::anyhow!("{e}: {}{}", stdout(&out), stderr(&out)))?;
        Ok((out.status.code(), v))
    };
    // tanaka's VDI desktop to a VM by RDP: denied, for the JSON and the text output.
    let vdi_to_vm = [
        "--protocol",
        "rdp",
        "--source",
        "127.0.10.11",
        "--target",
        "web01",
    ];
    let (code, v) = check(&vdi_to_vm)?;
    assert_eq!(code, Some(1));
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["rule"], "rdp.vdi-to-vm");
    assert_eq!(v["user"], "tanaka");
    assert_eq!(v["contractor"], "acme");
    let reason = v["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("127.0.10.11") && reason.contains("web01"),
        "{reason}"
    );

    let (code, v) = check(&[
        "--protocol",
        "rdp",
        "--source",
        "127.0.10.11",
        "--target",
        "file-phys02",
    ])?;
    assert_eq!((code, v["rule"].as_str()), (Some(0), Some("rdp.physical")));
    assert_eq!(v["decision"], "allow");

    // (protocol, source, target, more arguments) -> (exit code, rule).
    type Case<'a> = (&'a str, &'a str, &'a str, &'a [&'a str], i32, &'a str);
    let cases: [Case; 6] = [
        ("rdp", "127.0.10.11", "db-phys01", &[], 1, "zone.path"),
        (
            "console-serial",
            "127.0.10.11",
            "web01",
            &[],
            0,
            "console.vm",
        ),
        ("rdp", "127.0.20.11", "app02", &[], 1, "rdp.hop-no-console"),
        (
            "rdp",
            "127.0.20.11",
            "app02",
            &["--active-console", "web01"],
            0,
            "rdp.hop-from-console",
        ),
        (
            "console-vnc",
            "127.0.10.31",
            "app02",
            &[],
            1,
            "contract.expired",
        ),
        ("ssh", "127.0.99.1", "web01", &[], 1, "source.unknown"),
    ];
    for (protocol, source, target, more, want_code, want_rule) in cases {
        let mut args = vec![
            "--protocol",
            protocol,
            "--source",
            source,
            "--target",
            target,
        ];
        args.extend_from_slice(more);
        let (code, v) = check(&args)?;
        assert_eq!(
            (code, v["rule"].as_str()),
            (Some(want_code), Some(want_rule)),
            "{args:?}"
        );
    }

    // Text output: one line with the verdict, the rule and the reason.
    let out = sekisho.cli(&[&["policy", "check", "--at", at][..], &vdi_to_vm].concat())?;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).starts_with("deny (rdp.vdi-to-vm): "),
        "{}",
        stdout(&out)
    );

    // Usage errors exit 2.
    let out = sekisho.cli(&[
        "policy",
        "check",
        "--protocol",
        "telnet",
        "--source",
        "127.0.10.11",
        "--target",
        "web01",
    ])?;
    assert_eq!(out.status.code(), Some(2));
    Ok(())
}

#[test]
fn empty_catalogue_lists_as_empty_json_arrays() -> Result<()> {
    let sekisho = cli_only(&demo_inventory())?;
    assert!(sekisho.sessions()?.is_empty());
    assert!(sekisho.denials()?.is_empty());
    let out = sekisho.cli(&["sessions", "list"])?;
    assert_eq!(out.status.code(), Some(0));
    Ok(())
}

#[test]
fn killing_an_unknown_session_exits_1() -> Result<()> {
    let sekisho = cli_only(&demo_inventory())?;
    let out = sekisho.cli(&["sessions", "kill", "0190b8a4-0000-7000-8000-000000000000"])?;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    Ok(())
}

/// `sekisho passwd` for `password`: its two printed lines, (password_hash, nt_hash).
fn passwd(password: &str) -> Result<(String, String)> {
    use std::io::Write;
    let bin = crate::support::sekisho_bin()?;
    let mut child = std::process::Command::new(bin)
        .arg("passwd")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?
        .write_all(format!("{password}\n").as_bytes())?;
    let out = child.wait_with_output()?;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        !text.contains(password),
        "the password itself is never printed: {text}"
    );
    let value = |key: &str| -> Result<String> {
        let prefix = format!("{key} = \"");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix)?.strip_suffix('"'))
            .map(str::to_owned)
            .with_context(|| format!("no {key} line in:\n{text}"))
    };
    assert_eq!(text.lines().count(), 2, "{text}");
    Ok((value("password_hash")?, value("nt_hash")?))
}

#[test]
fn passwd_prints_hashes_that_the_config_accepts() -> Result<()> {
    use argon2::{PasswordHash, PasswordVerifier};
    // [MS-NLMP] 4.2.1 (common values): the password "Password" and NTOWFv1 of it.
    const PASSWORD: &str = "Password";
    const NTOWF_V1: &str = "a4f49c406510bdcab6824ee7c30fd852";
    let (hash, nt_hash) = passwd(PASSWORD)?;
    assert_eq!(nt_hash, NTOWF_V1);
    // The argon2 hash is one of this password and of no other.
    let parsed = PasswordHash::new(&hash).map_err(|e| anyhow::anyhow!("{e}: {hash}"))?;
    assert_eq!(parsed.algorithm.as_str(), "argon2id", "{hash}");
    let argon2 = argon2::Argon2::default();
    assert!(
        argon2.verify_password(PASSWORD.as_bytes(), &parsed).is_ok(),
        "{hash} does not verify with the password"
    );
    assert!(
        argon2.verify_password(b"password", &parsed).is_err(),
        "{hash} verifies with another password"
    );
    // A second run salts differently.
    assert_ne!(passwd(PASSWORD)?.0, hash);

    // The printed lines, as printed, replace tanaka's hash in the user table.
    let sekisho = cli_only(&demo_inventory())?;
    let inventory = demo_inventory();
    let tanaka = "name = \"tanaka\"\ncontractor = \"acme\"\nrole = \"contractor\"\n";
    let old_hash = inventory
        .split(tanaka)
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .context("tanaka's password_hash line")?;
    assert!(old_hash.starts_with("password_hash = "), "{old_hash}");
    let edited = inventory.replacen(
        &format!("{tanaka}{old_hash}\n"),
        &format!("{tanaka}password_hash = \"{hash}\"\nnt_hash = \"{nt_hash}\"\n"),
        1,
    );
    assert!(edited.contains(&hash), "tanaka's entry was not edited");
    std::fs::write(&sekisho.config, &edited)?;
    let out = sekisho.cli(&["check-config"])?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    Ok(())
}

#[test]
fn catalogue_on_postgresql_serves_the_list_commands() -> Result<()> {
    use recorder::catalogue::{
        Catalogue, DecisionRecord, InstanceId, NewSession, Outcome, RecordingState,
        RecordingSummary, Verdict,
    };
    let Ok(url) = std::env::var("SEKISHO_TEST_POSTGRES_URL") else {
        if crate::support::skip_peers_allowed() {
            eprintln!("SKIPPED: SEKISHO_TEST_POSTGRES_URL not set");
            return Ok(());
        }
        anyhow::bail!("SEKISHO_TEST_POSTGRES_URL not set: run scripts/pg-test-server start");
    };
    let sekisho = SekishoInstance::start_with(
        &demo_inventory(),
        InstanceOptions {
            no_serve: true,
            database: Some(url.clone()),
            ..InstanceOptions::default()
        },
    )?;
    // The cluster is shared with other tests: rows of a user name of this run's own.
    let user = format!("pglist{}", &uuid::Uuid::now_v7().simple().to_string()[24..]);
    let finished = policy::SessionId(uuid::Uuid::now_v7());
    let live = policy::SessionId(uuid::Uuid::now_v7());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let catalogue = Catalogue::connect(&url).await?;
        let instance = InstanceId::new("cli-pg-test")?;
        let started = chrono::Utc::now() - chrono::Duration::minutes(10);
        let session = |id, protocol, target: &str, minutes| NewSession {
            id,
            instance: instance.clone(),
            protocol,
            user: user.clone(),
            contractor: "acme".into(),
            source: "127.0.10.11".parse().expect("an address"),
            target: target.into(),
            path: "internet-vpn".into(),
            console_session: None,
            started_at: started + chrono::Duration::minutes(minutes),
            recording: Some(format!("/recordings/{id}.skrec")),
            detail: None,
        };
        catalogue
            .session_started(&session(finished, policy::Protocol::Ssh, "web01", 0))
            .await?;
        catalogue
            .session_ended(
                finished,
                started + chrono::Duration::minutes(3),
                Outcome::Killed,
                Some(&RecordingSummary {
                    location: format!("/recordings/{finished}.skrec"),
                    state: RecordingState::Complete,
                    size: 4711,
                    hash: Some("ab".repeat(32)),
                }),
            )
            .await?;
        catalogue
            .session_started(&session(live, policy::Protocol::Rdp, "file-phys02", 5))
            .await?;
        catalogue
            .record_decision(&DecisionRecord {
                at: started,
                instance: instance.clone(),
                protocol: policy::Protocol::Rdp,
                source: "127.0.10.11".parse().expect("an address"),
                target: Some("web01".into()),
                user: Some(user.clone()),
                contractor: Some("acme".into()),
                verdict: Verdict::Deny,
                rule: "rdp.vdi-to-vm".into(),
                reason: "web01 is a virtual machine; use its console".into(),
                session_id: None,
                explanation: None,
            })
            .await?;
        anyhow::Ok(())
    })?;

    let list = |args: &[&str]| -> Result<Vec<serde_json::Value>> {
        let out = sekisho.cli(args)?;
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).with_context(|| format!("{args:?}: {}", stdout(&out)))
    };
    let sessions = list(&["sessions", "list", "--json", "--user", &user])?;
    assert_eq!(sessions.len(), 2, "{sessions:#?}");
    // Newest first: the live RDP session, then the killed SSH one.
    assert_eq!(sessions[0]["id"], live.to_string());
    assert_eq!(sessions[0]["outcome"], "live");
    assert_eq!(sessions[0]["protocol"], "rdp");
    assert!(sessions[0]["ended_at"].is_null());
    assert_eq!(sessions[1]["id"], finished.to_string());
    assert_eq!(sessions[1]["outcome"], "killed");
    assert_eq!(sessions[1]["target"], "web01");
    assert_eq!(sessions[1]["recording_size"], 4711);
    assert_eq!(sessions[1]["recording_state"], "complete");
    assert_eq!(sessions[1]["instance_id"], "cli-pg-test");
    let rdp = list(&[
        "sessions",
        "list",
        "--json",
        "--user",
        &user,
        "--protocol",
        "rdp",
    ])?;
    assert_eq!(rdp.len(), 1, "{rdp:#?}");
    assert_eq!(rdp[0]["id"], live.to_string());

    let denials = list(&["denials", "list", "--json", "--user", &user])?;
    assert_eq!(denials.len(), 1, "{denials:#?}");
    assert_eq!(denials[0]["rule"], "rdp.vdi-to-vm");
    assert_eq!(denials[0]["target"], "web01");
    assert_eq!(
        denials[0]["reason"],
        "web01 is a virtual machine; use its console"
    );
    assert!(
        list(&[
            "denials",
            "list",
            "--json",
            "--user",
            &user,
            "--rule",
            "zone.path"
        ])?
        .is_empty()
    );

    // The tables name the rows too.
    let out = sekisho.cli(&["sessions", "list", "--user", &user])?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(
        table.contains(&finished.to_string()) && table.contains(&live.to_string()),
        "{table}"
    );
    let out = sekisho.cli(&["denials", "list", "--user", &user])?;
    assert!(stdout(&out).contains("rdp.vdi-to-vm"), "{}", stdout(&out));
    Ok(())
}
