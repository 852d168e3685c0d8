//! The report's tests: medians and ratios, cells, and the per-machine sections of the file.

use super::targets::Target;
use super::*;

fn figures(pairs: &[(&str, f64)]) -> Figures {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[test]
fn medians_and_ratios() {
    let mut r = Report::new(
        vec![
            Impl::RawTcp,
            Impl::Polymux(polymux::Dialect::Yamux),
            Impl::Yamux014,
        ],
        vec![Scenario::Bulk],
    );
    for v in [100.0, 300.0, 200.0] {
        r.record(Impl::RawTcp, Scenario::Bulk, Ok(figures(&[("mibps", v)])));
    }
    r.record(
        Impl::Polymux(polymux::Dialect::Yamux),
        Scenario::Bulk,
        Ok(figures(&[("mibps", 180.0)])),
    );
    r.record(
        Impl::Yamux014,
        Scenario::Bulk,
        Ok(figures(&[("mibps", 90.0)])),
    );
    r.record(Impl::Yamux014, Scenario::Bulk, Err("boom".into()));
    let c = &COLUMNS[0];
    assert_eq!(r.value(0, c), Some(200.0));
    assert_eq!(r.best_peer(c).map(|(i, _)| i), Some(Impl::Yamux014));
    let mut notes = Notes::new("Intel");
    let cell = r.cell(1, Impl::Polymux(polymux::Dialect::Yamux), c, &mut notes);
    assert_eq!(cell, "180 (0.90 / – / 2.00)");
    let failed = r.cell(2, Impl::Yamux014, c, &mut notes);
    assert!(failed.contains("[^intel-1]"), "{failed}");
    assert!(r.check(1, c, Target::Throughput).contains('✅'));
}

#[test]
fn cells_show_the_ratio_to_raw_tcp_large_too() {
    let yamux = Impl::Polymux(polymux::Dialect::Yamux);
    let mut r = Report::new(
        vec![Impl::RawTcp, Impl::RawTcpLarge, yamux],
        vec![Scenario::Bulk],
    );
    r.record(
        Impl::RawTcp,
        Scenario::Bulk,
        Ok(figures(&[("mibps", 100.0)])),
    );
    r.record(
        Impl::RawTcpLarge,
        Scenario::Bulk,
        Ok(figures(&[("mibps", 400.0)])),
    );
    r.record(yamux, Scenario::Bulk, Ok(figures(&[("mibps", 200.0)])));
    let c = &COLUMNS[0];
    let mut notes = Notes::new("AMD");
    assert_eq!(
        r.cell(0, Impl::RawTcp, c, &mut notes),
        "100 (1.00 / 0.25 / –)"
    );
    assert_eq!(
        r.cell(1, Impl::RawTcpLarge, c, &mut notes),
        "400 (4.00 / 1.00 / –)"
    );
    assert_eq!(r.cell(2, yamux, c, &mut notes), "200 (2.00 / 0.50 / –)");
}

#[test]
fn a_run_replaces_only_its_machine_kinds_section() {
    let section =
        |kind: &str, body: &str| format!("{}\n{body}\n{}\n", begin_marker(kind), end_marker(kind));
    // No file yet, or one from before sections: a fresh document.
    let fresh = merge(None, "Intel", &section("Intel", "new"));
    assert!(fresh.starts_with("# Benchmarks"));
    assert!(fresh.ends_with(&section("Intel", "new")));
    assert_eq!(
        merge(Some("# old table\n"), "Intel", &section("Intel", "new")),
        fresh
    );
    // A new kind is appended; the existing one stays as it was.
    let both = merge(Some(&fresh), "AMD", &section("AMD", "amd 1"));
    assert!(both.contains(&section("Intel", "new")));
    assert!(both.ends_with(&section("AMD", "amd 1")));
    // A rerun replaces its own section in place, text around it untouched.
    let edited = both.replace("# Benchmarks", "# Benchmarks (hand-edited)");
    let rerun = merge(Some(&edited), "Intel", &section("Intel", "newer"));
    assert_eq!(
        rerun,
        edited.replace(&section("Intel", "new"), &section("Intel", "newer"))
    );
    assert_eq!(rerun.matches("polymux-bench section:").count(), 2);
}
