//! Makes what TLS on the backup port needs (spec/security.md, README "Securing the backup
//! port"): a CA, a certificate for the server and one for the backup client, each with its key,
//! and the server's `neo4j.properties` lines that use them.
//!
//! `cargo run --example tls-certs -- DIR [--server-name NAME]... [--client-name NAME] [--days N]`
//!
//! - `--server-name`: a name the tool will connect to, a host name or an IP address (repeat for
//!   several; default `localhost` and `127.0.0.1`). `neo4j-backup -host` must be one of them.
//! - `--client-name`: the client certificate's name, what `online_backup_allowed_clients` lists
//!   (default `backup`).
//! - `--days`: how long the certificates are valid (default 365).
//!
//! Writes `ca.pem`, `server.pem`, `server.key`, `client.pem`, `client.key` and `neo4j.properties`
//! into DIR (created if missing); the keys are readable by their owner only. The CA's own key is
//! not kept: to sign more certificates later, run the tool again (and give the server and every
//! client the new files), or use a CA of your own (the README shows `openssl`).

#[path = "../tests/kit/certs.rs"]
#[allow(dead_code)]
mod certs;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use certs::{Ca, Role, Validity};

struct Args {
    dir: PathBuf,
    server_names: Vec<String>,
    client_name: String,
    days: u64,
}

const USAGE: &str = "usage: tls-certs DIR [--server-name NAME]... [--client-name NAME] [--days N]";

fn parse(args: Vec<String>) -> Result<Args, String> {
    let mut dir = None;
    let mut server_names = Vec::new();
    let mut client_name = None;
    let mut days = 365;
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| it.next().ok_or_else(|| format!("{flag} needs a value"));
        match arg.as_str() {
            "--server-name" => server_names.push(value("--server-name")?),
            "--client-name" => client_name = Some(value("--client-name")?),
            "--days" => {
                let v = value("--days")?;
                days = match v.parse() {
                    Ok(n) if n > 0 => n,
                    _ => return Err(format!("--days `{v}` is not a number of days above 0")),
                };
            }
            "-h" | "--help" => return Err(String::new()),
            flag if flag.starts_with('-') => return Err(format!("unknown flag {flag}")),
            _ if dir.is_some() => return Err(format!("a second directory `{arg}`")),
            _ => dir = Some(PathBuf::from(arg)),
        }
    }
    if server_names.is_empty() {
        server_names = vec!["localhost".into(), "127.0.0.1".into()];
    }
    Ok(Args {
        dir: dir.ok_or("say where to write the files")?,
        server_names,
        client_name: client_name.unwrap_or_else(|| "backup".into()),
        days,
    })
}

fn write(dir: &Path, name: &str, text: &str, private: bool) -> Result<PathBuf, String> {
    use std::io::Write as _;
    let path = dir.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    let mut file = options
        .open(&path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.write_all(text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

fn run(args: Args) -> Result<(), String> {
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| format!("cannot create {}: {e}", args.dir.display()))?;
    let dir = std::path::absolute(&args.dir)
        .map_err(|e| format!("cannot resolve {}: {e}", args.dir.display()))?;
    let validity = Validity::days_around(SystemTime::now(), args.days);
    let ca = Ca::new("neo4j backup CA", validity, None);
    let names: Vec<&str> = args.server_names.iter().map(String::as_str).collect();
    let server = ca.issue(Role::Server, &names, validity, None);
    let client = ca.issue(Role::Client, &[&args.client_name], validity, None);
    let ca_pem = write(&dir, "ca.pem", &ca.cert, false)?;
    let server_pem = write(&dir, "server.pem", &server.cert, false)?;
    let server_key = write(&dir, "server.key", &server.key, true)?;
    write(&dir, "client.pem", &client.cert, false)?;
    write(&dir, "client.key", &client.key, true)?;
    let properties = format!(
        "online_backup_tls_cert={}\nonline_backup_tls_key={}\nonline_backup_tls_client_ca={}\n\
         online_backup_allowed_clients={}\nonline_backup_require_tls=true\n",
        server_pem.display(),
        server_key.display(),
        ca_pem.display(),
        args.client_name
    );
    write(&dir, "neo4j.properties", &properties, false)?;
    println!(
        "tls-certs: wrote ca.pem, server.pem, server.key (for {}), client.pem, client.key (for {}) \
         and neo4j.properties into {}, valid for {} days",
        args.server_names.join(", "),
        args.client_name,
        dir.display(),
        args.days
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1).collect()) {
        Ok(args) => args,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("tls-certs: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tls-certs: {e}");
            ExitCode::from(1)
        }
    }
}
