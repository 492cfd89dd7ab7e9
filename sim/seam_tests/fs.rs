//! The simulated filesystem: durability across power loss, locks, sorted listings, inode
//! semantics, free space (SIM-7 .. SIM-9, IO-5).

use super::*;

#[test]
fn sim_7_unsynced_write_is_lost_on_power_loss() {
    // SIM-7: only what was synced survives; the overwrite after the sync is lost.
    run_phases(
        "unsynced_write",
        &[
            |env, _| {
                make_dir(env, "/d")?;
                write_durable(env, "/d/f", b"synced")?;
                let f = env
                    .fs
                    .open(p("/d/f"), OpenMode::ReadWrite)
                    .map_err(e("open"))?;
                f.write_all_at(b"LOST!!-and-more", 0).map_err(e("write"))?;
                expect(
                    "before the crash",
                    read_all(env, "/d/f")?,
                    b"LOST!!-and-more".to_vec(),
                )
            },
            |env, _| {
                expect(
                    "after the crash",
                    read_all(env, "/d/f")?,
                    b"synced".to_vec(),
                )
            },
        ],
    );
}

#[test]
fn sim_7_synced_file_without_dir_sync_is_lost() {
    // SIM-7: a new file needs its directory entry synced too.
    run_phases(
        "no_dir_sync",
        &[
            |env, _| {
                make_dir(env, "/d")?;
                let f = env
                    .fs
                    .open(p("/d/f"), OpenMode::CreateNew)
                    .map_err(e("open"))?;
                f.write_all_at(b"data", 0).map_err(e("write"))?;
                f.sync().map_err(e("sync"))
            },
            |env, _| {
                let m = env.fs.metadata(p("/d/f")).map_err(e("metadata"))?;
                expect("the file after the crash", m, None)
            },
        ],
    );
}

#[test]
fn sim_7_a_directory_sync_does_not_make_a_files_data_durable() {
    // SIM-7: syncing the directory makes the new name durable, not the bytes written to the
    // file: without the file's own sync they are lost (the file comes back empty).
    run_phases(
        "dir_sync_only",
        &[
            |env, _| {
                make_dir(env, "/d")?;
                let f = env
                    .fs
                    .open(p("/d/f"), OpenMode::CreateNew)
                    .map_err(e("open"))?;
                f.write_all_at(b"data", 0).map_err(e("write"))?;
                env.fs.sync_dir(p("/d")).map_err(e("sync_dir"))
            },
            |env, _| {
                let data = match env.fs.metadata(p("/d/f")).map_err(e("metadata"))? {
                    Some(_) => read_all(env, "/d/f")?,
                    None => Vec::new(),
                };
                expect(
                    "SIM-7: the unsynced bytes after the crash",
                    data,
                    Vec::new(),
                )
            },
        ],
    );
}

#[test]
fn sim_7_rename_is_durable_only_after_sync_dir() {
    // SIM-7: a rename is a directory change; IO-2: write_atomic is durable once it returns.
    run_phases(
        "rename_durability",
        &[
            |env, _| {
                make_dir(env, "/d")?;
                write_durable(env, "/d/a", b"old")?;
                write_durable(env, "/d/a.tmp", b"new")?;
                env.fs
                    .rename(p("/d/a.tmp"), p("/d/a"))
                    .map_err(e("rename"))?;
                expect("before the crash", read_all(env, "/d/a")?, b"new".to_vec())
            },
            |env, _| {
                expect("a after the crash", read_all(env, "/d/a")?, b"old".to_vec())?;
                expect(
                    "a.tmp after the crash",
                    read_all(env, "/d/a.tmp")?,
                    b"new".to_vec(),
                )?;
                env.fs
                    .rename(p("/d/a.tmp"), p("/d/a"))
                    .map_err(e("rename"))?;
                env.fs.sync_dir(p("/d")).map_err(e("sync_dir"))
            },
            |env, _| {
                expect("a", read_all(env, "/d/a")?, b"new".to_vec())?;
                let tmp = env.fs.metadata(p("/d/a.tmp")).map_err(e("metadata"))?;
                expect("a.tmp", tmp, None)?;
                write_atomic(&*env.fs, p("/d/a"), b"newer").map_err(e("write_atomic"))
            },
            |env, _| {
                expect("a", read_all(env, "/d/a")?, b"newer".to_vec())?;
                let names: Vec<String> = env
                    .fs
                    .read_dir(p("/d"))
                    .map_err(e("read_dir"))?
                    .into_iter()
                    .map(|d| d.name)
                    .collect();
                expect("entries", names, vec!["a".to_string()])
            },
        ],
    );
}

