//! Tests of the authority shim: the rewrite on client byte streams (what h2
//! would decode from them), malformed input, and h2 behind the shim
//! in-process, against the same `Server::builder()` defaults as detcd's
//! `api`.

use std::net::SocketAddr;
use std::time::Duration;

use loona_hpack::Decoder;
use proptest::collection;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::server::TcpIncoming;

use super::*;

/// The listener's accepted sockets, each wrapped in the shim.
fn incoming(
    listener: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<AuthorityShim<tokio::net::TcpStream>>> {
    use futures::StreamExt;
    TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .map(|accepted| accepted.map(AuthorityShim::new))
}

const FRAME_DATA: u8 = 0x0;
const FRAME_RST_STREAM: u8 = 0x3;
const FRAME_SETTINGS: u8 = 0x4;
const FRAME_PING: u8 = 0x6;
const FRAME_GOAWAY: u8 = 0x7;
const FRAME_WINDOW_UPDATE: u8 = 0x8;
const FLAG_ACK: u8 = 0x1;
const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;
/// RST_STREAM's PROTOCOL_ERROR (RFC 9113 §7).
const PROTOCOL_ERROR: u32 = 0x1;
/// A bound on each in-process exchange, so a bug hangs nothing.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

type HeaderList = Vec<(String, String)>;

fn header_list(fields: &[(&str, &str)]) -> HeaderList {
    fields
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    let length = u32::try_from(payload.len()).unwrap().to_be_bytes();
    bytes.extend_from_slice(&length[1..]);
    bytes.extend_from_slice(&[kind, flags]);
    bytes.extend_from_slice(&stream_id.to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// The preface, an empty SETTINGS frame, then `frames`, as a client sends.
fn client_stream(frames: &[u8]) -> Vec<u8> {
    let mut bytes = CONNECTION_PREFACE.to_vec();
    bytes.extend(frame(FRAME_SETTINGS, 0, 0, &[]));
    bytes.extend_from_slice(frames);
    bytes
}

/// One HEADERS frame with END_HEADERS per block, on streams 1, 3, 5, …
fn requests(blocks: &[Vec<u8>]) -> Vec<u8> {
    let frames: Vec<u8> = blocks
        .iter()
        .zip((1..).step_by(2))
        .flat_map(|(block, stream_id)| frame(FRAME_HEADERS, FLAG_END_HEADERS, stream_id, block))
        .collect();
    client_stream(&frames)
}

/// Runs `input` through `rewriter` in pieces of `piece_len` bytes, as
/// reads from a socket would bring it, into `output`.
fn feed(
    rewriter: &mut RequestRewriter,
    input: &[u8],
    piece_len: usize,
    output: &mut Vec<u8>,
) -> Result<(), ShimError> {
    for mut piece in input.chunks(piece_len) {
        while !piece.is_empty() {
            let consumed = rewriter.process(piece, output)?;
            assert!(consumed > 0, "the rewriter makes progress");
            piece = &piece[consumed..];
        }
    }
    Ok(())
}

/// Runs `input` through a fresh rewriter in pieces of `piece_len` bytes.
fn rewrite(input: &[u8], piece_len: usize) -> Result<Vec<u8>, ShimError> {
    let mut output = Vec::new();
    feed(&mut RequestRewriter::new(), input, piece_len, &mut output).map(|()| output)
}

/// Rewrites `input` whole and byte by byte (every state resumes at every
/// boundary) and insists both give the same bytes.
fn rewrite_all_ways(input: &[u8]) -> Vec<u8> {
    let whole = rewrite(input, input.len().max(1)).expect("valid input is rewritten");
    for piece_len in [1, 7, 4096] {
        assert_eq!(
            rewrite(input, piece_len).unwrap(),
            whole,
            "in pieces of {piece_len}"
        );
    }
    whole
}

fn parse_frames(mut bytes: &[u8]) -> Vec<(FrameHead, Vec<u8>)> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let head = FrameHead::parse(bytes[..FRAME_HEAD_BYTES].try_into().unwrap());
        let payload = bytes[FRAME_HEAD_BYTES..FRAME_HEAD_BYTES + head.length].to_vec();
        bytes = &bytes[FRAME_HEAD_BYTES + head.length..];
        frames.push((head, payload));
    }
    frames
}

/// A header block as h2 receives it: its frames' flags and priority, and
/// the fields it decodes to.
#[derive(Debug, PartialEq)]
struct ReceivedBlock {
    stream_id: u32,
    end_stream: bool,
    priority: Option<[u8; PRIORITY_BYTES]>,
    fields: HeaderList,
}

/// The rewritten stream's header blocks, decoded by a decoder whose dynamic
/// table holds nothing: so every field must be a literal, which is what
/// keeps h2's table empty. Checks the framing h2 relies on on the way.
fn received_blocks(output: &[u8]) -> Vec<ReceivedBlock> {
    assert!(
        output.starts_with(CONNECTION_PREFACE),
        "the preface passes first"
    );
    let mut decoder = Decoder::new();
    decoder.set_max_table_size(0);
    let mut blocks = Vec::new();
    let mut open: Option<(ReceivedBlock, Vec<u8>)> = None;
    for (head, payload) in parse_frames(&output[CONNECTION_PREFACE.len()..]) {
        match head.kind {
            FRAME_HEADERS => {
                assert!(open.is_none(), "a header block is contiguous");
                assert!(
                    head.length <= FRAME_PAYLOAD_BYTES_MAX,
                    "frames fit the frame size"
                );
                assert_eq!(head.flags & FLAG_PADDED, 0, "padding is dropped");
                let priority = (head.flags & FLAG_PRIORITY != 0)
                    .then(|| payload[..PRIORITY_BYTES].try_into().unwrap());
                let fragment = payload[if priority.is_some() {
                    PRIORITY_BYTES
                } else {
                    0
                }..]
                    .to_vec();
                let block = ReceivedBlock {
                    stream_id: head.stream_id,
                    end_stream: head.flags & FLAG_END_STREAM != 0,
                    priority,
                    fields: Vec::new(),
                };
                open = Some((block, fragment));
            }
            FRAME_CONTINUATION => {
                assert!(
                    head.length <= FRAME_PAYLOAD_BYTES_MAX,
                    "frames fit the frame size"
                );
                let (block, fragment) = open.as_mut().expect("CONTINUATION follows HEADERS");
                assert_eq!(
                    head.stream_id, block.stream_id,
                    "CONTINUATION stays on its stream"
                );
                fragment.extend(payload);
            }
            _ => assert!(open.is_none(), "no frame inside a header block"),
        }
        if matches!(head.kind, FRAME_HEADERS | FRAME_CONTINUATION)
            && head.flags & FLAG_END_HEADERS != 0
        {
            let (mut block, fragment) = open.take().unwrap();
            let fields = decoder
                .decode(&fragment)
                .expect("the re-encoded block decodes without a dynamic table");
            block.fields = fields
                .into_iter()
                .map(|(name, value)| {
                    (
                        String::from_utf8(name).unwrap(),
                        String::from_utf8(value).unwrap(),
                    )
                })
                .collect();
            blocks.push(block);
        }
    }
    assert!(open.is_none(), "every header block is ended");
    blocks
}

/// Sends `blocks` as requests on one connection and checks the header list
/// h2 decodes from each.
fn check(blocks: &[Vec<u8>], expected: &[HeaderList]) {
    let received = received_blocks(&rewrite_all_ways(&requests(blocks)));
    let fields: Vec<HeaderList> = received.into_iter().map(|block| block.fields).collect();
    assert_eq!(fields, expected);
}

/// What grpc-go sends for etcdctl's `endpoint status`, one request per path.
fn grpc_request<'a>(
    path: &'a str,
    authority: &'a str,
    timeout: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("user-agent", "grpc-go/1.26.0"),
        ("te", "trailers"),
        ("grpc-timeout", timeout),
    ]
}

