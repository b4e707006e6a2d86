//! Opening the journal: recovering what a previous run left (distrusting
//! what damage may have falsified), and what happens when the journal
//! fails.

use super::Pipeline;
use super::journal::{Damage, Journal, JournalError, Recovered};
use super::ledger::Ledger;
use crate::status;
use crate::time::hour_of;

impl Pipeline {
    /// Opens the journal; on success after running in memory, writes the
    /// in-memory state into it.
    pub(super) fn open_journal(&mut self) {
        let (mut journal, recovered) = match Journal::open(
            &self.env.storage,
            &self.settings.state_dir,
            self.product.code(),
        ) {
            Ok(opened) => opened,
            Err(e) => return self.journal_failed(&e, false),
        };
        let now_hour = hour_of(self.now());
        if !self.recovered {
            // The previous run's journal, first readable now.
            self.recover(&journal, recovered, now_hour);
            self.recovered = true;
        }
        // Otherwise: this run's own journal, rewritten from memory (which
        // holds everything it held, and more).
        let snapshot = self.ledger.snapshot(now_hour);
        if let Err(e) = journal.compact(self.product.code(), &snapshot) {
            // The file holds history memory has now taken over.
            self.journal = Some(journal);
            return self.journal_failed(&e, true);
        }
        self.journal = Some(journal);
        self.journal_error = None;
        self.stale = None;
        status::recover("journal");
    }

    /// Folds a previous run's journal into the ledger, distrusting what
    /// damage may have falsified.
    fn recover(&mut self, journal: &Journal, recovered: Recovered, now_hour: i64) {
        let Recovered {
            events,
            torn_tail,
            damage,
        } = recovered;
        let mut disk = Ledger::default();
        for event in &events {
            disk.apply(event);
        }
        let mut notes = Vec::new();
        if torn_tail > 0 {
            tracing::info!(
                target: "marketgate",
                bytes = torn_tail,
                "the metering journal ended in an incomplete frame (a crash during a write); \
                 nothing acted on was in it"
            );
        }
        if let Some(Damage {
            offset,
            bytes,
            kept_as,
        }) = &damage
        {
            let dropped = disk.distrust();
            notes.push(format!(
                "{bytes} bytes from offset {offset} could not be read{}; {dropped} unreported \
                 units in it were dropped (they may already have been billed) and pending \
                 records are resent identically or reported, never carried",
                kept_as
                    .as_ref()
                    .map(|p| format!(" (kept in {})", p.display()))
                    .unwrap_or_default()
            ));
        }
        let (records, units) = disk.drop_implausible(now_hour);
        if records > 0 || units > 0 {
            notes.push(format!(
                "{records} records and {units} units dated after the next hour were dropped \
                 (no run could have written them: the clock or the file is wrong)"
            ));
        }
        if !notes.is_empty() {
            let message = format!(
                "the metering journal {} was damaged: {}",
                journal.path().display(),
                notes.join("; ")
            );
            tracing::error!(target: "marketgate", "{message}");
            status::degrade("journal-damage", message.clone());
            self.damage = Some(message);
        }
        for note in self.ledger.merge(disk, now_hour) {
            tracing::warn!(target: "marketgate", "{note}");
        }
        if !events.is_empty() {
            tracing::info!(
                target: "marketgate",
                journal = %journal.path().display(),
                events = events.len(),
                "metering journal recovered"
            );
        }
    }

    /// The journal failed. When its file holds this run's history
    /// (`behind`), it is now behind memory and must not be replayed: it is
    /// removed, or, when even that fails, sending stops until it can be
    /// written or removed (see `SendStop::JournalStale`).
    pub(super) fn journal_failed(&mut self, error: &JournalError, behind: bool) {
        let mut message = format!(
            "{error}; usage is kept in memory and the journal retried at every checkpoint (a \
             crash now would lose it). Mount a writable volume at the state directory or set \
             MARKETGATE_STATE_DIR"
        );
        if let Some(journal) = self.journal.take()
            && behind
        {
            match journal.discard() {
                Ok(()) => self.stale = None,
                Err(e) => {
                    message = format!(
                        "{error}; the journal cannot be removed either ({e}), so usage reports \
                         are held back until it can be written (replaying it after a crash \
                         would bill hours twice)"
                    );
                    self.stale = Some(journal.path().to_path_buf());
                }
            }
        }
        crate::metrics::journal_failure();
        if self.journal_error.as_deref() != Some(message.as_str()) {
            tracing::error!(target: "marketgate", "{message}");
        }
        status::degrade("journal", message.clone());
        self.journal_error = Some(message);
    }
}
