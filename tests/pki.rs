//! Certificates for the TLS tests and figures, made at run time with rcgen (nothing secret is
//! stored in the repository): a CA, and a server certificate for `localhost` and `127.0.0.1`
//! signed by it, as PEM files in a temp dir.
//!
//! Validity runs from 2020 to 2100: rustls checks it against the real system time, which
//! the suite's second run moves 400 days ahead (libfaketime), so a window around "now" would
//! be a time bomb.

use std::path::PathBuf;

use fieldsync_client::ClientTls;
use fieldsync_server::tls::TlsFiles;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, date_time_ymd,
};
use tempfile::TempDir;

/// A CA and a server certificate it signed, as PEM files.
#[derive(Debug)]
pub struct Pki {
    /// The CA's certificate: what a client trusts (`ca_file`).
    pub ca_file: PathBuf,
    /// The server's certificate and key (`[tls] cert`, `key`).
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    _dir: TempDir,
}

impl Pki {
    /// A fresh CA named `name` and a server certificate for `localhost` and `127.0.0.1`.
    pub fn generate(name: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, name);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca.not_before = date_time_ymd(2020, 1, 1);
        ca.not_after = date_time_ymd(2100, 1, 1);
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;

        let mut server = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])?;
        server
            .distinguished_name
            .push(DnType::CommonName, "fieldsync test server");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        server.not_before = date_time_ymd(2020, 1, 1);
        server.not_after = date_time_ymd(2100, 1, 1);
        let server_key = KeyPair::generate()?;
        let server_cert = server.signed_by(&server_key, &ca)?;

        let ca_file = dir.path().join("ca.pem");
        let cert_file = dir.path().join("server.pem");
        let key_file = dir.path().join("server.key");
        std::fs::write(&ca_file, ca.pem())?;
        std::fs::write(&cert_file, server_cert.pem())?;
        std::fs::write(&key_file, server_key.serialize_pem())?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(Self {
            ca_file,
            cert_file,
            key_file,
            _dir: dir,
        })
    }

    /// The server's `[tls]` section.
    pub fn tls_files(&self) -> TlsFiles {
        TlsFiles {
            cert: self.cert_file.clone(),
            key: self.key_file.clone(),
        }
    }

    /// A client that trusts this CA only.
    pub fn client_tls(&self) -> anyhow::Result<ClientTls> {
        Ok(ClientTls::from_ca_file(&self.ca_file)?)
    }

    /// The `[tls]` section as TOML, for the real binary's config file.
    pub fn toml(&self) -> String {
        format!(
            "[tls]\ncert = {:?}\nkey = {:?}\n",
            self.cert_file.display().to_string(),
            self.key_file.display().to_string()
        )
    }
}
