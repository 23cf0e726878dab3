//! `.npz` archives: a zip of `.npy` members (stored or deflated), read one key at a time.

use std::fs::File;
use std::io::{BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};

use zip::ZipArchive;
use zip::write::SimpleFileOptions;

use crate::npy::{ArrayData, NpyArray, NpyError, NpyHeader, decode};

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
    #[error(
        "the member is {0} bytes uncompressed, more than the {MAX_MEMBER_BYTES} this reader accepts"
    )]
    TooLarge(u64),
}

/// The largest member (uncompressed) read: a FairVision volume is 8 MB; anything near this is
/// a damaged or hostile file, refused before it is inflated.
pub const MAX_MEMBER_BYTES: u64 = 1 << 30;

/// An open npz archive.
pub struct Npz<R = BufReader<File>> {
    path: PathBuf,
    archive: ZipArchive<R>,
}

impl Npz {
    /// Opens `path` and reads its zip directory (not its arrays).
    pub fn open(path: &Path) -> Result<Self, NpzError> {
        let error = |kind| NpzError {
            file: path.to_owned(),
            key: None,
            kind,
        };
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
        Ok(Npz {
            path: path.to_owned(),
            archive,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Array names (member names without `.npy`), in archive order.
    pub fn keys(&self) -> Vec<String> {
        self.archive
            .file_names_raw()
            .map(|n| {
                String::from_utf8_lossy(n)
                    .trim_end_matches(".npy")
                    .to_owned()
            })
            .collect()
    }

    pub fn contains(&self, key: &str) -> bool {
        self.archive.index_for_name(&format!("{key}.npy")).is_some()
    }

    fn error(&self, key: &str, kind: NpzErrorKind) -> NpzError {
        NpzError {
            file: self.path.clone(),
            key: Some(key.to_owned()),
            kind,
        }
    }

    fn member(&mut self, key: &str) -> Result<zip::read::ZipFile<'_, R>, NpzError> {
        if !self.contains(key) {
            let keys = self.keys();
            return Err(self.error(key, NpzErrorKind::MissingKey(keys)));
        }
        let path = self.path.clone();
        self.archive
            .by_name(&format!("{key}.npy"))
            .map_err(|e| NpzError {
                file: path,
                key: Some(key.to_owned()),
                kind: NpzErrorKind::Zip(e.to_string()),
            })
    }

    /// The raw bytes of one `.npy` member, its zip CRC checked (the zip reader checks it at the
    /// end of the member). The declared size is checked against the limit first, and no more
    /// than it is inflated.
    fn member_bytes(&mut self, key: &str) -> Result<Vec<u8>, NpzError> {
        let mut member = self.member(key)?;
        let size = member.size();
        if size > MAX_MEMBER_BYTES {
            drop(member);
            return Err(self.error(key, NpzErrorKind::TooLarge(size)));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        let read = (&mut member)
            .take(size + 1)
            .read_to_end(&mut bytes)
            .and_then(|_| {
                let mut rest = [0u8; 1];
                match bytes.len() as u64 > size || member.read(&mut rest)? > 0 {
                    true => Err(std::io::Error::other(
                        "the member holds more data than its zip entry declares",
                    )),
                    false => Ok(()),
                }
            });
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

impl<R: Read + Seek> Npz<R> {
    /// Rows `indices` (along axis 0; any order, repeats allowed) of the C-order array `key`, as
    /// an array of shape [indices.len(), ...]. Only those rows are kept, but the member is read
    /// to its end, so that its zip CRC is checked: corrupted pixels are an error, never data.
    pub fn read_rows(&mut self, key: &str, indices: &[usize]) -> Result<NpyArray, NpzError> {
        let header = self.header(key)?;
        if header.fortran_order
            || header.shape.is_empty()
            || matches!(header.dtype, crate::Dtype::Unicode(_))
        {
            let full = self.read(key)?;
            return select_rows(&full, indices).map_err(|e| self.error(key, e.into()));
        }
        let rows = header.shape[0];
        let row_len: usize = header.shape[1..].iter().product();
        let row_bytes = row_len * header.dtype.item_size();
        let expected = rows * row_bytes;
        let npy_error = |this: &Self, e: NpyError| this.error(key, e.into());
        if let Some(&bad) = indices.iter().find(|&&i| i >= rows) {
            return Err(npy_error(
                self,
                NpyError::Value(format!("row {bad} of an array with {rows} rows")),
            ));
        }
        let member_size = self.member(key)?.size();
        if member_size > MAX_MEMBER_BYTES {
            return Err(self.error(key, NpzErrorKind::TooLarge(member_size)));
        }
        let found = (member_size as usize).saturating_sub(header.data_offset);
        if found != expected {
            return Err(npy_error(
                self,
                NpyError::Size {
                    shape: header.shape.clone(),
                    expected,
                    found,
                },
            ));
        }
        let mut wanted: Vec<usize> = indices.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        let mut bytes = vec![0u8; wanted.len() * row_bytes];
        let name = format!("{key}.npy");
        let read = match self.archive.by_name(&name) {
            Ok(mut member) => {
                let mut position = 0;
                let mut result = skip(&mut member, header.data_offset);
                for (&row, out) in wanted.iter().zip(bytes.chunks_mut(row_bytes.max(1))) {
                    result = result
                        .and_then(|()| skip(&mut member, (row - position) * row_bytes))
                        .and_then(|()| member.read_exact(out));
                    position = row + 1;
                }
                // The rest, unread, so that the zip reader checks the member's CRC.
                result.and_then(|()| std::io::copy(&mut member, &mut std::io::sink()).map(|_| ()))
            }
            Err(e) => Err(std::io::Error::other(e.to_string())),
        };
        read.map_err(|e| self.error(key, NpzErrorKind::Zip(e.to_string())))?;
        let unique = NpyArray {
            shape: [wanted.len()]
                .into_iter()
                .chain(header.shape[1..].iter().copied())
                .collect(),
            data: decode(
                header.dtype,
                header.big_endian,
                wanted.len() * row_len,
                &bytes,
            )
            .map_err(|e| npy_error(self, e))?,
        };
        if wanted.as_slice() == indices {
            return Ok(unique);
        }
        let positions: Vec<usize> = indices
            .iter()
            .map(|i| wanted.binary_search(i).expect("deduplicated from indices"))
            .collect();
        select_rows(&unique, &positions).map_err(|e| npy_error(self, e))
    }
}

/// Reads and drops `n` bytes.
fn skip(reader: &mut impl Read, n: usize) -> std::io::Result<()> {
    std::io::copy(&mut reader.take(n as u64), &mut std::io::sink()).map(|_| ())
}

/// Rows `indices` of `array` along axis 0.
fn select_rows(array: &NpyArray, indices: &[usize]) -> Result<NpyArray, NpyError> {
    let Some(&rows) = array.shape.first() else {
        return Err(NpyError::Value("a 0-d array has no rows".into()));
    };
    if let Some(&bad) = indices.iter().find(|&&i| i >= rows) {
        return Err(NpyError::Value(format!(
            "row {bad} of an array with {rows} rows"
        )));
    }
    let row_len: usize = array.shape[1..].iter().product();
    macro_rules! pick {
        ($v:expr, $variant:ident) => {
            ArrayData::$variant(
                indices
                    .iter()
                    .flat_map(|&i| $v[i * row_len..(i + 1) * row_len].iter().cloned())
                    .collect(),
            )
        };
    }
    let data = match &array.data {
        ArrayData::Bool(v) => pick!(v, Bool),
        ArrayData::U8(v) => pick!(v, U8),
        ArrayData::I8(v) => pick!(v, I8),
        ArrayData::I16(v) => pick!(v, I16),
        ArrayData::U16(v) => pick!(v, U16),
        ArrayData::I32(v) => pick!(v, I32),
        ArrayData::U32(v) => pick!(v, U32),
        ArrayData::I64(v) => pick!(v, I64),
        ArrayData::U64(v) => pick!(v, U64),
        ArrayData::F16(v) => pick!(v, F16),
        ArrayData::F32(v) => pick!(v, F32),
        ArrayData::F64(v) => pick!(v, F64),
        ArrayData::Unicode(v) => pick!(v, Unicode),
    };
    let shape = [indices.len()]
        .into_iter()
        .chain(array.shape[1..].iter().copied())
        .collect();
    Ok(NpyArray { shape, data })
}

/// Writes `arrays` as an npz archive, deflated (`np.savez_compressed`) or stored (`np.savez`).
pub fn write_npz(
    path: &Path,
    arrays: &[(&str, &NpyArray)],
    compressed: bool,
) -> std::io::Result<()> {
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(File::create(path)?));
    let method = if compressed {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let options = SimpleFileOptions::default()
        .compression_method(method)
        .large_file(false);
    for (key, array) in arrays {
        zip.start_file(format!("{key}.npy"), options)
            .map_err(std::io::Error::other)?;
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
        let volume = NpyArray {
            shape: vec![2, 3, 4],
            data: ArrayData::U8((0..24).collect()),
        };
        let label = NpyArray {
            shape: vec![],
            data: ArrayData::I64(vec![1]),
        };
        for compressed in [false, true] {
            let path = temp(&format!("a{compressed}.npz"));
            write_npz(
                &path,
                &[("oct_bscans", &volume), ("glaucoma", &label)],
                compressed,
            )
            .unwrap();
            let mut npz = Npz::open(&path).unwrap();
            assert_eq!(npz.keys(), vec!["oct_bscans", "glaucoma"]);
            assert_eq!(npz.read("oct_bscans").unwrap(), volume);
            assert_eq!(npz.header("oct_bscans").unwrap().shape, vec![2, 3, 4]);
            assert_eq!(npz.read("glaucoma").unwrap().scalar_i64().unwrap(), 1);
            let err = npz.read("race").unwrap_err().to_string();
            assert!(
                err.ends_with("key 'race': missing (keys present: oct_bscans, glaucoma)"),
                "{err}"
            );
        }
    }

    #[test]
    fn read_rows_matches_a_full_read_stored_and_deflated() {
        let volume = NpyArray {
            shape: vec![5, 2, 3],
            data: ArrayData::I16((0..30).collect()),
        };
        for compressed in [false, true] {
            let path = temp(&format!("rows{compressed}.npz"));
            write_npz(&path, &[("v", &volume)], compressed).unwrap();
            let mut npz = Npz::open(&path).unwrap();
            let rows = npz.read_rows("v", &[4, 0, 0, 2]).unwrap();
            assert_eq!(rows.shape, vec![4, 2, 3]);
            assert_eq!(rows, select_rows(&volume, &[4, 0, 0, 2]).unwrap());
            assert_eq!(
                rows.data,
                ArrayData::I16(
                    [
                        24, 25, 26, 27, 28, 29, 0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 12, 13, 14, 15,
                        16, 17
                    ]
                    .to_vec()
                )
            );
            assert!(
                npz.read_rows("v", &[5])
                    .unwrap_err()
                    .to_string()
                    .contains("row 5 of an array with 5 rows")
            );
        }
    }

    #[test]
    fn truncated_archive_names_the_file() {
        let volume = NpyArray {
            shape: vec![100],
            data: ArrayData::U8(vec![7; 100]),
        };
        let path = temp("t.npz");
        write_npz(&path, &[("x", &volume)], false).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = Npz::open(&path).err().unwrap().to_string();
        assert!(err.starts_with(&path.display().to_string()), "{err}");
        assert!(err.contains("truncated"), "{err}");
    }
}
