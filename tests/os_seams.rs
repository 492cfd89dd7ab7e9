//! The production seams (`online_backup::io::os`) on a real temporary directory and real
//! loopback TCP: the guarantees of spec/io.md that the simulated seams must mirror.

use std::io::ErrorKind;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use online_backup::io::os::{OsClock, OsFs, OsNet};
use online_backup::io::{read_small_file, write_atomic, Clock, Fs, Net, OpenMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The names in `dir`, in the order `read_dir` gives them.
fn names(dir: &Path) -> Vec<String> {
    OsFs.read_dir(dir)
        .expect("read_dir")
        .into_iter()
        .map(|e| e.name)
        .collect()
}

fn create_file(path: &Path, contents: &[u8]) {
    let file = OsFs.open(path, OpenMode::CreateNew).expect("create file");
    file.write_all_at(contents, 0).expect("write file");
}

// IO-2: each write replaces the whole contents (a shorter one leaves nothing of the longer), and
// the temporary sibling is gone afterwards.
#[test]
fn io_2_write_atomic_replaces_content_and_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata");
    for contents in [&b"first version"[..], b"a much longer second version", b"3"] {
        write_atomic(&OsFs, &path, contents).unwrap();
        assert_eq!(read_small_file(&OsFs, &path, 1024).unwrap(), contents);
        assert_eq!(names(dir.path()), ["metadata"]);
    }
}

// IO-2: a `.tmp` left by a crash between writing and renaming is overwritten, not appended to,
// and the target never sees its garbage.
#[test]
fn io_2_write_atomic_reuses_a_temp_file_left_by_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("CURRENT");
    write_atomic(&OsFs, &path, b"gen-1").unwrap();
    create_file(
        &dir.path().join("CURRENT.tmp"),
        b"garbage from an interrupted write, longer than the new contents",
    );
    assert_eq!(read_small_file(&OsFs, &path, 1024).unwrap(), b"gen-1");

    write_atomic(&OsFs, &path, b"gen-2").unwrap();
    assert_eq!(read_small_file(&OsFs, &path, 1024).unwrap(), b"gen-2");
    assert_eq!(names(dir.path()), ["CURRENT"]);
}

// IO-3: a second lock fails at once with WouldBlock, dropping the guard frees the directory, and
// the lock adds no entry to the directory.
#[test]
fn io_3_lock_dir_is_exclusive_immediate_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    create_file(&dir.path().join("neostore"), b"x");
    let before = names(dir.path());

    let guard = OsFs.lock_dir(dir.path()).unwrap();
    assert_eq!(names(dir.path()), before, "locking added an entry");

    // The second attempt runs on another thread so that a lock that waited would fail the test
    // instead of hanging it.
    let (sender, receiver) = mpsc::channel();
    let path = dir.path().to_path_buf();
    std::thread::spawn(move || {
        let result = OsFs.lock_dir(&path).map(|_guard| ());
        sender.send(result).unwrap();
    });
    let second = receiver
        .recv_timeout(Duration::from_secs(10))
        .expect("a second lock_dir waited instead of failing at once");
    assert_eq!(second.unwrap_err().kind(), ErrorKind::WouldBlock);

    drop(guard);
    let again = OsFs
        .lock_dir(dir.path())
        .expect("the lock is free once the guard is dropped");
    assert_eq!(names(dir.path()), before);
    drop(again);
}

// IO-3: dropping the guard frees the directory even while a child forked by another thread
// still holds copies of the process's descriptors (between its fork and its exec): the guard
// unlocks before it closes. Closing alone left the lock held until the child's exec, and a
// test that reopened a store right after closing it was refused as locked.
#[test]
fn io_3_a_dropped_lock_is_free_while_a_forked_child_holds_its_descriptor() {
    use std::io::{Read, Write};
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let guard = OsFs.lock_dir(dir.path()).unwrap();
    let (mut forked, mut tell) = std::io::pipe().unwrap();
    let (mut wait, mut release) = std::io::pipe().unwrap();
    let mut child = std::process::Command::new("true");
    // Runs in the child after the fork, before the exec: it holds every descriptor of this
    // process, the lock's among them, until the test lets it go on. Only write(2) and read(2).
    #[allow(unsafe_code)]
    unsafe {
        child.pre_exec(move || {
            tell.write_all(b"f")?;
            let mut b = [0u8; 1];
            wait.read_exact(&mut b)?;
            Ok(())
        });
    }
    let spawner = std::thread::spawn(move || child.status());
    let mut b = [0u8; 1];
    forked.read_exact(&mut b).expect("the child forked");
    drop(guard);
    let again = OsFs.lock_dir(dir.path()).map(|_| ());
    release.write_all(b"g").unwrap();
    let status = spawner.join().unwrap().expect("the child ran");
    assert!(status.success());
    again.expect("IO-3: the lock is free once the guard is dropped, whoever shares the descriptor");
}

