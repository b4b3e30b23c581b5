//! Byte streams: `std::io::Read` and `Write` between two processes, for your own protocol.
//! Here the client writes lines of text and the server answers each with its length.
//!
//! ```sh
//! cargo run -p ipcx --example stream                  # both sides (spawns itself)
//! cargo run -p ipcx --example stream -- server        # terminal 1 (first)
//! cargo run -p ipcx --example stream -- client        # terminal 2
//! ```
//!
//! With no argument the program runs the server and starts a copy of itself as the client,
//! in a namespace of its own that it removes at the end. With a role it runs only that
//! side, in the namespace `examples` (or the one given after the role). The stream carries
//! bytes, not typed messages: it is the pattern for protocols you bring yourself.

use std::io::{BufRead, BufReader, Write};
use std::process::Command;
use std::time::Duration;

use ipcx::stream::{ByteStream, StreamListener};
use ipcx::{Namespace, Transport};

const SERVICE: &str = "lines";
const LINES: [&str; 3] = ["hello", "byte streams over shared memory", "bye"];

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let ns = |default: &str| Namespace::new(args.get(1).map_or(default, String::as_str));
    match args.first().map(String::as_str) {
        None => both(),
        Some("server") => {
            let ns = ns("examples")?;
            let listener = ByteStream::listen(&ns, SERVICE, Transport::Shm)?;
            println!("[server] listening as {SERVICE:?}; now run the `client` role");
            serve_one(listener)
        }
        Some("client") => client(&ns("examples")?),
        Some(other) => Err(format!("unknown role {other:?}: use server or client").into()),
    }
}

/// Listens here, starts the client as a child process, serves it.
fn both() -> Result {
    let ns = Namespace::new(&format!("example-stream-{}", std::process::id()))?;
    // Listen before starting the client, so that it finds the endpoint.
    let listener = ByteStream::listen(&ns, SERVICE, Transport::Shm)?;
    println!("[server] listening as {SERVICE:?}");
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe).args(["client", ns.name()]).spawn()?;
    let served = serve_one(listener);
    let status = child.wait()?;
    let _ = std::fs::remove_dir_all(ns.dir());
    served?;
    if !status.success() {
        return Err(format!("the client failed: {status}").into());
    }
    println!("done");
    Ok(())
}

/// Accepts one client and answers each line with its length, until the client closes.
fn serve_one(mut listener: StreamListener) -> Result {
    let stream = listener.accept_timeout(Duration::from_secs(30))?;
    // Wrap the stream like a TcpStream: BufReader for lines; both ends read and write.
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    // `read_line` returns 0 at the end of the stream (the client closed cleanly).
    while reader.read_line(&mut line)? > 0 {
        let text = line.trim_end();
        println!("[server] read {text:?}");
        let stream = reader.get_mut();
        writeln!(stream, "{}", text.len())?;
        // Writes are buffered into chunks: flush when the peer must see them.
        stream.flush()?;
        line.clear();
    }
    println!("[server] the client closed the stream");
    Ok(())
}

/// Connects, writes each line, reads each answer.
fn client(ns: &Namespace) -> Result {
    let stream = ByteStream::connect(ns, SERVICE, Transport::Shm, Duration::from_secs(5))?;
    let mut reader = BufReader::new(stream);
    for text in LINES {
        let stream = reader.get_mut();
        writeln!(stream, "{text}")?;
        stream.flush()?;
        let mut answer = String::new();
        reader.read_line(&mut answer)?;
        println!("[client] {text:?} has {} bytes", answer.trim_end());
    }
    // `close` flushes and ends the stream; the server's next read returns 0.
    reader.into_inner().close()?;
    Ok(())
}
