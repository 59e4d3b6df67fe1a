//! `tokentrail token`: a token of the development issuer, for scripts against a demo.

use anyhow::Result;
use std::path::Path;
use std::process::ExitCode;

pub fn print(role: &str, db: &Path, name: &str, minutes: u32) -> Result<ExitCode> {
    let role = crate::auth::Role::ALL
        .into_iter()
        .find(|r| {
            r.claim().eq_ignore_ascii_case(role)
                || r.claim().trim_start_matches("TokenTrail.").eq_ignore_ascii_case(role)
        })
        .ok_or_else(|| anyhow::anyhow!("--role {role:?}: use Responder, Auditor or Admin"))?;
    if minutes == 0 {
        anyhow::bail!("--minutes must be at least 1");
    }
    let lifetime = chrono::Duration::minutes(minutes.into());
    println!("{}", crate::auth::dev_token(db, role, name, lifetime)?);
    Ok(ExitCode::SUCCESS)
}
