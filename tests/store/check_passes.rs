//! `check`'s two passes agree (ADM-11): on random graphs, whole or with a byte of a record file
//! changed, the report of `check` (the fast pass, falling back to the exact one) is the exact
//! pass's, finding for finding. Format 1 stores carry no record checksums, so a changed byte
//! becomes a damaged pointer, flag or payload that only the consistency rules can catch.

use online_backup::io::os::OsBlocking;
use online_backup::store::check::{check_open_exact, check_open_ranged};
use proptest::prelude::*;

use super::*;

/// One step of a random workload over nodes `0 .. n`.
#[derive(Clone, Debug)]
enum Step {
    Node(u8),
    Rel(u16, u16),
    DeleteRel(u16),
    Prop(u16, u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => any::<u8>().prop_map(Step::Node),
        4 => (any::<u16>(), any::<u16>()).prop_map(|(a, b)| Step::Rel(a, b)),
        1 => any::<u16>().prop_map(Step::DeleteRel),
        1 => (any::<u16>(), any::<u8>()).prop_map(|(n, v)| Step::Prop(n, v)),
    ]
}

/// A format-1 store holding what `steps` built (steps that are refused are skipped).
fn build(dir: &Path, steps: &[Step]) {
    let mut store = Store::create(
        fs(),
        clock(),
        dir,
        &StoreOptions::default(),
        FormatVersion::V1,
        1,
    )
    .unwrap();
    let (mut nodes, mut rels) = (0u64, Vec::<u64>::new());
    for s in steps {
        let op = match *s {
            Step::Node(len) => Op::CreateNode {
                labels: vec!["L".into()],
                props: props(&[("p", Value::String("v".repeat(len as usize)))]),
            },
            Step::Rel(_, _) | Step::Prop(_, _) if nodes == 0 => continue,
            Step::Rel(a, b) => rel(NodeRef::Id(a as u64 % nodes), NodeRef::Id(b as u64 % nodes)),
            Step::DeleteRel(_) if rels.is_empty() => continue,
            Step::DeleteRel(i) => Op::DeleteRelationship(rels.remove(i as usize % rels.len())),
            Step::Prop(n, v) => Op::SetProperty {
                node: NodeRef::Id(n as u64 % nodes),
                key: "q".into(),
                value: Value::Int(v as i64),
            },
        };
        let created_rel = matches!(op, Op::CreateRelationship { .. });
        if let Ok(out) = store.commit(&[op]) {
            match (created_rel, out.ids.first()) {
                (true, Some(&id)) => rels.push(id),
                (false, Some(_)) => nodes += 1,
                _ => {}
            }
        }
    }
    store.close().unwrap();
}

/// Both passes over the store in `dir`, the fast one in ranges of two records' worth on up to
/// four threads, so that its jobs split every file.
fn both(dir: &Path) -> (CheckReport, CheckReport) {
    let store = open(dir).unwrap();
    let fast = check_open_ranged(&store, &OsBlocking, 64, &mut |_, _| {}).unwrap();
    let exact = check_open_exact(&store).unwrap();
    (fast, exact)
}

use online_backup::store::check::CheckReport;

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn adm_11_the_passes_agree_on_whole_and_damaged_stores(
        steps in proptest::collection::vec(step(), 1..60),
        which in 0usize..3,
        at in any::<prop::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let dir = scratch();
        build(dir.path(), &steps);
        let (fast, exact) = both(dir.path());
        prop_assert!(exact.consistent, "ADM-11: a store the product built is consistent: {:?}", exact.findings);
        prop_assert_eq!(&fast, &exact, "ADM-11: the passes agree on a whole store");

        let file = dir.path().join(RecordKind::ALL[which].file_name());
        let mut bytes = std::fs::read(&file).unwrap();
        if bytes.is_empty() {
            return Ok(());
        }
        let i = at.index(bytes.len());
        bytes[i] ^= xor;
        std::fs::write(&file, &bytes).unwrap();
        let (fast, exact) = both(dir.path());
        prop_assert_eq!(fast, exact, "ADM-11: the passes agree on a damaged store");
    }
}

// ADM-11: damage that keeps every record well formed, a relationship chain's link pointing at
// another relationship of the same node, is found by the fast pass's sums (it falls back, and
// the report names the link).
#[test]
fn adm_11_a_crossed_link_is_not_proven_consistent() {
    let dir = scratch();
    let steps: Vec<Step> = (0..4)
        .map(|_| Step::Node(3))
        .chain((0..6).map(|i| Step::Rel(0, i % 4)))
        .collect();
    build(dir.path(), &steps);
    let file = dir.path().join(RecordKind::Rel.file_name());
    let size = RecordKind::Rel.size(FormatVersion::V1);
    let mut bytes = std::fs::read(&file).unwrap();
    let mut rec = online_backup::store::format::RelRecord::decode(
        FormatVersion::V1,
        &bytes[2 * size..3 * size],
    )
    .unwrap();
    assert_eq!(rec.start, 0);
    // Its successor in node 0's chain skips one relationship.
    rec.start_next = if rec.start_next == 0 { 1 } else { 0 };
    bytes[2 * size..3 * size].copy_from_slice(&rec.encode(FormatVersion::V1));
    std::fs::write(&file, &bytes).unwrap();
    let (fast, exact) = both(dir.path());
    assert!(!exact.consistent, "ADM-11: the damage is real");
    assert_eq!(
        fast, exact,
        "ADM-11: the fast pass does not prove it consistent"
    );
}

// ADM-11: two records whose payload chains claim the same block (and so leave the other's
// block claimed by none) are found by the fast pass's block sums, which keep no bit per block:
// it falls back, and the report is the exact pass's.
#[test]
fn adm_11_a_block_claimed_twice_is_not_proven_consistent() {
    let dir = scratch();
    let steps: Vec<Step> = (0..3).map(|_| Step::Node(3)).collect();
    build(dir.path(), &steps);
    let file = dir.path().join(RecordKind::Node.file_name());
    let size = RecordKind::Node.size(FormatVersion::V1);
    let mut bytes = std::fs::read(&file).unwrap();
    let node = |bytes: &[u8], id: usize| {
        online_backup::store::format::NodeRecord::decode(
            FormatVersion::V1,
            &bytes[id * size..(id + 1) * size],
        )
        .unwrap()
    };
    let (first, mut second) = (node(&bytes, 0), node(&bytes, 1));
    assert_eq!(first.payload_len, second.payload_len, "the same payload");
    assert_ne!(first.payload_block, second.payload_block);
    second.payload_block = first.payload_block;
    bytes[size..2 * size].copy_from_slice(&second.encode(FormatVersion::V1));
    std::fs::write(&file, &bytes).unwrap();
    let (fast, exact) = both(dir.path());
    assert!(!exact.consistent, "ADM-11: the damage is real");
    assert_eq!(
        fast, exact,
        "ADM-11: the fast pass does not prove a block claimed twice consistent"
    );
}
