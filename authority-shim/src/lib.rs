//! A per-connection HTTP/2 shim in front of the client gRPC listener: it
//! turns a URL-shaped `:authority` (`http://127.0.0.1:2379`) into the
//! authority h2 accepts (`127.0.0.1:2379`).
//!
//! Why it exists: etcdctl 3.4 dials some endpoints as
//! `passthrough:///http://host:port`, and grpc-go then sends the whole URL as
//! `:authority`. etcd's grpc-go server takes any authority; h2 resets the
//! stream with PROTOCOL_ERROR ("malformed authority"). h2 has no option to
//! relax that check, and patching it is not ours to do.
//!
//! How: `AuthorityShim` wraps the accepted socket. What the server writes goes
//! to the socket untouched. What the client sends is read through
//! `RequestRewriter`, which forwards the connection preface and every frame
//! unchanged except header blocks (HEADERS + CONTINUATION). Those it
//! HPACK-decodes with its own copy of the client encoder's dynamic table
//! (`hpack.rs`), fixes `:authority`, and re-encodes as literals without
//! indexing. The server's HPACK decoder therefore never holds a dynamic
//! entry, so no table is shared between the shim and h2 that could drift
//! apart, even though every block changes size.
//!
//! Malformed input (a frame or block over its bound, an HPACK error, a frame
//! inside a header block) fails the read, and hyper closes the connection.
//! h2 would have answered most of these with GOAWAY; the client sees a reset
//! connection instead. Input that is not HTTP/2 with prior knowledge (no
//! preface) passes through verbatim, so hyper answers it as before.
//!
//! Cost: every request's header block is decoded and re-encoded once, about
//! half a microsecond in a release build (the `rewrite_cost` test prints
//! numbers). DATA payloads are read straight into hyper's buffer, without an
//! extra copy, and writes are not touched at all.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

mod hpack;
mod huffman;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// The client connection preface (RFC 9113 §3.4).
const CONNECTION_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Length, type, flags and stream id (RFC 9113 §4.1).
const FRAME_HEAD_BYTES: usize = 9;
/// SETTINGS_MAX_FRAME_SIZE as the server announces it: hyper's default,
/// which `api::router` keeps. A client frame carrying a header fragment may
/// not be larger. It is also HTTP/2's smallest allowed value, so the frames
/// the shim re-splits into are acceptable to h2 at any point, even before
/// the client has acknowledged the server's SETTINGS.
const FRAME_PAYLOAD_BYTES_MAX: usize = 16_384;
/// The largest dynamic table the client's encoder may use. hyper announces no
/// SETTINGS_HEADER_TABLE_SIZE, so HTTP/2's default of 4096 applies (the
/// `server_settings_are_what_the_shim_assumes` test checks this). A larger
/// table size update from the client is a decoding error (RFC 7541 §6.3),
/// and the bound keeps the replayed table small.
const CLIENT_HPACK_TABLE_BYTES_MAX: usize = 4_096;
/// The compressed header block collected across HEADERS and CONTINUATION
/// frames. Four times hyper's 16 KiB header list limit: a block h2 would
/// refuse on its own terms (431 for a list over 16 KiB) still reaches h2,
/// and only a block no client needs is refused here.
const HEADER_BLOCK_BYTES_MAX: usize = 64 * 1024;
/// The decoded header list, counted as RFC 9113 §6.5.2 counts it (name +
/// value + 32 per field). Indexed fields decode to far more than they
/// take on the wire, so this bounds the re-encoded block: each field
/// re-encodes to fewer bytes than it counts here, so a block fits in five
/// frames, within h2's CONTINUATION flood limit.
const HEADER_LIST_BYTES_MAX: usize = 64 * 1024;
/// CONTINUATION frames in one header block. Real clients split only at the
/// frame size, so four would do; beyond this it is a flood of tiny frames
/// that h2 itself stops after five (`max_continuation_frames`), which it no
/// longer sees because the shim re-splits every block.
const CONTINUATION_FRAMES_MAX: usize = 16;
/// The read buffer for frame heads and header fragments. One full frame at
/// the announced frame size; DATA payloads bypass it.
const READ_CHUNK_BYTES: usize = FRAME_HEAD_BYTES + FRAME_PAYLOAD_BYTES_MAX;
/// Rewritten bytes waiting for hyper, past which the rewriter takes no more
/// input until hyper has read them. Without it one read chunk of tiny
/// HEADERS frames, each naming large dynamic table entries, would decode to
/// tens of megabytes; with it the backlog is this plus one header block.
const PENDING_BYTES_SOFT_MAX: usize = 64 * 1024;

