//! The matrix card second factor: a grid of digits printed for one user, of which Sekisho asks
//! three random cells through SSH keyboard-interactive.
//!
//! - The inventory form is policy's `user.matrix_card`: one string of digits per row, all rows
//!   the same length; rows are numbered 1, 2, … and columns lettered A, B, … (at most
//!   [`MAX_SIDE`] of each). A cell is named like `C3`, its value is one digit.
//! - [`issue`] makes a card of [`ISSUE_COLUMNS`] × [`ISSUE_ROWS`] (A–J × 1–5).
//! - A challenge names [`CHALLENGE_CELLS`] distinct cells. One challenge is pending per user:
//!   asking again (a reload of the web card page, a new SSH keyboard-interactive round, another
//!   login) shows the same cells until it is answered or [`CHALLENGE_TTL`] has passed, so
//!   someone who knows the password and a few cells cannot redraw until only known cells are
//!   asked; every answer, right or wrong, consumes it, and every wrong one counts. A new draw
//!   never repeats a cell combination already issued to that user (until all combinations are
//!   used up: C(50, 3) = 19 600 for an issued card).
//! - After [`MAX_FAILURES`] wrong answers the user is locked out for [`LOCKOUT`]; state is in
//!   memory ([`MatrixGuard`]), per user.
//!
//! The clock is passed in (`now`), so the rules are testable without sleeping.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;

/// Largest card side (rows and columns): columns are lettered A..Z, as policy validates.
pub const MAX_SIDE: usize = 26;
/// Columns of a card made by [`issue`].
pub const ISSUE_COLUMNS: usize = 10;
/// Rows of a card made by [`issue`].
pub const ISSUE_ROWS: usize = 5;
/// Cells asked in one challenge.
pub const CHALLENGE_CELLS: usize = 3;
/// Wrong answers tolerated before a lockout.
pub const MAX_FAILURES: u32 = 5;
/// How long a locked-out user must wait.
pub const LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// How long a pending challenge is shown again before a new one is drawn: as long as the web
/// login's pending step.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(5 * 60);
/// Longest answer to one cell that is even parsed: a cell holds one digit, so anything longer
/// is wrong, and we never copy an unbounded peer string.
pub const MAX_ANSWER_LEN: usize = 16;

/// Why a card from the inventory cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CardError {
    /// Not 1..=[`MAX_SIDE`] rows and columns, or fewer cells than a challenge needs.
    #[error(
        "matrix card must have 1 to {MAX_SIDE} rows and columns and at least {CHALLENGE_CELLS} cells"
    )]
    Size,
    /// A row has another length than the first, or a character that is not a digit.
    #[error("matrix card row {row} must have the same number of digits as row 1")]
    BadRow {
        /// 1-based row number.
        row: usize,
    },
}

/// A cell of a card: column and row, 0-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cell {
    /// INVARIANT: < MAX_SIDE.
    col: u8,
    /// INVARIANT: < MAX_SIDE.
    row: u8,
}

impl Cell {
    /// A cell, if both coordinates are below [`MAX_SIDE`].
    pub fn new(col: usize, row: usize) -> Option<Cell> {
        Some(Cell {
            col: u8::try_from(col)
                .ok()
                .filter(|c| usize::from(*c) < MAX_SIDE)?,
            row: u8::try_from(row)
                .ok()
                .filter(|r| usize::from(*r) < MAX_SIDE)?,
        })
    }
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let letter = char::from(b'A' + self.col);
        write!(f, "{letter}{}", u32::from(self.row) + 1)
    }
}

/// One user's card. Debug does not print the digits.
#[derive(Clone, PartialEq, Eq)]
pub struct MatrixCard {
    /// INVARIANT: 1..=MAX_SIDE rows of the same length 1..=MAX_SIDE, digits 0..=9, and at
    /// least CHALLENGE_CELLS cells.
    rows: Vec<Vec<u8>>,
}

impl fmt::Debug for MatrixCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MatrixCard(<secret>)")
    }
}

/// Issues a new random card (for `sekisho matrix-card new USER`).
pub fn issue<R: Rng + ?Sized>(rng: &mut R) -> MatrixCard {
    let rows = (0..ISSUE_ROWS)
        .map(|_| {
            (0..ISSUE_COLUMNS)
                .map(|_| rng.random_range(0..10))
                .collect()
        })
        .collect();
    MatrixCard { rows }
}

