//! rsvg-convert, the real renderer SVG timelines are checked with (`cargo xtask setup` installs
//! it), and what it drew.

use std::path::Path;
use std::process::Command;

/// A rendered picture: its size in pixels, and how much of it is not white.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rendered {
    pub width: u32,
    pub height: u32,
    /// Pixels with ink (any colour channel below 200), per thousand.
    pub inked_permille: usize,
}

/// Renders the SVG file `svg` to the PNG file `png` and decodes it; fails the test, saying what
/// to install or what the renderer said, when it cannot.
pub fn render_png(svg: &Path, png: &Path) -> Rendered {
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
    let file = std::fs::File::open(png).expect("the PNG file");
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size().expect("its size")];
    let frame = reader.next_frame(&mut pixels).expect("decoded");
    let channels = frame.color_type.samples();
    let inked = pixels[..frame.buffer_size()]
        .chunks(channels)
        .filter(|p| p[..channels.min(3)].iter().any(|&c| c < 200))
        .count();
    let total = (frame.width as usize * frame.height as usize).max(1);
    Rendered {
        width: frame.width,
        height: frame.height,
        inked_permille: inked * 1000 / total,
    }
}
