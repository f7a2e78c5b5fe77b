//! Recordings in a local directory: `<dir>/<YYYY>/<MM>/<DD>/<session-id>.skrec`, each part
//! fsync'd as it is appended.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use chrono::Datelike;

use super::{BoxFuture, EXTENSION, ObjectInfo, ObjectKey, ObjectWriter, Storage, StorageError};

/// Recordings in a local directory: `<dir>/<YYYY>/<MM>/<DD>/<session-id>.skrec`.
#[derive(Debug, Clone)]
pub struct LocalDir {
    root: PathBuf,
}

impl LocalDir {
    /// Uses `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalDir { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path a key maps to.
    pub fn path_for(&self, key: &ObjectKey) -> PathBuf {
        let d = key.started;
        self.root
            .join(format!("{:04}", d.year()))
            .join(format!("{:02}", d.month()))
            .join(format!("{:02}", d.day()))
            .join(format!("{}.{EXTENSION}", key.session_id))
    }
}

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Io(format!("storage task failed: {e}")))?
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    // Makes the new directory entry durable: without it a crash may lose the whole file.
    #[cfg(unix)]
    {
        let f = std::fs::File::open(dir).map_err(|e| StorageError::from_io("open dir", &e))?;
        f.sync_all()
            .map_err(|e| StorageError::from_io("sync dir", &e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

impl Storage for LocalDir {
    fn create<'a>(
        &'a self,
        key: &'a ObjectKey,
    ) -> BoxFuture<'a, Result<Box<dyn ObjectWriter>, StorageError>> {
        let path = self.path_for(key);
        Box::pin(async move {
            let p = path.clone();
            let file = blocking(move || {
                let dir = p.parent().unwrap_or(Path::new("."));
                std::fs::create_dir_all(dir)
                    .map_err(|e| StorageError::from_io("create directory", &e))?;
                let mut opts = std::fs::OpenOptions::new();
                opts.append(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    opts.mode(0o640);
                }
                let f = opts
                    .open(&p)
                    .map_err(|e| StorageError::from_io(&p.display().to_string(), &e))?;
                sync_dir(dir)?;
                Ok(f)
            })
            .await?;
            let w: Box<dyn ObjectWriter> = Box::new(LocalObject {
                location: path.display().to_string(),
                file: Some(file),
                size: 0,
            });
            Ok(w)
        })
    }

    fn read<'a>(&'a self, location: &'a str) -> BoxFuture<'a, Result<Vec<u8>, StorageError>> {
        let path = PathBuf::from(location);
        Box::pin(async move {
            tokio::fs::read(&path)
                .await
                .map_err(|e| StorageError::from_io(location, &e))
        })
    }

    fn discard<'a>(&'a self, location: &'a str) -> BoxFuture<'a, Result<(), StorageError>> {
        let path = PathBuf::from(location);
        Box::pin(blocking(move || match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(StorageError::from_io(&path.display().to_string(), &e))
            }
            _ => Ok(()),
        }))
    }

    fn size<'a>(&'a self, location: &'a str) -> BoxFuture<'a, Result<u64, StorageError>> {
        Box::pin(async move {
            tokio::fs::metadata(location)
                .await
                .map(|m| m.len())
                .map_err(|e| StorageError::from_io(location, &e))
        })
    }

    fn read_range<'a>(
        &'a self,
        location: &'a str,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'a, Result<Bytes, StorageError>> {
        let path = PathBuf::from(location);
        Box::pin(blocking(move || {
            use std::io::{Read, Seek, SeekFrom};
            let io = |e: std::io::Error| StorageError::from_io(&path.display().to_string(), &e);
            let mut f = std::fs::File::open(&path).map_err(io)?;
            f.seek(SeekFrom::Start(range.start)).map_err(io)?;
            let len = range.end.saturating_sub(range.start);
            // The capacity is only a hint: a range past the end reads less.
            let mut buf =
                Vec::with_capacity(usize::try_from(len.min(super::VERIFY_BLOCK)).unwrap_or(0));
            f.take(len).read_to_end(&mut buf).map_err(io)?;
            Ok(Bytes::from(buf))
        }))
    }

    fn remove<'a>(&'a self, location: &'a str) -> BoxFuture<'a, Result<u64, StorageError>> {
        let path = PathBuf::from(location);
        Box::pin(blocking(move || {
            let size = match std::fs::metadata(&path) {
                Ok(m) => m.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(StorageError::from_io(&path.display().to_string(), &e)),
            };
            match std::fs::remove_file(&path) {
                Ok(()) => Ok(size),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
                Err(e) => Err(StorageError::from_io(&path.display().to_string(), &e)),
            }
        }))
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<ObjectInfo>, StorageError>> {
        let root = self.root.clone();
        Box::pin(blocking(move || {
            let mut out = Vec::new();
            walk(&root, 0, &mut out)?;
            out.sort_by(|a, b| a.location.cmp(&b.location));
            Ok(out)
        }))
    }
}