/// Encodes as grpc-go's encoder does in the respect that matters here: a
/// field sent before is a reference into the dynamic table, a new one a
/// literal that joins the table (RFC 7541 §6.1, §6.2.1).
#[derive(Default)]
struct IndexingEncoder {
    /// Newest first, as HPACK numbers it from 62 on.
    table: std::collections::VecDeque<(String, String)>,
    table_bytes: usize,
}

impl IndexingEncoder {
    const STATIC_ENTRIES: usize = 61;

    fn encode(&mut self, fields: &[(&str, &str)]) -> Vec<u8> {
        let mut block = Vec::new();
        for &(name, value) in fields {
            if let Some(position) = self
                .table
                .iter()
                .position(|(known_name, known_value)| known_name == name && known_value == value)
            {
                hpack::encode_integer(Self::STATIC_ENTRIES + 1 + position, 7, 0x80, &mut block);
                continue;
            }
            block.push(0x40);
            for string in [name, value] {
                hpack::encode_integer(string.len(), 7, 0x00, &mut block);
                block.extend_from_slice(string.as_bytes());
            }
            self.table.push_front((name.to_string(), value.to_string()));
            self.table_bytes += name.len() + value.len() + 32;
            while self.table_bytes > CLIENT_HPACK_TABLE_BYTES_MAX {
                let (old_name, old_value) = self.table.pop_back().unwrap();
                self.table_bytes -= old_name.len() + old_value.len() + 32;
            }
        }
        block
    }
}

