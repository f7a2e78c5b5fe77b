//! `sekisho matrix-card new USER`: issue a grid card, the SSH front door's second factor.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use crate::auth::matrix_card;

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The user the card is for.
    user: String,
    /// Check that USER exists in this configuration first.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Prints the grid to hand to the user and the `matrix_card` line to put in their `[[user]]`
/// table. The card is not stored anywhere else: whoever runs this holds it.
pub fn new_card(args: NewArgs) -> Result<ExitCode> {
    if let Some(path) = &args.config {
        let config = super::load_config(path)?;
        config
            .inventory
            .user(&args.user)
            .with_context(|| format!("no user {:?} in {}", args.user, path.display()))?;
    }
    let card = matrix_card::issue(&mut rand::rng());
    println!("Matrix card for {}:\n", args.user);
    println!("{}", card.render_grid());
    let rows: Vec<String> = card
        .to_config_rows()
        .iter()
        .map(|r| format!("{r:?}"))
        .collect();
    println!("Add to the [[user]] table of {}:", args.user);
    println!("matrix_card = [{}]", rows.join(", "));
    Ok(ExitCode::SUCCESS)
}
