//! The store's behaviour through its library API on real files: commits, refusals, locking,
//! rotation, recovery, upgrade and the consistency check.

#[path = "../support/mod.rs"]
mod support;

use std::path::Path;

use online_backup::graph::{NodeRef, Op, Properties, Value};
use online_backup::store::check::check;
use online_backup::store::format::{FormatVersion, RecordKind};
use online_backup::store::generate::{generate, GenerateSpec};
use online_backup::store::log::{list_log_versions, log_path};
use online_backup::store::meta::Meta;
use online_backup::store::upgrade::{upgrade, UpgradeOutcome};
use online_backup::store::{Store, StoreError, StoreOptions, TxRejection};
use support::*;

mod check_passes;
mod commit_group;
mod logs;
mod records;
mod recovery;
mod retention;
mod tools;

pub fn props(pairs: &[(&str, Value)]) -> Properties {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

pub fn node(labels: &[&str]) -> Op {
    Op::CreateNode {
        labels: labels.iter().map(|s| s.to_string()).collect(),
        props: props(&[("name", Value::String("x".into()))]),
    }
}

pub fn rel(from: NodeRef, to: NodeRef) -> Op {
    Op::CreateRelationship {
        from,
        to,
        rel_type: "KNOWS".into(),
        props: Properties::new(),
    }
}

pub fn open(dir: &Path) -> Result<Store, StoreError> {
    Store::open(fs(), clock(), dir, &StoreOptions::default())
}

pub fn create(dir: &Path) -> Store {
    create_on(fs(), dir)
}

/// A new store in `dir` on the filesystem `on` (a faulty one, say).
pub fn create_on(on: std::sync::Arc<dyn online_backup::io::Fs>, dir: &Path) -> Store {
    Store::create(
        on,
        clock(),
        dir,
        &StoreOptions::default(),
        FormatVersion::CURRENT,
        1,
    )
    .unwrap()
}
