//! Where an instruction comes from: the argument, stdin (`-`) or `--file`, never more than
//! `coding.max_instruction_bytes` (argv alone cannot carry more than 128 KiB).

use std::io::Read;
use std::path::Path;

use station_core::config::check_instruction_size;
use station_core::{Error, InputError};

/// The instruction `arg` stands for (`-` = stdin) or the contents of `file`, at most
/// `max_bytes`. `what` names it in errors ("instruction", "task").
pub(crate) fn read(
    arg: Option<&str>,
    file: Option<&Path>,
    max_bytes: u64,
    what: &str,
) -> Result<String, Error> {
    let (text, source) = match (arg, file) {
        (_, Some(path)) => (
            read_file(path, max_bytes, what)?,
            path.display().to_string(),
        ),
        (Some("-"), None) => (read_stdin(max_bytes, what)?, "stdin".to_string()),
        (Some(text), None) => {
            check_instruction_size(text.len() as u64, max_bytes, "the command line")?;
            (text.to_string(), "the command line".to_string())
        }
        (None, None) => {
            return Err(InputError::new(format!("no {what} given"))
                .hint("pass it as an argument, `-` for stdin, or --file PATH")
                .into());
        }
    };
    if text.trim().is_empty() {
        return Err(
            InputError::new(format!("the {what} from {source} is empty"))
                .hint("say what the coding agent should do")
                .into(),
        );
    }
    Ok(text)
}

fn read_stdin(max_bytes: u64, what: &str) -> Result<String, Error> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(format!("reading the {what} from stdin"), e))?;
    check_instruction_size(bytes.len() as u64, max_bytes, "stdin")?;
    String::from_utf8(bytes).map_err(|e| {
        InputError::new(format!(
            "the {what} on stdin is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
        .into()
    })
}

fn read_file(path: &Path, max_bytes: u64, what: &str) -> Result<String, Error> {
    // Read one byte past the cap so an over-cap file gets the cap's error, naming its key.
    let text = station_core::fsutil::read_text(path, max_bytes.saturating_add(1), what);
    let text = match text {
        Err(Error::NotFound { .. }) => {
            return Err(InputError::new(format!("the {what} file does not exist"))
                .in_file(path)
                .field("--file")
                .into());
        }
        other => other?,
    };
    check_instruction_size(
        text.len() as u64,
        max_bytes,
        &format!("the file {}", path.display()),
    )?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_over_the_cap_names_the_cap_and_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.txt");
        std::fs::write(&path, "x".repeat(101)).unwrap();
        let err = read(None, Some(&path), 100, "instruction").unwrap_err();
        assert_eq!(err.kind(), station_core::ErrorKind::Config);
        let text = err.to_string();
        assert!(
            text.contains("100 bytes") && text.contains("coding.max_instruction_bytes"),
            "{text}"
        );
        std::fs::write(&path, "x".repeat(100)).unwrap();
        assert_eq!(
            read(None, Some(&path), 100, "instruction").unwrap().len(),
            100
        );
    }

    #[test]
    fn an_empty_or_missing_instruction_is_a_usage_error() {
        let err = read(Some("  \n"), None, 100, "instruction").unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        let err = read(None, Some(Path::new("/nonexistent/x")), 100, "task").unwrap_err();
        assert_eq!(err.kind(), station_core::ErrorKind::Config);
        assert!(err.to_string().contains("does not exist"), "{err}");
    }
}
