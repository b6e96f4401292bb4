//! An append-only file rotated by size: when the next line would make FILE
//! larger than the limit, FILE becomes FILE.1, FILE.1 becomes FILE.2, and so
//! on; the oldest beyond the file count is dropped.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    max_files: u32,
    /// `None` after a failure: reopened on the next write.
    file: Option<BufWriter<File>>,
    size: u64,
}

impl RotatingFile {
    /// Opens (or creates, owner-only) the file and its directory.
    pub fn open(path: &Path, max_bytes: u64, max_files: u32) -> io::Result<Self> {
        let mut file = Self {
            path: path.to_owned(),
            max_bytes,
            max_files: max_files.max(1),
            file: None,
            size: 0,
        };
        file.reopen()?;
        Ok(file)
    }

    fn reopen(&mut self) -> io::Result<()> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)?;
        self.size = file.metadata()?.len();
        self.file = Some(BufWriter::new(file));
        Ok(())
    }

    /// Appends `line` and a newline (buffered; see [`RotatingFile::flush`]).
    pub fn write_line(&mut self, line: &str) -> io::Result<()> {
        let len = line.len() as u64 + 1;
        if self.size > 0 && self.size + len > self.max_bytes {
            self.rotate()?;
        }
        if self.file.is_none() {
            self.reopen()?;
        }
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("the audit file is not open"));
        };
        let written = file.write_all(line.as_bytes()).and_then(|()| file.write_all(b"\n"));
        match written {
            Ok(()) => {
                self.size += len;
                Ok(())
            }
            Err(e) => {
                // Drop what is buffered: a retry reopens and starts clean.
                self.file = None;
                Err(e)
            }
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        let Some(file) = self.file.as_mut() else { return Ok(()) };
        let flushed = file.flush();
        if flushed.is_err() {
            self.file = None;
        }
        flushed
    }

    /// Flushes and asks the OS to put the data on disk.
    pub fn sync(&mut self) -> io::Result<()> {
        self.flush()?;
        match &self.file {
            Some(file) => file.get_ref().sync_all(),
            None => Ok(()),
        }
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.flush()?;
        self.file = None;
        if self.max_files == 1 {
            remove_if_present(&self.path)?;
        } else {
            for n in (1..self.max_files - 1).rev() {
                rename_if_present(&numbered(&self.path, n), &numbered(&self.path, n + 1))?;
            }
            rename_if_present(&self.path, &numbered(&self.path, 1))?;
        }
        self.reopen()
    }
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn rename_if_present(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn rotates_by_size_and_keeps_at_most_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/audit.log");
        let mut file = RotatingFile::open(&path, 20, 3).unwrap();
        for n in 0..5 {
            // 9 bytes + newline: two lines per file.
            file.write_line(&format!("line-{n:04}")).unwrap();
        }
        file.flush().unwrap();
        assert_eq!(lines(&path), ["line-0004"]);
        assert_eq!(lines(&numbered(&path, 1)), ["line-0002", "line-0003"]);
        assert_eq!(lines(&numbered(&path, 2)), ["line-0000", "line-0001"]);
        assert!(!numbered(&path, 3).exists());
        file.write_line("line-0005").unwrap();
        file.write_line("line-0006").unwrap();
        file.sync().unwrap();
        assert_eq!(lines(&numbered(&path, 2)), ["line-0002", "line-0003"]);
        assert_eq!(lines(&path), ["line-0006"]);
    }

    #[test]
    fn a_single_file_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut file = RotatingFile::open(&path, 20, 1).unwrap();
        for n in 0..3 {
            file.write_line(&format!("line-{n:04}")).unwrap();
        }
        file.flush().unwrap();
        assert_eq!(lines(&path), ["line-0002"]);
    }

    #[test]
    fn the_file_is_owner_only_and_appended_to() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, "old\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut file = RotatingFile::open(&path, 1 << 20, 5).unwrap();
        file.write_line("new").unwrap();
        file.flush().unwrap();
        assert_eq!(lines(&path), ["old", "new"]);
        let fresh = dir.path().join("fresh.log");
        RotatingFile::open(&fresh, 1 << 20, 5).unwrap();
        assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
