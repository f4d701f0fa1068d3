//! `nsqd.dat` group commit: creates arriving together share a write (temp
//! file, fsync, rename), and each is on disk before its answer.

use nsq_tests::inspect::metadata_channels;
use nsq_tests::strace;
use nsq_tests::Nsqd;
use std::time::Duration;

const THREADS: usize = 16;
const PER_THREAD: usize = 25;

#[test]
fn concurrent_creates_share_metadata_writes_and_each_is_on_disk_when_answered() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let strace_bin = strace::binary();
    let wrapper = [
        strace_bin.to_str().unwrap(),
        "-f",
        "-e",
        "trace=rename,renameat,renameat2",
        "-o",
        trace.to_str().unwrap(),
        "--",
    ];
    let mut nsqd = Nsqd::start_under(&wrapper, &[]);
    nsqd.http_post_ok("/topic/create?topic=t");
    let http = nsqd.http_addr();
    let data = nsqd.data_path().to_owned();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let data = data.clone();
            std::thread::spawn(move || {
                for i in 0..PER_THREAD {
                    let name = format!("c{t:02}-{i:02}");
                    let path = format!("/channel/create?topic=t&channel={name}");
                    let r = nsq_tests::http::request(http, "POST", &path, b"").unwrap();
                    assert_eq!(r.status, 200, "{}", r.text());
                    // Answered: already in nsqd.dat.
                    let meta = nsq_tests::nsqd::read_metadata(&data).expect("nsqd.dat");
                    assert!(
                        metadata_channels(&meta, "t").contains(&name),
                        "{name} not in nsqd.dat"
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let pid = nsqd.pid().unwrap();
    for child in strace::children(pid) {
        // SAFETY: kill has no memory preconditions.
        unsafe { libc::kill(child as i32, libc::SIGTERM) };
    }
    nsqd.wait_exit(Duration::from_secs(30));
    let text = std::fs::read_to_string(&trace).unwrap();
    let writes = text
        .lines()
        .filter(|l| l.contains("nsqd.dat\"") && l.contains("rename") && l.contains(") = 0"))
        .count();
    let creates = THREADS * PER_THREAD;
    eprintln!("{creates} channel creates, {writes} nsqd.dat writes");
    // One topic create plus the channels; shutdown writes once more.
    assert!(writes >= 2, "{writes} writes");
    assert!(
        writes * 2 <= creates,
        "{writes} nsqd.dat writes for {creates} creates"
    );
}