#[test]
fn sim_8_held_lock_refuses_a_second_holder() {
    // IO-3, SIM-8: the lock never waits; dropping the guard releases it.
    run_phases(
        "lock_busy",
        &[|env, _| {
            make_dir(env, "/d")?;
            let guard = env.fs.lock_dir(p("/d")).map_err(e("lock"))?;
            match env.fs.lock_dir(p("/d")) {
                Err(err) if err.kind() == ErrorKind::WouldBlock => {}
                r => return Err(format!("second lock: {r:?}")),
            }
            drop(guard);
            let again = env.fs.lock_dir(p("/d")).map_err(e("lock after release"))?;
            drop(again);
            match env.fs.lock_dir(p("/nope")) {
                Err(err) if err.kind() == ErrorKind::NotFound => Ok(()),
                r => Err(format!("lock of a missing directory: {r:?}")),
            }
        }],
    );
}

#[test]
fn sim_8_separate_seams_of_one_host_share_the_lock_table() {
    // SIM-8: the table is per host, not per `SimFs`.
    simulate("lock_shared", |ctx| {
        let done = Arc::new(Mutex::new(None::<Result<(), String>>));
        let d = done.clone();
        ctx.host(HOST, move |h| {
            let d = d.clone();
            async move {
                let r = (|| {
                    make_dir(&h.env, "/d")?;
                    let _guard = h.env.fs.lock_dir(p("/d")).map_err(e("lock"))?;
                    let other = h.world.env(&h.name);
                    match other.fs.lock_dir(p("/d")) {
                        Err(err) if err.kind() == ErrorKind::WouldBlock => {}
                        r => return Err(format!("lock through other seams: {r:?}")),
                    }
                    Ok(())
                })();
                *d.lock().unwrap() = Some(r);
                std::future::pending::<()>().await;
                Ok(())
            }
        });
        let d = done.clone();
        ctx.run_until(100, "the host", move || d.lock().unwrap().is_some())?;
        let r = done.lock().unwrap().take().unwrap();
        r.map_err(Into::into)
    });
}

#[test]
fn sim_8_power_loss_releases_the_lock() {
    // IO-3, SIM-8: a crash clears the host's lock table, even of a guard never dropped.
    run_phases(
        "lock_crash",
        &[
            |env, keep| {
                make_dir(env, "/d")?;
                keep.push(Box::new(env.fs.lock_dir(p("/d")).map_err(e("lock"))?));
                let leaked = env.fs.lock_dir(p("/e"));
                if leaked.is_ok() {
                    return Err("locked a missing directory".into());
                }
                make_dir(env, "/e")?;
                std::mem::forget(env.fs.lock_dir(p("/e")).map_err(e("lock /e"))?);
                Ok(())
            },
            |env, _| {
                env.fs
                    .lock_dir(p("/d"))
                    .map_err(e("lock /d after the crash"))?;
                env.fs
                    .lock_dir(p("/e"))
                    .map_err(e("lock /e after the crash"))
                    .map(drop)
            },
        ],
    );
}

