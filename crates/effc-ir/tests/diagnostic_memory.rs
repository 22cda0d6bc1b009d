//! `effc check` on a spec with many errors uses memory linear in the number of
//! errors: diagnostics share the source text instead of copying it (before, each
//! diagnostic held a copy: 4,000 errors took 338 MB, 50,000 in a 1 MB spec were
//! killed at 24 GB). The peak resident size of this test's own process
//! (`VmHWM`) is measured, so this file holds one test and nothing runs beside it.

use effc_ir::Spec;

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status");
    kb / 1024.0
}

/// A spec whose every block string has an even kernel: one error each.
fn even_kernels(n: usize) -> String {
    let mut text = String::from("model bad {\n    blocks {\n");
    for _ in 0..n {
        text.push_str("        r1_k4_s11_e1_i32_o16\n");
    }
    text.push_str("    }\n}\n");
    text
}

fn check(n: usize, limit_mb: f64) {
    let text = even_kernels(n);
    let before = peak_rss_mb();
    let d = Spec::parse_all("many.enet", &text).unwrap_err();
    assert_eq!(d.0.len(), n);
    let rendered = d.render(false);
    assert!(rendered.contains(&format!("... and {} more errors", n - 100)));
    let grown = peak_rss_mb() - before;
    assert!(
        grown < limit_mb,
        "{n} errors in a {} kB spec: peak RSS grew by {grown:.0} MB (limit {limit_mb} MB)",
        text.len() / 1024
    );
}

#[test]
fn many_errors_take_memory_linear_in_their_number() {
    if !std::path::Path::new("/proc/self/status").exists() {
        return; // not Linux: no VmHWM to read
    }
    // 10,000 errors in a 290 kB spec: each copying the text would be 2.9 GB.
    check(10_000, 64.0);
    // 50,000 block strings, 1.4 MB: 70 GB with a copy per error.
    check(50_000, 256.0);
}
