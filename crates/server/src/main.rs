//! `switchyard serve`: wires configuration, ONNX Runtime, the model repository and the router to a
//! listener, and shuts down gracefully on SIGTERM or Ctrl-C.

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use clap::Parser;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use switchyard_backend_ort::{OrtEnvironment, find_library};
use switchyard_config::GrpcPort;
use switchyard_runtime::Endpoints;
use switchyard_runtime::Registry;
use switchyard_runtime::feedback::Feedback;
use switchyard_server::cli::{Cli, Command, ServeArgs};
use switchyard_server::config::ServerConfig;
use switchyard_server::limits::Limits;
use switchyard_server::live_repository::Repository;
use switchyard_server::{
    AdminAuth, AppState, Settings, app, grpc, listen, observe, reload, repository, rollouts, shutdown,
};

// A request allocates many small, short-lived buffers across threads: mimalloc serves them faster than
// glibc's allocator (malloc and free were a tenth of the server's time under load).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    let args = match Cli::parse().command {
        Command::Serve(args) => *args,
        Command::Rollouts(args) => std::process::exit(switchyard_server::ctl::run(args) as i32),
        Command::Validate(v) => match switchyard_server::validate::run(&v.config, &v.model_repository) {
            Ok(summary) => {
                println!("{summary}");
                return Ok(());
            }
            Err(problems) => {
                for p in &problems {
                    eprintln!("error: {p}");
                }
                std::process::exit(1);
            }
        },
    };
    observe::init_logging(args.log_format, &args.log);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // Request threads run under the serving threads' policy (see `foreground_for_this_thread`).
    builder.enable_all().on_thread_start(|| {
        switchyard_runtime::foreground_for_this_thread();
    });
    // A task another task wakes waits its turn instead of running next: an HTTP/2 connection then writes
    // all the answers that became ready together in one system call (.cargo/config.toml says more).
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    let runtime = builder.build()?;
    let result = runtime.block_on(serve(args));
    if let Err(e) = &result {
        tracing::error!("{e:#}");
    }
    // Worker threads may still be computing; do not wait for them.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

