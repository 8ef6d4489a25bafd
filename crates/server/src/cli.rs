//! The command line. Every flag can also come from the environment (`SWITCHYARD_*`); flags and
//! environment win over the config file, which wins over the defaults.

use crate::observe::LogFormat;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about = "Model inference server speaking KServe V2, with rollouts built in")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a model repository over HTTP.
    Serve(Box<ServeArgs>),
    /// Check a config file against a model repository, as a reload would, without serving: exit 0 when
    /// valid, 1 with every problem named.
    Validate(ValidateArgs),
    /// Watch and steer a running server's rollouts (exit 0 done, 1 refused, 2 usage, 3 unreachable, 4
    /// unauthorised).
    Rollouts(crate::ctl::RolloutsArgs),
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The server config file to check.
    #[arg(long, env = "SWITCHYARD_CONFIG")]
    pub config: PathBuf,

    /// The model repository it refers to.
    #[arg(long, env = "SWITCHYARD_MODEL_REPOSITORY", default_value = "models")]
    pub model_repository: PathBuf,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Model repository: <dir>/<model>/<version>/model.onnx, with an optional <dir>/<model>/config.yaml.
    #[arg(long, env = "SWITCHYARD_MODEL_REPOSITORY", default_value = "models")]
    pub model_repository: PathBuf,

    /// Address to listen on.
    #[arg(long, env = "SWITCHYARD_HOST", default_value = "127.0.0.1")]
    pub host: String,

    /// Port to listen on (0 picks a free one and logs it).
    #[arg(long, env = "SWITCHYARD_PORT", default_value_t = 8000)]
    pub port: u16,

    /// Port for the KServe V2 gRPC protocol (0 picks a free one and logs it; `off` serves none)
    /// [default: 8001, or a free one with `--port 0`].
    #[arg(long, env = "SWITCHYARD_GRPC_PORT")]
    pub grpc_port: Option<switchyard_config::GrpcPort>,

    /// Server config file (YAML); see config/switchyard.yaml.
    #[arg(long, env = "SWITCHYARD_CONFIG")]
    pub config: Option<PathBuf>,

    /// Largest request body in bytes; larger bodies get 413 before they are read [default: 67108864].
    #[arg(long, env = "SWITCHYARD_MAX_REQUEST_BYTES")]
    pub max_request_bytes: Option<usize>,

    /// Largest request head (request line and headers) in bytes; larger gets 431 [default: 32768].
    #[arg(long, env = "SWITCHYARD_MAX_HEADER_BYTES")]
    pub max_header_bytes: Option<usize>,

    /// Elements in one input tensor at most; more is a 400 naming the input [default: 67108864].
    #[arg(long, env = "SWITCHYARD_MAX_ELEMENTS")]
    pub max_elements: Option<usize>,

    /// Bytes in one BYTES element at most; more is a 400 naming the input [default: 4194304].
    #[arg(long, env = "SWITCHYARD_MAX_BYTES_ELEMENT")]
    pub max_bytes_element: Option<usize>,

    /// Open connections at most; one more is answered 503 and closed [default: 4096].
    #[arg(long, env = "SWITCHYARD_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Requests in progress at most (probes and /metrics aside); one more gets 503 with Retry-After
    /// [default: 512]. With the body limit this bounds the memory requests can hold.
    #[arg(long, env = "SWITCHYARD_MAX_CONCURRENT_REQUESTS")]
    pub max_concurrent_requests: Option<usize>,

    /// Seconds a client has to send a request's head; also how long an idle keep-alive connection stays
    /// open. A partial head past it gets 408 and the connection closes [default: 60].
    #[arg(long, env = "SWITCHYARD_HEADER_READ_TIMEOUT_SECS")]
    pub header_read_timeout_secs: Option<u64>,

    /// Seconds a client has to send a request's body once its head arrived; past it, 408 [default: 60].
    #[arg(long, env = "SWITCHYARD_BODY_READ_TIMEOUT_SECS")]
    pub body_read_timeout_secs: Option<u64>,

    /// Serve HTTPS: the certificate chain (PEM). Needs --tls-key.
    #[arg(long, env = "SWITCHYARD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Serve HTTPS: the private key (PEM, PKCS#8, PKCS#1 or SEC1). Needs --tls-cert.
    #[arg(long, env = "SWITCHYARD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Milliseconds a request may wait for its model when it sets no V2 `timeout` parameter [default: 60000].
    #[arg(long, env = "SWITCHYARD_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,

    /// Report ready only when every model loaded (true, as Triton), or once loading finished even if some
    /// failed (false) [default: true].
    #[arg(long, env = "SWITCHYARD_STRICT_READINESS")]
    pub strict_readiness: Option<bool>,

    /// ONNX Runtime shared library (libonnxruntime.so.*); default: the onnxruntime wheel in the project's .venv.
    #[arg(long, env = "ORT_DYLIB_PATH")]
    pub ort_dylib: Option<PathBuf>,

    /// Log line format on stderr.
    #[arg(long, env = "SWITCHYARD_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Log filter, in RUST_LOG syntax (e.g. `info`, `switchyard=debug`).
    #[arg(long, env = "SWITCHYARD_LOG", default_value = "info")]
    pub log: String,

    /// Directory for rollout state files and the audit log (state survives restarts only with one).
    #[arg(long, env = "SWITCHYARD_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// etcd members (`host:port`, comma-separated) through which this replica shares its rollouts with
    /// the other replicas of the deployment: evidence pooled, one decision per rollout. None: decide alone.
    #[arg(long, env = "SWITCHYARD_ETCD_ENDPOINTS", value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,

    /// This replica's name in the fleet [default: the host name].
    #[arg(long, env = "SWITCHYARD_REPLICA_NAME")]
    pub replica_name: Option<String>,

    /// The fleet's etcd key prefix [default: /switchyard/].
    #[arg(long, env = "SWITCHYARD_ETCD_PREFIX")]
    pub etcd_prefix: Option<String>,

    /// Serve the admin API without a token when SWITCHYARD_ADMIN_TOKEN is not set (never in production).
    #[arg(long, env = "SWITCHYARD_ADMIN_INSECURE")]
    pub admin_insecure: bool,

    /// Seconds to let in-flight requests finish after SIGTERM or Ctrl-C before exiting anyway.
    #[arg(long, env = "SWITCHYARD_SHUTDOWN_TIMEOUT", default_value_t = 30)]
    pub shutdown_timeout: u64,

    /// Seconds between looks at the config file for changes (0: only on SIGHUP). A changed config is
    /// validated whole and applied while serving; an invalid one is rejected and the old one serves.
    #[arg(long, env = "SWITCHYARD_CONFIG_POLL_SECS", default_value_t = 2)]
    pub config_poll_secs: u64,

    /// Seconds between looks at the model repository for added, changed or removed versions (Triton's
    /// poll mode); 0: only through POST /v2/repository/models/{m}/load and /unload.
    #[arg(long, env = "SWITCHYARD_REPOSITORY_POLL_SECS", default_value_t = 0)]
    pub repository_poll_secs: u64,

    /// Seconds between SIGTERM and closing the listener: /ready answers 503 at once while requests are
    /// still served, so Kubernetes stops routing here before the port closes (Ctrl-C skips it).
    #[arg(long, env = "SWITCHYARD_DRAIN_DELAY_SECS", default_value_t = 5)]
    pub drain_delay_secs: u64,
}