#[test]
fn url_authority_becomes_host_and_port_on_every_request() {
    tracing::info!("three requests on one connection; the later ones name the URL authority through the client's dynamic table");
    let mut encoder = IndexingEncoder::default();
    let calls = [
        grpc_request(
            "/etcdserverpb.Maintenance/Status",
            "http://127.0.0.1:2379",
            "4999872u",
        ),
        grpc_request(
            "/etcdserverpb.Maintenance/Status",
            "http://127.0.0.1:2379",
            "4999517u",
        ),
        grpc_request("/etcdserverpb.KV/Range", "http://127.0.0.1:2379", "1S"),
    ];
    let blocks: Vec<Vec<u8>> = calls.iter().map(|fields| encoder.encode(fields)).collect();
    let names_the_url = |block: &[u8]| block.windows(7).any(|window| window == b"http://");
    assert!(
        names_the_url(&blocks[0]),
        "the first block spells the URL out"
    );
    assert!(
        !names_the_url(&blocks[1]) && !names_the_url(&blocks[2]),
        "the later blocks refer to it in the dynamic table"
    );
    let expected: Vec<HeaderList> = calls
        .iter()
        .map(|fields| {
            let mut list = header_list(fields);
            list[3].1 = "127.0.0.1:2379".to_string();
            list
        })
        .collect();
    check(&blocks, &expected);
}

/// RFC 7541 Appendix C.4: three requests with Huffman-coded strings, each
/// referring to entries the earlier ones put in the dynamic table.
const RFC_7541_C4: [&[u8]; 3] = [
    &[
        0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90,
        0xf4, 0xff,
    ],
    &[
        0x82, 0x86, 0x84, 0xbe, 0x58, 0x86, 0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf,
    ],
    &[
        0x82, 0x87, 0x85, 0xbf, 0x40, 0x88, 0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xa9, 0x7d, 0x7f, 0x89,
        0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xb8, 0xe8, 0xb4, 0xbf,
    ],
];

#[test]
fn huffman_strings_and_dynamic_references_survive() {
    let blocks: Vec<Vec<u8>> = RFC_7541_C4.iter().map(|block| block.to_vec()).collect();
    let expected = [
        header_list(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
        ]),
        header_list(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
            ("cache-control", "no-cache"),
        ]),
        header_list(&[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "www.example.com"),
            ("custom-key", "custom-value"),
        ]),
    ];
    check(&blocks, &expected);
}

#[test]
fn authority_fixes() {
    fn check(value: &str, expected: AuthorityFix<'_>) {
        assert_eq!(fix_authority(value.as_bytes()), expected, "{value:?}");
    }
    check("127.0.0.1:2379", AuthorityFix::Keep);
    check("localhost", AuthorityFix::Keep);
    check("[::1]:2379", AuthorityFix::Keep);
    check(
        "http://127.0.0.1:2379",
        AuthorityFix::Replace(b"127.0.0.1:2379"),
    );
    check(
        "https://etcd.example:2379/",
        AuthorityFix::Replace(b"etcd.example:2379"),
    );
    check(
        "http://[::1]:2379?x#y",
        AuthorityFix::Replace(b"[::1]:2379"),
    );
    check("grpc+unix.v2://host", AuthorityFix::Replace(b"host"));
    check("unix:///var/run/etcd.sock", AuthorityFix::Remove);
    check("http://", AuthorityFix::Remove);
    check("://127.0.0.1:2379", AuthorityFix::Remove);
    check("1http://127.0.0.1:2379", AuthorityFix::Remove);
    check("http://bad host", AuthorityFix::Remove);
    check("", AuthorityFix::Remove);
}

#[test]
fn unusable_authority_is_dropped_and_other_fields_kept() {
    let fields = [
        (":method", "POST"),
        (":authority", "unix:///var/run/etcd.sock"),
        (":path", "/etcdserverpb.KV/Range"),
    ];
    let block = IndexingEncoder::default().encode(&fields);
    check(
        &[block],
        &[header_list(&[
            (":method", "POST"),
            (":path", "/etcdserverpb.KV/Range"),
        ])],
    );
}

#[test]
fn never_indexed_fields_stay_never_indexed() {
    // RFC 7541 §6.2.3: an intermediary passes such a field on as it came.
    let block = b"\x82\x10\x05token\x03abc";
    let output = rewrite_all_ways(&requests(&[block.to_vec()]));
    let (_, payload) = parse_frames(&output[CONNECTION_PREFACE.len()..])
        .pop()
        .unwrap();
    assert_eq!(payload, b"\x00\x07:method\x03GET\x10\x05token\x03abc");
}

