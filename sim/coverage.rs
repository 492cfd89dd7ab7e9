//! Coverage counted over the seeds of a scenario (SIM-38): which faults struck in which phase of
//! a backup run, and what the workload was doing meanwhile. Each run reports the cells its
//! faults hit; the runner adds them up over the seeds it ran, prints the tables and, once it ran
//! at least the scenario's default number of seeds, fails if a cell that can be hit never was.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::seams::{BackupPhase, FaultKind, Fired};

/// A table of counts a scenario declares: rows, columns, which cells can be hit at all, and
/// whether each of those must be.
#[derive(Clone, Copy)]
pub struct TableSpec {
    pub name: &'static str,
    pub rows: &'static [&'static str],
    pub columns: &'static [&'static str],
    /// Whether the cell (row, column) can be hit at all.
    pub possible: fn(&str, &str) -> bool,
    /// Whether every possible cell must be hit (once the default number of seeds ran).
    pub required: bool,
}

/// One cell: how often it was hit, and the lowest seed that hit it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cell {
    pub count: u64,
    pub first_seed: u64,
}

/// Counts by (table, row, column).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    cells: BTreeMap<(String, String, String), Cell>,
}

/// The table of faults by the phase of the backup run they struck in (SIM-38).
pub const BY_PHASE: &str = "faults by phase";
/// The table of faults by what the workload was doing when they struck (SIM-38).
pub const BY_WORKLOAD: &str = "faults by workload";

const FAULT_ROWS: &[&str] = &[
    "read EIO",
    "write EIO",
    "fsync EIO",
    "bit flip on read",
    "disk full",
    "clock +days",
    "clock -minutes",
    "latency",
    "reset",
    "stall",
];
const PHASE_COLUMNS: &[&str] = &[
    "handshake",
    "file copy",
    "tx stream",
    "apply",
    "verify",
    "switch",
];
/// What the workload can be doing (`backup_io_faults`' probe).
pub const WORKLOADS: &[&str] = &["committing", "between commits", "paused"];

fn phase_possible(row: &str, column: &str) -> bool {
    let kind = FaultKind::ALL.iter().find(|k| k.name() == row);
    let phase = BackupPhase::ALL.iter().find(|p| p.name() == column);
    match (kind, phase) {
        (Some(k), Some(p)) => k.phases().contains(p),
        _ => false,
    }
}

fn any_cell(_: &str, _: &str) -> bool {
    true
}

/// The faults-by-phase table: every cell a fault can strike in must be hit.
pub const PHASE_TABLE: TableSpec = TableSpec {
    name: BY_PHASE,
    rows: FAULT_ROWS,
    columns: PHASE_COLUMNS,
    possible: phase_possible,
    required: true,
};

/// The faults-by-workload table: printed, not required.
pub const WORKLOAD_TABLE: TableSpec = TableSpec {
    name: BY_WORKLOAD,
    rows: FAULT_ROWS,
    columns: WORKLOADS,
    possible: any_cell,
    required: false,
};

/// The table of object store faults that struck (SIM-40), over `backup_objects`' seeds.
pub const BY_OBJECT_FAULT: &str = "object store faults";

/// The object store faults table: each must strike a backup run and an aggregation in some
/// seed.
pub const OBJECT_TABLE: TableSpec = TableSpec {
    name: BY_OBJECT_FAULT,
    rows: &["put fails", "put lost", "slow list"],
    columns: &["backup", "aggregate"],
    possible: any_cell,
    required: true,
};

impl Coverage {
    /// The cells the object store faults of one seed (`seed`) hit, by the operation they were
    /// armed for (SIM-40).
    pub fn of_objects(
        counts: &BTreeMap<&'static str, crate::seams::ObjectFaultCounts>,
        seed: u64,
    ) -> Coverage {
        let mut c = Coverage::default();
        for (during, counts) in counts {
            for (row, n) in [
                ("put fails", counts.put_fails),
                ("put lost", counts.put_lost),
                ("slow list", counts.slow_lists),
            ] {
                for _ in 0..n {
                    c.hit(BY_OBJECT_FAULT, row, during, seed);
                }
            }
        }
        c
    }

    pub fn hit(&mut self, table: &str, row: &str, column: &str, seed: u64) {
        let cell = self
            .cells
            .entry((table.to_string(), row.to_string(), column.to_string()))
            .or_insert(Cell {
                count: 0,
                first_seed: seed,
            });
        cell.count += 1;
        cell.first_seed = cell.first_seed.min(seed);
    }