impl MatrixCard {
    /// Parses the inventory form (see the module docs).
    pub fn from_config_rows(rows: &[String]) -> Result<MatrixCard, CardError> {
        let width = rows.first().map_or(0, String::len);
        if rows.is_empty()
            || rows.len() > MAX_SIDE
            || width == 0
            || width > MAX_SIDE
            || rows.len() * width < CHALLENGE_CELLS
        {
            return Err(CardError::Size);
        }
        let mut out = Vec::with_capacity(rows.len());
        for (i, text) in rows.iter().enumerate() {
            if text.len() != width || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(CardError::BadRow { row: i + 1 });
            }
            out.push(text.bytes().map(|b| b - b'0').collect());
        }
        Ok(MatrixCard { rows: out })
    }

    /// The inventory form: one string of digits per row.
    pub fn to_config_rows(&self) -> Vec<String> {
        self.rows
            .iter()
            .map(|row| row.iter().map(|v| char::from(b'0' + v)).collect())
            .collect()
    }

    /// Number of columns.
    pub fn columns(&self) -> usize {
        self.rows.first().map_or(0, Vec::len)
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows.len()
    }

    /// The card as a person reads it: a header of column letters, one line per row.
    pub fn render_grid(&self) -> String {
        let mut out = String::from("   ");
        for c in 0..self.columns() {
            out.push(' ');
            out.push(char::from(b'A' + u8::try_from(c).unwrap_or(25)));
        }
        out.push('\n');
        for (i, row) in self.rows.iter().enumerate() {
            out.push_str(&format!("{:>2} ", i + 1));
            for v in row {
                out.push(' ');
                out.push(char::from(b'0' + v));
            }
            out.push('\n');
        }
        out
    }

    fn value(&self, cell: Cell) -> Option<u8> {
        self.rows
            .get(usize::from(cell.row))
            .and_then(|r| r.get(usize::from(cell.col)))
            .copied()
    }

    /// True when `answers` (one per challenged cell, in order) are all right. Compares every
    /// cell even after a wrong one, so timing does not say which cell was wrong.
    pub fn check(&self, challenge: &Challenge, answers: &[&str]) -> bool {
        if answers.len() != challenge.cells.len() {
            return false;
        }
        let mut ok = true;
        for (cell, answer) in challenge.cells.iter().zip(answers) {
            let answer = answer.trim();
            let given = (answer.len() <= MAX_ANSWER_LEN)
                .then(|| answer.parse::<u8>().ok())
                .flatten();
            let right = self.value(*cell);
            ok &= right.is_some() && given == right;
        }
        ok
    }
}

/// The cells asked in one round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// INVARIANT: `CHALLENGE_CELLS` distinct cells, sorted.
    cells: Vec<Cell>,
}

impl Challenge {
    /// The prompts shown to the user, one per cell.
    pub fn prompts(&self) -> Vec<String> {
        self.cells
            .iter()
            .map(|c| format!("Matrix card cell {c}: "))
            .collect()
    }

    /// The cells, in prompt order.
    pub fn cells(&self) -> &[Cell] {
        &self.cells
    }
}

/// The verdict on one answered challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// All cells right.
    Pass,
    /// Wrong; `remaining` more failures before the lockout.
    Fail {
        /// Failures left before a lockout.
        remaining: u32,
    },
    /// The user is locked out (now, or by this failure).
    Locked,
}

#[derive(Debug, Default)]
struct UserState {
    failures: u32,
    locked_until: Option<Instant>,
    /// Cell combinations already issued (never issued again while unused ones remain).
    issued: HashSet<Vec<Cell>>,
    /// The outstanding challenge and when it was drawn, consumed by the next answer.
    pending: Option<(Challenge, Instant)>,
}

/// In-memory challenge issuing, one-time use and lockout, shared by every connection.
#[derive(Debug, Default)]
pub struct MatrixGuard {
    users: Mutex<HashMap<String, UserState>>,
}

/// The guard every front door of this process shares, so a user's failures and lockout count
/// the same whether the card is asked by SSH or by the web UI.
static PROCESS_GUARD: LazyLock<Arc<MatrixGuard>> = LazyLock::new(|| Arc::new(MatrixGuard::new()));

/// The process-wide [`MatrixGuard`] (see [`PROCESS_GUARD`]).
pub fn process_guard() -> Arc<MatrixGuard> {
    Arc::clone(&PROCESS_GUARD)
}

/// Number of distinct 3-cell combinations of `n` cells: C(n, 3).
fn combinations(n: usize) -> usize {
    n * n.saturating_sub(1) * n.saturating_sub(2) / 6
}

impl MatrixGuard {
    /// A guard with no history.
    pub fn new() -> MatrixGuard {
        MatrixGuard::default()
    }

    /// True when `user` is locked out at `now`.
    pub fn is_locked(&self, user: &str, now: Instant) -> bool {
        let Ok(users) = self.users.lock() else {
            return true; // poisoned: fail closed
        };
        users
            .get(user)
            .and_then(|s| s.locked_until)
            .is_some_and(|until| now < until)
    }

