//! The backup client against a server that lies (BK-51 .. BK-54): a proxy in front of the real
//! service rewrites what the server sends, and the client must refuse the lie with the previous
//! backup left live and unchanged.

use std::sync::Arc;

use online_backup::backup::client;
use online_backup::store::log::RecordImage;

use super::client_side::{backup_options, live_meta};
use super::*;

/// How a proxy rewrites each message from the server: the messages the client gets instead.
pub type Rewrite = Arc<dyn Fn(Message) -> Vec<Message> + Send + Sync>;

/// A proxy in front of the backup service at `real` that forwards the client's frames as they
/// are and the server's through `rewrite`; its address.
pub async fn rewriting_proxy(real: String, rewrite: Rewrite) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let server = TcpStream::connect(&real).await.unwrap();
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            tokio::spawn(async move {
                while let Ok(m) = read_message(&mut cr).await {
                    if write_message(&mut sw, &m).await.is_err() {
                        return;
                    }
                }
            });
            let rewrite = rewrite.clone();
            tokio::spawn(async move {
                while let Ok(m) = read_message(&mut sr).await {
                    for m in rewrite(m) {
                        if write_message(&mut cw, &m).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// A server with a backup of it at some tx in `target`, then more commits: what each lie is
/// told against. Returns the server and the backup's tx.
async fn backed_up(dir: &Path) -> (TestServer, std::path::PathBuf, u64) {
    let store = dir.join("db");
    let target = dir.join("backup");
    let server = TestServer::start(&store, "").await;
    server.commit_nodes(20).await;
    let summary = client::run(
        &Env::os(),
        &backup_options(&server.backup_addr(), &target, client::Mode::Auto),
        &mut client::Lines::default(),
    )
    .await
    .unwrap();
    server.commit_nodes(5).await;
    (server, target, summary.to_tx)
}

/// What a lie must leave: the backup in `target` still at `tx`, live and consistent, and no
/// other generation kept.
fn unchanged(target: &Path, tx: u64, pointer: &[u8], rule: &str) {
    assert_eq!(
        std::fs::read(target.join("CURRENT")).unwrap(),
        pointer,
        "{rule}: the pointer still names the previous generation"
    );
    assert_eq!(
        live_meta(target).checkpoint.last_tx,
        tx,
        "{rule}: the backup is still at tx {tx}"
    );
    let report =
        online_backup::store::check::check(support::fs(), support::clock(), target).unwrap();
    assert!(report.consistent, "{rule}: the backup is still consistent");
    let generations = std::fs::read_dir(target)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_dir())
        .count();
    assert_eq!(
        generations, 1,
        "{rule}: the failed generation was discarded"
    );
}

/// Runs the client through a proxy applying `rewrite`; the error it must end with.
async fn lied_to(
    server: &TestServer,
    target: &Path,
    mode: client::Mode,
    rewrite: Rewrite,
) -> client::BackupError {
    let proxy = rewriting_proxy(server.backup_addr(), rewrite).await;
    client::run(
        &Env::os(),
        &backup_options(&proxy, target, mode),
        &mut client::Lines::default(),
    )
    .await
    .expect_err("a lying server's backup must fail")
}

// The finding: a server answering a full backup with no files and an end at tx 0 made the
// client replace a good backup with an empty one and report it verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bk_51_a_full_backup_without_the_store_files_is_refused() {
    let dir = support::scratch();
    let (server, target, tx) = backed_up(dir.path()).await;
    let pointer = std::fs::read(target.join("CURRENT")).unwrap();
    let empty = Digest::ZERO;
    let err = lied_to(
        &server,
        &target,
        client::Mode::Full,
        Arc::new(move |m| match m {
            Message::Welcome {
                version,
                store_id,
                format,
                oldest_logged_tx,
                ..
            } => vec![Message::Welcome {
                version,
                store_id,
                format,
                last_committed_tx: 0,
                oldest_logged_tx,
                store_bytes: 0,
            }],
            Message::FullStart { .. } => vec![Message::FullStart {
                checkpoint_tx: 0,
                state: online_backup::store::log::TxState {
                    digest: empty,
                    nodes: 0,
                    relationships: 0,
                    next_node: 0,
                    next_rel: 0,
                    next_block: 0,
                },
                files: 0,
            }],
            Message::FileStart { .. } | Message::FileChunk(_) | Message::FileEnd { .. } => {
                vec![]
            }
            Message::Tx(_) => vec![],
            Message::End { .. } => vec![Message::End {
                last_tx: 0,
                digest: empty,
            }],
            other => vec![other],
        }),
    )
    .await;
    assert_eq!(err.exit_code(), 1, "BK-51: {err}");
    assert!(
        err.to_string()
            .contains("announced 0 store files, but a store has exactly 3"),
        "BK-51: {err}"
    );
    unchanged(&target, tx, &pointer, "BK-51");
    server.stop().await;
}

// The finding: a file announced as 2^60 bytes was written until the disk was full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bk_51_a_file_longer_than_the_checkpoint_holds_is_refused() {
    let dir = support::scratch();
    let (server, target, tx) = backed_up(dir.path()).await;
    let pointer = std::fs::read(target.join("CURRENT")).unwrap();
    let err = lied_to(
        &server,
        &target,
        client::Mode::Full,
        Arc::new(|m| match m {
            Message::FileStart { name, .. } => vec![Message::FileStart { name, len: 1 << 60 }],
            other => vec![other],
        }),
    )
    .await;
    assert_eq!(err.exit_code(), 1, "BK-51: {err}");
    assert!(
        err.to_string().contains("more than the"),
        "BK-51: the sentence names the bound: {err}"
    );
    unchanged(&target, tx, &pointer, "BK-51");
    server.stop().await;
}

// A checkpoint whose high-water marks imply more bytes than the disk has room for is refused
// before a byte is written, as a store too big for the disk is (BK-16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bk_51_marks_implying_more_than_the_room_are_refused() {
    let dir = support::scratch();
    let (server, target, tx) = backed_up(dir.path()).await;
    let pointer = std::fs::read(target.join("CURRENT")).unwrap();
    let err = lied_to(
        &server,
        &target,
        client::Mode::Full,
        Arc::new(|m| match m {
            Message::FullStart {
                checkpoint_tx,
                state,
                files,
            } => vec![Message::FullStart {
                checkpoint_tx,
                state: online_backup::store::log::TxState {
                    next_block: 1 << 50,
                    ..state
                },
                files,
            }],
            other => vec![other],
        }),
    )
    .await;
    assert_eq!(err.exit_code(), 1, "BK-51: {err}");
    assert!(err.to_string().contains("not enough room"), "BK-51: {err}");
    unchanged(&target, tx, &pointer, "BK-51");
    server.stop().await;
}

