//! `sekisho recording info|verify|seal|public-key|prune`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use super::EXIT_NO;

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The recording file, or its URL in the object store (`s3://BUCKET/KEY`).
    file: PathBuf,
    /// The configuration whose object store holds an `s3://` recording (default
    /// ./sekisho.toml); its secrets file has the keys.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The recording file, or its URL in the object store (`s3://BUCKET/KEY`; the store of
    /// --config, default ./sekisho.toml).
    file: PathBuf,
    /// The instance's public key (hex), as `sekisho recording public-key` prints it. An
    /// auditor working offline passes the key they were given.
    #[arg(long, value_name = "HEX")]
    key: Option<String>,
    /// Trust the public key of this configuration's signing key.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct SealArgs {
    /// The recording file cut short by a crash, or the URL of a recording in the object
    /// store whose instance died (sealed from the segments that reached the store).
    file: PathBuf,
    /// The configuration whose signing key signs the recovered prefix.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,
}

#[derive(Debug, Args)]
pub struct PublicKeyArgs {
    /// The configuration whose signing key to show (created if absent, as on first start).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// The configuration; `[recording] retention_days` says how old is too old.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,
    /// List what would be deleted; delete nothing.
    #[arg(long)]
    dry_run: bool,
}

fn read(file: &Path) -> Result<Vec<u8>> {
    std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))
}

pub fn info(args: InfoArgs) -> Result<ExitCode> {
    let info = if super::is_url(&args.file) {
        let location = args.file.display().to_string();
        let config = super::load_config_or_default(args.config.as_deref())?;
        let recordings = super::open_recordings(&config)?;
        super::runtime()?.block_on(async {
            recorder::storage::info_stored(recordings.reader(&location)?, &location)
                .await
                .with_context(|| location.clone())
        })?
    } else {
        let bytes = read(&args.file)?;
        recorder::info(&bytes).with_context(|| format!("{}", args.file.display()))?
    };
    println!("{}", serde_json::to_string_pretty(&info)?);
    Ok(ExitCode::SUCCESS)
}

/// Exit 0 intact (signed trailer, whole chain, trusted key when one is given), 1 otherwise.
pub fn verify(args: VerifyArgs) -> Result<ExitCode> {
    // With --config: this instance's key, and the keys the instances sharing its catalogue
    // registered (each signs its own recordings, and seals those of a dead instance).
    let trusted: Vec<recorder::signing::VerifyingKey> = match (&args.key, &args.config) {
        (Some(hex), _) => vec![recorder::signing::parse_public_key(hex).context("--key")?],
        (None, Some(config)) => {
            let config = super::load_config(config)?;
            let key = recorder::signing::load(&config.inventory.storage().signing_key)
                .context("cannot load the signing key")?;
            let mut keys = vec![key.verifying_key()];
            let registered = super::runtime()?
                .block_on(async {
                    let catalogue = super::open_catalogue(&config).await?;
                    catalogue
                        .signer_keys()
                        .await
                        .context("cannot read the instances' keys")
                })
                .unwrap_or_else(|e| {
                    eprintln!("note: {e:#}; trusting this instance's key only");
                    Vec::new()
                });
            keys.extend(registered);
            keys
        }
        (None, None) => Vec::new(),
    };
    // Streamed: a recording of any size is verified in the memory of one chunk (an object
    // by range reads of a few MiB), with the same verdict for an object as for a file.
    let report = if super::is_url(&args.file) {
        let location = args.file.display().to_string();
        let config = super::load_config_or_default(args.config.as_deref())?;
        let recordings = super::open_recordings(&config)?;
        super::runtime()?.block_on(async {
            recorder::verify_stored_trusting(recordings.reader(&location)?, &location, &trusted)
                .await
                .with_context(|| format!("cannot read {location}"))
        })?
    } else {
        let file = std::fs::File::open(&args.file)
            .with_context(|| format!("cannot read {}", args.file.display()))?;
        recorder::verify_reader_trusting(file, &trusted)
            .with_context(|| format!("cannot read {}", args.file.display()))?
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}: {}", args.file.display(), describe(&report));
        if trusted.is_empty() {
            println!(
                "note: no trusted key given (--key or --config): the signature was checked only against the key inside the recording"
            );
        }
    }
    // A recording sealed after an interruption is authentic up to the interruption: it is
    // evidence as it stands, so it verifies (and says it was interrupted).
    Ok(if report.is_authentic() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NO)
    })
}

/// One line for a person: the state, and where and why when it is not intact.
fn describe(report: &recorder::VerifyReport) -> String {
    use recorder::VerifyState;
    let signer = report
        .signer
        .as_ref()
        .map(|s| format!(", signed by {}", s.fingerprint))
        .unwrap_or_default();
    match &report.state {
        VerifyState::Intact => format!(
            "intact ({} chunks, {} records{signer})",
            report.chunks, report.records
        ),
        VerifyState::Interrupted => format!(
            "interrupted: authentic up to the interruption, sealed afterwards ({} chunks, {} records{signer})",
            report.chunks, report.records
        ),
        VerifyState::Incomplete {
            last_good_chunk,
            offset,
            reason,
        } => format!(
            "incomplete: {reason}; readable up to byte {offset} (last whole chunk: {}); not tampered, but not yet sealed (`sekisho recording seal`)",
            last_good_chunk.map_or_else(|| "none".to_owned(), |c| c.to_string())
        ),
        VerifyState::Tampered { offset, reason } => {
            format!("TAMPERED at byte {offset}: {reason}")
        }
    }
}

