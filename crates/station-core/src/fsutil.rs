//! Reading user-named files safely: regular files only, and never more than a cap.
//!
//! A path given on the command line or in config may name `/dev/zero`, a FIFO that nobody
//! writes to, or a multi-gigabyte file by mistake; each of those must be a clear error, not a
//! hang or an out-of-memory kill.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{Error, InputError, Result};

/// Read `path` as text (invalid UTF-8 is an error) if it is a regular file of at most
/// `max_bytes`. `what` names the file in errors ("config file", "agent file").
/// A missing file is [`Error::NotFound`].
pub fn read_text(path: &Path, max_bytes: u64, what: &str) -> Result<String> {
    let bytes = read_bytes(path, max_bytes, what)?;
    String::from_utf8(bytes).map_err(|e| {
        InputError::new(format!(
            "the {what} is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
        .in_file(path)
        .into()
    })
}

/// Like [`read_text`], for bytes.
pub fn read_bytes(path: &Path, max_bytes: u64, what: &str) -> Result<Vec<u8>> {
    let file = open_regular(path, what)?;
    let mut bytes = Vec::new();
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(format!("reading the {what} {}", path.display()), e))?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large(path, max_bytes, what));
    }
    Ok(bytes)
}

fn open_regular(path: &Path, what: &str) -> Result<File> {
    // Non-blocking, so opening a FIFO without a writer returns at once; the type check
    // below then refuses it.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound {
                what: "file",
                id: path.display().to_string(),
            },
            _ => Error::io(format!("opening the {what} {}", path.display()), e),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| Error::io(format!("reading the {what} {}", path.display()), e))?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let described = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a named pipe (FIFO)"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(
            InputError::new(format!("the {what} is {described}, not a regular file"))
                .in_file(path)
                .hint(format!("give the path of a {what} on disk"))
                .into(),
        );
    }
    Ok(file)
}

fn too_large(path: &Path, max_bytes: u64, what: &str) -> Error {
    InputError::new(format!(
        "the {what} is larger than {} (the most Station reads)",
        human_bytes(max_bytes)
    ))
    .in_file(path)
    .hint(format!("check that this is the right {what}"))
    .into()
}

fn human_bytes(n: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_small_file_and_refuses_a_big_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "a: 1\n").unwrap();
        assert_eq!(read_text(&path, 16, "config file").unwrap(), "a: 1\n");
        std::fs::write(&path, "x".repeat(17)).unwrap();
        let err = read_text(&path, 16, "config file").unwrap_err().to_string();
        assert!(
            err.contains("larger than 16 bytes") && err.contains("c.yaml"),
            "{err}"
        );
    }

    #[test]
    fn refuses_devices_directories_and_fifos_without_blocking() {
        let err = read_text(Path::new("/dev/zero"), 1024, "agent file").unwrap_err();
        assert!(err.to_string().contains("is a device"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let err = read_text(dir.path(), 1024, "agent file").unwrap_err();
        assert!(err.to_string().contains("is a directory"), "{err}");
        let fifo = dir.path().join("pipe");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = read_text(&fifo, 1024, "agent file").unwrap_err();
        assert!(err.to_string().contains("named pipe"), "{err}");
    }

    #[test]
    fn missing_files_are_not_found_and_binary_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_text(&dir.path().join("none"), 16, "config file"),
            Err(Error::NotFound { .. })
        ));
        let path = dir.path().join("bin");
        std::fs::write(&path, [0xffu8, 0xfe, 0x00]).unwrap();
        let err = read_text(&path, 16, "config file").unwrap_err().to_string();
        assert!(err.contains("not UTF-8"), "{err}");
    }
}