// IO-3: locking a directory that does not exist fails (it is not created).
#[test]
fn io_3_lock_dir_of_a_missing_directory_fails() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let err = OsFs.lock_dir(&missing).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(OsFs.metadata(&missing).unwrap(), None);
}

// IO-5: entries come back sorted by name in byte order, whatever order they were made in, with
// their kind and length.
#[test]
fn io_5_read_dir_is_sorted_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut made = Vec::new();
    for i in 0..64 {
        // 37 is coprime with 64, so this visits every number once, out of order.
        let name = format!("log.{}", (i * 37) % 64);
        create_file(&dir.path().join(&name), name.as_bytes());
        made.push(name);
    }
    for name in ["b", "B", "a", "Z", "10", "9"] {
        OsFs.create_dir_all(&dir.path().join(name)).unwrap();
        made.push(name.to_string());
    }

    let entries = OsFs.read_dir(dir.path()).unwrap();
    let mut expected = made.clone();
    expected.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let listed: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(listed, expected);
    assert_eq!(&listed[..4], ["10", "9", "B", "Z"]);
    for entry in &entries {
        if entry.name.starts_with("log.") {
            assert!(!entry.is_dir);
            assert_eq!(entry.len, entry.name.len() as u64);
        } else {
            assert!(entry.is_dir);
            assert_eq!(entry.len, 0);
        }
    }
}