/// Frame types (RFC 9113 §6) the shim looks at.
const FRAME_HEADERS: u8 = 0x1;
const FRAME_PUSH_PROMISE: u8 = 0x5;
const FRAME_CONTINUATION: u8 = 0x9;
/// HEADERS and CONTINUATION flags.
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// Stream dependency (4 bytes) and weight (1 byte) of a HEADERS frame.
const PRIORITY_BYTES: usize = 5;

/// Why the shim closes a connection.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ShimError {
    #[error("a HEADERS or CONTINUATION frame of {0} bytes is over the frame size limit")]
    FrameTooLarge(usize),
    #[error("a header block is over {HEADER_BLOCK_BYTES_MAX} bytes")]
    HeaderBlockTooLarge,
    #[error("a header list decodes to over {HEADER_LIST_BYTES_MAX} bytes")]
    HeaderListTooLarge,
    #[error("a header block is split into over {CONTINUATION_FRAMES_MAX} CONTINUATION frames")]
    TooManyContinuations,
    #[error("a frame of type {0:#x} arrived inside a header block")]
    InterruptedHeaderBlock(u8),
    #[error("a CONTINUATION frame arrived outside a header block")]
    UnexpectedContinuation,
    #[error("a client sent PUSH_PROMISE")]
    PushPromiseFromClient,
    #[error("a HEADERS frame's padding or priority is longer than the frame")]
    BadPadding,
    #[error("a header block does not decode: {0}")]
    Hpack(#[from] hpack::HpackError),
    #[error("an earlier error closed this connection")]
    Closed,
}

/// One client connection: reads go through `RequestRewriter`, writes go
/// straight to the socket.
pub struct AuthorityShim<S> {
    inner: S,
    rewriter: RequestRewriter,
    /// Bytes read from the socket; `chunk_start..chunk_end` of them have not
    /// been through the rewriter yet.
    read_chunk: Box<[u8]>,
    chunk_start: usize,
    chunk_end: usize,
    /// Rewritten bytes hyper has not read yet, from `pending_start` on. Only
    /// refilled once empty, so at most `PENDING_BYTES_SOFT_MAX` plus one
    /// re-encoded header block.
    pending: Vec<u8>,
    pending_start: usize,
}

impl<S> AuthorityShim<S> {
    pub fn new(inner: S) -> AuthorityShim<S> {
        AuthorityShim {
            inner,
            rewriter: RequestRewriter::new(),
            read_chunk: vec![0; READ_CHUNK_BYTES].into_boxed_slice(),
            chunk_start: 0,
            chunk_end: 0,
            pending: Vec::new(),
            pending_start: 0,
        }
    }
}

impl<S: Connected> Connected for AuthorityShim<S> {
    type ConnectInfo = S::ConnectInfo;