// The room a forged checkpoint's marks imply is checked at its edge: marks whose record files
// fill exactly the free space are accepted, a byte less room is refused before a byte is
// written (BK-51, BK-16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bk_51_marks_implying_exactly_the_room_are_accepted_and_one_byte_more_refused() {
    let dir = support::scratch();
    let (server, target, _) = backed_up(dir.path()).await;
    // Marks far above the store's files (so the room they imply is checked), not so far that a
    // run accepting them writes much: it copies the files as they are.
    let forge = |state: online_backup::store::log::TxState| online_backup::store::log::TxState {
        next_node: state.next_node + 1_000_000,
        next_rel: state.next_rel + 1_000_000,
        next_block: state.next_block + 1_000_000,
        ..state
    };
    let seen = Arc::new(std::sync::Mutex::new(None));
    let implied = seen.clone();
    let proxy = rewriting_proxy(
        server.backup_addr(),
        Arc::new(move |m| match m {
            Message::FullStart {
                checkpoint_tx,
                state,
                files,
            } => {
                let state = forge(state);
                let most = RecordKind::ALL
                    .iter()
                    .map(|&k| {
                        online_backup::store::record_file_limit(k, &state, FormatVersion::CURRENT)
                    })
                    .sum::<u64>();
                *implied.lock().unwrap() = Some(most);
                vec![Message::FullStart {
                    checkpoint_tx,
                    state,
                    files,
                }]
            }
            other => vec![other],
        }),
    )
    .await;
    let with_free = |free: u64| Env {
        fs: Arc::new(support::faulty::Faulty {
            free: Some(free),
            ..Default::default()
        }),
        ..Env::os()
    };
    let run = async |free: u64| {
        let outcome = client::run(
            &with_free(free),
            &backup_options(&proxy, &target, client::Mode::Full),
            &mut client::Lines::default(),
        )
        .await;
        let most = seen.lock().unwrap().take();
        (outcome, most.expect("the server sent a full start"))
    };
    // A first run, with room to spare, learns the room the forged marks imply.
    let (_, most) = run(u64::MAX / 4).await;
    let pointer = std::fs::read(target.join("CURRENT")).unwrap();
    let tx = super::client_side::live_meta(&target).checkpoint.last_tx;
    let (refused, again) = run(most - 1).await;
    assert_eq!(again, most, "the same marks each run");
    let refused = refused.expect_err("BK-51: one byte less room than the marks imply is refused");
    assert!(
        refused.to_string().contains("not enough room"),
        "BK-51: {refused}"
    );
    unchanged(&target, tx, &pointer, "BK-51");
    let (exact, again) = run(most).await;
    assert_eq!(again, most, "the same marks each run");
    if let Err(e) = exact {
        assert!(
            !e.to_string().contains("not enough room"),
            "BK-51: exactly the room the marks imply is enough: {e}"
        );
    }
    server.stop().await;
}

