//! `accessgate serve`: the reference backend as a stand-alone process.

use crate::util::out;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use accessgate_backend::{Backend, BackendConfig};
use clap::Args;

use crate::util::{control_get, parse_duration, CliError};

/// Options of `accessgate serve`.
#[derive(Debug, Args)]
#[command(
    about = "Run the reference backend (HTTP + HTTPS) until Ctrl-C",
    long_about = "Run the reference backend on its own, until Ctrl-C.\n\n\
It serves the two endpoints of the backend contract over plain HTTP and over HTTPS (a test CA \
and a `localhost` certificate are generated at start-up; `--write-ca` saves the CA so clients \
can trust it), plus the control surface under /_control/ on both listeners, to inject faults, \
grant/deny users and issue tokens with curl. The URLs and the control-surface help are printed \
at start-up.",
    after_help = "Example:\n  accessgate serve --write-ca /tmp/ca.pem --user alice\n  \
accessgate check --url https://localhost:8443/api/code/invites/check-access/ --ca /tmp/ca.pem --token at_...\n  \
curl 'http://127.0.0.1:8080/_control/fault?endpoint=check&fault=status&code=503&for_ms=5000'"
)]
pub struct ServeArgs {
    /// Address both listeners bind to.
    #[arg(long, default_value = "127.0.0.1", value_name = "IP")]
    pub bind: IpAddr,
    /// Port of the plain-HTTP listener (0 = any free port).
    #[arg(long, default_value_t = 8080, value_name = "PORT")]
    pub http_port: u16,
    /// Port of the HTTPS listener (0 = any free port).
    #[arg(long, default_value_t = 8443, value_name = "PORT")]
    pub https_port: u16,
    /// Serve plain HTTP only (no test PKI, no HTTPS listener).
    #[arg(long, conflicts_with = "write_ca")]
    pub no_https: bool,
    /// Write the generated CA certificate (PEM) to FILE, for `check --ca` / `watch --ca`.
    #[arg(long, value_name = "FILE")]
    pub write_ca: Option<PathBuf>,
    /// The `client_id` the token endpoint accepts.
    #[arg(long, default_value = "accessgate", value_name = "ID")]
    pub client_id: String,
    /// Issue a token pair for USER at start-up and print it (repeatable).
    #[arg(long = "user", value_name = "USER")]
    pub users: Vec<String>,
    /// Lifetime of the access tokens issued with --user.
    #[arg(long, default_value = "1h", value_parser = parse_duration, value_name = "DUR")]
    pub token_lifetime: Duration,
}

/// Runs the backend until Ctrl-C.
pub async fn run(args: ServeArgs) -> Result<u8, CliError> {
    let backend = Backend::start(BackendConfig {
        bind: args.bind,
        http_port: args.http_port,
        https_port: (!args.no_https).then_some(args.https_port),
        client_id: args.client_id.clone(),
        tls_identity: None,
    })
    .await
    .map_err(|e| CliError::Runtime(format!("cannot start the backend: {e}")))?;

    let http = backend.http_url();
    out!("accessgate reference backend");
    out!("  http   {http}");
    if let Some(https) = backend.https_url() {
        out!("  https  {https}   (certificate for localhost, signed by the test CA)");
    }
    if let (Some(path), Some(pem)) = (&args.write_ca, backend.ca_pem()) {
        std::fs::write(path, pem)
            .map_err(|e| CliError::Runtime(format!("cannot write the CA to {}: {e}", path.display())))?;
        out!("  CA     written to {}", path.display());
    }
    out!();
    out!("endpoints (on every listener):");
    out!(
        "  check  GET  {http}{}   (Authorization: Bearer <access token>)",
        Backend::check_path()
    );
    out!(
        "  token  POST {http}{}   (grant_type=refresh_token&refresh_token=R&client_id={})",
        Backend::token_path(),
        args.client_id
    );
    out!();
    match control_get(backend.http_addr(), "/_control/help").await {
        Ok(help) => {
            out!("control surface: {http}/_control/...");
            for line in help.lines() {
                out!("  {line}");
            }
        }
        Err(e) => out!("control surface: {http}/_control/help (could not fetch it: {e})"),
    }
    let control = backend.control();
    if !args.users.is_empty() {
        out!();
        out!(
            "tokens (valid {}):",
            humantime::format_duration(args.token_lifetime)
        );
        for user in &args.users {
            let t = control.issue_token(user, args.token_lifetime);
            out!(
                "  {user}: access_token={} refresh_token={}",
                t.access_token,
                t.refresh_token
            );
        }
    }
    out!();
    out!("try:");
    out!("  curl '{http}/_control/token?user=alice&expires_in=3600'");
    out!("  accessgate watch --url {http} --issue-user alice");
    out!("  curl '{http}/_control/fault?endpoint=check&fault=status&code=503&for_ms=5000'");
    out!();
    out!("serving until Ctrl-C");

    tokio::signal::ctrl_c()
        .await
        .map_err(|e| CliError::Runtime(format!("cannot wait for Ctrl-C: {e}")))?;
    let counts = control.counts();
    out!();
    out!("stopping; requests seen: {}", counts.to_json());
    backend.shutdown().await;
    Ok(0)
}