#[test]
fn padding_priority_end_stream_and_continuations_are_handled() {
    tracing::info!(
        "a padded, prioritized HEADERS frame whose block runs on in two CONTINUATION frames"
    );
    let fields = grpc_request("/etcdserverpb.KV/Put", "http://127.0.0.1:2379", "5S");
    let block = IndexingEncoder::default().encode(&fields);
    let (first, rest) = block.split_at(10);
    let (second, third) = rest.split_at(rest.len() / 2);
    let priority = [0x80, 0, 0, 0, 0, 41]; // Exclusive on stream 0, weight 42.
    let mut payload = vec![3]; // Padding length.
    payload.extend_from_slice(&priority[..PRIORITY_BYTES]);
    payload.extend_from_slice(first);
    payload.extend_from_slice(&[0, 0, 0]);
    let mut frames = frame(
        FRAME_HEADERS,
        FLAG_PADDED | FLAG_PRIORITY | FLAG_END_STREAM,
        5,
        &payload,
    );
    frames.extend(frame(FRAME_CONTINUATION, 0, 5, second));
    frames.extend(frame(FRAME_CONTINUATION, FLAG_END_HEADERS, 5, third));
    frames.extend(frame(FRAME_WINDOW_UPDATE, 0, 0, &[0, 0, 0x10, 0]));

    let output = rewrite_all_ways(&client_stream(&frames));
    let mut expected_fields = header_list(&fields);
    expected_fields[3].1 = "127.0.0.1:2379".to_string();
    let expected = ReceivedBlock {
        stream_id: 5,
        end_stream: true,
        priority: Some(priority[..PRIORITY_BYTES].try_into().unwrap()),
        fields: expected_fields,
    };
    assert_eq!(received_blocks(&output), [expected]);
    let (last_head, last_payload) = parse_frames(&output[CONNECTION_PREFACE.len()..])
        .pop()
        .unwrap();
    assert_eq!(
        (last_head.kind, last_payload),
        (FRAME_WINDOW_UPDATE, vec![0, 0, 0x10, 0]),
        "the frame after the block passes"
    );
}

#[test]
fn large_block_is_split_at_the_frame_size() {
    let long_value = "v".repeat(40_000);
    let fields = [
        (":method", "POST"),
        (":authority", "http://127.0.0.1:2379"),
        ("x-long", long_value.as_str()),
    ];
    // The client splits its block at the frame size too.
    let block = IndexingEncoder::default().encode(&fields);
    let chunks: Vec<&[u8]> = block.chunks(FRAME_PAYLOAD_BYTES_MAX).collect();
    let mut frames = frame(FRAME_HEADERS, 0, 1, chunks[0]);
    for (index, chunk) in chunks.iter().enumerate().skip(1) {
        let flags = if index == chunks.len() - 1 {
            FLAG_END_HEADERS
        } else {
            0
        };
        frames.extend(frame(FRAME_CONTINUATION, flags, 1, chunk));
    }
    let output = rewrite_all_ways(&client_stream(&frames));
    let header_frames = parse_frames(&output[CONNECTION_PREFACE.len()..])
        .iter()
        .filter(|(head, _)| head.kind != FRAME_SETTINGS)
        .count();
    assert_eq!(
        header_frames, 3,
        "40 KB needs one HEADERS and two CONTINUATION frames"
    );
    let received = received_blocks(&output);
    assert_eq!(
        received[0].fields,
        header_list(&[
            (":method", "POST"),
            (":authority", "127.0.0.1:2379"),
            ("x-long", long_value.as_str())
        ])
    );
}

#[test]
fn other_frames_pass_unchanged() {
    let mut encoder = IndexingEncoder::default();
    let data = vec![0xab; 40_000]; // Longer than a read chunk.
    let others = [
        frame(FRAME_WINDOW_UPDATE, 0, 0, &[0, 1, 0, 0]),
        frame(FRAME_DATA, 0, 1, &data),
        frame(FRAME_PING, 0, 0, &[1, 2, 3, 4, 5, 6, 7, 8]),
        frame(FRAME_DATA, FLAG_END_STREAM, 1, &[]),
        frame(0xfa, 0xff, 7, b"an extension frame"),
    ];
    let mut frames = frame(
        FRAME_HEADERS,
        FLAG_END_HEADERS,
        1,
        &encoder.encode(&grpc_request("/a", "127.0.0.1:1", "1S")),
    );
    for other in &others {
        frames.extend_from_slice(other);
    }
    let input = client_stream(&frames);
    let output = rewrite_all_ways(&input);
    let output_frames = parse_frames(&output[CONNECTION_PREFACE.len()..]);
    let passed: Vec<Vec<u8>> = output_frames[2..]
        .iter()
        .map(|(head, payload)| frame(head.kind, head.flags, head.stream_id, payload))
        .collect();
    assert_eq!(passed, others);
    assert_eq!(
        &output[..CONNECTION_PREFACE.len() + FRAME_HEAD_BYTES],
        &input[..CONNECTION_PREFACE.len() + FRAME_HEAD_BYTES],
        "preface and SETTINGS pass"
    );
}