/// Signs the readable prefix of an interrupted recording and, when the catalogue knows its
/// session, marks that session interrupted with the sealed recording's size and hash.
pub fn seal(args: SealArgs) -> Result<ExitCode> {
    let config = super::load_config(&args.config)?;
    let key = recorder::signing::load(&config.inventory.storage().signing_key)
        .context("cannot load the signing key")?;
    if super::is_url(&args.file) {
        return seal_object(&config, &args.file.display().to_string(), &key);
    }
    let bytes = read(&args.file)?;
    let session = recorder::info(&bytes)
        .ok()
        .and_then(|info| info.session_id.parse::<policy::SessionId>().ok());
    let sealed = recorder::seal_file(&args.file, &key);
    let (summary, reason) = match &sealed {
        Ok(ok) => ok,
        Err(e) => anyhow::bail!("cannot seal {}: {e}", args.file.display()),
    };
    println!(
        "{}: sealed after interruption ({reason}); {} chunks, {} records, final hash {}",
        args.file.display(),
        summary.chunks,
        summary.records,
        summary.final_hash
    );
    let Some(session) = session else {
        return Ok(ExitCode::SUCCESS);
    };
    let rt = super::runtime()?;
    rt.block_on(async {
        let catalogue = super::open_catalogue(&config).await?;
        let Some(row) = catalogue.get_session(session).await? else {
            eprintln!("session {session} is not in this catalogue; only the file was sealed");
            return Ok(());
        };
        let location = args.file.display().to_string();
        crate::recovery::record_interruption(&catalogue, &row, Some((&location, &sealed))).await?;
        println!("session {session} marked interrupted in the catalogue");
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Seals a recording of the object store from the segments that reached it (its instance
/// died), and marks its session interrupted when the catalogue knows it.
fn seal_object(
    config: &super::LoadedConfig,
    location: &str,
    key: &recorder::RecordingKey,
) -> Result<ExitCode> {
    let recordings = super::open_recordings(config)?;
    let Some(s3) = recordings.s3() else {
        anyhow::bail!(
            "{location}: storage.recordings of this configuration is not an object store"
        );
    };
    // The session id is the object's name: `…/<id>.skrec`.
    let session = location
        .rsplit('/')
        .next()
        .and_then(|n| n.strip_suffix(".skrec"))
        .and_then(|id| id.parse::<policy::SessionId>().ok());
    super::runtime()?.block_on(async {
        let sealed = s3.seal_from_store(location, key).await;
        let (summary, reason) = match &sealed {
            Ok(ok) => ok,
            Err(e) => anyhow::bail!("cannot seal {location}: {e}"),
        };
        println!(
            "{location}: sealed after interruption ({reason}); {} chunks, {} records, final hash {}",
            summary.chunks, summary.records, summary.final_hash
        );
        let Some(session) = session else {
            return Ok(());
        };
        let catalogue = super::open_catalogue(config).await?;
        let Some(row) = catalogue.get_session(session).await? else {
            eprintln!("session {session} is not in this catalogue; only the recording was sealed");
            return Ok(());
        };
        crate::recovery::record_interruption(&catalogue, &row, Some((location, &sealed))).await?;
        println!("session {session} marked interrupted in the catalogue");
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn public_key(args: PublicKeyArgs) -> Result<ExitCode> {
    let config = super::load_config_or_default(args.config.as_deref())?;
    let (key, created) = recorder::signing::load_or_create(&config.inventory.storage().signing_key)
        .context("cannot load or create the signing key")?;
    let public = key.verifying_key();
    if created {
        eprintln!(
            "created a new signing key at {}",
            config.inventory.storage().signing_key.display()
        );
    }
    println!("{}", recorder::signing::public_key_hex(&public));
    eprintln!("fingerprint: {}", recorder::signing::fingerprint(&public));
    Ok(ExitCode::SUCCESS)
}

/// Deletes the recordings of this instance's sessions that ended more than
/// `[recording] retention_days` ago and writes each deletion to the catalogue; what `serve`
/// does every hour. Run it where `serve` runs (recording paths are relative to that directory).
pub fn prune(args: PruneArgs) -> Result<ExitCode> {
    let config = super::load_config(&args.config)?;
    let Some(days) = config.inventory.recording().retention_days else {
        eprintln!(
            "{}: [recording] retention_days is not set: recordings are kept for ever",
            args.config.display()
        );
        return Ok(ExitCode::from(super::EXIT_USAGE));
    };
    let data_dir = super::serve::data_dir_of(&config.inventory.storage().signing_key);
    if !data_dir.join("instance-id").exists() {
        println!(
            "{} has no instance id: serve never ran here, so there is nothing to prune",
            data_dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let instance = super::serve::instance_id(&data_dir)?;
    let recordings = super::open_recordings(&config)?;
    let rt = super::runtime()?;
    let report = rt.block_on(async {
        let catalogue = super::open_catalogue(&config).await?;
        crate::services::retention::prune(
            &catalogue,
            &recordings,
            &instance,
            days,
            chrono::Utc::now(),
            args.dry_run,
            |_| false,
        )
        .await
    })?;
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    let mut bytes = 0;
    for p in &report.deleted {
        bytes += p.size;
        println!(
            "{verb} {} (session {}, ended {}, {} bytes)",
            p.location,
            p.session,
            p.ended_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            p.size
        );
    }
    for (session, error) in &report.failed {
        eprintln!("cannot delete the recording of session {session}: {error}");
    }
    println!(
        "{verb} {} recordings ({bytes} bytes) of sessions ended more than {days} days ago",
        report.deleted.len()
    );
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NO)
    })
}