// IO-6: the filesystem seam is synchronous: it works on a plain thread with no runtime, through
// positioned reads and writes.
#[test]
fn io_6_fs_seam_works_without_a_runtime() {
    assert!(tokio::runtime::Handle::try_current().is_err());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records");

    assert_eq!(
        OsFs.open(&path, OpenMode::Read).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let file = OsFs.open(&path, OpenMode::CreateNew).unwrap();
    assert_eq!(
        OsFs.open(&path, OpenMode::CreateNew).unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    file.write_all_at(b"world", 6).unwrap();
    file.write_all_at(b"hello ", 0).unwrap();
    file.sync().unwrap();
    assert_eq!(file.len().unwrap(), 11);

    let mut buf = [0; 5];
    file.read_exact_at(&mut buf, 6).unwrap();
    assert_eq!(&buf, b"world");
    let mut tail = [0; 8];
    assert_eq!(file.read_fully_at(&mut tail, 6).unwrap(), 5);
    assert_eq!(
        file.read_exact_at(&mut tail, 6).unwrap_err().kind(),
        ErrorKind::UnexpectedEof
    );

    file.set_len(5).unwrap();
    drop(file);
    let reopened = OsFs.open(&path, OpenMode::ReadWriteCreate).unwrap();
    assert_eq!(reopened.len().unwrap(), 5);
    drop(reopened);
    let truncated = OsFs.open(&path, OpenMode::CreateTruncate).unwrap();
    assert_eq!(truncated.len().unwrap(), 0);
    drop(truncated);

    let renamed = dir.path().join("records.old");
    OsFs.rename(&path, &renamed).unwrap();
    OsFs.sync_dir(dir.path()).unwrap();
    assert_eq!(OsFs.metadata(&path).unwrap(), None);
    OsFs.remove_file(&renamed).unwrap();
    assert_eq!(names(dir.path()), Vec::<String>::new());
    assert!(OsFs.available_space(dir.path()).unwrap() > 0);
}

// IO-6: the network seam is asynchronous: OsNet binds and connects over tokio's TCP, and bytes
// flow both ways.
#[tokio::test]
async fn io_6_os_net_binds_and_connects_on_loopback() {
    let mut listener = OsNet.bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    assert!(addr.ip().is_loopback());
    assert_ne!(addr.port(), 0);

    let client = tokio::spawn(async move {
        let mut stream = OsNet.connect(&addr.to_string()).await.unwrap();
        stream.write_all(b"ping").await.unwrap();
        let mut reply = [0; 4];
        stream.read_exact(&mut reply).await.unwrap();
        reply
    });
    let (mut stream, peer) = listener.accept().await.unwrap();
    assert!(peer.ip().is_loopback());
    let mut request = [0; 4];
    stream.read_exact(&mut request).await.unwrap();
    assert_eq!(&request, b"ping");
    stream.write_all(b"pong").await.unwrap();
    assert_eq!(&client.await.unwrap(), b"pong");
}

/// How many bytes a server can send to a client that connected with `connect_paced(hint)` and
/// reads nothing: the server writes until its writes have stalled for 300 ms.
async fn unread_capacity(hint: usize) -> usize {
    let mut listener = OsNet.bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let client = OsNet.connect_paced(&addr, hint).await.unwrap();
    let (mut stream, _) = listener.accept().await.unwrap();
    let chunk = vec![7u8; 64 << 10];
    let mut sent = 0;
    while let Ok(n) = tokio::time::timeout(Duration::from_millis(300), stream.write(&chunk)).await {
        sent += n.unwrap();
        assert!(
            sent < 256 << 20,
            "the server was never held back: {sent} bytes"
        );
    }
    drop(client);
    sent
}

// IO-14: connect_paced sets the receive buffer before connecting, so what a client that does not
// read lets the server send grows with the hint: a small hint holds the server back megabytes
// sooner than a large one.
#[tokio::test]
async fn io_14_connect_paced_bounds_what_the_server_can_send_unread() {
    let small = unread_capacity(64 << 10).await;
    let large = unread_capacity(8 << 20).await;
    assert!(
        large >= small + (4 << 20),
        "IO-14: a 64 KiB hint let the server send {small} bytes unread, an 8 MiB one {large}"
    );
    let mut listener = OsNet.bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let client = tokio::spawn(async move {
        let mut stream = OsNet
            .connect_paced(&format!("localhost:{port}"), 64 << 10)
            .await
            .unwrap();
        stream.write_all(b"ping").await.unwrap();
    });
    let (mut stream, _) = listener.accept().await.unwrap();
    let mut request = [0; 4];
    stream.read_exact(&mut request).await.unwrap();
    assert_eq!(&request, b"ping", "IO-14: a paced connection carries bytes");
    client.await.unwrap();
    let refused = OsNet
        .connect_paced("no-such-host.invalid:1", 64 << 10)
        .await;
    assert!(refused.is_err(), "IO-14: an unresolvable name is an error");
}

// IO-4: the production clock is the system clock.
#[test]
fn io_4_os_clock_reads_the_system_clock() {
    let millis = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let before = millis(SystemTime::now());
    let now = OsClock.now();
    let now_millis = OsClock.now_millis();
    let after = millis(SystemTime::now());
    assert!(before <= millis(now) && millis(now) <= after);
    assert!(before <= now_millis && now_millis <= after);
}

#[test]
fn io_15_os_monotonic_clock_measures_elapsed_time() {
    // The outside measure encloses the inside one, so inside <= outside holds however the
    // thread is scheduled.
    let started = std::time::Instant::now();
    let mark = OsClock.monotonic();
    std::thread::sleep(std::time::Duration::from_millis(30));
    let measured = OsClock.since(mark);
    let outside = started.elapsed();
    assert!(
        measured >= std::time::Duration::from_millis(30) && measured <= outside,
        "IO-15: 30 ms slept measured as {measured:?} (from outside {outside:?})"
    );
    assert!(
        OsClock.monotonic() >= mark + measured,
        "IO-15: the monotonic clock went back"
    );
}

// IO-10: in production, blocking work runs off the async workers: on a one-thread runtime, a
// job that blocks for 300 ms leaves the runtime free to run other tasks meanwhile, gives back
// what it returned, and a panic in it reaches the caller.
#[test]
fn io_10_blocking_work_runs_off_the_async_workers() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let env = online_backup::io::Env::os();
        let ticks = Arc::new(AtomicU64::new(0));
        let counter = ticks.clone();
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
        let answer = env
            .blocking(|| {
                std::thread::sleep(Duration::from_millis(300));
                42
            })
            .await;
        ticker.abort();
        assert_eq!(answer, 42, "IO-10: the job's result comes back");
        assert!(
            ticks.load(Ordering::SeqCst) >= 10,
            "IO-10: the runtime was stalled while the job blocked ({} ticks)",
            ticks.load(Ordering::SeqCst)
        );
        let panicked = tokio::spawn(async move {
            online_backup::io::Env::os()
                .blocking(|| panic!("injected"))
                .await
        })
        .await;
        assert!(
            panicked.is_err_and(|e| e.is_panic()),
            "IO-10: a panic in the job reaches the caller"
        );
    });
}

