//! `sekisho ledger verify|export|checkpoint`: proving that no recording went missing.
//!
//! `verify` checks the chain (rows changed, dropped or missing, a chain rewritten before a
//! signed checkpoint), then the recordings this instance can reach against their rows (a
//! recording deleted outside retention, replaced, truncated or tampered with, and a recording
//! in storage that the ledger never saw). `export` writes the signed checkpoints for an
//! auditor to keep outside the system; `verify --checkpoints FILE` holds the ledger to them.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use recorder::VerifyState;
use recorder::catalogue::{Catalogue, InstanceId, RecordingState, SessionId};
use recorder::ledger::{self, Checkpoint, Entry, EntryKind};
use recorder::signing::VerifyingKey;
use serde::{Deserialize, Serialize};

use super::EXIT_NO;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The configuration file (names the catalogue, the recordings and the signing key).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,
    /// Checkpoints exported earlier (`sekisho ledger export`) and kept outside the system;
    /// the ledger must still contain what they fixed.
    #[arg(long, value_name = "FILE")]
    checkpoints: Option<PathBuf>,
    /// Trust only checkpoints signed by these public keys (hex, as `sekisho recording
    /// public-key` prints them; repeatable). Default: this instance's key and the keys the
    /// instances registered in the catalogue.
    #[arg(long = "trusted-key", value_name = "HEX")]
    trusted_keys: Vec<String>,
    /// Print a JSON report instead of lines.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The configuration file (names the catalogue).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,
    /// Only checkpoints signed at or after T (RFC 3339, YYYY-MM-DD, or an age like 24h).
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// Where to write (`-` for standard output).
    #[arg(short = 'o', value_name = "FILE")]
    output: PathBuf,
}

#[derive(Debug, Args)]
pub struct CheckpointArgs {
    /// The configuration file (names the catalogue and the signing key).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,
}

/// What `ledger export` writes and `ledger verify --checkpoints` reads.
#[derive(Debug, Serialize, Deserialize)]
struct Export {
    /// Format marker.
    format: String,
    exported_at: chrono::DateTime<chrono::Utc>,
    /// The ledger's head when exported (informative; the checkpoints are what is signed).
    head_seq: u64,
    head_hash: String,
    checkpoints: Vec<Checkpoint>,
}

const EXPORT_FORMAT: &str = "sekisho-ledger-checkpoints-v1";

/// One thing `verify` found, for people and for `--json`.
#[derive(Debug, Serialize)]
struct Finding {
    /// A short id: `gap`, `row-changed`, `recording-deleted`, …
    finding: String,
    /// The ledger row concerned, when there is one.
    seq: Option<u64>,
    /// The session concerned, when known.
    session: Option<String>,
    /// For a person.
    message: String,
}

#[derive(Debug, Serialize)]
struct Report {
    intact: bool,
    rows: usize,
    checkpoints: usize,
    recordings_checked: usize,
    /// Recordings on other instances' local storage, which this one cannot read.
    recordings_elsewhere: usize,
    findings: Vec<Finding>,
}

pub fn verify(args: VerifyArgs) -> Result<ExitCode> {
    let config = super::load_config(&args.config)?;
    let storage = config.inventory.storage();
    let data_dir = super::serve::data_dir_of(&storage.signing_key);
    let me = data_dir
        .join("instance-id")
        .exists()
        .then(|| super::serve::instance_id(&data_dir))
        .transpose()?;
    let local_key = recorder::signing::load(&storage.signing_key)
        .ok()
        .map(|k| k.verifying_key());
    let external = args.checkpoints.as_deref().map(read_export).transpose()?;
    let rt = super::runtime()?;
    let report = rt.block_on(async {
        let catalogue = super::open_catalogue(&config).await?;
        let trusted = trusted_keys(&args.trusted_keys, local_key, &catalogue).await?;
        let recordings = super::open_recordings(&config)?;
        check(
            &catalogue,
            &recordings,
            me.as_ref(),
            &trusted,
            external.map(|e| e.checkpoints).unwrap_or_default(),
        )
        .await
    })?;
    if args.json {
        super::emit(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
    } else {
        for f in &report.findings {
            println!("{}", f.message);
        }
        let summary = format!(
            "{} rows, {} checkpoints, {} recordings checked{}",
            report.rows,
            report.checkpoints,
            report.recordings_checked,
            if report.recordings_elsewhere > 0 {
                format!(
                    " ({} on other instances' storage, not checked here)",
                    report.recordings_elsewhere
                )
            } else {
                String::new()
            }
        );
        if report.intact {
            println!("ledger intact: {summary}");
        } else {
            println!(
                "ledger NOT intact: {} finding(s); {summary}",
                report.findings.len()
            );
        }
    }
    Ok(if report.intact {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NO)
    })
}