    /// The cells the faults of one run (seed `seed`) hit.
    pub fn of_fired(fired: &[Fired], seed: u64) -> Coverage {
        let mut c = Coverage::default();
        for f in fired {
            c.hit(BY_PHASE, f.kind.name(), f.phase.name(), seed);
            c.hit(BY_WORKLOAD, f.kind.name(), f.workload, seed);
        }
        c
    }

    pub fn merge(&mut self, other: &Coverage) {
        for ((t, r, c), cell) in &other.cells {
            let mine = self
                .cells
                .entry((t.clone(), r.clone(), c.clone()))
                .or_insert(Cell {
                    count: 0,
                    first_seed: cell.first_seed,
                });
            mine.count += cell.count;
            mine.first_seed = mine.first_seed.min(cell.first_seed);
        }
    }

    pub fn cell(&self, table: &str, row: &str, column: &str) -> Option<Cell> {
        self.cells
            .get(&(table.to_string(), row.to_string(), column.to_string()))
            .copied()
    }

    /// The possible cells of `spec` never hit.
    pub fn missing(&self, spec: &TableSpec) -> Vec<(&'static str, &'static str)> {
        let mut out = Vec::new();
        for &row in spec.rows {
            for &column in spec.columns {
                if (spec.possible)(row, column) && self.cell(spec.name, row, column).is_none() {
                    out.push((row, column));
                }
            }
        }
        out
    }

    /// The lowest seed at which a fault of `row` struck.
    pub fn first_seed(&self, spec: &TableSpec, row: &str) -> Option<u64> {
        spec.columns
            .iter()
            .filter_map(|c| self.cell(spec.name, row, c))
            .map(|c| c.first_seed)
            .min()
    }

    /// The table as text: counts, `-` for a cell that cannot be hit, `0` for one that can and
    /// was not.
    pub fn render(&self, spec: &TableSpec) -> String {
        let first = spec.rows.iter().map(|r| r.len()).max().unwrap_or(0).max(5);
        let widths: Vec<usize> = spec.columns.iter().map(|c| c.len().max(5)).collect();
        let mut out = format!("{}:\n{:first$}", spec.name, "");
        for (c, w) in spec.columns.iter().zip(&widths) {
            let _ = write!(out, "  {c:>w$}");
        }
        out.push('\n');
        for &row in spec.rows {
            let _ = write!(out, "{row:first$}");
            for (&column, w) in spec.columns.iter().zip(&widths) {
                let shown = match self.cell(spec.name, row, column) {
                    Some(cell) => cell.count.to_string(),
                    None if (spec.possible)(row, column) => "0".to_string(),
                    None => "-".to_string(),
                };
                let _ = write!(out, "  {shown:>w$}");
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_38_the_table_counts_and_names_what_was_never_hit() {
        let mut c = Coverage::default();
        c.hit(BY_PHASE, "reset", "handshake", 7);
        c.hit(BY_PHASE, "reset", "handshake", 3);
        let mut other = Coverage::default();
        other.hit(BY_PHASE, "reset", "file copy", 1);
        c.merge(&other);
        assert_eq!(
            c.cell(BY_PHASE, "reset", "handshake"),
            Some(Cell {
                count: 2,
                first_seed: 3
            }),
            "SIM-38: counts add up, the first seed is the lowest"
        );
        let missing = c.missing(&PHASE_TABLE);
        assert!(
            missing.contains(&("reset", "tx stream")) && !missing.contains(&("reset", "switch")),
            "SIM-38: a possible cell never hit is missing, an impossible one is not: {missing:?}"
        );
        assert_eq!(c.first_seed(&PHASE_TABLE, "reset"), Some(1), "SIM-38");
        let text = c.render(&PHASE_TABLE);
        assert!(
            text.lines().any(|l| l.starts_with("reset")
                && l.split_whitespace().collect::<Vec<_>>()[1..] == ["2", "1", "0", "0", "0", "-"]),
            "SIM-38: the row shows counts, 0 and -: {text}"
        );
    }

    #[test]
    fn sim_38_every_fault_and_phase_has_its_row_and_column() {
        for k in FaultKind::ALL {
            assert!(FAULT_ROWS.contains(&k.name()), "SIM-38: row {}", k.name());
            for p in k.phases() {
                assert!(
                    phase_possible(k.name(), p.name()),
                    "SIM-38: {} in {}",
                    k.name(),
                    p.name()
                );
            }
        }
        for p in BackupPhase::ALL {
            assert!(
                PHASE_COLUMNS.contains(&p.name()),
                "SIM-38: column {}",
                p.name()
            );
        }
    }
}
