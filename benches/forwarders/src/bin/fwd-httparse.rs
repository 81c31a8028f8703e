//! A bare keep-alive HTTP/1.1 forwarder on httparse: one target connection per client
//! connection (round robin over the targets), request heads forwarded verbatim with
//! `X-Forwarded-For: <client ip>` appended, Content-Length and chunked bodies relayed
//! both ways. No upgrades, no pipelining of the target. Any error closes the connection.
//!
//!     fwd-httparse LISTEN TARGET...      e.g. fwd-httparse 127.0.0.1:8080 127.0.0.1:9001
use bytes::{Buf, BytesMut};
use std::io::{Error, ErrorKind, Result};
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const READ: usize = 16 * 1024; // read size, and the initial size of every buffer
const MAX_HEAD: usize = 64 * 1024; // a head (or a chunk-size or trailer line) longer than this is refused

enum Chunk { Size, Data(u64), DataEnd, Trailer }
enum Body { Len(u64), Chunked(Chunk), Close }
struct Head { len: usize, body: Body, close: bool, status: u16, is_head: bool }

fn bad(what: &str) -> Error { Error::new(ErrorKind::InvalidData, what.to_string()) }

fn framing(headers: &[httparse::Header], http10: bool, response: bool) -> Result<(Body, bool)> {
    let (mut len, mut te, mut chunked, mut close, mut keep) = (None, false, false, false, false);
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n: u64 = std::str::from_utf8(h.value).ok().and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| bad("content-length"))?;
            if len.is_some_and(|l| l != n) { return Err(bad("content-length")); }
            len = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            te = true;
            let last = h.value.rsplit(|&b| b == b',').next().unwrap_or_default();
            chunked = last.trim_ascii().eq_ignore_ascii_case(b"chunked");
        } else if h.name.eq_ignore_ascii_case("connection") {
            for t in h.value.split(|&b| b == b',').map(|t| t.trim_ascii()) {
                close |= t.eq_ignore_ascii_case(b"close");
                keep |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    let body = match (te, chunked, len) {
        (true, true, _) => Body::Chunked(Chunk::Size),
        (true, false, _) if response => Body::Close,
        (true, false, _) => return Err(bad("transfer-encoding")),
        (false, _, Some(n)) => Body::Len(n),
        (false, _, None) if response => Body::Close,
        (false, _, None) => Body::Len(0),
    };
    Ok((body, close || (http10 && !keep)))
}

fn parse_request(buf: &[u8]) -> Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf).map_err(|_| bad("request head"))? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let (body, close) = framing(req.headers, req.version == Some(0), false)?;
    Ok(Some(Head { len, body, close, status: 0, is_head: req.method == Some("HEAD") }))
}

fn parse_response(buf: &[u8]) -> Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf).map_err(|_| bad("response head"))? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let (body, close) = framing(resp.headers, resp.version == Some(0), true)?;
    Ok(Some(Head { len, body, close, status: resp.code.unwrap_or(0), is_head: false }))
}

/// How many bytes of `b` belong to the chunked body, and whether the body ends there.
fn scan_chunked(st: &mut Chunk, b: &[u8]) -> Result<(usize, bool)> {
    let mut pos = 0;
    loop {
        match st {
            Chunk::Size => match httparse::parse_chunk_size(&b[pos..]).map_err(|_| bad("chunk size"))? {
                httparse::Status::Complete((n, 0)) => { pos += n; *st = Chunk::Trailer; }
                httparse::Status::Complete((n, size)) => { pos += n; *st = Chunk::Data(size); }
                httparse::Status::Partial => return Ok((pos, false)),
            },
            Chunk::Data(left) => {
                let n = (*left).min((b.len() - pos) as u64);
                pos += n as usize;
                *left -= n;
                if *left > 0 { return Ok((pos, false)); }
                *st = Chunk::DataEnd;
            }
            Chunk::DataEnd if b.len() - pos < 2 => return Ok((pos, false)),
            Chunk::DataEnd if &b[pos..pos + 2] == b"\r\n" => { pos += 2; *st = Chunk::Size; }
            Chunk::DataEnd => return Err(bad("chunk end")),
            Chunk::Trailer => match b[pos..].windows(2).position(|w| w == b"\r\n") {
                None => return Ok((pos, false)),
                Some(0) => return Ok((pos + 2, true)),
                Some(i) => pos += i + 2,
            },
        }
    }
}

