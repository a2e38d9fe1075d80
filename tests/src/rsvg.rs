//! rsvg-convert, the real renderer the SVG timeline is checked with (`cargo xtask setup`
//! installs it). qbench-user's unit tests of the timeline include this file as well.

use std::path::Path;
use std::process::Command;

/// Renders the SVG file `svg` to the PNG file `png`; fails the test, saying what to install or
/// what the renderer said, when it cannot.
pub fn render_png(svg: &Path, png: &Path) {
    let out = Command::new("rsvg-convert")
        .arg("-o")
        .arg(png)
        .arg(svg)
        .output()
        .unwrap_or_else(|e| {
            panic!("rsvg-convert (Debian package librsvg2-bin) is missing: {e}; run `cargo xtask setup`")
        });
    assert!(
        out.status.success(),
        "rsvg-convert: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
