//! The operators' commands, run as the real binary: exit codes, JSON shapes and messages as
//! interfaces.md fixes them.

use anyhow::Result;

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

#[test]
fn passwd_prints_hashes_that_the_config_accepts() -> Result<()> {
    use std::io::Write;
    let sekisho = cli_only(&demo_inventory())?;
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
        .write_all(b"Secret123!\n")?;
    let out = child.wait_with_output()?;
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("password_hash = \"$argon2id$"), "{text}");
    // winpr-hash -u alice -p 'Secret123!' gives this NT hash (MD4 of UTF-16LE).
    assert!(text.contains("nt_hash = \"59c33a"), "{text}");
    assert!(
        !text.contains("Secret123!"),
        "the password itself is never printed"
    );

    // The printed lines are valid in a user table.
    let mut inventory = demo_inventory();
    let hash_lines: String = text.lines().map(|l| format!("{l}\n")).collect();
    inventory = inventory.replacen(
        "desktops = [\"127.0.10.11\"]",
        &format!(
            "desktops = [\"127.0.10.11\"]\n{}",
            hash_lines.replace("password_hash", "# password_hash")
        ),
        1,
    );
    std::fs::write(&sekisho.config, &inventory)?;
    let out = sekisho.cli(&["check-config"])?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    Ok(())
}

#[test]
fn catalogue_on_postgresql_serves_the_list_commands() -> Result<()> {
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
            database: Some(url),
            ..InstanceOptions::default()
        },
    )?;
    sekisho.sessions()?;
    sekisho.denials()?;
    Ok(())
}