#[test]
fn io_5_read_dir_is_sorted_by_name() {
    run_phases(
        "read_dir_sorted",
        &[|env, _| {
            make_dir(env, "/d")?;
            for name in ["zeta", "alpha", "m", "b10", "b2", "B"] {
                write_durable(env, &format!("/d/{name}"), name.as_bytes())?;
            }
            env.fs.create_dir_all(p("/d/sub")).map_err(e("mkdir"))?;
            let entries = env.fs.read_dir(p("/d")).map_err(e("read_dir"))?;
            let names: Vec<&str> = entries.iter().map(|d| d.name.as_str()).collect();
            expect(
                "names",
                names,
                vec!["B", "alpha", "b10", "b2", "m", "sub", "zeta"],
            )?;
            let sub = entries.iter().find(|d| d.name == "sub").unwrap();
            let zeta = entries.iter().find(|d| d.name == "zeta").unwrap();
            expect("sub", (sub.is_dir, sub.len), (true, 0))?;
            expect("zeta", (zeta.is_dir, zeta.len), (false, 4))
        }],
    );
}

#[test]
fn sim_9_recreated_name_does_not_show_the_removed_file() {
    // SIM-9: turmoil keys data by path; a name removed (not yet durably) and created again
    // must start empty and keep what is synced into it.
    run_phases(
        "recreate_after_remove",
        &[
            |env, _| {
                make_dir(env, "/d")?;
                write_durable(env, "/d/f", b"the old, longer contents")?;
                write_durable(env, "/d/g", b"other old contents")?;
                env.fs.remove_file(p("/d/f")).map_err(e("remove"))?;
                let f = env
                    .fs
                    .open(p("/d/f"), OpenMode::CreateNew)
                    .map_err(e("create"))?;
                expect("new file length", f.len().map_err(e("len"))?, 0)?;
                f.write_all_at(b"new", 0).map_err(e("write"))?;
                f.sync().map_err(e("sync"))?;
                env.fs.rename(p("/d/g"), p("/d/h")).map_err(e("rename"))?;
                let g = env
                    .fs
                    .open(p("/d/g"), OpenMode::CreateNew)
                    .map_err(e("create g"))?;
                expect("new g length", g.len().map_err(e("len"))?, 0)?;
                g.write_all_at(b"g2", 0).map_err(e("write g"))?;
                g.sync().map_err(e("sync g"))?;
                env.fs.sync_dir(p("/d")).map_err(e("sync_dir"))?;
                expect("f", read_all(env, "/d/f")?, b"new".to_vec())
            },
            |env, _| {
                expect("f", read_all(env, "/d/f")?, b"new".to_vec())?;
                expect("g", read_all(env, "/d/g")?, b"g2".to_vec())?;
                expect("h", read_all(env, "/d/h")?, b"other old contents".to_vec())
            },
        ],
    );
}

#[test]
fn sim_9_removed_directory_does_not_come_back() {
    // SIM-9: after remove_dir_all and a crash, a directory made again under the same name is
    // empty (turmoil alone would show the old files there).
    run_phases(
        "remove_dir_all",
        &[
            |env, _| {
                make_dir(env, "/d/g/sub")?;
                env.fs.sync_dir(p("/d")).map_err(e("sync_dir /d"))?;
                env.fs.sync_dir(p("/d/g")).map_err(e("sync_dir /d/g"))?;
                write_durable(env, "/d/g/x", b"x")?;
                write_durable(env, "/d/g/sub/y", b"y")?;
                env.fs
                    .remove_dir_all(p("/d/g"))
                    .map_err(e("remove_dir_all"))?;
                expect(
                    "gone",
                    env.fs.metadata(p("/d/g")).map_err(e("metadata"))?,
                    None,
                )
            },
            |env, _| {
                env.fs.create_dir_all(p("/d/g/sub")).map_err(e("mkdir"))?;
                let top = env.fs.read_dir(p("/d/g")).map_err(e("read_dir"))?;
                let names: Vec<String> = top.into_iter().map(|d| d.name).collect();
                expect("/d/g", names, vec!["sub".to_string()])?;
                let sub = env.fs.read_dir(p("/d/g/sub")).map_err(e("read_dir"))?;
                expect("/d/g/sub", sub.len(), 0)
            },
        ],
    );
}

