//! Issue 19's hostile cases, one test each (numbered as in the issue, then the
//! "also" items): what a new user can type that used to lose data, hang, abort or
//! run wrong code. Each asserts the exit code, the message, and that nothing was
//! written or overwritten (the bytes and types of every file before and after).
//!
//! `EFFC_TEST_BIN=/path/to/effc` runs them against another binary (to show that
//! they fail on an old one). `EFFC_HOSTILE_LOG=FILE` appends one line per command
//! run: the case, the command, the exit code and the message's first line.
//! `EFFC_TEST_MEMORY_LIMIT=BYTES` caps each run's address space.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LITE0: &str = "tests/fixtures/lite0/efficientnet-lite0.safetensors";
const CHELSEA: &str = "tests/fixtures/images/chelsea.png";

fn root() -> PathBuf {
    effc_testkit::root()
}

fn bin() -> PathBuf {
    std::env::var_os("EFFC_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_effc")))
}

/// What one run of effc did: `code` is `None` when it was killed at the time limit.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ran {
    /// The first line of the message (stderr), as the table shows it.
    fn first_line(&self) -> &str {
        self.stderr
            .lines()
            .find(|l| !l.starts_with("note:") && !l.trim().is_empty())
            .unwrap_or("")
    }

    /// Exit code 1 (or `want`) and `what` in stderr.
    fn refused(&self, want: i32, what: &str) {
        assert_eq!(
            self.code,
            Some(want),
            "exit code; stderr: {}\nstdout: {}",
            self.stderr,
            self.stdout
        );
        assert!(
            self.stderr.contains(what),
            "wanted {what:?} in: {}",
            self.stderr
        );
    }

    /// [`Ran::refused`], and `never` in neither stdout nor stderr.
    fn refused_without(&self, want: i32, what: &str, never: &str) {
        self.refused(want, what);
        for out in [&self.stdout, &self.stderr] {
            assert!(!out.contains(never), "{never:?} in: {out}");
        }
    }
}

/// Runs effc in `cwd` with `args` (and `env`), killed after `limit`.
fn effc_at(
    case: &str,
    cwd: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Stdio,
    limit: Duration,
) -> Ran {
    let mut c = Command::new(bin());
    c.args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    limit_memory(&mut c);
    let mut child = c.spawn().expect("effc starts");
    // Read both pipes on threads so a chatty child never blocks.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err, &mut s);
        s
    });
    let start = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().or(Some(128 + status_signal(&status)));
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let ran = Ran {
        code,
        stdout: String::from_utf8_lossy(&t_out.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&t_err.join().unwrap()).into_owned(),
    };
    log(case, args, env, &ran);
    ran
}

/// `EFFC_TEST_MEMORY_LIMIT=BYTES` caps each effc's address space (for running an
/// old binary that reads `/dev/zero` until memory runs out, on a shared machine).
fn limit_memory(c: &mut Command) {
    let Some(bytes) = std::env::var("EFFC_TEST_MEMORY_LIMIT")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return;
    };
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe; the closure allocates nothing.
    unsafe {
        c.pre_exec(move || {
            let l = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &l) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(unix)]
fn status_signal(s: &std::process::ExitStatus) -> i32 {
    std::os::unix::process::ExitStatusExt::signal(s).unwrap_or(0)
}

#[cfg(not(unix))]
fn status_signal(_: &std::process::ExitStatus) -> i32 {
    0
}

fn log(case: &str, args: &[&str], env: &[(&str, &str)], ran: &Ran) {
    let Some(path) = std::env::var_os("EFFC_HOSTILE_LOG") else {
        return;
    };
    let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
    let code = ran
        .code
        .map_or("killed after the time limit".to_string(), |c| c.to_string());
    let line = format!(
        "{case}\t{}effc {}\t{code}\t{}\n",
        env.concat(),
        args.join(" "),
        ran.first_line().replace('\t', " ")
    );
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(line.as_bytes());
    }
}

/// effc in `cwd` with the words of `line` as arguments, at most 120 s.
fn sh(case: &str, cwd: &Path, line: &str) -> Ran {
    let args: Vec<&str> = line.split_whitespace().collect();
    effc(case, cwd, &args)
}

