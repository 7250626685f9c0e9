//! Tests of [`RocksStore`]: the conformance suite plus what only a real data dir can show.

use std::fs;

use tempfile::TempDir;

use super::*;
use crate::store::schema::VERSION_KEY;

fn with_store(case: &dyn Fn(&dyn Store)) {
    let dir = TempDir::new().unwrap();
    let store = RocksStore::open(dir.path()).unwrap();
    case(&store);
}

crate::store::conformance::conformance_tests!(with_store);

fn open_err(path: &Path) -> OpenError {
    match RocksStore::open(path) {
        Ok(store) => panic!("expected an error, opened {store:?}"),
        Err(err) => err,
    }
}

/// Overwrites every file in `dir` whose name starts with `prefix`, returning how many.
fn clobber(dir: &Path, prefix: &str, contents: &[u8]) -> usize {
    let mut n = 0;
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            fs::write(entry.path(), contents).unwrap();
            n += 1;
        }
    }
    n
}

fn populated_dir() -> TempDir {
    let dir = TempDir::new().unwrap();
    let store = RocksStore::open(dir.path()).unwrap();
    store.put(Column::Peers, b"p", b"1").unwrap();
    store.flush().unwrap();
    drop(store);
    dir
}

#[test]
fn fresh_dir_gets_schema_version() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("nested/data");
    let store = RocksStore::open(&path).unwrap();
    assert_eq!(store.path(), path);
    assert_eq!(
        store.get(Column::Meta, VERSION_KEY).unwrap(),
        Some(vec![0, 0, 0, 1])
    );
    let cfs = DB::list_cf(&Options::default(), &path).unwrap();
    for col in Column::ALL {
        assert!(cfs.iter().any(|cf| cf == col.name()), "{cfs:?}");
    }
}

#[test]
fn reopen_keeps_data() {
    let dir = TempDir::new().unwrap();
    {
        let store = RocksStore::open(dir.path()).unwrap();
        store.put(Column::Peers, b"p/1", b"addr").unwrap();
        let mut batch = WriteBatch::new();
        batch
            .put(Column::Leases, b"l/1", b"lease")
            .put(Column::Accounts, b"a/1", b"100")
            .delete(Column::Peers, b"p/0");
        store.write(batch).unwrap();
        store.flush().unwrap();
    }
    {
        // Written without a flush: RocksDB flushes memtables on a clean close.
        let store = RocksStore::open(dir.path()).unwrap();
        store.put(Column::Offers, b"o/1", b"offer").unwrap();
    }
    let store = RocksStore::open(dir.path()).unwrap();
    assert_eq!(
        store.get(Column::Peers, b"p/1").unwrap(),
        Some(b"addr".to_vec())
    );
    assert_eq!(
        store.get(Column::Leases, b"l/1").unwrap(),
        Some(b"lease".to_vec())
    );
    assert_eq!(
        store.get(Column::Accounts, b"a/1").unwrap(),
        Some(b"100".to_vec())
    );
    assert_eq!(
        store.get(Column::Offers, b"o/1").unwrap(),
        Some(b"offer".to_vec())
    );
}

#[test]
fn second_open_is_locked() {
    let dir = TempDir::new().unwrap();
    let first = RocksStore::open(dir.path()).unwrap();
    let err = open_err(dir.path());
    assert!(
        matches!(&err, OpenError::Locked { path } if path == dir.path()),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    assert!(msg.contains("locked"), "{msg}");
    drop(first);
    RocksStore::open(dir.path()).unwrap();
}

const HOLD_LOCK_ENV: &str = "AGORA_STORE_TEST_HOLD_LOCK";

/// Run by [`open_held_by_another_process_is_locked`] in a child process: holds the store at
/// `$AGORA_STORE_TEST_HOLD_LOCK` open until its stdin closes.
#[test]
#[ignore = "helper run in a child process by open_held_by_another_process_is_locked"]
fn hold_lock_in_child() {
    let Some(path) = std::env::var_os(HOLD_LOCK_ENV) else {
        return;
    };
    let store = RocksStore::open(Path::new(&path)).unwrap();
    println!("store-held");
    std::io::Write::flush(&mut std::io::stdout()).unwrap();
    let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
    drop(store);
}

#[test]
fn open_held_by_another_process_is_locked() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    let dir = populated_dir();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "store::rocks::tests::hold_lock_in_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HOLD_LOCK_ENV, dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // No timeout needed: if the child dies, its stdout closes and the loop ends.
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let held = lines.any(|line| line.unwrap().contains("store-held"));
    assert!(held, "child exited without opening the store");
    let result = RocksStore::open(dir.path());
    drop(child.stdin.take()); // lets the child close the store and exit
    lines.for_each(drop); // keep reading so the child's last writes do not fail
    assert!(child.wait().unwrap().success());
    let err = result.unwrap_err();
    assert!(
        matches!(&err, OpenError::Locked { path } if path == dir.path()),
        "{err:?}"
    );
    // Released with the child.
    RocksStore::open(dir.path()).unwrap();
}

