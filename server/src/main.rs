//! `balsa`: Loki's API on Raft-replicated partitions.

use std::process::ExitCode;

use balsa::config::{normalize_args, Config, Flags};
use clap::Parser;

/// mimalloc: queries allocate and free small strings per scanned line, and
/// it does that 1.3–1.6x faster than glibc's malloc here (measured on the
/// logfmt pipeline; docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Transparent huge pages off for this process. mimalloc commits its arenas
/// eagerly and the kernel then backs a touched 4 KiB of them with a whole
/// 2 MiB page: each partition replica's Raft core allocates a 620 KiB
/// command queue (openraft's fixed capacity of 4096) that it barely uses,
/// and with huge pages 200 idle replicas held 158 MiB instead of 8
/// (measured with `balsa-bench memory`; docs/performance.md). Without them
/// memory is resident only where it is used. Failing (not Linux, an old
/// kernel) changes nothing else.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_THP_DISABLE takes integer arguments only
    // and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() -> ExitCode {
    disable_transparent_huge_pages();
    // Two TLS backends are linked (ring for gRPC, aws-lc for the S3 client);
    // rustls needs to be told which one serves connections without their own.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut flags = match Flags::try_parse_from(normalize_args(std::env::args())) {
        Ok(f) => f,
        Err(e) => e.exit(),
    };
    if let Some(cmd) = flags.command.take() {
        return match balsa::cli::run(cmd) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e @ balsa::cli::CliError::Arg { .. }) => {
                eprintln!("balsa: {e}");
                ExitCode::from(2)
            }
            Err(e) => {
                eprintln!("balsa: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&flags.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let cfg = match Config::load(&flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("balsa: {e}");
            return ExitCode::from(2);
        }
    };
    match run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("balsa: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cfg: Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(balsa::modules::run(cfg))?;
    Ok(())
}