// IO-12: the production `run_all` runs its jobs at once (two jobs that each wait for the other
// finish), they may borrow from the caller, and a panic in one resumes in the caller.
#[test]
fn io_12_run_all_runs_jobs_at_once_and_resumes_a_panic() {
    use online_backup::io::os::OsBlocking;
    use online_backup::io::Blocking;
    use std::sync::Barrier;
    assert!(OsBlocking.width() >= 1, "IO-12: at least one job at a time");
    let barrier = Barrier::new(2);
    let mut done = [false, false];
    let (a, b) = done.split_at_mut(1);
    let (barrier_a, barrier_b) = (&barrier, &barrier);
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            OsBlocking.run_all(vec![
                Box::new(move || {
                    barrier_a.wait();
                    a[0] = true;
                }),
                Box::new(move || {
                    barrier_b.wait();
                    b[0] = true;
                }),
            ]);
            tx.send(()).unwrap();
        });
        assert!(
            rx.recv_timeout(Duration::from_secs(30)).is_ok(),
            "IO-12: two jobs waiting for each other finished (they ran at once)"
        );
    });
    assert_eq!(
        done,
        [true, true],
        "IO-12: both jobs wrote what they borrowed"
    );
    let caught = std::panic::catch_unwind(|| {
        OsBlocking.run_all(vec![Box::new(|| {}), Box::new(|| panic!("job failed"))]);
    });
    assert!(
        caught.is_err(),
        "IO-12: a job's panic resumes in the caller"
    );
}

// IO-13: a read-ahead window serves reads inside it without reading the file, refills from a
// read's offset otherwise, lets a read as large as the window through, and reads the file again
// once emptied.
#[test]
fn io_13_read_ahead_serves_from_its_window_and_refills() {
    use online_backup::io::{FileHandle, ReadAhead};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let bytes: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    create_file(&path, &bytes);
    let ahead = ReadAhead::new(OsFs.open(&path, OpenMode::ReadWrite).unwrap(), 100);
    let mut buf = [0u8; 10];
    ahead.read_exact_at(&mut buf, 50).unwrap();
    assert_eq!(buf[..], bytes[50..60], "IO-13");
    // Changed behind the window's back: a read inside the window still sees the old bytes,
    // which is why only bytes that never change may be read through one.
    std::fs::write(&path, vec![7u8; 1000]).unwrap();
    ahead.read_exact_at(&mut buf, 140).unwrap();
    assert_eq!(
        buf[..],
        bytes[140..150],
        "IO-13: a read inside the window is served from it"
    );
    ahead.read_exact_at(&mut buf, 145).unwrap();
    assert_eq!(
        buf[..],
        [7u8; 10],
        "IO-13: a read past the window's end refills it from the file"
    );
    ahead.forget();
    ahead.read_exact_at(&mut buf, 50).unwrap();
    assert_eq!(
        buf[..],
        [7u8; 10],
        "IO-13: an emptied window reads the file"
    );
    let mut big = [0u8; 100];
    ahead.read_exact_at(&mut big, 900).unwrap();
    assert_eq!(big[..], [7u8; 100], "IO-13: a read as large as the window");
    let mut tail = [0u8; 10];
    assert_eq!(
        ahead.read_at(&mut tail, 995).unwrap(),
        5,
        "IO-13: a window cut by the end of the file"
    );
}