async fn serve(args: ServeArgs) -> Result<()> {
    let file = match &args.config {
        Some(path) => ServerConfig::load(path)?,
        None => ServerConfig::default(),
    };
    let limits = Limits::resolve(&args, &file.server);
    if let Some(problem) = limits.problems().first() {
        anyhow::bail!("limits: {problem}");
    }
    // One certificate for both ports: HTTPS, and gRPC over TLS.
    let (tls, grpc_tls) = match &limits.tls {
        Some(t) => (
            Some(listen::acceptor(&t.cert, &t.key, listen::Alpn::Http1)?),
            Some(listen::acceptor(&t.cert, &t.key, listen::Alpn::H2)?),
        ),
        None => (None, None),
    };
    raise_open_files_limit();
    let strict_readiness = args.strict_readiness.or(file.server.strict_readiness).unwrap_or(true);

    let lib = find_library(args.ort_dylib.as_deref())?;
    let env = OrtEnvironment::init(&lib)?;
    tracing::info!(library = %lib.display(), "ONNX Runtime loaded");
    let metrics = observe::install_metrics()?;

    let registry = Arc::new(Registry::default());
    let wanted = rollouts::wanted(&file.rollouts);
    let configs = repository::scan_and_load(&args.model_repository, &registry, &env, &wanted)?;
    let rollouts =
        rollouts::build(&file.rollouts, &configs, &registry, args.state_dir.as_deref()).map_err(anyhow::Error::msg)?;
    rollouts::watch_canaries(&rollouts, registry.clone());
    let admin = AdminAuth {
        token: std::env::var("SWITCHYARD_ADMIN_TOKEN").ok().filter(|t| !t.is_empty()),
        insecure: args.admin_insecure,
    };
    if !admin.enabled() {
        tracing::warn!("admin API disabled: set SWITCHYARD_ADMIN_TOKEN (or --admin-insecure for a local trial)");
    } else if admin.token.is_none() {
        tracing::warn!("admin API open without a token (--admin-insecure)");
    }
    let request_timeout = limits.request.request_timeout;
    let limits_spec = switchyard_server::rate_limits::specs(&file.rate_limits)
        .map_err(|p| anyhow::anyhow!("rate_limits: {}", p.join("; ")))?;
    let rate_limits = switchyard_server::rate_limits::build(limits_spec, None);
    let feedback_file = args.state_dir.as_ref().map(|d| d.join("feedback.jsonl"));
    let feedback = Feedback::start(file.feedback.capacity, file.feedback.retention.0, feedback_file.as_deref())
        .with_context(|| {
            format!("feedback store {}", feedback_file.as_deref().unwrap_or(Path::new("(memory)")).display())
        })?;
    // An experiment's evidence so far (outcomes joined before a restart) is in the feedback store.
    rollouts.values().for_each(|d| feedback.restore(d));
    let endpoints = Endpoints::new(registry.clone(), rollouts, request_timeout)
        .with_rate_limits(rate_limits)
        .with_feedback(Some(feedback.clone()));
    let endpoints = Arc::new(ArcSwap::from_pointee(endpoints));
    let fleet = match switchyard_server::fleet::config(&args, file.coordination.etcd.as_ref()) {
        Some(config) => Some(switchyard_server::fleet::join(config, endpoints.clone()).await?),
        None => None,
    };
    let repository = Arc::new(Repository::new(args.model_repository.clone(), env.clone(), registry, configs, wanted));
    repository.clone().watch(Duration::from_secs(args.repository_poll_secs));
    let reloads = if let Some(path) = &args.config {
        let reloader = reload::Reloader::new(
            path.clone(),
            repository.clone(),
            args.state_dir.clone(),
            request_timeout,
            endpoints.clone(),
        );
        let log = reloader.log.clone();
        Arc::new(reloader).watch(Duration::from_secs(args.config_poll_secs));
        log
    } else {
        // SIGHUP's default action ends the process; without a config there is nothing to reload.
        #[cfg(unix)]
        if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    tracing::info!("SIGHUP ignored: no --config to reload");
                }
            });
        }
        Arc::default()
    };
    let configs = repository.configs.clone();
    let api_token = std::env::var("SWITCHYARD_API_TOKEN").ok().filter(|t| !t.is_empty());
    if api_token.is_some() {
        tracing::info!("the data plane needs a bearer token (SWITCHYARD_API_TOKEN)");
    }
    let settings =
        Settings { admin, api_token, limits: limits.request.clone(), strict_readiness, fleet: fleet.clone(), reloads };
    let state = AppState::new(endpoints.clone(), configs, Some(repository), settings, Some(metrics));

    // With `--port 0` (any free port) gRPC also takes any free port unless told otherwise.
    let default_grpc = if args.port == 0 { GrpcPort::Port(0) } else { GrpcPort::DEFAULT };
    let grpc_port = args.grpc_port.or(file.server.grpc_port).unwrap_or(default_grpc);
    let grpc =
        grpc::bind(&args.host, grpc_port).with_context(|| format!("cannot listen for gRPC on port {grpc_port}"))?;
    if let Some(incoming) = &grpc {
        let local = incoming.local_addr()?;
        let tls = if grpc_tls.is_some() { " (TLS)" } else { "" };
        tracing::info!(address = %local, tls = grpc_tls.is_some(), "gRPC listening");
        eprintln!("switchyard gRPC listening on {local}{tls}");
    }

    let addr = format!("{}:{}", args.host, args.port);
    let listener = tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(address = %local, %scheme, repository = %args.model_repository.display(), "listening");
    eprintln!("switchyard listening on {scheme}://{local}  (try: curl {scheme}://{local}/v2/models/mlp)");

    let stop_accepting = shutdown::watch(state.draining(), Duration::from_secs(args.drain_delay_secs));
    let grpc = grpc.map(|incoming| {
        let grpc_state = grpc::GrpcState::new(state.clone());
        let stop = stop_accepting.clone();
        tokio::spawn(async move {
            if let Err(e) = grpc::serve(grpc_state, incoming, grpc_tls, stop).await {
                tracing::error!(error = %e, "gRPC server stopped");
            }
        })
    });
    // Both front ends drain: each stops accepting at the signal and finishes what it has in flight.
    let http = listen::serve(listener, app(state), limits.connection.clone(), tls, stop_accepting.clone());
    let server = async move {
        http.await;
        if let Some(grpc) = grpc {
            let _ = grpc.await;
        }
    };
    let mut stopped = stop_accepting;
    let deadline = async move {
        let _ = stopped.wait_for(|&s| s).await;
        tokio::time::sleep(Duration::from_secs(args.shutdown_timeout)).await;
    };
    tokio::select! {
        () = server => {}
        () = deadline => tracing::warn!(seconds = args.shutdown_timeout, "requests still in flight at the shutdown deadline; exiting"),
    }
    // Leadership passes to another replica at once rather than when the lease runs out.
    if let Some(fleet) = &fleet {
        let _ = tokio::time::timeout(Duration::from_secs(2), fleet.leave()).await;
    }
    // Every rollout decision taken so far reaches its state file and audit log before the exit.
    for driver in endpoints.load().rollouts().values() {
        let _ = tokio::time::timeout(Duration::from_secs(2), driver.flush()).await;
    }
    feedback.flush();
    tracing::info!("stopped");
    Ok(())
}

/// Each connection holds a descriptor: lift the soft limit to the hard one (often 1024 of 1M+), as
/// servers do, so the connection limit is what refuses clients and not `accept`.
fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(open_files = n, "open-files limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-files limit"),
    }
}