#[test]
fn input_that_is_not_http2_passes_verbatim() {
    for input in [
        &b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"[..],
        b"PRI * HTTP/1.1\r\n",
        b"\x16\x03\x01\x02\x00",
    ] {
        assert_eq!(rewrite_all_ways(input), input);
    }
}

fn oversized_list_block() -> Vec<u8> {
    // One 4 KB entry into the client's table, then 20 references to it.
    let mut block = IndexingEncoder::default().encode(&[("x", &"v".repeat(4_000))]);
    block.extend([0xbe; 20]);
    block
}

#[test]
fn malformed_input_closes_the_connection() {
    let headers_start = frame(FRAME_HEADERS, 0, 1, &[0x82]);
    let cases: Vec<(&str, Vec<u8>, ShimError)> = vec![
        (
            "frame over the frame size",
            frame(FRAME_HEADERS, 0, 1, &[0; FRAME_PAYLOAD_BYTES_MAX + 1]),
            ShimError::FrameTooLarge(FRAME_PAYLOAD_BYTES_MAX + 1),
        ),
        (
            "CONTINUATION alone",
            frame(FRAME_CONTINUATION, FLAG_END_HEADERS, 1, &[0x82]),
            ShimError::UnexpectedContinuation,
        ),
        (
            "DATA inside a block",
            [headers_start.clone(), frame(FRAME_DATA, 0, 1, b"x")].concat(),
            ShimError::InterruptedHeaderBlock(FRAME_DATA),
        ),
        (
            "CONTINUATION on another stream",
            [
                headers_start.clone(),
                frame(FRAME_CONTINUATION, FLAG_END_HEADERS, 3, &[0x82]),
            ]
            .concat(),
            ShimError::InterruptedHeaderBlock(FRAME_CONTINUATION),
        ),
        (
            "a second HEADERS inside a block",
            [headers_start.clone(), headers_start.clone()].concat(),
            ShimError::InterruptedHeaderBlock(FRAME_HEADERS),
        ),
        (
            "PUSH_PROMISE",
            frame(FRAME_PUSH_PROMISE, FLAG_END_HEADERS, 1, &[0, 0, 0, 2, 0x82]),
            ShimError::PushPromiseFromClient,
        ),
        (
            "padding over the payload",
            frame(
                FRAME_HEADERS,
                FLAG_PADDED | FLAG_END_HEADERS,
                1,
                &[10, 0x82, 0x86],
            ),
            ShimError::BadPadding,
        ),
        (
            "padded without a length",
            frame(FRAME_HEADERS, FLAG_PADDED | FLAG_END_HEADERS, 1, &[]),
            ShimError::BadPadding,
        ),
        (
            "short priority",
            frame(
                FRAME_HEADERS,
                FLAG_PRIORITY | FLAG_END_HEADERS,
                1,
                &[0, 0, 1],
            ),
            ShimError::BadPadding,
        ),
        (
            "index 0",
            frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &[0x80]),
            ShimError::Hpack(hpack::HpackError::IndexOutOfRange(0)),
        ),
        (
            "dynamic index never filled",
            frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &[0xbe]),
            ShimError::Hpack(hpack::HpackError::IndexOutOfRange(62)),
        ),
        (
            "integer too long",
            frame(
                FRAME_HEADERS,
                FLAG_END_HEADERS,
                1,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f],
            ),
            ShimError::Hpack(hpack::HpackError::IntegerTooLong),
        ),
        (
            "table size over the announced 4096",
            frame(
                FRAME_HEADERS,
                FLAG_END_HEADERS,
                1,
                &[0x3f, 0xe1, 0x3f, 0x82],
            ),
            ShimError::Hpack(hpack::HpackError::TableSizeOverLimit(
                8192,
                CLIENT_HPACK_TABLE_BYTES_MAX,
            )),
        ),
        (
            "table size update after a field",
            frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &[0x82, 0x20]),
            ShimError::Hpack(hpack::HpackError::TableSizeUpdateLate),
        ),
        (
            "string past the block",
            frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &[0x00, 0x05, b'a']),
            ShimError::Hpack(hpack::HpackError::Truncated),
        ),
        (
            "bad Huffman padding",
            frame(
                FRAME_HEADERS,
                FLAG_END_HEADERS,
                1,
                &[0x00, 0x81, 0xff, 0x01, b'v'],
            ),
            ShimError::Hpack(hpack::HpackError::Huffman(
                huffman::HuffmanError::PaddingTooLong,
            )),
        ),
        (
            "header list over the bound",
            frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &oversized_list_block()),
            ShimError::HeaderListTooLarge,
        ),
        (
            "block over the bound",
            [
                frame(FRAME_HEADERS, 0, 1, &[0; FRAME_PAYLOAD_BYTES_MAX]),
                [0, 1, 2, 3]
                    .iter()
                    .flat_map(|_| frame(FRAME_CONTINUATION, 0, 1, &[0; FRAME_PAYLOAD_BYTES_MAX]))
                    .collect(),
            ]
            .concat(),
            ShimError::HeaderBlockTooLarge,
        ),
        (
            "a flood of CONTINUATION frames",
            [
                headers_start.clone(),
                (0..=CONTINUATION_FRAMES_MAX)
                    .flat_map(|_| frame(FRAME_CONTINUATION, 0, 1, &[]))
                    .collect(),
            ]
            .concat(),
            ShimError::TooManyContinuations,
        ),
    ];
    for (name, frames, expected) in cases {
        let input = client_stream(&frames);
        for piece_len in [1, 5, input.len()] {
            let mut rewriter = RequestRewriter::new();
            let mut output = Vec::new();
            let error = feed(&mut rewriter, &input, piece_len, &mut output).err();
            assert_eq!(
                error.as_ref(),
                Some(&expected),
                "{name}, in pieces of {piece_len}"
            );
            assert_eq!(
                rewriter.process(b"more", &mut output),
                Err(ShimError::Closed),
                "{name}: nothing is read after an error"
            );
            assert!(
                output.len() <= input.len() + HEADER_LIST_BYTES_MAX,
                "{name}: output stays bounded"
            );
        }
    }
}

