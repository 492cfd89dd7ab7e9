//! Every decoder of bytes from a file or a peer returns an error, and never panics or allocates
//! beyond what the bytes hold, whatever it is given (spec/io.md IO-8, IO-9): protocol messages, log
//! entries and headers, the metadata file, records of both formats, and payloads. Each is fed
//! arbitrary bytes and, more to the point, valid encodings with bytes flipped, cut or appended.
//! An allocator that counts the bytes live on this thread checks that no decoder holds more
//! than a small multiple of the bytes it was given (IO-8): a count or a length announced by
//! hostile bytes is never reserved.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use online_backup::backup::protocol::{Message, Refusal, Request};
use online_backup::digest::Digest;
use online_backup::graph::{Properties, Value};
use online_backup::store::format::{
    decode_node_payload, decode_rel_payload, encode_node_payload, encode_rel_payload, BlockRecord,
    FormatVersion, NodeRecord, RelRecord,
};
use online_backup::store::log::{LogHeader, RecordImage, TxEntry, TxState};
use online_backup::store::meta::{Checkpoint, Meta, StoreId};
use proptest::prelude::*;

/// The system allocator, counting the bytes live on each thread and their peak.
struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn note(grow: isize) {
    // `try_with`: a thread being torn down has no counters left to keep.
    let _ = LIVE.try_with(|live| {
        let now = (live.get() as isize + grow).max(0) as usize;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is passed to `System` unchanged; the counters are thread-local cells that
// never allocate.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as isize);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(-(layout.size() as isize));
        System.dealloc(ptr, layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as isize);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size as isize - layout.size() as isize);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// The most bytes any decoder may hold for `len` bytes of input (IO-8): the decoded value of
/// a record image takes at most 4 times its smallest encoding (20 bytes, 80 in memory), plus a
/// constant for the small fixed parts.
fn decode_bound(len: usize) -> usize {
    8 * len + 16 * 1024
}

/// Feeds `bytes` to every decoder; each must return (Ok or Err) without panicking, and hold at
/// most [`decode_bound`] bytes while it runs.
fn decode_all(bytes: &[u8]) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    decode_each(bytes);
    let held = PEAK.with(Cell::get) - base;
    assert!(
        held <= decode_bound(bytes.len()),
        "IO-8: decoding {} bytes held {held} bytes",
        bytes.len()
    );
}

fn decode_each(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let _ = online_backup::config::Config::parse(&text);
    let _ = online_backup::server::http::parse_transaction(bytes);
    let _ = StoreId::parse(&text);
    let _ = FormatVersion::parse(&text);
    let _ = online_backup::store::layout::parse_generation(&text);
    let _ = online_backup::store::layout::parse_pointer(bytes);
    let _ = Message::decode_body(bytes);
    let _ = TxEntry::decode_body(bytes);
    let _ = LogHeader::decode(bytes);
    let _ = Meta::decode(bytes);
    let _ = decode_node_payload(bytes);
    let _ = decode_rel_payload(bytes);
    for format in FormatVersion::SUPPORTED {
        let _ = NodeRecord::decode(format, bytes);
        let _ = RelRecord::decode(format, bytes);
        let _ = BlockRecord::decode(format, bytes);
    }
}

fn state() -> TxState {
    TxState {
        digest: Digest([7; 32]),
        nodes: 3,
        relationships: 2,
        next_node: 4,
        next_rel: 5,
        next_block: 9,
    }
}

/// One valid encoding of each format, to be damaged.
fn samples() -> Vec<Vec<u8>> {
    let id = StoreId {
        created_millis: 1,
        random: 2,
    };
    let mut props = Properties::new();
    props.insert("name".into(), Value::String("Ada".into()));
    props.insert(
        "l".into(),
        Value::List(vec![Value::Int(1), Value::Float(1.5), Value::Bool(true)]),
    );
    let entry = TxEntry {
        tx_id: 9,
        timestamp_millis: 1000,
        after: state(),
        records: vec![
            RecordImage::Node(1, NodeRecord::unused()),
            RecordImage::Rel(2, RelRecord::unused()),
            RecordImage::Block(
                3,
                BlockRecord {
                    in_use: true,
                    next: 4,
                    data: vec![1, 2, 3],
                },
            ),
        ],
    };
    let framed = entry.encode_framed();
    let meta = Meta {
        store_id: id,
        format: FormatVersion::CURRENT,
        checkpoint: Checkpoint::at(9, 1, 64, &state()),
        unverified: false,
    };
    let mut out = vec![
        framed[8..].to_vec(),
        meta.encode(),
        LogHeader {
            log_version: 2,
            prev_last_tx: 8,
            prev_digest: Digest([1; 32]),
        }
        .encode()
        .to_vec(),
        encode_node_payload(&["Person".into()], &props),
        encode_rel_payload("KNOWS", &props),
    ];
    for format in FormatVersion::SUPPORTED {
        out.push(NodeRecord::unused().encode(format));
        out.push(
            RelRecord {
                in_use: true,
                ..RelRecord::unused()
            }
            .encode(format),
        );
        out.push(
            BlockRecord {
                in_use: true,
                next: 1,
                data: vec![9; 100],
            }
            .encode(format),
        );
    }
    for msg in [
        Message::Hello { version: 1 },
        Message::Welcome {
            version: 1,
            store_id: id,
            format: FormatVersion::CURRENT,
            last_committed_tx: 9,
            oldest_logged_tx: 1,
            store_bytes: 100,
        },
        Message::Request(Request::Incremental {
            store_id: id,
            format: FormatVersion::V1,
            last_tx: 3,
            digest: Digest([2; 32]),
        }),
        Message::FullStart {
            checkpoint_tx: 3,
            state: state(),
            files: 3,
        },
        Message::FileStart {
            name: "neostore.nodestore.db".into(),
            len: 10,
        },
        Message::Tx(Box::new(entry)),
        Message::Refused(Refusal::Diverged {
            tx: 3,
            server_digest: Some(Digest([4; 32])),
            server_last_tx: 5,
        }),
        Message::Refused(Refusal::Failed {
            message: "disk full".into(),
        }),
    ] {
        out.push(msg.encode_body());
    }
    out
}

#[test]
fn io_9_every_sample_decodes_whole() {
    let s = samples();
    assert!(
        Message::decode_body(&s[s.len() - 1]).is_ok(),
        "IO-9: a sample is valid"
    );
    assert!(
        TxEntry::decode_body(&s[0]).is_ok(),
        "IO-9: a sample is valid"
    );
    assert!(Meta::decode(&s[1]).is_ok(), "IO-9: a sample is valid");
    assert!(
        LogHeader::decode(&s[2]).is_some(),
        "IO-9: a sample is valid"
    );
    assert!(
        decode_node_payload(&s[3]).is_ok(),
        "IO-9: a sample is valid"
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000),
        ..ProptestConfig::default()
    })]

    // IO-9: arbitrary bytes.
    #[test]
    fn io_9_decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        decode_all(&bytes);
    }

    // IO-9: a valid encoding with a byte changed, cut short, or extended.
    #[test]
    fn io_8_io_9_decoders_never_panic_on_damaged_encodings(
        which in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        xor in 1u8..=255,
        cut in any::<prop::sample::Index>(),
        tail in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let samples = samples();
        let sample = &samples[which.index(samples.len())];
        let mut flipped = sample.clone();
        let i = at.index(flipped.len());
        flipped[i] ^= xor;
        decode_all(&flipped);
        decode_all(&sample[..cut.index(sample.len() + 1)]);
        let mut longer = sample.clone();
        longer.extend_from_slice(&tail);
        decode_all(&longer);
        // A huge count or length announced by a damaged field must not be allocated.
        let mut huge = sample.clone();
        let j = at.index(huge.len().saturating_sub(4).max(1));
        if huge.len() >= j + 4 {
            huge[j..j + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        }
        decode_all(&huge);
    }
}