    /// The socket's own addresses, so `Request::remote_addr` works as before.
    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityShim<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.pending_start < this.pending.len() {
                let count = buf.remaining().min(this.pending.len() - this.pending_start);
                buf.put_slice(&this.pending[this.pending_start..this.pending_start + count]);
                this.pending_start += count;
                if this.pending_start == this.pending.len() {
                    this.pending.clear();
                    this.pending_start = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            if this.chunk_start < this.chunk_end {
                let consumed = this
                    .rewriter
                    .process(
                        &this.read_chunk[this.chunk_start..this.chunk_end],
                        &mut this.pending,
                    )
                    .map_err(|error| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("HTTP/2 authority shim: {error}"),
                        )
                    })?;
                this.chunk_start += consumed;
                continue;
            }
            if let Some(limit) = this.rewriter.passthrough_len() {
                // A payload forwarded verbatim goes from the socket into
                // hyper's buffer directly: no extra copy for DATA.
                let direct = buf.initialize_unfilled_to(limit.min(buf.remaining()));
                let mut direct = ReadBuf::new(direct);
                ready!(Pin::new(&mut this.inner).poll_read(cx, &mut direct))?;
                let count = direct.filled().len();
                buf.advance(count);
                this.rewriter.passed_through(count);
                return Poll::Ready(Ok(()));
            }
            let mut chunk = ReadBuf::new(&mut this.read_chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut chunk))?;
            let count = chunk.filled().len();
            if count == 0 {
                return Poll::Ready(Ok(())); // End of stream; hyper sees it as such.
            }
            (this.chunk_start, this.chunk_end) = (0, count);
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityShim<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A frame head (RFC 9113 §4.1).
#[derive(Clone, Copy, Debug)]
struct FrameHead {
    length: usize,
    kind: u8,
    flags: u8,
    /// The reserved bit is cleared.
    stream_id: u32,
}

impl FrameHead {
    fn parse(bytes: &[u8; FRAME_HEAD_BYTES]) -> FrameHead {
        FrameHead {
            length: usize::from(bytes[0]) << 16
                | usize::from(bytes[1]) << 8
                | usize::from(bytes[2]),
            kind: bytes[3],
            flags: bytes[4],
            stream_id: u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff,
        }
    }

    fn write(self, output: &mut Vec<u8>) {
        debug_assert!(
            self.length <= FRAME_PAYLOAD_BYTES_MAX,
            "frames are split at the frame size limit"
        );
        let length = (self.length as u32).to_be_bytes();
        output.extend_from_slice(&length[1..]);
        output.push(self.kind);
        output.push(self.flags);
        output.extend_from_slice(&self.stream_id.to_be_bytes());
    }
}

/// Where the rewriter is in the client's byte stream.
#[derive(Clone, Copy, Debug)]
enum Position {
    /// Inside the connection preface; `matched` bytes agree so far.
    Preface { matched: usize },
    /// Collecting a frame head; `filled` bytes of `head` are in.
    Head {
        head: [u8; FRAME_HEAD_BYTES],
        filled: usize,
    },
    /// Forwarding the payload of a frame that passes unchanged.
    Payload { remaining: usize },
    /// Collecting the payload of a HEADERS or CONTINUATION frame into
    /// `RequestRewriter::frame_payload`.
    HeaderPayload { head: FrameHead },
    /// Not HTTP/2 with prior knowledge: everything passes unchanged.
    Opaque,
    /// An error closed the connection; nothing more is read.
    Failed,
}

/// The header block being collected, from its HEADERS frame to END_HEADERS.
#[derive(Clone, Copy, Debug)]
struct OpenBlock {
    stream_id: u32,
    end_stream: bool,
    priority: Option<[u8; PRIORITY_BYTES]>,
    continuation_frames: usize,
}

/// The sans-IO half of the shim: client bytes in, bytes for h2 out.
struct RequestRewriter {
    position: Position,
    block: Option<OpenBlock>,
    /// Replays the client encoder's dynamic table.
    decoder: hpack::Decoder,
    /// The HEADERS or CONTINUATION payload being read (≤ one frame).
    frame_payload: Vec<u8>,
    /// The compressed fragments of `block` so far.
    fragments: Vec<u8>,
    /// The re-encoded block (scratch, kept for its allocation).
    encoded: Vec<u8>,
}

impl RequestRewriter {
    fn new() -> RequestRewriter {
        RequestRewriter {
            position: Position::Preface { matched: 0 },
            block: None,
            decoder: hpack::Decoder::new(CLIENT_HPACK_TABLE_BYTES_MAX),
            frame_payload: Vec::new(),
            fragments: Vec::new(),
            encoded: Vec::new(),
        }
    }