#[test]
fn sim_9_open_handles_follow_the_inode() {
    // SIM-9: a handle on a removed or replaced file keeps the old contents; a handle on a
    // renamed file follows it, and what it syncs is durable under the new name.
    run_phases(
        "open_handles",
        &[
            |env, keep| {
                make_dir(env, "/d")?;
                write_durable(env, "/d/old", b"old contents")?;
                let reader = env
                    .fs
                    .open(p("/d/old"), OpenMode::Read)
                    .map_err(e("open"))?;
                env.fs.remove_file(p("/d/old")).map_err(e("remove"))?;
                env.fs.sync_dir(p("/d")).map_err(e("sync_dir"))?;
                let mut buf = [0u8; 12];
                reader
                    .read_exact_at(&mut buf, 0)
                    .map_err(e("read orphan"))?;
                expect("orphan", &buf, b"old contents")?;

                write_durable(env, "/d/target", b"replaced")?;
                let on_target = env
                    .fs
                    .open(p("/d/target"), OpenMode::Read)
                    .map_err(e("open"))?;
                write_durable(env, "/d/src", b"")?;
                let writer = env
                    .fs
                    .open(p("/d/src"), OpenMode::ReadWrite)
                    .map_err(e("open"))?;
                writer.write_all_at(b"before ", 0).map_err(e("write"))?;
                env.fs
                    .rename(p("/d/src"), p("/d/target"))
                    .map_err(e("rename"))?;
                writer.write_all_at(b"after", 7).map_err(e("write"))?;
                writer.sync().map_err(e("sync"))?;
                env.fs.sync_dir(p("/d")).map_err(e("sync_dir"))?;
                let mut old = [0u8; 8];
                on_target
                    .read_exact_at(&mut old, 0)
                    .map_err(e("read replaced"))?;
                expect("replaced handle", &old, b"replaced")?;
                keep.push(Box::new(writer));
                Ok(())
            },
            |env, _| {
                expect(
                    "target",
                    read_all(env, "/d/target")?,
                    b"before after".to_vec(),
                )?;
                expect(
                    "old",
                    env.fs.metadata(p("/d/old")).map_err(e("metadata"))?,
                    None,
                )
            },
        ],
    );
}

#[test]
fn sim_9_non_empty_directory_rename_is_refused() {
    // SIM-9: refused loudly rather than losing the files turmoil cannot move.
    run_phases(
        "dir_rename",
        &[|env, _| {
            make_dir(env, "/d/full")?;
            write_durable(env, "/d/full/f", b"f")?;
            match env.fs.rename(p("/d/full"), p("/d/moved")) {
                Err(err) if err.kind() == ErrorKind::Unsupported => {}
                r => return Err(format!("rename of a non-empty directory: {r:?}")),
            }
            env.fs.create_dir_all(p("/d/empty")).map_err(e("mkdir"))?;
            env.fs
                .rename(p("/d/empty"), p("/d/renamed"))
                .map_err(e("rename of an empty directory"))?;
            let m = env.fs.metadata(p("/d/renamed")).map_err(e("metadata"))?;
            expect("renamed", m.map(|m| m.is_dir), Some(true))
        }],
    );
}