fn read_export(path: &Path) -> Result<Export> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let export: Export = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a ledger export", path.display()))?;
    anyhow::ensure!(
        export.format == EXPORT_FORMAT,
        "{}: unknown export format {:?}",
        path.display(),
        export.format
    );
    Ok(export)
}

async fn trusted_keys(
    given: &[String],
    local: Option<VerifyingKey>,
    catalogue: &Catalogue,
) -> Result<Vec<VerifyingKey>> {
    if !given.is_empty() {
        return given
            .iter()
            .map(|k| {
                recorder::signing::parse_public_key(k)
                    .with_context(|| format!("--trusted-key {k:?}"))
            })
            .collect();
    }
    let mut keys: Vec<VerifyingKey> = local.into_iter().collect();
    keys.extend(
        catalogue
            .signer_keys()
            .await
            .context("cannot read the instances' keys")?,
    );
    Ok(keys)
}

fn finding(kind: &str, seq: Option<u64>, session: Option<String>, message: String) -> Finding {
    Finding {
        finding: kind.to_owned(),
        seq,
        session,
        message,
    }
}

/// The last ledger entry about each session's recording (sealed or deleted), by session.
fn last_by_session(entries: &[Entry]) -> BTreeMap<uuid::Uuid, &Entry> {
    let mut out = BTreeMap::new();
    for e in entries {
        // Reviews name a session too (a denial in it, a policy event of it), but say
        // nothing of its recording.
        let about_recording = matches!(
            e.content.kind,
            EntryKind::RecordingSealed | EntryKind::RecordingDeleted
        );
        if let (Some(id), true) = (e.content.session_id, about_recording) {
            out.insert(id, e);
        }
    }
    out
}

/// A location as stored, normalised for comparison with a storage listing.
fn normalise(location: &str) -> String {
    location.trim_start_matches("./").to_owned()
}