/// effc in `cwd`, at most 120 s.
fn effc(case: &str, cwd: &Path, args: &[&str]) -> Ran {
    effc_at(
        case,
        cwd,
        args,
        &[],
        Stdio::null(),
        Duration::from_secs(120),
    )
}

/// Every file under `dir`: its type and, for regular files, its bytes; for
/// symlinks, their target.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (String, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let t = m.file_type();
            let entry = if t.is_symlink() {
                let target = std::fs::read_link(&p).unwrap();
                (
                    "symlink".into(),
                    target.to_string_lossy().into_owned().into_bytes(),
                )
            } else if t.is_dir() {
                todo.push(p.clone());
                ("dir".into(), vec![])
            } else if t.is_file() {
                ("file".into(), std::fs::read(&p).unwrap())
            } else {
                (format!("{t:?}"), vec![])
            };
            out.insert(p.strip_prefix(dir).unwrap().to_path_buf(), entry);
        }
    }
    out
}

fn assert_unchanged(dir: &Path, before: &BTreeMap<PathBuf, (String, Vec<u8>)>) {
    let after = snapshot(dir);
    let names = |s: &BTreeMap<PathBuf, (String, Vec<u8>)>| -> Vec<String> {
        s.keys().map(|k| k.display().to_string()).collect()
    };
    assert_eq!(names(before), names(&after), "the files changed");
    for (k, v) in before {
        assert!(after[k] == *v, "`{}` changed", k.display());
    }
}

/// A scratch directory holding a spec `my.enet` (extends lite0), the image
/// `x.png`; the checkpoint is read from the fixtures.
fn scratch() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("my.enet"), "model my extends lite0 { }\n").unwrap();
    std::fs::copy(root().join(CHELSEA), d.path().join("x.png")).unwrap();
    d
}

fn lite0() -> String {
    root().join(LITE0).display().to_string()
}

fn mkfifo(p: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: mkfifo on a NUL-terminated path the test owns.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// A private device node (a copy of /dev/null, char 1:3) when running as root,
/// else a FIFO: either way not a regular file, and never to be replaced.
fn device_node(p: &Path) -> &'static str {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
        // SAFETY: mknod on a NUL-terminated path the test owns.
        let r = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 3)) };
        assert_eq!(r, 0, "mknod");
        "a character device"
    } else {
        mkfifo(p);
        "a FIFO"
    }
}

/// Case 1: `run my.enet -w W --save my.enet x.png` replaced the spec with safetensors.
#[test]
fn case01_run_save_never_replaces_the_spec_file() {
    let d = scratch();
    std::os::unix::fs::symlink("my.enet", d.path().join("link.enet")).unwrap();
    let before = snapshot(d.path());
    let w = lite0();
    for save in ["my.enet", "./my.enet", "link.enet"] {
        let r = effc(
            "1",
            d.path(),
            &[
                "run", "my.enet", "--device", "cpu", "-w", &w, "--save", save, "x.png",
            ],
        );
        r.refused(1, "is the spec file");
        assert!(r.stdout.is_empty(), "{}", r.stdout);
    }
    assert_unchanged(d.path(), &before);
}

