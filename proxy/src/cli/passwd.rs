//! `sekisho passwd`: hash a password for the configuration.

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

/// Reads one line (the password) from standard input and prints the two configuration lines.
/// The password is never taken from the command line, where `ps` and shell history would see it.
pub fn run() -> Result<ExitCode> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        bail!("empty password on standard input");
    }
    let hash = crate::auth::hash_password(password)
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?;
    println!("password_hash = \"{hash}\"");
    println!("nt_hash = \"{}\"", nt_hash_hex(password));
    Ok(ExitCode::SUCCESS)
}

/// The NT hash (MD4 of the UTF-16LE password) that NTLM inside RDP's NLA checks against.
fn nt_hash_hex(password: &str) -> String {
    use md4::{Digest, Md4};
    let utf16: Vec<u8> = password.encode_utf16().flat_map(u16::to_le_bytes).collect();
    Md4::digest(&utf16)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn nt_hash_matches_winpr_hash() {
        // [MS-NLMP] 4.2.1: NTOWFv1 of the password "Password".
        assert_eq!(
            super::nt_hash_hex("Password"),
            "a4f49c406510bdcab6824ee7c30fd852"
        );
        // The well-known NT hash of "password".
        assert_eq!(
            super::nt_hash_hex("password"),
            "8846f7eaee8fb117ad06bdd830b7586c"
        );
    }
}