    /// The pending challenge of `user` (drawn less than [`CHALLENGE_TTL`] ago), or a fresh one
    /// on `card`; `None` while the user is locked out.
    pub fn challenge<R: Rng + ?Sized>(
        &self,
        user: &str,
        card: &MatrixCard,
        rng: &mut R,
        now: Instant,
    ) -> Option<Challenge> {
        let (cols, rows) = (card.columns(), card.rows());
        if cols * rows < CHALLENGE_CELLS {
            return None; // cannot happen for a parsed card; fail closed anyway
        }
        let Ok(mut users) = self.users.lock() else {
            return None;
        };
        let state = users.entry(user.to_owned()).or_default();
        if state.locked_until.is_some_and(|until| now < until) {
            return None;
        }
        if let Some((pending, drawn)) = &state.pending
            && now.saturating_duration_since(*drawn) < CHALLENGE_TTL
            && pending.cells.iter().all(|c| card.value(*c).is_some())
        {
            return Some(pending.clone());
        }
        if state.issued.len() >= combinations(cols * rows) {
            state.issued.clear();
        }
        loop {
            let mut cells: Vec<Cell> = Vec::with_capacity(CHALLENGE_CELLS);
            while cells.len() < CHALLENGE_CELLS {
                let c = Cell::new(rng.random_range(0..cols), rng.random_range(0..rows))?;
                if !cells.contains(&c) {
                    cells.push(c);
                }
            }
            cells.sort();
            if state.issued.insert(cells.clone()) {
                let challenge = Challenge { cells };
                state.pending = Some((challenge.clone(), now));
                return Some(challenge);
            }
        }
    }

