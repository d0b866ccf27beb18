//! The data directory: where the SQLite files and keys of one server live.

use std::path::{Path, PathBuf};

use fieldsync_shared::keys::{KeyError, KeyPair};

/// The files of a data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Creates the directory (mode 0700 on Unix) if it does not exist.
    pub fn open(root: &Path) -> std::io::Result<Self> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(root)?;
        Ok(Self {
            root: root.to_owned(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The branch (or head office) signing key.
    pub fn server_key_path(&self) -> PathBuf {
        self.root.join("keys").join("server.key")
    }

    /// The public half of the server key, to hand to head office.
    pub fn server_public_key_path(&self) -> PathBuf {
        self.root.join("keys").join("server.pub")
    }

    pub fn database_path(&self) -> PathBuf {
        self.root.join("fieldsync.sqlite")
    }

    /// Loads the server key, creating it (and its `.pub` file) on first run.
    pub fn load_or_create_server_key(&self) -> Result<(KeyPair, bool), KeyError> {
        let (key, created) = KeyPair::load_or_generate(&self.server_key_path())?;
        if created || !self.server_public_key_path().exists() {
            key.public().save(&self.server_public_key_path())?;
        }
        Ok((key, created))
    }
}