// IO-8: the bound holds where it matters most, a transaction entry announcing the most images
// an entry may carry (LOG-4) with none of them there, or more than that.
#[test]
fn io_8_log_4_an_image_count_is_never_reserved_beyond_the_bytes() {
    use online_backup::store::log::MAX_IMAGES;
    let entry = TxEntry {
        tx_id: 1,
        timestamp_millis: 0,
        after: state(),
        records: vec![],
    };
    let framed = entry.encode_framed();
    let body = &framed[8..];
    for count in [MAX_IMAGES, MAX_IMAGES + 1, u32::MAX] {
        let mut forged = body.to_vec();
        let at = forged.len() - 4;
        forged[at..].copy_from_slice(&count.to_le_bytes());
        forged.extend(std::iter::repeat_n(0u8, 4096));
        decode_all(&forged);
        assert!(
            TxEntry::decode_body(&forged).is_err(),
            "LOG-4: an entry announcing {count} images it does not carry is refused"
        );
    }
    for count in [MAX_IMAGES + 1, u32::MAX] {
        let mut forged = body.to_vec();
        let at = forged.len() - 4;
        forged[at..].copy_from_slice(&count.to_le_bytes());
        let refused = TxEntry::decode_body(&forged).unwrap_err().to_string();
        assert!(
            refused.contains("more record images than an entry may carry"),
            "LOG-4: {count} images are refused for their count, before any is read: {refused}"
        );
    }
    assert!(
        TxEntry::decoded_bound() < 64 << 20,
        "LOG-4: one decoded entry fits in {} bytes",
        TxEntry::decoded_bound()
    );
}

// LOG-4, IO-8: an entry with as many images as one may carry decodes, and holds no more memory
// than `TxEntry::decoded_bound` says any decoded entry may.
#[test]
fn log_4_the_most_images_decode_within_the_bound() {
    use online_backup::store::log::MAX_IMAGES;
    let entry = TxEntry {
        tx_id: 1,
        timestamp_millis: 0,
        after: state(),
        records: (0..u64::from(MAX_IMAGES))
            .map(|id| RecordImage::Node(id, NodeRecord::unused()))
            .collect(),
    };
    let framed = entry.encode_framed();
    let body = &framed[8..];
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let decoded = TxEntry::decode_body(body).expect("LOG-4: the most images an entry may carry");
    let held = PEAK.with(Cell::get) - base;
    assert_eq!(decoded.records.len(), MAX_IMAGES as usize, "LOG-4");
    assert!(
        held <= TxEntry::decoded_bound(),
        "LOG-4: decoding {MAX_IMAGES} images held {held} bytes, above the bound of {}",
        TxEntry::decoded_bound()
    );
}