async fn check(
    catalogue: &Catalogue,
    recordings: &crate::recordings::Recordings,
    me: Option<&InstanceId>,
    trusted: &[VerifyingKey],
    external: Vec<Checkpoint>,
) -> Result<Report> {
    let entries = catalogue
        .ledger_entries()
        .await
        .context("cannot read the ledger")?;
    let mut checkpoints = catalogue
        .ledger_checkpoints(None)
        .await
        .context("cannot read the ledger checkpoints")?;
    checkpoints.extend(external);
    let mut findings: Vec<Finding> =
        ledger::verify_chain(&entries, &checkpoints, |k| trusted.contains(k))
            .into_iter()
            .map(|f| {
                let (kind, seq) = match &f {
                    ledger::ChainFinding::Gap { from, .. } => ("gap", Some(*from)),
                    ledger::ChainFinding::RowChanged { seq } => ("row-changed", Some(*seq)),
                    ledger::ChainFinding::ChainBroken { seq } => ("chain-broken", Some(*seq)),
                    ledger::ChainFinding::RowsDropped { last, .. } => ("rows-dropped", Some(*last)),
                    ledger::ChainFinding::RewrittenBeforeCheckpoint { seq } => {
                        ("rewritten", Some(*seq))
                    }
                    ledger::ChainFinding::BadCheckpoint { seq, .. } => {
                        ("bad-checkpoint", Some(*seq))
                    }
                    ledger::ChainFinding::UntrustedCheckpoint { seq, .. } => {
                        ("untrusted-checkpoint", Some(*seq))
                    }
                };
                finding(kind, seq, None, f.to_string())
            })
            .collect();

    // The head row is written with every append: rows removed from the end show there even
    // before the next checkpoint.
    let (head_seq, head_hash) = catalogue.ledger_head().await?;
    let last = entries.last();
    let last_seq = last.map_or(0, |e| e.seq);
    if head_seq != last_seq || last.is_some_and(|e| e.hash != head_hash) {
        findings.push(finding(
            "head-mismatch",
            Some(last_seq),
            None,
            format!(
                "the ledger ends at row {last_seq}, but its head says row {head_seq}: rows at the end were dropped or the head was changed"
            ),
        ));
    }

    // Recordings against their rows.
    let mut checked = 0;
    let mut elsewhere = 0;
    let mut in_ledger: HashSet<String> = HashSet::new();
    for (session, entry) in last_by_session(&entries) {
        let Some(location) = entry.content.location.as_deref() else {
            continue;
        };
        in_ledger.insert(normalise(location));
        if entry.content.kind != EntryKind::RecordingSealed {
            continue;
        }
        // An object store is shared by every instance; a local path is only readable on the
        // host of the instance that wrote it.
        let shared = location.contains("://");
        if !shared && me.is_none_or(|me| me.as_str() != entry.content.instance) {
            elsewhere += 1;
            continue;
        }
        checked += 1;
        if let Some(f) = check_recording(recordings, location, entry, session).await {
            findings.push(f);
        }
    }

    // Recordings in storage that the ledger never saw. Live and unfinished recordings are not
    // sealed yet, so they are not in the ledger by right.
    let listed = recordings
        .store()
        .list()
        .await
        .map_err(|e| anyhow::anyhow!("cannot list the recordings: {e}"))?;
    for object in listed {
        let location = normalise(&object.location);
        if in_ledger.contains(&location) {
            continue;
        }
        let session = Path::new(&location)
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<SessionId>().ok());
        let row = match session {
            Some(id) => catalogue.get_session(id).await?,
            None => None,
        };
        let unsealed = row.as_ref().is_some_and(|r| {
            matches!(
                r.recording_state,
                Some(RecordingState::Live | RecordingState::Incomplete)
            )
        });
        if unsealed {
            continue;
        }
        findings.push(finding(
            "recording-added",
            None,
            session.map(|s| s.to_string()),
            format!(
                "recording {location} is in storage but not in the ledger: added outside Sekisho{}",
                if row.is_some() {
                    ", or sealed without a ledger row"
                } else {
                    " (no session in the catalogue either)"
                }
            ),
        ));
    }
    Ok(Report {
        intact: findings.is_empty(),
        rows: entries.len(),
        checkpoints: checkpoints.len(),
        recordings_checked: checked,
        recordings_elsewhere: elsewhere,
        findings,
    })
}

/// Compares one recording (a file or an object) with its `recording-sealed` row.
async fn check_recording(
    recordings: &crate::recordings::Recordings,
    location: &str,
    entry: &Entry,
    session: uuid::Uuid,
) -> Option<Finding> {
    let at_row = |kind: &str, message: String| {
        Some(finding(
            kind,
            Some(entry.seq),
            Some(session.to_string()),
            message,
        ))
    };
    let unreadable = |e: &dyn std::fmt::Display| {
        at_row(
            "recording-unreadable",
            format!("recording of session {session} ({location}) cannot be read: {e}"),
        )
    };
    let store = match recordings.reader(location) {
        Ok(s) => s,
        Err(e) => return unreadable(&e),
    };
    let report = match recorder::storage::verify_stored(store, location, None).await {
        Ok(r) => r,
        Err(recorder::StorageError::NotFound(_)) => {
            return at_row(
                "recording-deleted",
                format!(
                    "recording of session {session} ({location}, ledger row {}) is gone, and no ledger row records its deletion",
                    entry.seq
                ),
            );
        }
        Err(e) => return unreadable(&e),
    };
    match &report.state {
        VerifyState::Tampered { offset, reason } => at_row(
            "recording-tampered",
            format!(
                "recording of session {session} ({location}) was tampered with at byte {offset}: {reason}"
            ),
        ),
        VerifyState::Incomplete { offset, .. } => at_row(
            "recording-truncated",
            format!(
                "recording of session {session} ({location}) is truncated: readable only up to byte {offset} of the {} bytes sealed (ledger row {})",
                entry.content.size.unwrap_or(0),
                entry.seq
            ),
        ),
        VerifyState::Intact | VerifyState::Interrupted => {
            if report.final_hash != entry.content.recording_hash {
                at_row(
                    "recording-replaced",
                    format!(
                        "recording of session {session} ({location}) was replaced: its final hash is not the one sealed in ledger row {}",
                        entry.seq
                    ),
                )
            } else if entry.content.size.is_some_and(|s| s != report.size) {
                at_row(
                    "recording-replaced",
                    format!(
                        "recording of session {session} ({location}) has {} bytes, not the {} sealed in ledger row {}",
                        report.size,
                        entry.content.size.unwrap_or(0),
                        entry.seq
                    ),
                )
            } else {
                None
            }
        }
    }
}

