//! include/qbench.h declares exactly what libqbench.so exports (functions and its one data symbol), and the probe anchors start with
//! the 5-byte NOP the probe contract promises.

use std::collections::BTreeSet;
use std::process::Command;

use qbench_tests::{artifact, workspace_root};

fn exported_symbols() -> BTreeSet<String> {
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(artifact("libqbench.so"))
        .output()
        .expect("run nm");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .filter(|s| s.starts_with("qbench_"))
        .map(str::to_string)
        .collect()
}

/// qbench.h, as the repository has it.
fn header_text() -> String {
    std::fs::read_to_string(workspace_root().join("qbench-runtime/include/qbench.h"))
        .expect("read qbench.h")
}

/// The data symbols the header declares (`extern TYPE qbench_NAME;`).
fn declared_data() -> BTreeSet<String> {
    let header = header_text();
    header
        .lines()
        .filter(|l| l.starts_with("extern ") && l.ends_with(';') && !l.contains('('))
        .filter_map(|l| l.trim_end_matches(';').rsplit(' ').next())
        .filter(|name| name.starts_with("qbench_"))
        .map(str::to_string)
        .collect()
}

fn declared_functions() -> BTreeSet<String> {
    let header = header_text();
    let mut names = BTreeSet::new();
    // Declarations start a line with a return type; comments start with "/*" or " *".
    for line in header
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with('/'))
    {
        if let Some(open) = line.find("qbench_")
            && let Some(len) = line[open..].find('(')
        {
            names.insert(line[open..open + len].to_string());
        }
    }
    names
}

#[test]
fn header_declares_exactly_the_exported_functions() {
    let exported = exported_symbols();
    let declared = declared_functions();
    assert_eq!(declared.len(), 17, "{declared:?}");
    let data = declared_data();
    assert_eq!(data, BTreeSet::from(["qbench_state".to_string()]));
    assert_eq!(exported, &declared | &data);
}

#[test]
fn probe_anchors_start_with_a_five_byte_nop() {
    let out = Command::new("objdump")
        .args(["-d", "--no-show-raw-insn"])
        .arg(artifact("libqbench.so"))
        .output()
        .expect("run objdump");
    let text = String::from_utf8_lossy(&out.stdout);
    for anchor in [
        "qbench_update",
        "qbench_probe_request",
        "qbench_probe_arrive",
        "qbench_probe_depart",
        "qbench_probe_release",
    ] {
        let start = text
            .find(&format!("<{anchor}>:\n"))
            .unwrap_or_else(|| panic!("{anchor} not found"));
        let first = text[start..].lines().nth(1).expect("first instruction");
        // `nopl 0x0(%rax,%rax,1)` is 0f 1f 44 00 00.
        assert!(
            first.ends_with("nopl   0x0(%rax,%rax,1)"),
            "{anchor}: {first}"
        );
    }
    // The fast path of the update point: the NOP, one load-and-compare, a branch, a return.
    let start = text.find("<qbench_update>:\n").expect("qbench_update");
    let body: Vec<&str> = text[start..].lines().skip(1).take(4).collect();
    assert!(body[1].contains("cmpl   $0x0,"), "{body:?}");
    assert!(body[2].contains("jne"), "{body:?}");
    assert!(body[3].trim_end().ends_with("ret"), "{body:?}");
}