#[test]
fn amplifying_input_is_taken_in_bounded_steps() {
    tracing::info!(
        "tiny HEADERS frames that each name a 4 KB table entry eight times: 17 bytes in, 32 KB out"
    );
    let mut encoder = IndexingEncoder::default();
    let large = "v".repeat(4_000);
    let mut frames = frame(
        FRAME_HEADERS,
        FLAG_END_HEADERS,
        1,
        &encoder.encode(&[("x", large.as_str())]),
    );
    for stream_id in (3..1_000).step_by(2) {
        frames.extend(frame(
            FRAME_HEADERS,
            FLAG_END_HEADERS,
            stream_id,
            &encoder.encode(&[("x", large.as_str()); 8]),
        ));
    }
    let input = client_stream(&frames);
    let mut rewriter = RequestRewriter::new();
    let mut rest = &input[..];
    let mut steps = 0;
    while !rest.is_empty() {
        let mut output = Vec::new();
        let consumed = rewriter.process(rest, &mut output).unwrap();
        assert!(
            output.len() <= PENDING_BYTES_SOFT_MAX + HEADER_LIST_BYTES_MAX,
            "one step's output is bounded: {}",
            output.len()
        );
        rest = &rest[consumed..];
        steps += 1;
    }
    assert!(
        steps > 100,
        "the input is taken a bounded slice at a time, not whole: {steps} steps"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever follows the preface, the rewriter returns: rewritten bytes
    /// or an error, never a panic.
    #[test]
    fn arbitrary_frames_never_panic(body in collection::vec(any::<u8>(), 0..2048), piece_len in 1_usize..64) {
        let _ = rewrite(&client_stream(&body), piece_len);
    }

    /// The same for a valid connection with a few bytes changed, which gets
    /// further into HPACK than random bytes do.
    #[test]
    fn corrupted_requests_never_panic(mutations in collection::vec((any::<usize>(), any::<u8>()), 1..6), piece_len in 1_usize..64) {
        let mut encoder = IndexingEncoder::default();
        let blocks = [
            encoder.encode(&grpc_request("/etcdserverpb.KV/Range", "http://127.0.0.1:2379", "4999999u")),
            RFC_7541_C4[0].to_vec(),
            encoder.encode(&grpc_request("/etcdserverpb.KV/Range", "http://127.0.0.1:2379", "4999998u")),
        ];
        let mut input = requests(&blocks);
        for (position, byte) in mutations {
            let position = CONNECTION_PREFACE.len() + position % (input.len() - CONNECTION_PREFACE.len());
            input[position] = byte;
        }
        let _ = rewrite(&input, piece_len);
    }
}

/// How the test server's listener is fronted.
#[derive(Clone, Copy, Debug)]
enum Front {
    Shim,
    Direct,
}

/// A gRPC server with `api`'s `Server::builder()` defaults (so the same
/// HTTP/2 SETTINGS) and one stub service, on a loopback port.
async fn stub_server(front: Front) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    // No services: every call is answered Unimplemented by tonic itself.
    let router = tonic::transport::Server::builder().add_routes(tonic::service::Routes::default());
    tokio::spawn(async move {
        let served = match front {
            Front::Shim => router.serve_with_incoming(incoming(listener)).await,
            Front::Direct => {
                router
                    .serve_with_incoming(TcpIncoming::from(listener))
                    .await
            }
        };
        served.expect("the stub server serves");
    });
    address
}