/// Writes `out` (a head, possibly empty) and then the body from `src` (whose bytes
/// already read are in `buf`) to `dst`; leaves in `buf` what follows the body.
async fn relay<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    src: &mut R, buf: &mut BytesMut, dst: &mut W, out: &mut Vec<u8>, mut body: Body,
) -> Result<()> {
    loop {
        let (n, done) = match &mut body {
            Body::Len(left) => {
                let n = (*left).min(buf.len() as u64);
                *left -= n;
                (n as usize, *left == 0)
            }
            Body::Chunked(st) => scan_chunked(st, buf)?,
            Body::Close => (buf.len(), false),
        };
        if out.is_empty() {
            dst.write_all(&buf[..n]).await?;
        } else {
            out.extend_from_slice(&buf[..n]);
            dst.write_all(out).await?;
            out.clear();
        }
        buf.advance(n);
        if done { return Ok(()); }
        if buf.len() > MAX_HEAD { return Err(bad("chunk line")); }
        buf.reserve(READ);
        if src.read_buf(buf).await? == 0 {
            return if matches!(body, Body::Close) { Ok(()) } else { Err(ErrorKind::UnexpectedEof.into()) };
        }
    }
}

/// Relays one response (after any 1xx); true when the connection must close after it.
async fn response<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    tr: &mut R, tbuf: &mut BytesMut, cw: &mut W, out: &mut Vec<u8>, head_request: bool,
) -> Result<bool> {
    loop {
        let h = loop {
            if let Some(h) = parse_response(tbuf)? { break h; }
            if tbuf.len() > MAX_HEAD { return Err(bad("response head too long")); }
            tbuf.reserve(READ);
            if tr.read_buf(tbuf).await? == 0 { return Err(ErrorKind::UnexpectedEof.into()); }
        };
        out.extend_from_slice(&tbuf[..h.len]);
        tbuf.advance(h.len);
        if h.status == 101 { return Err(bad("upgrades are not supported")); }
        if h.status < 200 {
            cw.write_all(out).await?;
            out.clear();
            continue;
        }
        let body = if head_request || h.status == 204 || h.status == 304 { Body::Len(0) } else { h.body };
        let close = h.close || matches!(body, Body::Close);
        relay(tr, tbuf, cw, out, body).await?;
        return Ok(close);
    }
}

async fn serve(mut client: TcpStream, target: SocketAddr) -> Result<()> {
    let xff = format!("X-Forwarded-For: {}\r\n\r\n", client.peer_addr()?.ip()).into_bytes();
    let mut target = TcpStream::connect(target).await?;
    client.set_nodelay(true)?;
    target.set_nodelay(true)?;
    let ((mut cr, mut cw), (mut tr, mut tw)) = (client.split(), target.split());
    let (mut cbuf, mut tbuf) = (BytesMut::with_capacity(READ), BytesMut::with_capacity(READ));
    let (mut out_req, mut out_resp) = (Vec::with_capacity(READ), Vec::with_capacity(READ));
    loop {
        let req = loop {
            if let Some(h) = parse_request(&cbuf)? { break h; }
            if cbuf.len() > MAX_HEAD { return Err(bad("request head too long")); }
            cbuf.reserve(READ);
            if cr.read_buf(&mut cbuf).await? == 0 { return Ok(()); }
        };
        out_req.extend_from_slice(&cbuf[..req.len - 2]); // the head without its blank line
        out_req.extend_from_slice(&xff);
        cbuf.advance(req.len);
        let close = if matches!(req.body, Body::Len(n) if n <= cbuf.len() as u64) {
            // The whole request is here: send it, then relay the response.
            relay(&mut cr, &mut cbuf, &mut tw, &mut out_req, req.body).await?;
            response(&mut tr, &mut tbuf, &mut cw, &mut out_resp, req.is_head).await?
        } else {
            // A body still coming: relay it while the response may already arrive.
            tokio::try_join!(
                relay(&mut cr, &mut cbuf, &mut tw, &mut out_req, req.body),
                response(&mut tr, &mut tbuf, &mut cw, &mut out_resp, req.is_head),
            )?.1
        };
        if close || req.close { return Ok(()); }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addrs: Option<Vec<SocketAddr>> = args.iter().map(|a| a.parse().ok()).collect();
    let Some((listen, targets)) = addrs.as_ref().and_then(|a| a.split_first()).filter(|(_, t)| !t.is_empty())
    else {
        eprintln!("usage: fwd-httparse LISTEN_ADDR TARGET_ADDR...");
        std::process::exit(2);
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let listener = TcpListener::bind(listen).await.expect("bind");
        let mut next = 0;
        loop {
            let Ok((client, _)) = listener.accept().await else { continue };
            let target = targets[next % targets.len()];
            next += 1;
            tokio::task::spawn_local(async move { let _ = serve(client, target).await; });
        }
    });
}
