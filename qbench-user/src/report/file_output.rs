//! Writing a file the user named (`--trace-out`, `--svg`) without ever clobbering anything else.
//! qbench-trace runs as root, so the destination decides how it is written:
//!
//! - a regular file, or nothing yet: the contents go to a new temporary file in the same
//!   directory, created with `O_EXCL` under a random name (a link planted at a guessable name
//!   cannot redirect it), then renamed over the destination, so a reader sees the old file or the
//!   new one, whole; an existing file keeps its mode and, where root can keep it, its owner;
//! - a symbolic link: written through, to the file it names, by the same rules; the link stays;
//! - anything else (`/dev/null`, a FIFO, `/dev/stdout`): opened and written in place, never
//!   replaced.

use std::{
    fs::{self, Metadata, OpenOptions, Permissions},
    io::{self, Write as _},
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

/// Writes `bytes` to `path` by the rules above. The error names `path`.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_resolved(&resolve(path)?, bytes).map_err(|e| named(path, e))
}

/// `path`, or the file its final symbolic link names.
fn resolve(path: &Path) -> io::Result<PathBuf> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => fs::canonicalize(path).map_err(|e| {
            named(
                path,
                io::Error::new(
                    e.kind(),
                    format!("a symbolic link to a file that cannot be reached ({e})"),
                ),
            )
        }),
        _ => Ok(path.to_path_buf()),
    }
}

fn write_resolved(path: &Path, bytes: &[u8]) -> io::Result<()> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            "is a directory; give a file name",
        )),
        Ok(meta) if !meta.is_file() => write_in_place(path, bytes),
        Ok(meta) => replace(path, bytes, Some(&meta)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => replace(path, bytes, None),
        Err(e) => Err(e),
    }
}

/// A device, FIFO or socket: written as it is, never created or replaced.
fn write_in_place(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).open(path)?;
    file.write_all(bytes)
}

/// A regular file (`existing`) or a new one: a temporary in the same directory, renamed over it.
fn replace(path: &Path, bytes: &[u8], existing: Option<&Metadata>) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mode = existing.map_or(0o644, |meta| meta.mode() & 0o7777);
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .permissions(Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    if let Some(meta) = existing {
        // Root replacing a user's file gives it back to the user; anyone else keeps their own.
        let _ = std::os::unix::fs::fchown(tmp.as_file(), Some(meta.uid()), Some(meta.gid()));
    }
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    // A dropped temporary removes itself, so a failed rename leaves nothing behind.
    tmp.persist(path).map(drop).map_err(|e| e.error)
}

fn named(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileTypeExt as _, symlink};

    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("qbench-file-output-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// A file `name` in `dir` holding `contents`, and a symbolic link `link` to it.
    fn file_and_link(dir: &Path, name: &str, contents: &str, link: &str) -> (PathBuf, PathBuf) {
        let (file, link) = (dir.join(name), dir.join(link));
        fs::write(&file, contents).unwrap();
        symlink(&file, &link).unwrap();
        (file, link)
    }

    /// The type of the file at `path` itself (a link is not followed).
    fn file_type(path: &Path) -> fs::FileType {
        fs::symlink_metadata(path).unwrap().file_type()
    }

    #[test]
    fn a_regular_file_is_replaced_whole_and_keeps_its_mode() {
        let dir = scratch("regular");
        let path = dir.join("t.json");
        fs::write(&path, "old contents, longer than the new").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o600)).unwrap();
        write(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        write(&dir.join("fresh.svg"), b"<svg/>").unwrap();
        assert_eq!(fs::read(dir.join("fresh.svg")).unwrap(), b"<svg/>");
        assert_eq!(names(&dir), ["fresh.svg", "t.json"], "no temporary left");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_symbolic_link_is_written_through_and_stays_a_link() {
        let dir = scratch("link");
        let (target, link) = file_and_link(&dir, "real.svg", "old", "link.svg");
        write(&link, b"new").unwrap();
        assert!(file_type(&link).is_symlink());
        assert_eq!(fs::read(&target).unwrap(), b"new");
        let dangling = dir.join("dangling.svg");
        symlink(dir.join("nowhere/x.svg"), &dangling).unwrap();
        let err = write(&dangling, b"x").unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "{}: a symbolic link to a file that cannot be reached",
                dangling.display()
            )),
            "{err}"
        );
        assert_eq!(names(&dir), ["dangling.svg", "link.svg", "real.svg"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_device_is_written_in_place_and_never_replaced() {
        write(Path::new("/dev/null"), b"discarded").unwrap();
        let meta = fs::symlink_metadata("/dev/null").unwrap();
        assert!(meta.file_type().is_char_device());
        assert_eq!(meta.rdev(), libc::makedev(1, 3));
    }

    #[test]
    fn a_fifo_is_written_in_place() {
        let dir = scratch("fifo");
        let fifo = dir.join("pipe");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || fs::read(fifo).unwrap())
        };
        write(&fifo, b"through the pipe").unwrap();
        assert_eq!(reader.join().unwrap(), b"through the pipe");
        assert!(file_type(&fifo).is_fifo());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_link_planted_at_the_old_temporary_name_is_not_followed() {
        let dir = scratch("planted");
        // The name the temporary once had, predictable from the pid.
        let planted = format!(".t.json.{}.tmp", std::process::id());
        let (victim, planted) = file_and_link(&dir, "victim", "precious", &planted);
        write(&dir.join("t.json"), b"trace").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert!(file_type(&planted).is_symlink());
        assert_eq!(fs::read(dir.join("t.json")).unwrap(), b"trace");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_or_a_missing_directory_is_one_line_naming_the_path() {
        let dir = scratch("errors");
        let err = write(&dir, b"x").unwrap_err().to_string();
        assert_eq!(
            err,
            format!("{}: is a directory; give a file name", dir.display())
        );
        let missing = dir.join("no/such/t.json");
        let err = write(&missing, b"x").unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}: ", missing.display())),
            "{err}"
        );
        assert!(!err.contains('\n'));
        fs::remove_dir_all(&dir).unwrap();
    }
}