/// Case 2: `inspect --svg`, `scale --plot` and `pick --plot` overwrote any file,
/// through symlinks, not atomically; `-o X --plot X` lost the spec.
#[test]
fn case02_svg_and_plot_never_overwrite_inputs_or_follow_symlinks() {
    let d = scratch();
    let before = snapshot(d.path());
    effc("2", d.path(), &["inspect", "my.enet", "--svg", "my.enet"])
        .refused(1, "--svg `my.enet` is the spec file");
    effc(
        "2",
        d.path(),
        &["scale", "my.enet", "--phi", "0.5", "--plot", "my.enet"],
    )
    .refused(1, "--plot `my.enet` is the spec file");
    effc(
        "2",
        d.path(),
        &[
            "scale", "my.enet", "--phi", "0.5", "-o", "y.enet", "--plot", "./y.enet",
        ],
    )
    .refused(1, "are the same file");
    mkfifo(&d.path().join("fifo.svg"));
    let before_fifo = snapshot(d.path());
    effc(
        "2",
        d.path(),
        &["pick", "--models", "lite0", "--plot", "fifo.svg"],
    )
    .refused(1, "is a FIFO");
    assert_unchanged(d.path(), &before_fifo);
    std::fs::remove_file(d.path().join("fifo.svg")).unwrap();
    assert_unchanged(d.path(), &before);

    // A symlink at the target is replaced by the new file, never written through.
    let outside = tempfile::tempdir().unwrap();
    let precious = outside.path().join("precious.txt");
    std::fs::write(&precious, "keep").unwrap();
    std::os::unix::fs::symlink(&precious, d.path().join("arch.svg")).unwrap();
    let r = effc("2", d.path(), &["inspect", "lite0", "--svg", "arch.svg"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep");
    let m = std::fs::symlink_metadata(d.path().join("arch.svg")).unwrap();
    assert!(m.is_file(), "the symlink is replaced by a regular file");
    assert!(std::fs::read_to_string(d.path().join("arch.svg"))
        .unwrap()
        .starts_with("<svg"));
}

/// Case 3: `--save` and `compile -o` replaced a device node with a regular file.
#[test]
fn case03_device_nodes_are_never_replaced() {
    let d = scratch();
    let what = device_node(&d.path().join("null"));
    let before = snapshot(d.path());
    let w = lite0();
    effc(
        "3",
        d.path(),
        &[
            "run", "lite0", "--device", "cpu", "-w", &w, "--save", "null", "x.png",
        ],
    )
    .refused(1, &format!("--save `null` is {what}"));
    effc("3", d.path(), &["compile", "lite0", "-o", "null"])
        .refused(1, &format!("-o `null` is {what}"));
    effc("3", d.path(), &["inspect", "lite0", "--svg", "null"])
        .refused(1, &format!("--svg `null` is {what}"));
    assert_unchanged(d.path(), &before);
}

/// The lines of generated code that are `//` comments hold no line terminator
/// (CR, U+2028, U+2029, NEL, VT, FF) and no `*/`.
fn comments_are_closed(file: &Path) {
    let text = std::fs::read_to_string(file).unwrap();
    for line in text.split('\n') {
        let Some(at) = line.find("//") else { continue };
        let comment = &line[at..];
        assert!(
            !comment.contains(['\r', '\u{2028}', '\u{2029}', '\u{85}', '\u{b}', '\u{c}']),
            "{}: a line terminator in a comment: {comment:?}",
            file.display()
        );
    }
}

/// Case 4: A name holding U+2028 or CR was pasted raw into `//` comments of model.js
/// and every .wgsl: a crafted name ran its own JavaScript; others gave
/// "internal compiler error".
#[test]
fn case04_model_names_are_data_never_code() {
    let d = tempfile::tempdir().unwrap();
    let name = "x\u{2028}globalThis.pwned=1;//\r*/ \u{2029}";
    std::fs::write(
        d.path().join("evil.enet"),
        format!("model \"{name}\" extends lite0 {{ resolution = 64 }}\n"),
    )
    .unwrap();
    let r = effc(
        "4",
        d.path(),
        &["compile", "evil.enet", "--target", "web", "-o", "web"],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let r = effc("4", d.path(), &["compile", "evil.enet", "-o", "rust"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    for dir in ["web", "rust"] {
        for e in std::fs::read_dir(d.path().join(dir)).unwrap() {
            let p = e.unwrap().path();
            let ext = p.extension().and_then(|x| x.to_str()).unwrap_or("");
            if matches!(ext, "wgsl" | "js" | "rs") {
                comments_are_closed(&p);
            }
        }
    }
    // model.js imported under node runs none of the name.
    let node = Command::new("node").arg("--version").output();
    if node.is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "node is required under CI=true"
        );
        eprintln!("skipping the node import: no `node` on PATH");
        return;
    }
    let script = "globalThis.pwned = 0; \
        const m = await import('./model.js'); \
        if (globalThis.pwned !== 0) { console.log('PWNED'); process.exit(3); } \
        if (typeof m.load !== 'function') process.exit(4); \
        console.log('imported cleanly');";
    let o = Command::new("node")
        .args(["--input-type=module", "-e", script])
        .current_dir(d.path().join("web"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("imported cleanly"),
        "{out} {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Case 5: Temporary files were `.NAME.PID.tmp` opened with `File::create`: a planted
/// symlink at that name made `compile` overwrite a file outside DIR.
#[test]
fn case05_planted_temporary_symlinks_are_never_followed() {
    let d = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let precious = outside.path().join("precious");
    std::fs::write(&precious, "keep").unwrap();
    let r = effc(
        "5",
        d.path(),
        &["compile", "lite0", "--resolution", "64", "-o", "out"],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let out = d.path().join("out");
    // The names the old temporaries would have for the next few hundred pids,
    // and a symlink at a target itself.
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    for pid in last..last + 400 {
        for name in ["model.rs", "plan.txt", "report.md"] {
            let _ = std::os::unix::fs::symlink(&precious, out.join(format!(".{name}.{pid}.tmp")));
        }
    }
    std::fs::remove_file(out.join("plan.txt")).unwrap();
    std::os::unix::fs::symlink(&precious, out.join("plan.txt")).unwrap();
    let r = effc(
        "5",
        d.path(),
        &["compile", "lite0", "--resolution", "96", "-o", "out"],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep");
    let m = std::fs::symlink_metadata(out.join("plan.txt")).unwrap();
    assert!(m.is_file(), "plan.txt is a new regular file");
    assert!(std::fs::read_to_string(out.join("plan.txt"))
        .unwrap()
        .contains("96"));
}

const WEB_BACKBONE: [&str; 8] = [
    "compile",
    "lite0",
    "--features",
    "1,2",
    "--target",
    "web",
    "-o",
    "site",
];

/// Case 6: `compile lite0 --features 1,2 --target web` wrote a broken site (1000
/// classes, one level read back): refused before anything is written.
#[test]
fn case06_web_backbones_are_refused_before_writing() {
    let d = tempfile::tempdir().unwrap();
    let r = effc("6", d.path(), &WEB_BACKBONE);
    r.refused(1, "the web target does not run backbones yet");
    assert!(r.stderr.contains("feature levels 1, 2"), "{}", r.stderr);
    assert!(!d.path().join("site").exists(), "nothing written");
    // Into a site effc wrote before: it stays as it was.
    let r = sh(
        "6",
        d.path(),
        "compile lite0 --resolution 64 --target web -o site",
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let before = snapshot(d.path());
    effc("6", d.path(), &WEB_BACKBONE).refused(1, "does not run backbones");
    assert_unchanged(d.path(), &before);
}

/// The lite0 checkpoint with block 0's depthwise BN scale (`_blocks.0._bn1.weight`)
/// set to `gamma` in its first `channels` channels.
fn patched_lite0(dir: &Path, gamma: f32, channels: usize) -> String {
    let mut bytes = std::fs::read(root().join(LITE0)).unwrap();
    let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let meta: serde_json::Value = serde_json::from_slice(&bytes[8..header]).unwrap();
    let t = &meta["_blocks.0._bn1.weight"];
    assert_eq!(t["dtype"], "F32");
    let start = header + t["data_offsets"][0].as_u64().unwrap() as usize;
    for c in 0..channels {
        bytes[start + 4 * c..start + 4 * c + 4].copy_from_slice(&gamma.to_le_bytes());
    }
    let p = dir.join(format!("patched-{gamma}.safetensors"));
    std::fs::write(&p, bytes).unwrap();
    p.display().to_string()
}

/// Case 7: BN folding to infinite weights was refused at f32 but printed "tiger cat
/// 93%" at f16, and a web compile wrote the infinities into weights.bin; clamped
/// f16 weights were never reported.
#[test]
fn case07_non_finite_folded_weights_are_refused_everywhere() {
    let d = scratch();
    let bad = patched_lite0(d.path(), 3e38, 32);
    let before = snapshot(d.path());
    for (device, precision) in [("cpu", "f32"), ("gpu", "f32"), ("gpu", "f16")] {
        sh("7", d.path(), &format!("run lite0 --resolution 64 --device {device} --precision {precision} -w {bad} x.png"))
        .refused(1, "folding batch norm into `blocks.0.0.dw` gives");
    }
    for precision in ["f32", "f16"] {
        sh("7", d.path(), &format!("compile lite0 --resolution 64 --target web --precision {precision} --weights {bad} -o site"))
        .refused(1, "infinite or NaN weights");
    }
    assert_unchanged(d.path(), &before);

    // Large but finite: clamped at f16, and counted on stderr and in --json.
    let big = patched_lite0(d.path(), 2e5, 4);
    let r = sh(
        "7",
        d.path(),
        &format!("run lite0 --resolution 64 --device gpu --precision f16 -w {big} --json x.png"),
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("clamped to ±65504"), "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(v[0]["clamped_weights"].as_u64().unwrap() > 0, "{v}");
}

/// Case 8: `scale b0 --grid --step 1e-9` aborted on a 6 GB allocation; `--step
/// 0.001` ran for minutes.
#[test]
fn case08_grid_refuses_more_than_2000_points_at_once() {
    let d = tempfile::tempdir().unwrap();
    for step in ["1e-9", "0.001", "0.01"] {
        let start = Instant::now();
        let r = effc_at(
            "8",
            d.path(),
            &["scale", "b0", "--grid", "--step", step],
            &[],
            Stdio::null(),
            Duration::from_secs(30),
        );
        r.refused(1, "more than 2000 grid points");
        assert!(start.elapsed() < Duration::from_secs(10), "refused at once");
    }
}

/// Case 9: `/dev/zero` as checkpoint or spec was read until memory ran out, a FIFO
/// blocked forever, pipes and `/dev/urandom` were "empty (0 bytes)".
#[test]
fn case09_inputs_that_are_not_regular_files_are_refused_at_once() {
    let d = scratch();
    mkfifo(&d.path().join("fifo"));
    let before = snapshot(d.path());
    let w = lite0();
    let limit = Duration::from_secs(30);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "run",
                "lite0",
                "--device",
                "cpu",
                "-w",
                "/dev/zero",
                "x.png",
            ],
            "checkpoint `/dev/zero` is a character device",
        ),
        (
            vec!["check", "/dev/zero"],
            "spec file `/dev/zero` is a character device",
        ),
        (
            vec!["scale", "/dev/zero", "--phi", "1"],
            "`/dev/zero` is a character device",
        ),
        (
            vec!["run", "lite0", "--device", "cpu", "-w", "fifo", "x.png"],
            "checkpoint `fifo` is a FIFO",
        ),
        (
            vec!["run", "lite0", "--device", "cpu", "-w", &w, "fifo"],
            "image `fifo` is a FIFO",
        ),
        (
            vec!["run", "lite0", "--device", "cpu", "-w", &w, "/dev/urandom"],
            "image `/dev/urandom` is a character device",
        ),
        (vec!["check", "fifo"], "`fifo` is a FIFO"),
    ];
    for (args, what) in cases {
        effc_at("9", d.path(), &args, &[], Stdio::null(), limit).refused(1, what);
    }
    // A pipe on stdin as an image.
    let r = effc_at(
        "9",
        d.path(),
        &["run", "lite0", "--device", "cpu", "-w", &w, "/dev/stdin"],
        &[],
        Stdio::piped(),
        limit,
    );
    r.refused_without(1, "is a FIFO", "is empty");
    assert_unchanged(d.path(), &before);
}

/// Case 10: `scale b0 --phi 0 --max-memory 1 -o f.enet` showed the only candidate
/// over budget, printed "chosen", wrote the file and exited 0.
#[test]
fn case10_no_candidate_within_budget_is_exit_1_and_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let r = sh("10", d.path(), "scale b0 --phi 0 --max-memory 1 -o f.enet");
    r.refused_without(1, "does not meet the budgets", "chosen");
    assert!(!d.path().join("f.enet").exists());
    let r = effc(
        "10",
        d.path(),
        &["scale", "b0", "--max-macs", "1k", "-o", "f.enet", "--json"],
    );
    r.refused(1, "meets the budgets");
    assert!(!d.path().join("f.enet").exists());
}

/// Case 11: A manifest entry naming a directory made `compile` fail only after the
/// new files were written and stale ones deleted.
#[test]
fn case11_a_manifest_entry_that_is_a_directory_fails_before_writing() {
    let d = tempfile::tempdir().unwrap();
    let r = effc(
        "11",
        d.path(),
        &["compile", "lite0", "--resolution", "64", "-o", "out"],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let out = d.path().join("out");
    let manifest = out.join(".effc-manifest");
    let mut m = std::fs::read_to_string(&manifest).unwrap();
    m.push_str("stale\n");
    std::fs::write(&manifest, m).unwrap();
    std::fs::create_dir(out.join("stale")).unwrap();
    std::fs::write(out.join("stale/mine.txt"), "keep").unwrap();
    let before = snapshot(d.path());
    effc(
        "11",
        d.path(),
        &["compile", "lite0", "--resolution", "96", "-o", "out"],
    )
    .refused(1, "is a directory");
    assert_unchanged(d.path(), &before);
}

/// Also: a quoted base name (`"my net"`) or `--name 'a"b'` made `scale` fail
/// with "internal error".
#[test]
fn also_quoted_names_scale_or_are_refused_clearly() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("q.enet"),
        "model \"my net\" extends lite0 { }\n",
    )
    .unwrap();
    let r = effc(
        "also: quoted names",
        d.path(),
        &["scale", "q.enet", "--phi", "0.5", "-o", "s.enet"],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let text = std::fs::read_to_string(d.path().join("s.enet")).unwrap();
    assert!(
        text.contains("model \"my net-phi0.50\" extends \"my net\""),
        "{text}"
    );
    let r = effc("also: quoted names", d.path(), &["check", "s.enet"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let before = snapshot(d.path());
    let r = effc(
        "also: quoted names",
        d.path(),
        &[
            "scale", "lite0", "--phi", "0.5", "--name", "a\"b", "-o", "t.enet",
        ],
    );
    r.refused_without(1, "--name: model name", "internal error");
    assert_unchanged(d.path(), &before);
}

/// Also: `EFFC_CACHE_DIR` pointing at a file failed only after the whole tune ran.
#[test]
fn also_a_cache_dir_that_is_a_file_is_refused_before_tuning() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("cache");
    std::fs::write(&file, "mine").unwrap();
    let before = snapshot(d.path());
    let start = Instant::now();
    let r = effc_at(
        "also: EFFC_CACHE_DIR",
        d.path(),
        &["tune", "lite0", "--resolution", "32"],
        &[("EFFC_CACHE_DIR", file.to_str().unwrap())],
        Stdio::null(),
        Duration::from_secs(120),
    );
    r.refused(1, "the cache directory");
    assert!(r.stderr.contains("not a directory"), "{}", r.stderr);
    assert!(start.elapsed() < Duration::from_secs(60));
    assert_unchanged(d.path(), &before);
}

/// Also: `--resolution 4294967296` showed its input as "0 B" and `--max-macs
/// 1e30` as "≤ 18446744.07 T".
#[test]
fn also_huge_numbers_are_refused_not_wrapped() {
    let d = tempfile::tempdir().unwrap();
    effc(
        "also: huge numbers",
        d.path(),
        &["inspect", "b0", "--resolution", "4294967296"],
    )
    .refused(1, "not in 1..=16384");
    let r = effc(
        "also: huge numbers",
        d.path(),
        &["scale", "b0", "--max-macs", "1e30"],
    );
    r.refused(2, "is too large");
    assert!(!r.stdout.contains("18446744.07"), "{}", r.stdout);
}

/// Also: `scale SPEC -o SPEC` silently changed what the file compiles to.
#[test]
fn also_scale_never_writes_over_its_base_spec() {
    let d = scratch();
    let before = snapshot(d.path());
    for o in ["my.enet", "./my.enet"] {
        effc(
            "also: scale SPEC -o SPEC",
            d.path(),
            &["scale", "my.enet", "--phi", "0.5", "-o", o],
        )
        .refused(1, "is the spec file");
    }
    assert_unchanged(d.path(), &before);
}

/// Also: `--top 0` printed nothing and exited 0.
#[test]
fn also_top_zero_is_refused() {
    let d = scratch();
    let w = lite0();
    effc(
        "also: --top 0",
        d.path(),
        &[
            "run",
            "lite0",
            "--device",
            "cpu",
            "--resolution",
            "64",
            "-w",
            &w,
            "--top",
            "0",
            "x.png",
        ],
    )
    .refused(2, "--top");
}
