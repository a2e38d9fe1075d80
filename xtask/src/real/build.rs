//! The unpatched program and each stage of its patch, built in a tree of their own under
//! target/real/PROGRAM/: a copy of the source, the stage's patches applied in order, configured
//! (stages against the release libqbench, by include and library paths, no pkg-config; after
//! `autoreconf -fi` where the program needs it) and built. A tree whose stamp matches what it
//! would be built from is kept as it is.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, ensure};

use super::program::Spec;
use crate::run::Runner;
use crate::workspace::{self, Profile};

/// One build of the program: unpatched (no patches) or a stage (its patches and the ones
/// before it).
#[derive(Debug, Clone)]
pub struct Variant {
    /// The tree's directory name: `unpatched`, `stage1`, ...
    pub name: String,
    /// What the stage does, for the summary line.
    pub title: String,
    /// The patch files to apply, in order.
    pub patches: Vec<PathBuf>,
}

/// The variants of a program whose patches are listed, in order, in `patches/series`: the
/// unpatched program, then one per stage.
pub fn variants(patch_dir: &Path) -> anyhow::Result<Vec<Variant>> {
    let series = fs::read_to_string(patch_dir.join("series"))
        .with_context(|| format!("cannot read {}/series", patch_dir.display()))?;
    let mut all = vec![Variant {
        name: "unpatched".to_owned(),
        title: "unpatched".to_owned(),
        patches: Vec::new(),
    }];
    for (i, file) in series
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        let mut patches = all[i].patches.clone();
        patches.push(patch_dir.join(file));
        all.push(Variant {
            name: format!("stage{}", i + 1),
            title: format!("stage {} {}", i + 1, stage_title(file)),
            patches,
        });
    }
    Ok(all)
}

/// `01-main-and-workers.patch` -> `main and workers`.
fn stage_title(file: &str) -> String {
    let stem = file.strip_suffix(".patch").unwrap_or(file);
    let words = stem.trim_start_matches(|c: char| c.is_ascii_digit() || c == '-');
    words.replace('-', " ")
}

/// The directory the variants of `program` are built in.
pub fn build_root(program: &str) -> PathBuf {
    workspace::profile_dir(Profile::Release)
        .parent()
        .expect("the profile directory is in the target directory")
        .join("real")
        .join(program)
}

/// Builds `variant` of the program from `source` (unless built from the same already) and
/// returns the executable.
pub fn build(
    spec: &Spec,
    source: &Path,
    variant: &Variant,
    verbose: bool,
) -> anyhow::Result<PathBuf> {
    let program = spec.name;
    let tree = build_root(program).join(&variant.name);
    let exe = tree.join(spec.exe);
    let stamp = stamp(source, variant)?;
    let stamp_file = tree.join(".qbench-stamp");
    if exe.exists() && fs::read_to_string(&stamp_file).is_ok_and(|s| s == stamp) {
        println!("real: {}: built already ({})", variant.title, exe.display());
        return Ok(exe);
    }
    let started = Instant::now();
    let runner = Runner::new(verbose, &format!("real-{program}-{}", variant.name))?;
    let _ = fs::remove_dir_all(&tree);
    fs::create_dir_all(tree.parent().context("build root")?)?;
    runner.run(Command::new("cp").arg("-a").arg(source).arg(&tree))?;
    for patch in &variant.patches {
        runner.run(
            Command::new("patch")
                .args(["-p1", "--batch", "--forward", "-i"])
                .arg(patch)
                .current_dir(&tree),
        )?;
    }
    if spec.autoreconf {
        runner.run(Command::new("autoreconf").arg("-fi").current_dir(&tree))?;
    }
    let mut configure = Command::new("./configure");
    configure.current_dir(&tree);
    if !variant.patches.is_empty() {
        let include = workspace::root().join("qbench-runtime/include");
        let lib = workspace::profile_dir(Profile::Release);
        configure
            .arg(format!("CPPFLAGS=-I{}", include.display()))
            .arg(format!("LDFLAGS=-L{0} -Wl,-rpath,{0}", lib.display()))
            .arg("LIBS=-lqbench");
    }
    runner.run(&mut configure)?;
    runner.run(
        Command::new("make")
            .arg("-j2")
            .args(spec.make_targets)
            .current_dir(&tree),
    )?;
    ensure!(exe.exists(), "make left no {}", exe.display());
    fs::write(&stamp_file, stamp)?;
    println!(
        "real: {}: built in {:.1} s ({})",
        variant.title,
        started.elapsed().as_secs_f64(),
        exe.display()
    );
    Ok(exe)
}

/// What a tree is built from: the source, the runtime's library directory, and each patch's
/// text.
fn stamp(source: &Path, variant: &Variant) -> anyhow::Result<String> {
    let mut text = format!(
        "source {}\nlibqbench {}\n",
        source.display(),
        workspace::profile_dir(Profile::Release).display()
    );
    for patch in &variant.patches {
        text.push_str(
            &fs::read_to_string(patch)
                .with_context(|| format!("cannot read {}", patch.display()))?,
        );
    }
    Ok(text)
}

/// `cargo build --release -p qbench-runtime`, and the `libqbench.so.0` name programs load it by.
pub fn release_runtime() -> anyhow::Result<()> {
    workspace::cargo(&["build", "--release", "-p", "qbench-runtime"])?;
    let dir = workspace::profile_dir(Profile::Release);
    let soname = dir.join("libqbench.so.0");
    if fs::symlink_metadata(&soname).is_err() {
        std::os::unix::fs::symlink("libqbench.so", &soname)
            .with_context(|| format!("cannot create {}", soname.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_stage_applies_the_patches_before_it() {
        let dir = std::env::temp_dir().join(format!("qbench-real-series-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        fs::write(
            dir.join("series"),
            "01-main-and-workers.patch\n\n02-helpers.patch\n",
        )
        .expect("series");
        let all = variants(&dir).expect("variants");
        let names: Vec<_> = all
            .iter()
            .map(|v| (v.name.as_str(), v.title.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("unpatched", "unpatched"),
                ("stage1", "stage 1 main and workers"),
                ("stage2", "stage 2 helpers")
            ]
        );
        assert!(all[0].patches.is_empty());
        assert_eq!(
            all[2].patches,
            [
                dir.join("01-main-and-workers.patch"),
                dir.join("02-helpers.patch")
            ]
        );
        fs::remove_dir_all(&dir).expect("clean up");
    }
}
