//! The KTAP reader against real output: the ten futex kselftests of Linux 6.12, built static
//! from the pinned tree (`gcc -static -D_GNU_SOURCE`) and run on this project's build host
//! (`tests/fixtures/kselftest-futex-6.12-host/`, with each program's exit status in
//! `exit-codes.txt`).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use lab_thirdparty::ktap::{parse, Exit, ProgramVerdict, Status};

fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kselftest-futex-6.12-host")
}

#[test]
fn every_real_futex_kselftest_output_reads_as_a_pass_with_its_plan_met() {
    let codes = std::fs::read_to_string(fixtures().join("exit-codes.txt")).expect("exit codes");
    let mut programs = 0;
    for line in codes.lines() {
        let (program, code) = line.split_once(' ').expect("program code");
        let code: i32 = code.parse().expect("code");
        let text = std::fs::read_to_string(fixtures().join(format!("{program}.tap"))).expect("tap");
        let r = parse(&text);
        assert_eq!(r.version.as_deref(), Some("TAP version 13"), "{program}");
        assert!(r.unparsed.is_empty(), "{program}: {:?}", r.unparsed);
        let planned = r.planned.expect("a plan");
        assert_eq!(planned as usize, r.cases.len(), "{program}");
        let totals = r.totals.expect("totals");
        assert_eq!(totals.pass as usize, r.cases.len(), "{program}");
        assert!(
            r.cases.iter().all(|c| c.status == Status::Pass),
            "{program}"
        );
        assert_eq!(
            r.verdict(Exit::Code(code)),
            ProgramVerdict::Pass,
            "{program}"
        );
        // The same output with the exit status of a futex RET_FAIL is a failure.
        assert!(
            matches!(r.verdict(Exit::Code(254)), ProgramVerdict::Fail(_)),
            "{program}"
        );
        let keys = r.keyed_cases(program);
        assert_eq!(keys[0].0, format!("{program}:1"));
        programs += 1;
    }
    assert_eq!(programs, 10, "all ten programs of functional/Makefile");
}