// A full backup whose checkpoint is older than the tx the welcome announced is refused: it
// would replace the backup with an older state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bk_52_a_checkpoint_older_than_the_welcome_is_refused() {
    let dir = support::scratch();
    let (server, target, tx) = backed_up(dir.path()).await;
    let pointer = std::fs::read(target.join("CURRENT")).unwrap();
    let err = lied_to(
        &server,
        &target,
        client::Mode::Full,
        Arc::new(|m| match m {
            Message::FullStart { state, files, .. } => vec![Message::FullStart {
                checkpoint_tx: 1,
                state,
                files,
            }],
            other => vec![other],
        }),
    )
    .await;
    assert_eq!(err.exit_code(), 1, "BK-52: {err}");
    assert!(err.to_string().contains("older than that"), "BK-52: {err}");
    unchanged(&target, tx, &pointer, "BK-52");
    server.stop().await;
}

// An incremental whose end is older than the tx the welcome announced fails; what it applied
// is a valid state after the backup's (BK-24), never an older one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bk_52_an_end_older_than_the_welcome_fails_the_run() {
    let dir = support::scratch();
    let (server, target, tx) = backed_up(dir.path()).await;
    let err = lied_to(
        &server,
        &target,
        client::Mode::Auto,
        Arc::new(|m| match m {
            Message::Welcome {
                version,
                store_id,
                format,
                last_committed_tx,
                oldest_logged_tx,
                store_bytes,
            } => vec![Message::Welcome {
                version,
                store_id,
                format,
                last_committed_tx: last_committed_tx + 1000,
                oldest_logged_tx,
                store_bytes,
            }],
            other => vec![other],
        }),
    )
    .await;
    assert_eq!(err.exit_code(), 1, "BK-52: {err}");
    assert!(err.to_string().contains("older than that"), "BK-52: {err}");
    assert!(
        live_meta(&target).checkpoint.last_tx >= tx,
        "BK-52: the backup is never older than before"
    );
    server.stop().await;
}

/// Rewrites the first transaction of the stream with `forge`.
fn first_tx(forge: fn(&mut online_backup::store::log::TxEntry)) -> Rewrite {
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    Arc::new(move |m| match m {
        Message::Tx(mut entry) if !done.swap(true, std::sync::atomic::Ordering::SeqCst) => {
            forge(&mut entry);
            vec![Message::Tx(entry)]
        }
        other => vec![other],
    })
}

// The finding: a record id from the wire reached `id * size` unchecked. A transaction whose
// image lies above its high-water mark is refused before anything of it is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bk_53_a_record_id_above_its_mark_is_refused() {
    let dir = support::scratch();
    let (server, target, tx) = backed_up(dir.path()).await;
    let pointer = std::fs::read(target.join("CURRENT")).unwrap();
    let err = lied_to(
        &server,
        &target,
        client::Mode::Auto,
        first_tx(|entry| {
            if let Some(RecordImage::Node(id, _)) = entry.records.first_mut() {
                *id = 1 << 40;
            }
        }),
    )
    .await;
    assert_eq!(err.exit_code(), 1, "BK-53: {err}");
    assert!(
        err.to_string()
            .contains(&format!("tx {} cannot follow", tx + 1)),
        "BK-53: {err}"
    );
    unchanged(&target, tx, &pointer, "BK-53");
    server.stop().await;
}

// A transaction that moves a high-water mark by more than the records it carries is refused:
// the file would grow without the stream carrying its bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bk_53_a_mark_jump_is_refused() {
    let dir = support::scratch();
    let (server, target, tx) = backed_up(dir.path()).await;
    let pointer = std::fs::read(target.join("CURRENT")).unwrap();
    let err = lied_to(
        &server,
        &target,
        client::Mode::Auto,
        first_tx(|entry| entry.after.next_block += 1 << 40),
    )
    .await;
    assert_eq!(err.exit_code(), 1, "BK-53: {err}");
    assert!(err.to_string().contains("high-water"), "BK-53: {err}");
    unchanged(&target, tx, &pointer, "BK-53");
    server.stop().await;
}

// Text from the server reaches the terminal with its control characters escaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bk_54_control_characters_from_the_server_are_escaped() {
    let dir = support::scratch();
    let (server, target, _) = backed_up(dir.path()).await;
    let lie = "disk on fire\x1b[2J\r\nneo4j-backup: backup complete \u{202e}";
    let failure = lied_to(
        &server,
        &target,
        client::Mode::Full,
        Arc::new(move |m| match m {
            Message::FullStart { .. } => vec![Message::Refused(Refusal::Failed {
                message: lie.to_string(),
            })],
            other => vec![other],
        }),
    )
    .await;
    let name = lied_to(
        &server,
        &target,
        client::Mode::Full,
        Arc::new(|m| match m {
            Message::FileStart { len, .. } => vec![Message::FileStart {
                name: "\x1b]0;owned\x07".to_string(),
                len,
            }],
            other => vec![other],
        }),
    )
    .await;
    for err in [failure, name] {
        let text = err.to_string();
        assert!(
            !text.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "BK-54: no control character reaches the terminal: {text:?}"
        );
        assert!(
            text.contains("\\u{1b}"),
            "BK-54: escaped, not dropped: {text:?}"
        );
    }
    server.stop().await;
}
