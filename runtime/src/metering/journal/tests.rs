//! Unit tests of the journal.

use super::*;
use crate::metering::storage::RealFs;

fn real() -> Arc<dyn Storage> {
    Arc::new(RealFs)
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("marketgate-journal-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn add(q: u64) -> Event {
    Event::Add {
        dimension: "api_calls".into(),
        hour: 3600,
        quantity: q,
        tags: Vec::new(),
    }
}

#[test]
fn events_keep_their_version_1_field_names_on_disk() {
    let add = Event::Add {
        dimension: "api_calls".to_owned(),
        hour: 3600,
        quantity: 7,
        tags: vec![("team".to_owned(), "a".to_owned())],
    };
    let json = serde_json::to_value(&add).expect("serialise");
    assert_eq!(
        json,
        serde_json::json!({"e": "Add", "d": "api_calls", "h": 3600, "q": 7, "t": [["team", "a"]]})
    );
    let attempt: Event =
        serde_json::from_str(r#"{"e":"Attempt","d":"api_calls","h":7200}"#).expect("parse");
    assert_eq!(
        attempt,
        Event::Attempt {
            dimension: "api_calls".to_owned(),
            hour: 7200
        }
    );
}

fn open(d: &Path) -> (Journal, Recovered) {
    Journal::open(&real(), d, "p1").expect("open")
}

#[test]
fn events_survive_reopening() {
    let d = dir("reopen");
    {
        let (mut j, r) = open(&d);
        assert!(r.events.is_empty() && r.damage.is_none());
        j.append(&[add(1), add(2)]).expect("append");
        j.append(&[add(3)]).expect("append");
    }
    let (_, r) = open(&d);
    assert_eq!(r.events, [add(1), add(2), add(3)]);
    assert!(r.damage.is_none() && r.torn_tail == 0);
}

/// A journal holding `add(1)`, `add(2)`, `add(3)`; returns its path.
fn three(name: &str) -> (PathBuf, PathBuf) {
    let d = dir(name);
    let (mut j, _) = open(&d);
    j.append(&[add(1), add(2), add(3)]).expect("append");
    (d, j.path().to_path_buf())
}

#[test]
fn an_incomplete_last_frame_is_a_torn_tail_not_damage() {
    let (d, path) = three("torn");
    let full = std::fs::read(&path).expect("read");
    std::fs::write(&path, &full[..full.len() - 5]).expect("truncate");
    let (_, r) = open(&d);
    assert_eq!(r.events, [add(1), add(2)]);
    assert!(r.torn_tail > 0 && r.damage.is_none(), "{r:?}");
    // The journal was rewritten clean.
    let (_, r) = open(&d);
    assert_eq!(r.events, [add(1), add(2)]);
    assert!(r.torn_tail == 0 && r.damage.is_none());
    // A crash that extended the file with zeros is a torn tail too.
    let mut bytes = std::fs::read(&path).expect("read");
    bytes.extend_from_slice(&[0; 40]);
    std::fs::write(&path, &bytes).expect("zeros");
    let (_, r) = open(&d);
    assert_eq!((r.events.len(), r.torn_tail, r.damage), (2, 40, None));
}

#[test]
fn damage_in_the_middle_is_reported_and_the_frames_after_it_are_kept() {
    let (d, path) = three("middle");
    let mut bytes = std::fs::read(&path).expect("read");
    // The last byte of the second event's payload.
    let frame_len = encode(&[add(1)]).len();
    let second_end = bytes.len() - frame_len;
    bytes[second_end - 1] ^= 0xff;
    std::fs::write(&path, &bytes).expect("corrupt");
    let (_, r) = open(&d);
    assert_eq!(
        r.events,
        [add(1), add(3)],
        "the frame after the damage is kept"
    );
    let damage = r.damage.expect("damage reported");
    assert_eq!(damage.bytes, frame_len as u64);
    assert!(damage.kept_as.is_some_and(|p| p.exists()));
    // A complete last frame with a bad checksum is damage, not a torn tail.
    let (d, path) = three("last");
    let mut bytes = std::fs::read(&path).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, &bytes).expect("corrupt");
    let (_, r) = open(&d);
    assert_eq!((r.events.len(), r.torn_tail), (2, 0));
    assert!(r.damage.is_some());
    // A length field bent to run past the end hides the frames after it:
    // damage too, and they are found again.
    let (d, path) = three("length");
    let mut bytes = std::fs::read(&path).expect("read");
    let second = bytes.len() - 2 * frame_len;
    bytes[second..second + 4].copy_from_slice(&1000u32.to_le_bytes());
    std::fs::write(&path, &bytes).expect("corrupt");
    let (_, r) = open(&d);
    assert_eq!(r.events, [add(1), add(3)]);
    assert!(r.damage.is_some() && r.torn_tail == 0);
}

#[test]
fn a_flapping_disk_keeps_only_the_newest_damaged_copies() {
    let (d, path) = three("copies");
    for n in 0..6 {
        let mut bytes = std::fs::read(&path).expect("read");
        bytes.extend_from_slice(&encode(&[add(n)]));
        let at = bytes.len() - 20;
        bytes[at] ^= 0xff;
        bytes.extend_from_slice(&encode(&[add(9)]));
        std::fs::write(&path, &bytes).expect("corrupt");
        let (_, r) = open(&d);
        assert!(r.damage.is_some());
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let copies = std::fs::read_dir(&d)
        .expect("dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().contains("damaged-"))
        })
        .count();
    assert!(copies <= KEEP_DAMAGED, "{copies} copies");
}

#[test]
fn a_journal_from_a_newer_version_is_refused_and_left_untouched() {
    let d = dir("newer");
    std::fs::create_dir_all(&d).expect("mkdir");
    let path = d.join("metering-p1.journal");
    let newer = encode(&[
        Event::Header {
            version: VERSION + 1,
            product: "p1".to_owned(),
        },
        add(5),
    ]);
    std::fs::write(&path, &newer).expect("write");
    assert!(matches!(
        Journal::open(&real(), &d, "p1"),
        Err(JournalError::NewerVersion { found, .. }) if found == VERSION + 1
    ));
    assert_eq!(std::fs::read(&path).expect("read"), newer);
}

#[test]
fn discarding_removes_the_file() {
    let (d, path) = three("discard");
    let (j, _) = open(&d);
    j.discard().expect("discard");
    assert!(!path.exists());
    drop(j);
    let (_, r) = open(&d);
    assert!(r.events.is_empty());
}

#[test]
fn a_second_process_cannot_open_the_same_journal() {
    let d = dir("lock");
    let _j = open(&d);
    assert!(matches!(
        Journal::open(&real(), &d, "p1"),
        Err(JournalError::Locked(_))
    ));
}

#[test]
fn another_products_journal_is_refused() {
    let d = dir("product");
    drop(open(&d));
    std::fs::rename(d.join("metering-p1.journal"), d.join("metering-p2.journal")).expect("mv");
    assert!(matches!(
        Journal::open(&real(), &d, "p2"),
        Err(JournalError::WrongProduct { .. })
    ));
}

#[test]
fn compaction_replaces_the_contents_atomically() {
    let d = dir("compact");
    let (mut j, _) = open(&d);
    j.append(&[add(1), add(2), add(3)]).expect("append");
    j.compact("p1", &[add(6)]).expect("compact");
    j.append(&[add(7)]).expect("append");
    drop(j);
    let (_, r) = open(&d);
    assert_eq!(r.events, [add(6), add(7)]);
}

#[test]
fn a_fifo_or_link_planted_in_the_state_directory_is_refused_not_waited_on() {
    let d = dir("fifo");
    std::fs::create_dir_all(&d).expect("mkdir");
    let path = d.join("metering-p1.journal");
    let made = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    // Opening would block for ever on a FIFO; it must fail at once.
    assert!(matches!(
        Journal::open(&real(), &d, "p1"),
        Err(JournalError::Io { .. })
    ));
    std::fs::remove_file(&path).expect("rm fifo");
    // A link to a file elsewhere is not followed.
    let elsewhere = d.join("elsewhere");
    std::fs::write(&elsewhere, b"").expect("target");
    std::os::unix::fs::symlink(&elsewhere, &path).expect("symlink");
    assert!(matches!(
        Journal::open(&real(), &d, "p1"),
        Err(JournalError::Io { .. })
    ));
    std::fs::remove_file(&path).expect("rm link");
    // A FIFO at the temporary name is replaced, not opened.
    let (mut j, _) = open(&d);
    let tmp = path.with_extension("journal.tmp");
    let made = std::process::Command::new("mkfifo")
        .arg(&tmp)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    j.compact("p1", &[add(1)]).expect("compact");
    drop(j);
    assert_eq!(open(&d).1.events, [add(1)]);
}