/// How the server answered one raw call.
#[derive(Debug, PartialEq)]
enum Answer {
    GrpcStatus(String),
    Reset(u32),
    ConnectionClosed,
}

/// A hand-written HTTP/2 client, because no Rust client can send a URL as
/// `:authority` (`http::Uri` refuses to hold one), while grpc-go does.
struct RawClient {
    socket: TcpStream,
    encoder: IndexingEncoder,
    decoder: Decoder<'static>,
    next_stream_id: u32,
    /// Every setting the server announced, in order.
    server_settings: Vec<(u16, u32)>,
}

impl RawClient {
    async fn connect(address: SocketAddr) -> RawClient {
        let mut socket = TcpStream::connect(address).await.unwrap();
        socket.write_all(&client_stream(&[])).await.unwrap();
        RawClient {
            socket,
            encoder: IndexingEncoder::default(),
            decoder: Decoder::new(),
            next_stream_id: 1,
            server_settings: Vec::new(),
        }
    }

    /// Calls Auth/AuthEnable (answered Unimplemented) with `authority`.
    async fn call(&mut self, authority: &str) -> Answer {
        let stream_id = self.next_stream_id;
        self.next_stream_id += 2;
        let block = self.encoder.encode(&grpc_request(
            "/etcdserverpb.Auth/AuthEnable",
            authority,
            "5S",
        ));
        let mut frames = frame(FRAME_HEADERS, FLAG_END_HEADERS, stream_id, &block);
        frames.extend(frame(
            FRAME_DATA,
            FLAG_END_STREAM,
            stream_id,
            &[0, 0, 0, 0, 0],
        )); // An empty message.
        self.send(&frames).await.unwrap();
        tokio::time::timeout(EXCHANGE_TIMEOUT, self.answer(stream_id))
            .await
            .expect("the server answers in time")
    }

    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.socket.write_all(bytes).await
    }

    async fn answer(&mut self, stream_id: u32) -> Answer {
        loop {
            let mut head = [0; FRAME_HEAD_BYTES];
            if self.socket.read_exact(&mut head).await.is_err() {
                return Answer::ConnectionClosed;
            }
            let head = FrameHead::parse(&head);
            let mut payload = vec![0; head.length];
            if self.socket.read_exact(&mut payload).await.is_err() {
                return Answer::ConnectionClosed;
            }
            match head.kind {
                FRAME_SETTINGS if head.flags & FLAG_ACK == 0 => {
                    for setting in payload.chunks_exact(6) {
                        let id = u16::from_be_bytes([setting[0], setting[1]]);
                        self.server_settings.push((
                            id,
                            u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]),
                        ));
                    }
                    if self
                        .send(&frame(FRAME_SETTINGS, FLAG_ACK, 0, &[]))
                        .await
                        .is_err()
                    {
                        return Answer::ConnectionClosed;
                    }
                }
                FRAME_HEADERS => {
                    assert_ne!(
                        head.flags & FLAG_END_HEADERS,
                        0,
                        "the server's answers fit one frame"
                    );
                    let fields = self
                        .decoder
                        .decode(&payload)
                        .expect("the server's header block decodes");
                    let status = fields.iter().find(|(name, _)| name == b"grpc-status");
                    if let (true, Some((_, status))) = (head.stream_id == stream_id, status) {
                        return Answer::GrpcStatus(String::from_utf8(status.clone()).unwrap());
                    }
                }
                FRAME_RST_STREAM if head.stream_id == stream_id => {
                    return Answer::Reset(u32::from_be_bytes(payload[..4].try_into().unwrap()));
                }
                FRAME_GOAWAY => return Answer::ConnectionClosed,
                _ => {}
            }
        }
    }
}

#[tokio::test]
async fn h2_accepts_a_url_authority_through_the_shim() {
    tracing::info!("without the shim h2 resets the stream, as etcdctl saw");
    let mut direct = RawClient::connect(stub_server(Front::Direct).await).await;
    assert_eq!(
        direct.call("http://127.0.0.1:2379").await,
        Answer::Reset(PROTOCOL_ERROR)
    );

    tracing::info!(
        "through the shim the call reaches the service, on every request of the connection"
    );
    let mut client = RawClient::connect(stub_server(Front::Shim).await).await;
    let unimplemented = Answer::GrpcStatus((tonic::Code::Unimplemented as i32).to_string());
    for authority in [
        "http://127.0.0.1:2379",
        "http://127.0.0.1:2379",
        "127.0.0.1:2379",
        "http://127.0.0.1:2379",
        "unix:///x",
    ] {
        assert_eq!(client.call(authority).await, unimplemented, "{authority}");
    }
}

