//! `.npz` archives: a zip of `.npy` members (stored or deflated), read one key at a time.

use std::fs::File;
use std::io::{BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};

use zip::ZipArchive;
use zip::write::SimpleFileOptions;

use crate::npy::{NpyArray, NpyError, NpyHeader};

/// A failure reading an npz file, naming the file and, where there is one, the key.
#[derive(Debug, thiserror::Error)]
#[error("{}: {}{kind}", file.display(), key.as_ref().map(|k| format!("key '{k}': ")).unwrap_or_default())]
pub struct NpzError {
    pub file: PathBuf,
    pub key: Option<String>,
    pub kind: NpzErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum NpzErrorKind {
    #[error("cannot read: {0}")]
    Io(std::io::Error),
    #[error("not a readable zip archive ({0}); the file may be truncated")]
    Zip(String),
    #[error("missing (keys present: {})", .0.join(", "))]
    MissingKey(Vec<String>),
    #[error("{0}")]
    Npy(#[from] NpyError),
}

/// An open npz archive.
pub struct Npz<R = BufReader<File>> {
    path: PathBuf,
    archive: ZipArchive<R>,
}

impl Npz {
    /// Opens `path` and reads its zip directory (not its arrays).
    pub fn open(path: &Path) -> Result<Self, NpzError> {
        let error = |kind| NpzError { file: path.to_owned(), key: None, kind };
        let file = File::open(path).map_err(|e| error(NpzErrorKind::Io(e)))?;
        Npz::from_reader(path, BufReader::new(file))
    }
}

impl<R: Read + Seek> Npz<R> {
    /// Reads an archive from `reader`; `path` names it in errors.
    pub fn from_reader(path: &Path, reader: R) -> Result<Self, NpzError> {
        let archive = ZipArchive::new(reader).map_err(|e| NpzError {
            file: path.to_owned(),
            key: None,
            kind: NpzErrorKind::Zip(e.to_string()),
        })?;
        Ok(Npz { path: path.to_owned(), archive })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Array names (member names without `.npy`), in archive order.
    pub fn keys(&self) -> Vec<String> {
        self.archive
            .file_names_raw()
            .map(|n| String::from_utf8_lossy(n).trim_end_matches(".npy").to_owned())
            .collect()
    }

    pub fn contains(&self, key: &str) -> bool {
        self.archive.index_for_name(&format!("{key}.npy")).is_some()
    }

    fn error(&self, key: &str, kind: NpzErrorKind) -> NpzError {
        NpzError { file: self.path.clone(), key: Some(key.to_owned()), kind }
    }

    fn member(&mut self, key: &str) -> Result<zip::read::ZipFile<'_, R>, NpzError> {
        if !self.contains(key) {
            let keys = self.keys();
            return Err(self.error(key, NpzErrorKind::MissingKey(keys)));
        }
        let path = self.path.clone();
        self.archive.by_name(&format!("{key}.npy")).map_err(|e| NpzError {
            file: path,
            key: Some(key.to_owned()),
            kind: NpzErrorKind::Zip(e.to_string()),
        })
    }

    /// The raw bytes of one `.npy` member.
    fn member_bytes(&mut self, key: &str) -> Result<Vec<u8>, NpzError> {
        let mut member = self.member(key)?;
        let mut bytes = Vec::with_capacity(member.size().min(1 << 30) as usize);
        let read = member.read_to_end(&mut bytes);
        drop(member);
        read.map_err(|e| self.error(key, NpzErrorKind::Zip(e.to_string())))?;
        Ok(bytes)
    }

    /// Decodes the array stored under `key`.
    pub fn read(&mut self, key: &str) -> Result<NpyArray, NpzError> {
        let bytes = self.member_bytes(key)?;
        NpyArray::parse(&bytes).map_err(|e| self.error(key, e.into()))
    }

    /// Shape and dtype of `key`, decompressing only the header.
    pub fn header(&mut self, key: &str) -> Result<NpyHeader, NpzError> {
        let mut member = self.member(key)?;
        let mut bytes = vec![0u8; 12];
        let mut filled = 0;
        let mut result = Ok(());
        // Prefix (magic, version, length), then the header text it announces.
        for round in 0..2 {
            while filled < bytes.len() {
                match member.read(&mut bytes[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            if round == 0 && filled >= 10 {
                let len = if bytes[6] == 1 {
                    u16::from_le_bytes([bytes[8], bytes[9]]) as usize + 10
                } else {
                    u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize + 12
                };
                bytes.resize(len.min(1 << 20), 0);
            }
        }
        drop(member);
        result.map_err(|e| self.error(key, NpzErrorKind::Zip(e.to_string())))?;
        bytes.truncate(filled);
        NpyHeader::parse(&bytes).map_err(|e| self.error(key, e.into()))
    }
}

/// Writes `arrays` as an npz archive, deflated (`np.savez_compressed`) or stored (`np.savez`).
pub fn write_npz(path: &Path, arrays: &[(&str, &NpyArray)], compressed: bool) -> std::io::Result<()> {
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(File::create(path)?));
    let method = if compressed {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let options = SimpleFileOptions::default().compression_method(method).large_file(false);
    for (key, array) in arrays {
        zip.start_file(format!("{key}.npy"), options).map_err(std::io::Error::other)?;
        zip.write_all(&array.to_bytes())?;
    }
    zip.finish().map_err(std::io::Error::other)?.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npy::ArrayData;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("multifair-npz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn writes_and_reads_stored_and_deflated() {
        let volume = NpyArray { shape: vec![2, 3, 4], data: ArrayData::U8((0..24).collect()) };
        let label = NpyArray { shape: vec![], data: ArrayData::I64(vec![1]) };
        for compressed in [false, true] {
            let path = temp(&format!("a{compressed}.npz"));
            write_npz(&path, &[("oct_bscans", &volume), ("glaucoma", &label)], compressed).unwrap();
            let mut npz = Npz::open(&path).unwrap();
            assert_eq!(npz.keys(), vec!["oct_bscans", "glaucoma"]);
            assert_eq!(npz.read("oct_bscans").unwrap(), volume);
            assert_eq!(npz.header("oct_bscans").unwrap().shape, vec![2, 3, 4]);
            assert_eq!(npz.read("glaucoma").unwrap().scalar_i64().unwrap(), 1);
            let err = npz.read("race").unwrap_err().to_string();
            assert!(err.ends_with("key 'race': missing (keys present: oct_bscans, glaucoma)"), "{err}");
        }
    }

    #[test]
    fn truncated_archive_names_the_file() {
        let volume = NpyArray { shape: vec![100], data: ArrayData::U8(vec![7; 100]) };
        let path = temp("t.npz");
        write_npz(&path, &[("x", &volume)], false).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = Npz::open(&path).err().unwrap().to_string();
        assert!(err.starts_with(&path.display().to_string()), "{err}");
        assert!(err.contains("truncated"), "{err}");
    }
}
