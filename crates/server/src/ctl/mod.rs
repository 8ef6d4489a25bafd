//! `switchyard rollouts ...`: watch and steer the rollouts of a running server from a terminal, through
//! its admin API (`--server` / `SWITCHYARD_SERVER`, HTTP or HTTPS with `--ca-cert`, the token from
//! `SWITCHYARD_ADMIN_TOKEN`), as readable
//! tables or `--output json`, with exit codes scripts can rely on: 0 done, 1 refused, 2 usage, 3
//! unreachable, 4 unauthorised.

mod http;
mod table;
mod tls;

use clap::{Args, Subcommand, ValueEnum};
use http::{Answer, CallError, Client};
use serde_json::Value;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct RolloutsArgs {
    /// The server's base URL: http://HOST:PORT or https://HOST:PORT.
    #[arg(long, env = "SWITCHYARD_SERVER", default_value = "http://127.0.0.1:8000", global = true)]
    pub server: String,
    /// With https: the CA certificates (PEM) the server's certificate must chain to; without it, the
    /// system's CA bundle (or SSL_CERT_FILE).
    #[arg(long, env = "SWITCHYARD_CA_CERT", global = true)]
    pub ca_cert: Option<std::path::PathBuf>,
    /// How to print answers.
    #[arg(long, value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
    #[command(subcommand)]
    pub command: RolloutsCommand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum RolloutsCommand {
    /// Every rollout: phase, weight, arms, verdict.
    List,
    /// One rollout in detail; with --watch, again every --interval until it is promoted or rolled back.
    Status {
        endpoint: String,
        #[arg(long)]
        watch: bool,
        /// Seconds between two looks with --watch.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
    },
    /// Promote the canary now.
    Promote { endpoint: String },
    /// Roll the canary back now.
    Rollback { endpoint: String },
    /// Hold the rollout at its step (no advance, no promotion; rollback still protects).
    Pause { endpoint: String },
    /// Let a paused rollout go on.
    Resume { endpoint: String },
    /// The rollout's decisions, oldest first (the audit log).
    History {
        endpoint: String,
        /// At most this many of the latest entries.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

/// Turns an answer's JSON into readable text.
type Render = fn(&Value) -> String;

/// What the process exits with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Done = 0,
    Refused = 1,
    Usage = 2,
    Unreachable = 3,
    Unauthorised = 4,
}

/// Runs one command; prints the answer (stdout) or the problem (stderr).
pub fn run(args: RolloutsArgs) -> Exit {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Unreachable;
        }
    };
    runtime.block_on(run_async(args))
}

async fn run_async(args: RolloutsArgs) -> Exit {
    let token = std::env::var("SWITCHYARD_ADMIN_TOKEN").ok().filter(|t| !t.is_empty());
    let json = args.output == Output::Json;
    let client = match Client::new(&args.server, args.ca_cert.as_deref(), token) {
        Ok(c) => c,
        Err(e) => return report(Err(e), json, table::action),
    };
    let ask = |method: &'static str, path: String| {
        let client = &client;
        async move { client.call(method, &path).await }
    };
    let (answer, render): (Result<Answer, CallError>, Render) = match &args.command {
        RolloutsCommand::List => (ask("GET", "/admin/rollouts".into()).await, table::list),
        RolloutsCommand::Status { endpoint, watch: false, .. } => {
            (ask("GET", format!("/admin/rollouts/{endpoint}")).await, table::status)
        }
        RolloutsCommand::Status { endpoint, watch: true, interval } => {
            return watch(&ask, endpoint, *interval, json).await;
        }
        RolloutsCommand::Promote { endpoint } => (act(&ask, endpoint, "promote").await, table::action),
        RolloutsCommand::Rollback { endpoint } => (act(&ask, endpoint, "rollback").await, table::action),
        RolloutsCommand::Pause { endpoint } => (act(&ask, endpoint, "pause").await, table::action),
        RolloutsCommand::Resume { endpoint } => (act(&ask, endpoint, "resume").await, table::action),
        RolloutsCommand::History { endpoint, limit } => {
            (ask("GET", format!("/admin/rollouts/{endpoint}/history?limit={limit}")).await, table::history)
        }
    };
    report(answer, json, render)
}

async fn act<F, Fut>(ask: &F, endpoint: &str, action: &str) -> Result<Answer, CallError>
where
    F: Fn(&'static str, String) -> Fut,
    Fut: std::future::Future<Output = Result<Answer, CallError>>,
{
    ask("POST", format!("/admin/rollouts/{endpoint}/{action}")).await
}

/// Prints an answer and says how the process exits.
fn report(answer: Result<Answer, CallError>, json: bool, render: Render) -> Exit {
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return match e {
                CallError::Unreachable { .. } => Exit::Unreachable,
                CallError::Usage(_) => Exit::Usage,
            };
        }
    };
    let exit = exit_for(answer.status);
    if exit != Exit::Done {
        let message = answer.body["error"].as_str().map_or_else(|| answer.body.to_string(), str::to_owned);
        eprintln!("error: {message} (HTTP {})", answer.status);
        if answer.status == 404 && message.starts_with("no route") {
            eprintln!("hint: the server's admin API is off unless it runs with SWITCHYARD_ADMIN_TOKEN set");
        }
        return exit;
    }
    if json {
        println!("{}", answer.body);
    } else {
        print!("{}", render(&answer.body));
    }
    Exit::Done
}

/// The exit code an HTTP status means.
fn exit_for(status: u16) -> Exit {
    match status {
        200..=299 => Exit::Done,
        401 | 403 => Exit::Unauthorised,
        502..=504 => Exit::Unreachable,
        _ => Exit::Refused,
    }
}

/// `status --watch`: looks again every `interval` seconds until the rollout is promoted or rolled back
/// (JSON: one line per look).
async fn watch<F, Fut>(ask: &F, endpoint: &str, interval: f64, json: bool) -> Exit
where
    F: Fn(&'static str, String) -> Fut,
    Fut: std::future::Future<Output = Result<Answer, CallError>>,
{
    let interval = Duration::from_secs_f64(interval.clamp(0.1, 3600.0));
    loop {
        let answer = ask("GET", format!("/admin/rollouts/{endpoint}")).await;
        let finished = matches!(&answer, Ok(a) if a.status == 200
            && matches!(a.body["phase"].as_str(), Some("promoted" | "rolled_back")));
        let exit = report(answer, json, table::status);
        if exit != Exit::Done || finished {
            return exit;
        }
        if !json {
            println!();
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::{Exit, exit_for};

    #[test]
    fn statuses_become_the_documented_exit_codes() {
        assert_eq!(exit_for(200), Exit::Done);
        assert_eq!(exit_for(401), Exit::Unauthorised);
        assert_eq!(exit_for(409), Exit::Refused);
        assert_eq!(exit_for(404), Exit::Refused);
        assert_eq!(exit_for(503), Exit::Unreachable);
    }
}
