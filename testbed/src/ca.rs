//! A throw-away certificate authority: `ca.pem` signs `server.pem` (for 127.0.0.1 and
//! localhost, key in `server.key`); `other-ca.pem` is a CA that signed nothing here, for
//! "wrong CA" cases.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

#[derive(Clone)]
pub struct TestCa {
    pub ca_pem: PathBuf,
    pub other_ca_pem: PathBuf,
    pub server_pem: PathBuf,
    pub server_key: PathBuf,
}

impl TestCa {
    /// Writes the files into `dir`.
    pub fn new(dir: &Path) -> TestCa {
        let ca = authority("mapfleet test CA");
        let other = authority("mapfleet unrelated CA");
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "mapfleet test server");
        let key = KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &ca)
            .expect("sign the server certificate");
        let files = TestCa {
            ca_pem: dir.join("ca.pem"),
            other_ca_pem: dir.join("other-ca.pem"),
            server_pem: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        };
        std::fs::write(&files.ca_pem, ca.pem()).unwrap();
        std::fs::write(&files.other_ca_pem, other.pem()).unwrap();
        std::fs::write(&files.server_pem, cert.pem()).unwrap();
        std::fs::write(&files.server_key, key.serialize_pem()).unwrap();
        files
    }
}

fn authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA")
}