#[test]
fn lock_messages_are_recognised() {
    // Across processes RocksDB reports the flock failure on the LOCK file.
    assert!(is_lock_error(
        "IO error: While lock file: /data/agora/LOCK: Resource temporarily unavailable"
    ));
    assert!(is_lock_error(
        "IO error: lock hold by current process, acquire time 1 acquiring thread 2: \
         /data/agora/LOCK: No locks available"
    ));
    assert!(!is_lock_error(
        "IO error: while open a file for lock: /data/agora/LOCK: Permission denied"
    ));
    assert!(!is_lock_error(
        "IO error: No such file or directory: While opening a file for sequentially reading: \
         /data/agora/CURRENT"
    ));
}

#[test]
fn newer_schema_is_refused() {
    let dir = populated_dir();
    {
        let store = RocksStore::open(dir.path()).unwrap();
        store
            .put(
                Column::Meta,
                VERSION_KEY,
                &(SCHEMA_VERSION + 1).to_be_bytes(),
            )
            .unwrap();
    }
    let err = open_err(dir.path());
    assert!(
        matches!(err, OpenError::NewerSchema { found, supported, .. }
            if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{err:?}"
    );
    assert!(err.to_string().contains("newer agora"), "{err}");
}

#[test]
fn malformed_schema_is_corrupt() {
    let dir = populated_dir();
    {
        let store = RocksStore::open(dir.path()).unwrap();
        store.put(Column::Meta, VERSION_KEY, b"\x01").unwrap();
    }
    let err = open_err(dir.path());
    assert!(matches!(err, OpenError::Corrupt { .. }), "{err:?}");
}

#[test]
fn garbage_current_is_corrupt() {
    let dir = populated_dir();
    assert_eq!(clobber(dir.path(), "CURRENT", b"\x00garbage"), 1);
    let err = open_err(dir.path());
    assert!(matches!(err, OpenError::Corrupt { .. }), "{err:?}");
}

#[test]
fn garbage_manifest_is_corrupt() {
    let dir = populated_dir();
    assert!(clobber(dir.path(), "MANIFEST-", &[0xa5; 4096]) >= 1);
    let err = open_err(dir.path());
    assert!(matches!(err, OpenError::Corrupt { .. }), "{err:?}");
}

#[test]
fn missing_current_is_corrupt() {
    let dir = populated_dir();
    fs::remove_file(dir.path().join("CURRENT")).unwrap();
    let err = open_err(dir.path());
    assert!(matches!(err, OpenError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("CURRENT"), "{err}");
}

#[test]
fn unknown_column_family_still_opens() {
    let dir = populated_dir();
    {
        // A newer agora added a column family.
        let mut opts = Options::default();
        opts.create_missing_column_families(true);
        let mut names: Vec<String> = DB::list_cf(&opts, dir.path()).unwrap();
        names.push("future_index".to_owned());
        let db = DB::open_cf(&opts, dir.path(), &names).unwrap();
        let cf = db.cf_handle("future_index").unwrap();
        db.put_cf(cf, b"f", b"future").unwrap();
    }
    let store = RocksStore::open(dir.path()).unwrap();
    assert_eq!(store.get(Column::Peers, b"p").unwrap(), Some(b"1".to_vec()));
    drop(store);
    // The unknown column family is left as it was.
    let names = DB::list_cf(&Options::default(), dir.path()).unwrap();
    let db = DB::open_cf(&Options::default(), dir.path(), &names).unwrap();
    let cf = db.cf_handle("future_index").unwrap();
    assert_eq!(db.get_cf(cf, b"f").unwrap(), Some(b"future".to_vec()));
}

#[test]
fn downgrade_reports_newer_schema_not_rocksdb_error() {
    let dir = TempDir::new().unwrap();
    {
        // A newer agora: an extra column family and a newer schema version.
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let mut names: Vec<&str> = Column::ALL.iter().map(|c| c.name()).collect();
        names.push("future_index");
        let db = DB::open_cf(&opts, dir.path(), &names).unwrap();
        let meta = db.cf_handle(Column::Meta.name()).unwrap();
        db.put_cf(meta, VERSION_KEY, 7u32.to_be_bytes()).unwrap();
    }
    let err = open_err(dir.path());
    assert!(
        matches!(err, OpenError::NewerSchema { found: 7, .. }),
        "{err:?}"
    );
}

#[test]
fn plain_rocksdb_dir_is_adopted_when_empty() {
    let dir = TempDir::new().unwrap();
    {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        DB::open(&opts, dir.path()).unwrap();
    }
    let store = RocksStore::open(dir.path()).unwrap();
    assert_eq!(
        store.get(Column::Meta, VERSION_KEY).unwrap(),
        Some(SCHEMA_VERSION.to_be_bytes().to_vec())
    );
}

#[test]
fn data_without_schema_version_is_corrupt() {
    let dir = populated_dir();
    {
        let store = RocksStore::open(dir.path()).unwrap();
        store.delete(Column::Meta, VERSION_KEY).unwrap();
    }
    let err = open_err(dir.path());
    assert!(matches!(err, OpenError::Corrupt { .. }), "{err:?}");
}

#[test]
fn path_that_is_a_file_is_io_error() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("not-a-dir");
    fs::write(&file, b"x").unwrap();
    let err = open_err(&file);
    assert!(
        matches!(&err, OpenError::Io { path, .. } if *path == file),
        "{err:?}"
    );
}

#[test]
fn prefix_successor_skips_trailing_ff() {
    assert_eq!(prefix_successor(b""), None);
    assert_eq!(prefix_successor(b"\xff"), None);
    assert_eq!(prefix_successor(b"\xff\xff"), None);
    assert_eq!(prefix_successor(b"a"), Some(b"b".to_vec()));
    assert_eq!(prefix_successor(b"a\xff"), Some(b"b".to_vec()));
    assert_eq!(
        prefix_successor(b"\x00\xfe\xff"),
        Some(b"\x00\xff".to_vec())
    );
}

#[test]
fn current_naming_missing_manifest_is_corrupt() {
    let dir = populated_dir();
    assert_eq!(clobber(dir.path(), "CURRENT", b"MANIFEST-999999\n"), 1);
    let err = open_err(dir.path());
    assert!(matches!(err, OpenError::Corrupt { .. }), "{err:?}");
}

#[test]
fn empty_manifest_is_corrupt() {
    let dir = populated_dir();
    assert!(clobber(dir.path(), "MANIFEST-", b"") >= 1);
    let err = open_err(dir.path());
    assert!(matches!(err, OpenError::Corrupt { .. }), "{err:?}");
}

#[test]
fn concurrent_flushes_share_syncs_and_each_covers_its_own_writes() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let gate = SyncedUpTo::default();
    // Nothing written: nothing to sync.
    gate.flush(|| panic!("synced without writes")).unwrap();
    let syncs = AtomicU64::new(0);
    // What the last finished sync covered, as the sync itself saw it.
    let durable = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for _ in 0..50 {
                    gate.wrote();
                    let mine = gate.written.load(Ordering::SeqCst);
                    gate.flush(|| {
                        let covers = gate.written.load(Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_micros(200));
                        syncs.fetch_add(1, Ordering::SeqCst);
                        durable.fetch_max(covers, Ordering::SeqCst);
                        Ok(())
                    })
                    .unwrap();
                    assert!(
                        durable.load(Ordering::SeqCst) >= mine,
                        "a flush returned before its write was synced"
                    );
                }
            });
        }
    });
    let syncs = syncs.load(Ordering::SeqCst);
    assert!(syncs < 400, "{syncs} syncs for 400 flushes: none shared");
    // A failed sync is reported, and the next flush tries again.
    gate.wrote();
    assert!(
        gate.flush(|| Err(StoreError::MissingColumn { column: "x" }))
            .is_err()
    );
    let mut again = false;
    gate.flush(|| {
        again = true;
        Ok(())
    })
    .unwrap();
    assert!(again);
}