#[test]
fn sim_7_planned_power_loss_stops_the_host_at_that_operation() {
    // SIM-7: the n-th mutating operation and everything after it fail; nothing from it on is
    // durable.
    let trace = simulate("planned_power_loss", |ctx| {
        let outcome: Arc<Mutex<Vec<String>>> = Arc::default();
        let o = outcome.clone();
        ctx.host(HOST, move |h| {
            let o = o.clone();
            async move {
                {
                    let env = &h.env;
                    let mut log = o.lock().unwrap();
                    if make_dir(env, "/d").is_err() {
                        log.push("setup failed".into());
                    }
                    let f = env.fs.open(p("/d/f"), OpenMode::CreateNew).unwrap();
                    f.write_all_at(b"one", 0).unwrap();
                    h.world.power_loss_before_op(&h.name, 2);
                    log.push(format!("sync: {:?}", f.sync().map_err(|e| e.kind())));
                    log.push(format!(
                        "write: {:?}",
                        f.write_all_at(b"two", 3).map_err(|e| e.kind())
                    ));
                    log.push(format!(
                        "down: {} ops: {}",
                        h.is_down(),
                        h.world.mutating_ops(&h.name)
                    ));
                    log.push(format!(
                        "read: {:?}",
                        env.fs.metadata(p("/d")).map_err(|e| e.kind())
                    ));
                }
                std::future::pending::<()>().await;
                Ok(())
            }
        });
        let o = outcome.clone();
        let stopped = ctx.run_until(10, "the host", move || o.lock().unwrap().len() == 4)?;
        let got = outcome.lock().unwrap().clone();
        let want = vec![
            "sync: Ok(())".to_string(),
            "write: Err(Other)".to_string(),
            "down: true ops: 6".to_string(),
            "read: Err(Other)".to_string(),
        ];
        if got != want || stopped != crate::runner::Stopped::Done {
            return Err(format!("got {got:?} ({stopped:?})").into());
        }
        let o = outcome.clone();
        o.lock().unwrap().clear();
        match ctx.run_until(10, "a down host", || false) {
            Ok(crate::runner::Stopped::HostDown(h)) if h == HOST => {}
            r => return Err(format!("run_until on a down host: {r:?}").into()),
        }
        ctx.crash(HOST);
        if ctx.world.is_down(HOST) {
            return Err("still down after the crash".into());
        }
        Ok(())
    });
    assert!(trace
        .all()
        .unwrap()
        .iter()
        .any(|l| l.ends_with("power lost")));
}

#[test]
fn sim_7_cancelled_power_loss_does_not_strike() {
    // SIM-7: a planned loss that has not struck can be cancelled; the host goes on.
    simulate("cancelled_power_loss", |ctx| {
        ctx.power_loss_before_op(HOST, 1);
        if !ctx.world.power_loss_planned(HOST) {
            return Err("the loss is not planned".into());
        }
        ctx.cancel_power_loss(HOST);
        if ctx.world.power_loss_planned(HOST) {
            return Err("the loss is still planned after the cancel".into());
        }
        let done = Arc::new(Mutex::new(None));
        let d = done.clone();
        ctx.host(HOST, move |h| {
            let d = d.clone();
            async move {
                let r = make_dir(&h.env, "/d").and_then(|()| write_durable(&h.env, "/d/f", b"x"));
                *d.lock().unwrap() = Some(r.map(|()| h.is_down()));
                std::future::pending::<()>().await;
                Ok(())
            }
        });
        let d = done.clone();
        let stopped = ctx.run_until(10, "the host", move || d.lock().unwrap().is_some())?;
        let got = done.lock().unwrap().clone();
        if stopped != crate::runner::Stopped::Done || got != Some(Ok(false)) {
            return Err(format!("{stopped:?}: {got:?}").into());
        }
        Ok(())
    });
}

#[test]
fn sim_9_available_space_is_capacity_minus_usage() {
    // SIM-9: turmoil does not expose usage; SimFs computes it, and writes past it fail.
    run_phases(
        "available_space",
        &[|env, _| {
            make_dir(env, "/d")?;
            let before = env.fs.available_space(p("/d")).map_err(e("space"))?;
            expect("empty disk", before, EXACT.capacity)?;
            expect(
                "nothing else on the disk",
                read_dir_names(env, "/")?,
                vec!["d".into()],
            )?;
            write_durable(env, "/d/f", &[7u8; 1000])?;
            let after = env.fs.available_space(p("/d")).map_err(e("space"))?;
            expect("after 1000 bytes", after, EXACT.capacity - 1000)?;
            let f = env
                .fs
                .open(p("/d/big"), OpenMode::CreateNew)
                .map_err(e("open"))?;
            match f.write_all_at(&vec![0u8; EXACT.capacity as usize], 0) {
                Err(err) if err.kind() == ErrorKind::StorageFull => {}
                r => return Err(format!("a write past the capacity: {r:?}")),
            }
            // Errors carry the kind the operating system would give.
            match env.fs.sync_dir(p("/missing")) {
                Err(err) if err.kind() == ErrorKind::NotFound => Ok(()),
                r => Err(format!("sync_dir of a missing directory: {r:?}")),
            }
        }],
    );
}