    /// Checks `answers` against the outstanding challenge of `user` (which is consumed, right
    /// or wrong) and updates the failure count and lockout.
    pub fn answer(&self, user: &str, card: &MatrixCard, answers: &[&str], now: Instant) -> Verdict {
        let Ok(mut users) = self.users.lock() else {
            return Verdict::Locked;
        };
        let state = users.entry(user.to_owned()).or_default();
        if state.locked_until.is_some_and(|until| now < until) {
            state.pending = None;
            return Verdict::Locked;
        }
        if state.locked_until.is_some() {
            // The lockout is over: start counting afresh.
            state.locked_until = None;
            state.failures = 0;
        }
        let right = state
            .pending
            .take()
            .is_some_and(|(challenge, _)| card.check(&challenge, answers));
        if right {
            state.failures = 0;
            return Verdict::Pass;
        }
        state.failures += 1;
        if state.failures >= MAX_FAILURES {
            state.locked_until = Some(now + LOCKOUT);
            return Verdict::Locked;
        }
        Verdict::Fail {
            remaining: MAX_FAILURES - state.failures,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn answers_for(card: &MatrixCard, ch: &Challenge) -> Vec<String> {
        ch.cells()
            .iter()
            .map(|c| card.value(*c).unwrap().to_string())
            .collect()
    }

    #[test]
    fn config_rows_round_trip_and_grid_shape() {
        let mut rng = StdRng::seed_from_u64(7);
        let card = issue(&mut rng);
        let rows = card.to_config_rows();
        assert_eq!(rows.len(), ISSUE_ROWS);
        assert_eq!(rows[0].len(), ISSUE_COLUMNS);
        assert_eq!(MatrixCard::from_config_rows(&rows).unwrap(), card);
        let grid = card.render_grid();
        assert_eq!(grid.lines().count(), ISSUE_ROWS + 1);
        assert_eq!(grid.lines().next().unwrap(), "    A B C D E F G H I J");
        assert_eq!(format!("{card:?}"), "MatrixCard(<secret>)");
    }

    #[test]
    fn bad_config_rows_are_rejected() {
        assert_eq!(
            MatrixCard::from_config_rows(&["00".to_owned()]),
            Err(CardError::Size)
        );
        let mut rows = vec!["3829".to_owned(), "1047".to_owned(), "5561".to_owned()];
        assert!(MatrixCard::from_config_rows(&rows).is_ok());
        rows[2] = "556".to_owned();
        assert_eq!(
            MatrixCard::from_config_rows(&rows),
            Err(CardError::BadRow { row: 3 })
        );
    }

    #[test]
    fn right_answer_passes_once_then_challenge_is_consumed() {
        let mut rng = StdRng::seed_from_u64(1);
        let card = issue(&mut rng);
        let guard = MatrixGuard::new();
        let now = Instant::now();
        let ch = guard.challenge("tanaka", &card, &mut rng, now).unwrap();
        assert_eq!(ch.cells().len(), CHALLENGE_CELLS);
        let ans = answers_for(&card, &ch);
        let refs: Vec<&str> = ans.iter().map(String::as_str).collect();
        assert_eq!(guard.answer("tanaka", &card, &refs, now), Verdict::Pass);
        // Replaying the same answers without a new challenge fails: one-time.
        assert_eq!(
            guard.answer("tanaka", &card, &refs, now),
            Verdict::Fail { remaining: 4 }
        );
    }

    #[test]
    fn every_front_door_gets_the_same_process_guard() {
        assert!(Arc::ptr_eq(&process_guard(), &process_guard()));
    }

    #[test]
    fn challenges_are_not_reused() {
        let mut rng = StdRng::seed_from_u64(2);
        let card = issue(&mut rng);
        let guard = MatrixGuard::new();
        let now = Instant::now();
        let mut seen = HashSet::new();
        for _ in 0..500 {
            let ch = guard.challenge("u", &card, &mut rng, now).unwrap();
            assert!(seen.insert(ch.cells().to_vec()));
            // Answered (right), so the next round draws anew.
            let ans = answers_for(&card, &ch);
            let refs: Vec<&str> = ans.iter().map(String::as_str).collect();
            assert_eq!(guard.answer("u", &card, &refs, now), Verdict::Pass);
        }
    }

    #[test]
    fn redrawing_shows_the_pending_challenge_until_answered_or_expired() {
        let mut rng = StdRng::seed_from_u64(5);
        let card = issue(&mut rng);
        let guard = MatrixGuard::new();
        let t0 = Instant::now();
        let first = guard.challenge("u", &card, &mut rng, t0).unwrap();
        for s in 1..50 {
            let again = guard
                .challenge("u", &card, &mut rng, t0 + Duration::from_secs(s))
                .unwrap();
            assert_eq!(again, first, "a redraw must show the same cells");
        }
        // Another user has a challenge of their own.
        let other = guard.challenge("v", &card, &mut rng, t0).unwrap();
        assert_eq!(guard.challenge("v", &card, &mut rng, t0).unwrap(), other);
        // A wrong answer consumes it and counts.
        assert_eq!(
            guard.answer("u", &card, &["x", "x", "x"], t0),
            Verdict::Fail {
                remaining: MAX_FAILURES - 1
            }
        );
        let second = guard.challenge("u", &card, &mut rng, t0).unwrap();
        assert_ne!(second, first);
        // Once expired, a new one is drawn.
        let later = t0 + CHALLENGE_TTL;
        let third = guard.challenge("u", &card, &mut rng, later).unwrap();
        assert_ne!(third, second);
    }

    #[test]
    fn lockout_after_five_failures_for_fifteen_minutes() {
        let mut rng = StdRng::seed_from_u64(3);
        let card = issue(&mut rng);
        let guard = MatrixGuard::new();
        let t0 = Instant::now();
        for i in 0..MAX_FAILURES {
            guard.challenge("u", &card, &mut rng, t0).unwrap();
            let v = guard.answer("u", &card, &["x", "y", "zz"], t0);
            if i + 1 < MAX_FAILURES {
                assert_eq!(
                    v,
                    Verdict::Fail {
                        remaining: MAX_FAILURES - i - 1
                    }
                );
            } else {
                assert_eq!(v, Verdict::Locked);
            }
        }
        assert!(guard.is_locked("u", t0 + Duration::from_secs(60)));
        assert!(
            guard
                .challenge("u", &card, &mut rng, t0 + Duration::from_secs(60))
                .is_none()
        );
        // Other users are unaffected.
        assert!(!guard.is_locked("v", t0));
        let later = t0 + LOCKOUT + Duration::from_secs(1);
        assert!(!guard.is_locked("u", later));
        let ch = guard.challenge("u", &card, &mut rng, later).unwrap();
        let ans = answers_for(&card, &ch);
        let refs: Vec<&str> = ans.iter().map(String::as_str).collect();
        assert_eq!(guard.answer("u", &card, &refs, later), Verdict::Pass);
    }

    #[test]
    fn wrong_count_or_oversized_answers_fail() {
        let mut rng = StdRng::seed_from_u64(4);
        let card = issue(&mut rng);
        let ch = Challenge {
            cells: vec![
                Cell::new(0, 0).unwrap(),
                Cell::new(9, 4).unwrap(),
                Cell::new(2, 2).unwrap(),
            ],
        };
        assert!(!card.check(&ch, &["1", "2"]));
        let big = "9".repeat(100);
        assert!(!card.check(&ch, &[&big, &big, &big]));
        assert_eq!(Cell::new(9, 4).unwrap().to_string(), "J5");
        assert!(Cell::new(26, 0).is_none());
    }
}
