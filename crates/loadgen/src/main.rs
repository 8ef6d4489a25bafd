//! `switchyard-loadgen`: a closed-loop load generator for KServe V2 servers, over gRPC
//! (`inference.GRPCInferenceService/ModelInfer`, raw tensor contents) or HTTP (binary tensor data).
//!
//! Why it exists: on a 2-core machine the benchmark gives the server one core and the client the other,
//! and `perf_analyzer` uses all of its core at about 25,000 requests/s, so past that it measures itself.
//! This client costs a few microseconds per request on one thread (a `current_thread` runtime), so the
//! server is what limits it. It keeps `--concurrency` requests in flight, each slot sending its next
//! request as soon as its answer arrives (what `perf_analyzer --concurrency-range` does), checks every
//! answer, and prints one JSON line: requests, errors, throughput and latency percentiles over the
//! measured window (the warm-up is not counted). It sends one fixed random FP32 input, the same for every
//! request.
//!
//! Targets 127.0.0.1 in this repository's benchmarks; it stops by itself after `--warmup + --duration`.

mod grpc;
mod http;

use anyhow::{Context, Result, bail};
use clap::Parser;
use std::time::{Duration, Instant};

#[derive(Parser, Debug, Clone)]
#[command(about = "Closed-loop KServe V2 load (gRPC or HTTP binary) with latency percentiles")]
pub(crate) struct Args {
    /// `grpc://HOST:PORT` or `http://HOST:PORT`.
    #[arg(long)]
    url: String,
    #[arg(long)]
    model: String,
    /// The input as NAME:SHAPE, e.g. `input:1,64` (FP32, random values).
    #[arg(long)]
    input: String,
    /// Requests kept in flight.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// gRPC connections the slots share (HTTP/1.1 always uses one per slot). Default: one per 4 slots.
    #[arg(long)]
    connections: Option<usize>,
    /// Seconds sent before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Runtime threads (1: a `current_thread` runtime, the cheapest on one core).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// HTTP only: send this header with a value unique to each request (`<slot>-<n>`), as a rollout's
    /// assignment key (an experiment then remembers every request for its feedback).
    #[arg(long)]
    key_header: Option<String>,
}

/// One input tensor: its name, shape and little-endian FP32 bytes.
#[derive(Debug, Clone)]
pub(crate) struct Input {
    pub(crate) name: String,
    pub(crate) shape: Vec<i64>,
    pub(crate) data: bytes::Bytes,
}

fn parse_input(spec: &str) -> Result<Input> {
    let (name, dims) = spec.split_once(':').context("--input is NAME:SHAPE, e.g. input:1,64")?;
    let shape: Vec<i64> = dims.split(',').map(str::parse).collect::<Result<_, _>>().context("--input shape")?;
    if shape.iter().any(|&d| d < 1) {
        bail!("--input shape {dims}: every dimension must be at least 1");
    }
    let count: i64 = shape.iter().product();
    // A fixed pseudo-random sequence (xorshift), so runs send the same data.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let data: Vec<u8> = (0..count)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5).to_le_bytes()
        })
        .collect();
    Ok(Input { name: name.to_owned(), shape, data: data.into() })
}

/// When each slot stops, and which answers count.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub(crate) start: Instant,
    pub(crate) end: Instant,
}

/// What one slot saw in the measured window: each answer's latency in microseconds, and failures.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) latencies_us: Vec<u32>,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
}

impl Tally {
    /// Counts one answer that began at `sent`, if it ended within the window.
    pub(crate) fn record(&mut self, window: &Window, sent: Instant, outcome: Result<()>) {
        let now = Instant::now();
        if now < window.start || now > window.end {
            return;
        }
        match outcome {
            Ok(()) => self.latencies_us.push(u32::try_from(now.duration_since(sent).as_micros()).unwrap_or(u32::MAX)),
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let input = parse_input(&args.input)?;
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads).enable_all().build()?
    };
    let begun = Instant::now();
    let start = begun + Duration::from_secs_f64(args.warmup);
    let window = Window { start, end: start + Duration::from_secs_f64(args.duration) };
    let tallies = runtime.block_on(async {
        if let Some(addr) = args.url.strip_prefix("grpc://") {
            grpc::run(&args, addr, &input, window).await
        } else if let Some(addr) = args.url.strip_prefix("http://") {
            http::run(&args, addr, &input, window).await
        } else {
            bail!("--url must start with grpc:// or http://")
        }
    })?;
    let mut latencies: Vec<u32> = tallies.iter().flat_map(|t| t.latencies_us.iter().copied()).collect();
    latencies.sort_unstable();
    let errors: u64 = tallies.iter().map(|t| t.errors).sum();
    let pct = |q: f64| latencies.get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)));
    let report = serde_json::json!({
        "url": args.url,
        "model": args.model,
        "concurrency": args.concurrency,
        "seconds": args.duration,
        "requests": latencies.len(),
        "errors": errors,
        "first_error": tallies.iter().find_map(|t| t.first_error.clone()),
        "throughput": latencies.len() as f64 / args.duration,
        "p50_us": pct(0.50),
        "p90_us": pct(0.90),
        "p99_us": pct(0.99),
    });
    println!("{report}");
    if latencies.is_empty() {
        bail!("no request succeeded in the measured window");
    }
    Ok(())
}
