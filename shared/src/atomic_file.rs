//! Writing a file so readers see the whole old one or the whole new one, and a crash leaves one
//! of them: the one atomic-write helper of both processes (the data plane's slots and ports
//! files, the control plane's BIRD configuration).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically: a temporary file beside it (`<path>.tmp.<pid>`,
/// created with `mode`, which the umask further restricts), fsync, rename over `path`, fsync
/// of the directory. The temporary file is removed when a step fails.
///
/// # Errors
/// The failing step (`"create"`, `"write"`, `"fsync"`, `"rename"`, `"fsync dir"`) and its
/// I/O error.
pub fn write_atomic(
    path: &Path,
    bytes: &[u8],
    mode: u32,
) -> Result<(), (&'static str, std::io::Error)> {
    write(path, bytes, mode, true)
}

/// [`write_atomic`] without the two fsyncs: readers still see the whole old file or the whole
/// new one, and a crash of the process leaves one of them, but after a power loss the file may
/// be the old one or empty. For files their owner derives and rewrites at every start — the
/// data plane's slots file, fiberlbd's applied-state hint — where the fsyncs (~0.5–1 ms each
/// on a disk) sat in every configuration commit for no durability anyone needs.
///
/// # Errors
/// As [`write_atomic`] (without its fsync steps).
pub fn replace_atomic(
    path: &Path,
    bytes: &[u8],
    mode: u32,
) -> Result<(), (&'static str, std::io::Error)> {
    write(path, bytes, mode, false)
}

fn write(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    durable: bool,
) -> Result<(), (&'static str, std::io::Error)> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp.{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| ("create", e))?;
        f.write_all(bytes).map_err(|e| ("write", e))?;
        if durable {
            f.sync_all().map_err(|e| ("fsync", e))?;
        }
        drop(f);
        std::fs::rename(&tmp, path).map_err(|e| ("rename", e))
    })();
    if result.is_err() || !durable {
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        return result;
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ("fsync dir", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("fiberlb-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f.json");
        type Writer = fn(&Path, &[u8], u32) -> Result<(), (&'static str, std::io::Error)>;
        // The durable writer, then the same without fsyncs: both replace the file whole.
        for (writer, bytes) in [
            (write_atomic as Writer, &b"two"[..]),
            (replace_atomic as Writer, &b"three"[..]),
        ] {
            writer(&p, b"one", 0o600).unwrap();
            writer(&p, bytes, 0o600).unwrap();
            assert_eq!(std::fs::read(&p).unwrap(), bytes);
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let names: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, ["f.json"]);
            let (op, _) = writer(&dir.join("missing/f"), b"x", 0o600).unwrap_err();
            assert_eq!(op, "create");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