    /// How many of the next bytes pass unchanged, if the rewriter is inside
    /// such a stretch; `passed_through` must then be told how many did.
    fn passthrough_len(&self) -> Option<usize> {
        match self.position {
            Position::Payload { remaining } => Some(remaining),
            Position::Opaque => Some(usize::MAX),
            _ => None,
        }
    }

    fn passed_through(&mut self, count: usize) {
        if let Position::Payload { remaining } = self.position {
            assert!(
                count <= remaining,
                "read past the frame the rewriter allowed"
            );
            self.position = if count == remaining {
                Position::Head {
                    head: [0; FRAME_HEAD_BYTES],
                    filled: 0,
                }
            } else {
                Position::Payload {
                    remaining: remaining - count,
                }
            };
        }
    }

    /// Consumes a prefix of `input`, appending what h2 should read to
    /// `output`, and returns its length: all of `input`, unless the output
    /// grew by `PENDING_BYTES_SOFT_MAX` first. At least one byte when
    /// `input` has one. After an error every later call fails too.
    fn process(&mut self, input: &[u8], output: &mut Vec<u8>) -> Result<usize, ShimError> {
        let result = self.process_inner(input, output);
        if result.is_err() {
            self.position = Position::Failed;
        }
        result
    }

    fn process_inner(&mut self, input: &[u8], output: &mut Vec<u8>) -> Result<usize, ShimError> {
        let output_start = output.len();
        let mut rest = input;
        while !rest.is_empty() && output.len() - output_start < PENDING_BYTES_SOFT_MAX {
            let consumed = self.step(rest, output)?;
            rest = &rest[consumed..];
        }
        Ok(input.len() - rest.len())
    }

    /// Takes what the current position can from `input` (at least one
    /// byte) and returns how much.
    fn step(&mut self, input: &[u8], output: &mut Vec<u8>) -> Result<usize, ShimError> {
        match self.position {
            Position::Failed => Err(ShimError::Closed),
            Position::Opaque => {
                output.extend_from_slice(input);
                Ok(input.len())
            }
            Position::Preface { matched } => {
                let count = input.len().min(CONNECTION_PREFACE.len() - matched);
                if input[..count] != CONNECTION_PREFACE[matched..matched + count] {
                    self.position = Position::Opaque;
                    return self.step(input, output);
                }
                output.extend_from_slice(&input[..count]);
                self.position = if matched + count == CONNECTION_PREFACE.len() {
                    Position::Head {
                        head: [0; FRAME_HEAD_BYTES],
                        filled: 0,
                    }
                } else {
                    Position::Preface {
                        matched: matched + count,
                    }
                };
                Ok(count)
            }
            Position::Head { mut head, filled } => {
                let count = input.len().min(FRAME_HEAD_BYTES - filled);
                head[filled..filled + count].copy_from_slice(&input[..count]);
                if filled + count == FRAME_HEAD_BYTES {
                    self.on_frame_head(&head, output)?;
                } else {
                    self.position = Position::Head {
                        head,
                        filled: filled + count,
                    };
                }
                Ok(count)
            }
            Position::Payload { remaining } => {
                let count = input.len().min(remaining);
                output.extend_from_slice(&input[..count]);
                self.passed_through(count);
                Ok(count)
            }
            Position::HeaderPayload { head } => {
                let count = input.len().min(head.length - self.frame_payload.len());
                self.frame_payload.extend_from_slice(&input[..count]);
                if self.frame_payload.len() == head.length {
                    self.on_header_frame(head, output)?;
                }
                Ok(count)
            }
        }
    }