pub fn export(args: ExportArgs) -> Result<ExitCode> {
    let config = super::load_config(&args.config)?;
    let tz = config.inventory.timezone();
    let since = args
        .since
        .as_deref()
        .map(|s| super::parse_since(s, tz, chrono::Utc::now()))
        .transpose()?;
    let rt = super::runtime()?;
    let export = rt.block_on(async {
        let catalogue = super::open_catalogue(&config).await?;
        let (head_seq, head_hash) = catalogue.ledger_head().await?;
        let checkpoints = catalogue
            .ledger_checkpoints(since)
            .await
            .context("cannot read the ledger checkpoints")?;
        anyhow::Ok(Export {
            format: EXPORT_FORMAT.to_owned(),
            exported_at: chrono::Utc::now(),
            head_seq,
            head_hash,
            checkpoints,
        })
    })?;
    let text = format!("{}\n", serde_json::to_string_pretty(&export)?);
    if args.output.as_os_str() == "-" {
        super::emit(&text)?;
    } else {
        std::fs::write(&args.output, text)
            .with_context(|| format!("cannot write {}", args.output.display()))?;
        eprintln!(
            "{} checkpoint(s) written to {}; keep the file outside Sekisho",
            export.checkpoints.len(),
            args.output.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn checkpoint(args: CheckpointArgs) -> Result<ExitCode> {
    let config = super::load_config(&args.config)?;
    let rt = super::runtime()?;
    let (cp, fingerprint) = rt.block_on(async {
        let catalogue = super::open_catalogue(&config).await?;
        sign_checkpoint_now(&config, &catalogue).await
    })?;
    println!(
        "checkpoint of ledger row {} ({}) signed by {fingerprint}",
        cp.seq, cp.head_hash
    );
    Ok(ExitCode::SUCCESS)
}

/// Signs a checkpoint of the ledger's head with the configuration's instance key and stores
/// it, as the instance does hourly. Returns it and the signer's fingerprint.
pub(super) async fn sign_checkpoint_now(
    config: &super::LoadedConfig,
    catalogue: &recorder::catalogue::Catalogue,
) -> Result<(recorder::ledger::Checkpoint, String)> {
    let storage = config.inventory.storage();
    let key = recorder::signing::load(&storage.signing_key).with_context(|| {
        format!(
            "cannot load the signing key {}",
            storage.signing_key.display()
        )
    })?;
    let data_dir = super::serve::data_dir_of(&storage.signing_key);
    let instance = super::serve::instance_id(&data_dir)?;
    let (seq, head) = catalogue.ledger_head().await?;
    let cp = ledger::sign_checkpoint(&key, seq, &head, chrono::Utc::now(), instance.as_str());
    catalogue
        .add_checkpoint(&cp)
        .await
        .context("cannot store the checkpoint")?;
    Ok((cp, recorder::signing::fingerprint(&key.verifying_key())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use recorder::ledger::{EntryContent, GENESIS, chain};

    fn content(kind: EntryKind, session: uuid::Uuid, location: Option<&str>) -> EntryContent {
        EntryContent {
            at: chrono::Utc::now(),
            instance: "a".into(),
            kind,
            session_id: Some(session),
            location: location.map(str::to_owned),
            recording_hash: None,
            size: None,
            started_at: None,
            ended_at: None,
            signer: None,
            detail: None,
        }
    }

    #[test]
    fn a_review_after_the_seal_does_not_hide_the_recording_row() {
        let s = uuid::Uuid::now_v7();
        let sealed = chain(
            1,
            &GENESIS,
            content(EntryKind::RecordingSealed, s, Some("r.skrec")),
        );
        let prev = recorder::ledger::parse_hash(&sealed.hash).unwrap();
        let review = chain(2, &prev, content(EntryKind::Review, s, None));
        let entries = [sealed, review];
        let last = last_by_session(&entries);
        assert_eq!(last[&s].content.kind, EntryKind::RecordingSealed);
    }
}
