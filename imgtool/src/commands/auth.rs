//! `login`, `logout`: credentials for registries, in docker's auth file.

use std::io::{BufRead, Write};

use anyhow::{anyhow, bail, Context as _, Result};
use berth_img::auth::{self, Credentials};

/// The flags of `login`.
#[derive(clap::Args)]
pub struct LoginArgs {
    registry: String,
    #[arg(short, long)]
    username: Option<String>,
    #[arg(short, long)]
    password: Option<String>,
    #[arg(long)]
    password_stdin: bool,
    #[arg(long)]
    plain_http: bool,
}

/// `login`: checks the credentials with the registry, then stores them.
pub fn login(args: LoginArgs) -> Result<()> {
    let username = args
        .username
        .ok_or_else(|| anyhow!("username required: use -u USER"))?;
    let password = password(args.password, args.password_stdin)?;
    let credentials = Credentials { username, password };
    auth::login(&args.registry, &credentials, args.plain_http)?;
    writeln!(std::io::stdout(), "Login Succeeded")?;
    Ok(())
}

/// The password from `--password`, or the first line of stdin with
/// `--password-stdin` (which keeps it out of the process list).
fn password(given: Option<String>, from_stdin: bool) -> Result<String> {
    match (given, from_stdin) {
        (Some(_), true) => bail!("--password and --password-stdin are mutually exclusive"),
        (Some(p), false) => Ok(p),
        (None, true) => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("read password from stdin")?;
            Ok(line.trim_end_matches(['\n', '\r']).to_string())
        }
        (None, false) => bail!("password required: use --password-stdin"),
    }
}

/// The flags of `logout`.
#[derive(clap::Args)]
pub struct LogoutArgs {
    registry: String,
}

/// `logout`: removes the stored credentials.
pub fn logout(args: LogoutArgs) -> Result<()> {
    let host = auth::logout(&args.registry)?;
    writeln!(std::io::stdout(), "Removing login credentials for {host}")?;
    Ok(())
}