    fn on_frame_head(
        &mut self,
        bytes: &[u8; FRAME_HEAD_BYTES],
        output: &mut Vec<u8>,
    ) -> Result<(), ShimError> {
        let head = FrameHead::parse(bytes);
        // RFC 9113 §6.10: a header block is contiguous.
        if let Some(block) = self.block {
            if head.kind != FRAME_CONTINUATION || head.stream_id != block.stream_id {
                return Err(ShimError::InterruptedHeaderBlock(head.kind));
            }
        }
        match head.kind {
            FRAME_HEADERS | FRAME_CONTINUATION => {
                if head.length > FRAME_PAYLOAD_BYTES_MAX {
                    return Err(ShimError::FrameTooLarge(head.length));
                }
                if head.kind == FRAME_CONTINUATION && self.block.is_none() {
                    return Err(ShimError::UnexpectedContinuation);
                }
                self.frame_payload.clear();
                self.position = Position::HeaderPayload { head };
                if head.length == 0 {
                    self.on_header_frame(head, output)?;
                }
            }
            // Its header block would advance h2's HPACK table past ours.
            FRAME_PUSH_PROMISE => return Err(ShimError::PushPromiseFromClient),
            _ => {
                output.extend_from_slice(bytes);
                self.position = if head.length == 0 {
                    Position::Head {
                        head: [0; FRAME_HEAD_BYTES],
                        filled: 0,
                    }
                } else {
                    Position::Payload {
                        remaining: head.length,
                    }
                };
            }
        }
        Ok(())
    }

    /// `frame_payload` holds the whole payload of the frame `head`.
    fn on_header_frame(&mut self, head: FrameHead, output: &mut Vec<u8>) -> Result<(), ShimError> {
        self.position = Position::Head {
            head: [0; FRAME_HEAD_BYTES],
            filled: 0,
        };
        let mut fragment = &self.frame_payload[..];
        if head.kind == FRAME_HEADERS {
            let mut padding = 0;
            if head.flags & FLAG_PADDED != 0 {
                let (&length, rest) = fragment.split_first().ok_or(ShimError::BadPadding)?;
                padding = usize::from(length);
                fragment = rest;
            }
            let mut priority = None;
            if head.flags & FLAG_PRIORITY != 0 {
                let (fields, rest) = fragment
                    .split_first_chunk::<PRIORITY_BYTES>()
                    .ok_or(ShimError::BadPadding)?;
                priority = Some(*fields);
                fragment = rest;
            }
            let end = fragment
                .len()
                .checked_sub(padding)
                .ok_or(ShimError::BadPadding)?;
            fragment = &fragment[..end];
            self.block = Some(OpenBlock {
                stream_id: head.stream_id,
                end_stream: head.flags & FLAG_END_STREAM != 0,
                priority,
                continuation_frames: 0,
            });
            self.fragments.clear();
        } else {
            let block = self
                .block
                .as_mut()
                .ok_or(ShimError::UnexpectedContinuation)?;
            block.continuation_frames += 1;
            if block.continuation_frames > CONTINUATION_FRAMES_MAX {
                return Err(ShimError::TooManyContinuations);
            }
        }
        if self.fragments.len() + fragment.len() > HEADER_BLOCK_BYTES_MAX {
            return Err(ShimError::HeaderBlockTooLarge);
        }
        self.fragments.extend_from_slice(fragment);
        if head.flags & FLAG_END_HEADERS != 0 {
            let block = self.block.take().ok_or(ShimError::UnexpectedContinuation)?;
            self.reencode_fragments()?;
            write_header_frames(block, &self.encoded, output);
        }
        Ok(())
    }

    /// Decodes `fragments` with the client's table into `encoded`, as
    /// literals that h2 does not index, with `:authority` fixed.
    fn reencode_fragments(&mut self) -> Result<(), ShimError> {
        let encoded = &mut self.encoded;
        encoded.clear();
        let mut list_bytes = 0_usize;
        self.decoder
            .decode(&self.fragments, |name, value, indexing| {
                // Decoding goes on after the limit, only to run to the end of
                // the block; the connection closes anyway.
                list_bytes = list_bytes.saturating_add(name.len() + value.len() + 32);
                if list_bytes > HEADER_LIST_BYTES_MAX {
                    return;
                }
                if name == b":authority" {
                    match fix_authority(value) {
                        AuthorityFix::Keep => hpack::encode_literal(name, value, indexing, encoded),
                        AuthorityFix::Replace(authority) => {
                            hpack::encode_literal(name, authority, indexing, encoded)
                        }
                        AuthorityFix::Remove => {}
                    }
                } else {
                    hpack::encode_literal(name, value, indexing, encoded);
                }
            })?;
        if list_bytes > HEADER_LIST_BYTES_MAX {
            return Err(ShimError::HeaderListTooLarge);
        }
        Ok(())
    }
}

