//! `floor.tcp`: TCP over loopback with `TCP_NODELAY`. The parent listens on
//! `127.0.0.1:0` and passes the port as the rendezvous; the peer connects.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::stream::StreamEnd;
use super::{Channel, Endpoint, Floor, PeerIo, OP_TIMEOUT};

/// Loopback TCP.
#[derive(Debug)]
pub struct Tcp;

impl Floor for Tcp {
    fn name(&self) -> &'static str {
        "floor.tcp"
    }

    fn create(&self, _size: usize) -> Result<Channel> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("cannot listen on 127.0.0.1 (is the loopback interface up?)")?;
        let port = listener.local_addr()?.port();
        let channel = Channel::connect_with(move |_| Ok(Box::new(end(accept(&listener)?)?)));
        Ok(channel.rendezvous(port.to_string()))
    }

    fn open(&self, _size: usize, io: PeerIo) -> Result<Box<dyn Endpoint>> {
        let port: u16 = io.rendezvous()?.parse().context("the rendezvous is not a TCP port")?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let stream = TcpStream::connect_timeout(&addr, OP_TIMEOUT)
            .with_context(|| format!("cannot connect to {addr}"))?;
        Ok(Box::new(end(stream)?))
    }
}

/// Accepts the peer's connection. The peer reports ready after `connect` returned, so the
/// connection is already (or within microseconds) in the backlog: poll for it, bounded.
fn accept(listener: &TcpListener) -> Result<TcpStream> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + OP_TIMEOUT;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                return Ok(stream);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    bail!("the peer said it connected but no connection arrived within {OP_TIMEOUT:?}");
                }
                std::thread::sleep(Duration::from_micros(100));
            }
            Err(e) => return Err(e).context("accept failed"),
        }
    }
}

fn end(stream: TcpStream) -> Result<StreamEnd<TcpStream, TcpStream>> {
    stream.set_nodelay(true).context("cannot set TCP_NODELAY")?;
    stream.set_read_timeout(Some(OP_TIMEOUT))?;
    stream.set_write_timeout(Some(OP_TIMEOUT))?;
    let reader = stream.try_clone().context("cannot clone the socket")?;
    Ok(StreamEnd::new(reader, stream))
}
