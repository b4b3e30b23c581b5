//! Command-line syntax (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// ipcx: inter-process communication toolkit for Linux.
#[derive(Debug, Parser)]
#[command(name = "ipcx", version, about)]
pub struct Cli {
    /// Namespace of services and nodes (default: $IPCX_NAMESPACE, else "default").
    #[arg(long, global = true, value_name = "NS")]
    pub namespace: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the system's IPC limits and health, and flag what will bite.
    Doctor,
    /// Measure latency and throughput between two processes.
    Bench(BenchArgs),
    /// List services and nodes, with liveness.
    Ls(LsArgs),
    /// Show a service: its descriptor, owner liveness and live state (publishers, ring
    /// counters, subscribers and their lag; whether an RPC endpoint listens).
    Inspect(InspectArgs),
    /// Remove what dead nodes left behind (resources, services, records).
    Clean(CleanArgs),
    /// Serve request/response calls under a service name (e.g. an echo server).
    Serve(ServeArgs),
    /// Call a request/response service once and print the reply.
    Call(CallArgs),
    /// Publish TEXT (a UTF-8 string message) to a pub/sub service.
    Pub(PubArgs),
    /// Print the messages of a pub/sub service, one per line.
    Sub(SubArgs),
    /// Internal: the far side of a benchmark, started by `ipcx bench`.
    #[command(hide = true, name = "__bench-peer")]
    BenchPeer(BenchPeerArgs),
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Measure only the raw floors of the OS primitives (`floor.*`), not the shm entries
    /// (`shm.*`), the channel entries (`chan.*`) nor the targets they are held to.
    #[arg(long)]
    pub raw: bool,
    /// Shorter measurements: the whole run (floors, shm and chan entries) takes about a
    /// minute.
    #[arg(long)]
    pub quick: bool,
    /// Message sizes in bytes, comma separated, for every entry. Default: 64,4096,65536,1048576
    /// for the floors, 8,64,4096,65536,1048576 for the shm latency entries, 64,4096 for
    /// shm.throughput and the chan.* entries (whose throughput is measured at 64 B only).
    /// Sizes a channel cannot carry are skipped with the reason.
    #[arg(long, value_delimiter = ',', value_name = "SIZES")]
    pub sizes: Option<Vec<usize>>,
    /// Only run the entries of these transports, comma separated (shm, uds-stream,
    /// uds-seqpacket, pipe, fifo, posix-mq, sysv-msg, tcp): their `chan.<transport>` entries
    /// and their floors (`floor.<transport>`; the `shm.*` entries for shm). Floors of
    /// primitives that are no transport (futex, eventfd, ...) are left out.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub transport: Vec<String>,
    /// Only run entries whose name contains one of these (comma separated), e.g. `futex,pipe`.
    #[arg(long, value_delimiter = ',')]
    pub filter: Vec<String>,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Measure every entry N times, in N rounds over all entries (so that a slow spell of
    /// the machine touches every entry alike), and report each entry's median round (by
    /// p50). A single p50 swings by ±10% between runs on a VM; ratios of medians do less.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub repeat: u32,
    /// Fixed number of round trips (and of throughput messages) per entry instead of
    /// time-budgeted ones; for tests.
    #[arg(long, hide = true, value_name = "N")]
    pub samples: Option<u64>,
}

#[derive(Debug, Args)]
pub struct BenchPeerArgs {
    /// Entry name, e.g. `floor.pipe`.
    pub name: String,
    /// Message size in bytes.
    pub size: usize,
    /// Rendezvous argument (object name, path or port) made by the parent, if any.
    #[arg(long)]
    pub rendezvous: Option<String>,
    /// CPU to pin to, if any.
    #[arg(long)]
    pub cpu: Option<usize>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The service name.
    pub service: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CleanArgs {
    /// Only print what would be removed.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Service name (letters, digits, '.', '_', '-').
    pub service: String,
    /// Answer every request with the request itself.
    #[arg(long)]
    pub echo: bool,
    /// Transport (shm, uds-stream, uds-seqpacket, pipe, fifo, posix-mq, sysv-msg, tcp).
    #[arg(long, default_value = "shm")]
    pub transport: String,
    /// Also stop, cleanly, when standard input reaches end of file (otherwise serve until
    /// interrupted).
    #[arg(long)]
    pub until_eof: bool,
}

#[derive(Debug, Args)]
pub struct CallArgs {
    /// Service name.
    pub service: String,
    /// The request, sent as a UTF-8 string.
    pub text: String,
    /// Give up after this many milliseconds (connecting included).
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub timeout: u64,
    /// Transport (shm, uds-stream, uds-seqpacket, pipe, fifo, posix-mq, sysv-msg, tcp).
    #[arg(long, default_value = "shm")]
    pub transport: String,
}

#[derive(Debug, Args)]
pub struct PubArgs {
    /// The service (created if no live node serves it).
    pub service: String,
    /// The message.
    pub text: String,
    /// How many times to publish it.
    #[arg(long, default_value_t = 1)]
    pub count: u64,
    /// Pause between two messages, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub interval: u64,
    /// Wait (up to 10 s) for at least one subscriber before publishing.
    #[arg(long)]
    pub wait_subscriber: bool,
}

#[derive(Debug, Args)]
pub struct SubArgs {
    /// The service (waited for if it does not exist yet).
    pub service: String,
    /// Exit after this many messages (default: run until the timeout).
    #[arg(long)]
    pub count: Option<u64>,
    /// Give up after this long without a message, in milliseconds (default: never).
    #[arg(long, value_name = "MS")]
    pub timeout: Option<u64>,
}
