//! File names inside the data directory, as go-diskqueue spells them:
//! `<name>.diskqueue.%06d.dat` for data and `<name>.diskqueue.meta.dat` for
//! metadata; a corrupt data file is renamed to `<data file>.bad`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// File name of data file `num` of queue `name` (`%06d`: at least six digits).
pub fn data_file_name(name: &str, num: i64) -> String {
    format!("{name}.diskqueue.{num:06}.dat")
}

/// File name of queue `name`'s metadata.
pub fn meta_file_name(name: &str) -> String {
    format!("{name}.diskqueue.meta.dat")
}

/// The data file number in `file_name` if it is one of queue `name`'s data
/// files. Strict, so that queue `a` never claims files of queue `a.diskqueue.1`.
pub fn parse_data_file_name(name: &str, file_name: &str) -> Option<i64> {
    let digits = file_name
        .strip_prefix(name)?
        .strip_prefix(".diskqueue.")?
        .strip_suffix(".dat")?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Bounded well below i64::MAX so `num + 1` can never overflow.
    digits.parse::<i64>().ok().filter(|n| *n < i64::MAX / 2)
}

/// One queue's paths.
#[derive(Debug, Clone)]
pub(crate) struct Paths {
    dir: PathBuf,
    name: String,
}

impl Paths {
    pub(crate) fn new(dir: &Path, name: &str) -> Self {
        Paths {
            dir: dir.to_path_buf(),
            name: name.to_string(),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn data_file(&self, num: i64) -> PathBuf {
        self.dir.join(data_file_name(&self.name, num))
    }

    pub(crate) fn bad_file(&self, num: i64) -> PathBuf {
        self.dir.join(data_file_name(&self.name, num) + ".bad")
    }

    pub(crate) fn meta_file(&self) -> PathBuf {
        self.dir.join(meta_file_name(&self.name))
    }

    /// Numbers of this queue's data files present on disk, ascending.
    pub(crate) fn existing_data_files(&self) -> io::Result<Vec<i64>> {
        let mut nums = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(nums),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            if let Some(num) = entry
                .file_name()
                .to_str()
                .and_then(|f| parse_data_file_name(&self.name, f))
            {
                nums.push(num);
            }
        }
        nums.sort_unstable();
        Ok(nums)
    }
}

/// Size of `path` in bytes, `None` if it does not exist.
pub(crate) fn file_size(path: &Path) -> io::Result<Option<i64>> {
    match fs::metadata(path) {
        Ok(m) => Ok(Some(i64::try_from(m.len()).unwrap_or(i64::MAX))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// fsyncs a directory, so the names created in it survive a power cut.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_go_sprintf() {
        assert_eq!(data_file_name("t", 0), "t.diskqueue.000000.dat");
        assert_eq!(data_file_name("t:c", 1234567), "t:c.diskqueue.1234567.dat");
        assert_eq!(meta_file_name("t:c"), "t:c.diskqueue.meta.dat");
    }

    #[test]
    fn parses_only_this_queues_data_files() {
        assert_eq!(
            parse_data_file_name("a", "a.diskqueue.000042.dat"),
            Some(42)
        );
        assert_eq!(
            parse_data_file_name("a", "a.diskqueue.1000000.dat"),
            Some(1000000)
        );
        assert_eq!(parse_data_file_name("a", "a.diskqueue.meta.dat"), None);
        assert_eq!(
            parse_data_file_name("a", "a.diskqueue.000042.dat.bad"),
            None
        );
        assert_eq!(parse_data_file_name("a", "a.diskqueue.42.dat"), None);
        assert_eq!(
            parse_data_file_name("a", "a.diskqueue.000001.diskqueue.000000.dat"),
            None
        );
        assert_eq!(parse_data_file_name("a", "ab.diskqueue.000000.dat"), None);
        assert_eq!(parse_data_file_name("a", "a.diskqueue.-00001.dat"), None);
    }
}
