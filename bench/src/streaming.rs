//! Streaming through the `wasi:http` door: how soon the first byte of a
//! response reaches the client, against the whole exchange's time, for a
//! 5 MiB body the component generates and for a duplex echo (the request
//! body sent in pieces 50 ms apart, each echoed back). A host that buffered
//! either direction would put the first byte at the end.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

/// One exchange's times, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Timing {
    /// From the request's first byte to the response body's first byte.
    pub first_byte_ms: f64,
    /// From the request's first byte to the response's last.
    pub total_ms: f64,
}

/// A scenario's exchanges, one per round.
#[derive(Debug, Clone, Serialize)]
pub struct StreamRow {
    pub scenario: &'static str,
    pub timings: Vec<Timing>,
}

/// Pieces of the duplex echo's request body, and the pause between them.
const DUPLEX_PIECES: usize = 10;
const DUPLEX_PAUSE: Duration = Duration::from_millis(50);

/// Measures both scenarios `rounds` times on the host at `addr`, which
/// serves `proxy-hello` as `/proxy-hello/`.
pub fn run(addr: SocketAddr, rounds: usize) -> Result<Vec<StreamRow>> {
    let mut generated = StreamRow {
        scenario: "5 MiB generated body (GET /proxy-hello/generate)",
        timings: Vec::new(),
    };
    let mut duplex = StreamRow {
        scenario: "duplex echo, 10 pieces 50 ms apart (POST /proxy-hello/duplex)",
        timings: Vec::new(),
    };
    for _ in 0..rounds.max(3) {
        generated.timings.push(generate(addr)?);
        duplex.timings.push(echo(addr)?);
    }
    Ok(vec![generated, duplex])
}

/// Reads the response head off `stream`, returning any body bytes read
/// with it.
fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>> {
    let mut buffer = Vec::new();
    let mut piece = [0u8; 16 << 10];
    loop {
        let read = stream.read(&mut piece)?;
        if read == 0 {
            bail!("the connection closed before the response head ended");
        }
        buffer.extend_from_slice(&piece[..read]);
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_string();
            if !head.starts_with("HTTP/1.1 200") {
                bail!("answered {}", head.lines().next().unwrap_or(""));
            }
            return Ok(buffer[end + 4..].to_vec());
        }
    }
}

/// Waits for the first body byte (the head may have brought it), then
/// reads to the end of the connection; returns the bytes read.
fn first_then_rest(
    stream: &mut TcpStream,
    started: Instant,
    mut body: Vec<u8>,
) -> Result<(f64, Vec<u8>)> {
    let mut piece = [0u8; 64 << 10];
    while body.is_empty() {
        let read = stream.read(&mut piece)?;
        if read == 0 {
            bail!("the connection closed before the body began");
        }
        body.extend_from_slice(&piece[..read]);
    }
    let first = started.elapsed().as_secs_f64() * 1e3;
    stream.read_to_end(&mut body)?;
    Ok((first, body))
}

fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let stream = TcpStream::connect(addr).context("connect to the host")?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn generate(addr: SocketAddr) -> Result<Timing> {
    let mut stream = connect(addr)?;
    let started = Instant::now();
    stream.write_all(
        b"GET /proxy-hello/generate HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n",
    )?;
    let body = read_head(&mut stream)?;
    let (first_byte_ms, body) = first_then_rest(&mut stream, started, body)?;
    if body.len() < 5 << 20 {
        bail!("the generated body was {} bytes", body.len());
    }
    Ok(Timing {
        first_byte_ms,
        total_ms: started.elapsed().as_secs_f64() * 1e3,
    })
}

fn echo(addr: SocketAddr) -> Result<Timing> {
    let mut stream = connect(addr)?;
    let started = Instant::now();
    stream.write_all(
        b"POST /proxy-hello/duplex HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\
          transfer-encoding: chunked\r\n\r\n5\r\npiece\r\n",
    )?;
    let mut writer = stream.try_clone()?;
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        for _ in 1..DUPLEX_PIECES {
            std::thread::sleep(DUPLEX_PAUSE);
            writer.write_all(b"5\r\npiece\r\n")?;
        }
        writer.write_all(b"0\r\n\r\n")
    });
    let body = read_head(&mut stream)?;
    let (first_byte_ms, body) = first_then_rest(&mut stream, started, body)?;
    sender
        .join()
        .map_err(|_| anyhow::anyhow!("the sender panicked"))??;
    let echoed = body.windows(5).filter(|window| window == b"piece").count();
    if echoed != DUPLEX_PIECES {
        bail!("{echoed} of {DUPLEX_PIECES} pieces came back");
    }
    Ok(Timing {
        first_byte_ms,
        total_ms: started.elapsed().as_secs_f64() * 1e3,
    })
}