/// What to do with one `:authority` value.
#[derive(Debug, PartialEq, Eq)]
enum AuthorityFix<'a> {
    /// h2 accepts it as it is.
    Keep,
    /// A URL: h2 gets the URL's authority.
    Replace(&'a [u8]),
    /// Neither: h2 gets no `:authority`, which HTTP/2 allows. grpc-go's
    /// server (etcd) ignores the value, and so does tonic.
    Remove,
}

/// h2 parses `:authority` with `http::uri::Authority`, so the same parser
/// decides here what it would refuse.
fn fix_authority(value: &[u8]) -> AuthorityFix<'_> {
    let acceptable = |authority: &[u8]| http::uri::Authority::try_from(authority).is_ok();
    if acceptable(value) {
        return AuthorityFix::Keep;
    }
    if let Some(after_scheme) = strip_scheme(value) {
        let end = after_scheme
            .iter()
            .position(|&byte| matches!(byte, b'/' | b'?' | b'#'))
            .unwrap_or(after_scheme.len());
        let authority = &after_scheme[..end];
        if acceptable(authority) {
            return AuthorityFix::Replace(authority);
        }
    }
    AuthorityFix::Remove
}

/// What follows `scheme://`, if `value` starts with one (RFC 3986 §3.1:
/// a letter, then letters, digits, `+`, `-` or `.`).
fn strip_scheme(value: &[u8]) -> Option<&[u8]> {
    let separator = value.windows(3).position(|window| window == b"://")?;
    let (scheme, rest) = value.split_at(separator);
    let first_is_letter = scheme.first().is_some_and(u8::is_ascii_alphabetic);
    let rest_are_scheme_chars = scheme
        .iter()
        .all(|&byte| byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'-' | b'.'));
    (first_is_letter && rest_are_scheme_chars).then(|| &rest[3..])
}

/// Frames `encoded` as one HEADERS frame plus as many CONTINUATION frames
/// as the frame size requires. END_STREAM and PRIORITY carry over from the
/// client's HEADERS frame; padding is dropped, since the hop to h2 is in
/// memory and nothing can observe its length.
fn write_header_frames(block: OpenBlock, encoded: &[u8], output: &mut Vec<u8>) {
    let priority_len = if block.priority.is_some() {
        PRIORITY_BYTES
    } else {
        0
    };
    let (first, mut rest) =
        encoded.split_at(encoded.len().min(FRAME_PAYLOAD_BYTES_MAX - priority_len));
    let mut flags = 0;
    if block.end_stream {
        flags |= FLAG_END_STREAM;
    }
    if block.priority.is_some() {
        flags |= FLAG_PRIORITY;
    }
    if rest.is_empty() {
        flags |= FLAG_END_HEADERS;
    }
    FrameHead {
        length: priority_len + first.len(),
        kind: FRAME_HEADERS,
        flags,
        stream_id: block.stream_id,
    }
    .write(output);
    if let Some(priority) = block.priority {
        output.extend_from_slice(&priority);
    }
    output.extend_from_slice(first);
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(rest.len().min(FRAME_PAYLOAD_BYTES_MAX));
        rest = after;
        let flags = if rest.is_empty() { FLAG_END_HEADERS } else { 0 };
        FrameHead {
            length: chunk.len(),
            kind: FRAME_CONTINUATION,
            flags,
            stream_id: block.stream_id,
        }
        .write(output);
        output.extend_from_slice(chunk);
    }
}

#[cfg(test)]
mod tests;