fn walk(dir: &Path, depth: u32, out: &mut Vec<ObjectInfo>) -> Result<(), StorageError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StorageError::from_io("list", &e)),
    };
    for entry in rd {
        let entry = entry.map_err(|e| StorageError::from_io("list", &e))?;
        let ft = entry
            .file_type()
            .map_err(|e| StorageError::from_io("list", &e))?;
        let path = entry.path();
        // YYYY/MM/DD: three levels of directories, then files.
        if ft.is_dir() && depth < 3 {
            walk(&path, depth + 1, out)?;
        } else if ft.is_file() && path.extension().is_some_and(|e| e == EXTENSION) {
            let size = entry
                .metadata()
                .map_err(|e| StorageError::from_io("list", &e))?
                .len();
            out.push(ObjectInfo {
                location: path.display().to_string(),
                size,
            });
        }
    }
    Ok(())
}

/// A local file being appended to.
#[derive(Debug)]
struct LocalObject {
    location: String,
    /// `None` after finalise or after a failed append (the file state is then unknown, so we
    /// refuse further writes rather than risk a gap).
    file: Option<std::fs::File>,
    size: u64,
}

impl ObjectWriter for LocalObject {
    fn location(&self) -> &str {
        &self.location
    }

    fn append(&mut self, part: Bytes) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(async move {
            let mut file = self.file.take().ok_or(StorageError::Closed)?;
            let len = part.len() as u64;
            let file = blocking(move || {
                use std::io::Write;
                file.write_all(&part)
                    .map_err(|e| StorageError::from_io("write", &e))?;
                file.sync_data()
                    .map_err(|e| StorageError::from_io("fsync", &e))?;
                Ok(file)
            })
            .await?;
            self.file = Some(file);
            self.size += len;
            Ok(())
        })
    }

    fn finalize(&mut self) -> BoxFuture<'_, Result<u64, StorageError>> {
        Box::pin(async move {
            let file = self.file.take().ok_or(StorageError::Closed)?;
            blocking(move || {
                file.sync_all()
                    .map_err(|e| StorageError::from_io("fsync", &e))
            })
            .await?;
            Ok(self.size)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;
    use uuid::Uuid;

    #[tokio::test]
    async fn local_dir_layout_append_list_read() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalDir::new(dir.path());
        let key = ObjectKey {
            session_id: Uuid::from_u128(42),
            started: DateTime::from_timestamp(1_764_000_000, 0).unwrap(),
        };
        let mut w = s.create(&key).await.unwrap();
        assert!(
            w.location()
                .ends_with("2025/11/24/00000000-0000-0000-0000-00000000002a.skrec")
        );
        w.append(Bytes::from_static(b"abc")).await.unwrap();
        w.append(Bytes::from_static(b"def")).await.unwrap();
        assert_eq!(w.finalize().await.unwrap(), 6);
        assert_eq!(
            w.append(Bytes::from_static(b"x")).await,
            Err(StorageError::Closed)
        );
        let loc = w.location().to_string();
        assert_eq!(s.read(&loc).await.unwrap(), b"abcdef");
        let list = s.list().await.unwrap();
        assert_eq!(
            list,
            vec![ObjectInfo {
                location: loc,
                size: 6
            }]
        );
        assert!(matches!(
            s.create(&key).await.err(),
            Some(StorageError::Exists(_))
        ));
    }
}