#[tokio::test]
async fn server_settings_are_what_the_shim_assumes() {
    let mut client = RawClient::connect(stub_server(Front::Shim).await).await;
    client.call("127.0.0.1:2379").await;
    assert!(
        !client.server_settings.is_empty(),
        "hyper announces its settings"
    );
    for &(id, value) in &client.server_settings {
        match id {
            SETTINGS_HEADER_TABLE_SIZE => {
                assert!(
                    value as usize <= CLIENT_HPACK_TABLE_BYTES_MAX,
                    "clients may now use a table of {value} bytes: raise CLIENT_HPACK_TABLE_BYTES_MAX"
                )
            }
            SETTINGS_MAX_FRAME_SIZE => {
                assert_eq!(
                    value as usize, FRAME_PAYLOAD_BYTES_MAX,
                    "clients may now send frames of {value} bytes: change FRAME_PAYLOAD_BYTES_MAX"
                )
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn malformed_header_block_closes_only_its_connection() {
    let address = stub_server(Front::Shim).await;
    let mut bad = RawClient::connect(address).await;
    bad.send(&frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &[0x80]))
        .await
        .unwrap();
    let closed = tokio::time::timeout(EXCHANGE_TIMEOUT, bad.answer(1))
        .await
        .expect("the server answers in time");
    assert_eq!(closed, Answer::ConnectionClosed);

    let mut good = RawClient::connect(address).await;
    assert_eq!(
        good.call("http://127.0.0.1:2379").await,
        Answer::GrpcStatus((tonic::Code::Unimplemented as i32).to_string())
    );
}

/// Prints what the shim costs; asserts nothing about time, which the
/// shared CI machine cannot promise, only that every call got the stub's
/// answer. Run with `--no-capture` to see it.
#[tokio::test]
#[allow(clippy::disallowed_methods)] // A measurement in a test, not the core: it reads the OS clock.
async fn rewrite_cost() {
    use std::time::Instant;
    const BLOCKS: usize = 20_000;
    const CALLS: usize = 2_000;

    tracing::info!("the rewriter alone, per header block");
    let mut encoder = IndexingEncoder::default();
    let cold = encoder.encode(&grpc_request(
        "/etcdserverpb.KV/Range",
        "http://127.0.0.1:2379",
        "4999999u",
    ));
    let warm = encoder.encode(&grpc_request(
        "/etcdserverpb.KV/Range",
        "http://127.0.0.1:2379",
        "4999998u",
    ));
    for (name, setup, block) in [
        ("grpc-go-like request, literals", vec![], cold.clone()),
        (
            "grpc-go-like request, table references",
            vec![cold.clone()],
            warm,
        ),
        (
            "RFC 7541 C.4.3, two Huffman strings",
            vec![RFC_7541_C4[0].to_vec(), RFC_7541_C4[1].to_vec()],
            RFC_7541_C4[2].to_vec(),
        ),
    ] {
        let setup = requests(&setup);
        let request = frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &block);
        let mut output = Vec::new();
        let mut elapsed = Duration::ZERO;
        for _ in 0..BLOCKS {
            output.clear();
            // Each run starts from the same client table, as each request does.
            let mut rewriter = RequestRewriter::new();
            rewriter.process(&setup, &mut output).unwrap();
            output.clear();
            let started = Instant::now();
            rewriter.process(&request, &mut output).unwrap();
            elapsed += started.elapsed();
        }
        println!(
            "rewrite_cost: {name}: {:?} per block",
            elapsed / BLOCKS as u32
        );
    }

    tracing::info!("unary calls over one connection, through the shim and direct");
    for front in [Front::Direct, Front::Shim, Front::Direct, Front::Shim] {
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{}", stub_server(front).await))
                .unwrap()
                .connect()
                .await
                .unwrap();
        let client = tonic::client::Grpc::new(channel);
        // An empty AuthEnable request: the stub answers Unimplemented.
        let call = || {
            let mut client = client.clone();
            async move {
                client.ready().await.unwrap();
                client
                    .unary(
                        tonic::Request::new(()),
                        http::uri::PathAndQuery::from_static("/etcdserverpb.Auth/AuthEnable"),
                        tonic_prost::ProstCodec::<(), ()>::default(),
                    )
                    .await
                    .unwrap_err()
            }
        };
        // A broken front (a refused connection, a reset stream) fails too:
        // only the stub's own answer counts.
        assert_eq!(call().await.code(), tonic::Code::Unimplemented, "{front:?}");
        let started = Instant::now();
        for _ in 0..CALLS {
            assert_eq!(call().await.code(), tonic::Code::Unimplemented);
        }
        println!(
            "rewrite_cost: {front:?}: {:?} per unary call",
            started.elapsed() / CALLS as u32
        );
    }
}
