//! Test certificates: CAs (root or intermediate), leaves built with [`LeafBuilder`], and the
//! usual test world's [`Pki`] written to PEM files in a temporary directory.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A CA (root or intermediate).
pub struct Ca {
    pub issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    /// A self-signed root CA with common name `name`.
    pub fn root(name: &str) -> Ca {
        Ca {
            issuer: CertifiedIssuer::self_signed(ca_params(name), KeyPair::generate().unwrap())
                .unwrap(),
        }
    }

    /// An intermediate CA signed by this one.
    pub fn intermediate(&self, name: &str) -> Ca {
        Ca {
            issuer: CertifiedIssuer::signed_by(
                ca_params(name),
                KeyPair::generate().unwrap(),
                &self.issuer,
            )
            .unwrap(),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A leaf of this CA, to be described: no names, no extended key usage yet.
    pub fn issue(&self) -> LeafBuilder<'_> {
        LeafBuilder {
            ca: self,
            dns: Vec::new(),
            ips: Vec::new(),
            common_name: None,
            serial: None,
            usages: Vec::new(),
        }
    }

    /// A leaf for `app.test`, `localhost` and 127.0.0.1, usable as server and client cert.
    pub fn leaf(&self, serial: u64) -> Leaf {
        self.leaf_for(serial, &["app.test", "localhost"], true)
    }

    /// A leaf for `names` (DNS), with the 127.0.0.1 IP SAN when `loopback_ip`; common name
    /// `leaf-<serial>`, usable as server and client cert.
    pub fn leaf_for(&self, serial: u64, names: &[&str], loopback_ip: bool) -> Leaf {
        let mut b = self
            .issue()
            .dns(names)
            .common_name(&format!("leaf-{serial}"))
            .serial(serial)
            .server_auth()
            .client_auth();
        if loopback_ip {
            b = b.ip("127.0.0.1".parse().unwrap());
        }
        b.build()
    }
}

fn ca_params(name: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

/// Describes a leaf certificate: its DNS names, IP SANs, common name, serial and extended key
/// usages (none unless asked: then any use is allowed).
pub struct LeafBuilder<'a> {
    ca: &'a Ca,
    dns: Vec<String>,
    ips: Vec<IpAddr>,
    common_name: Option<String>,
    serial: Option<u64>,
    usages: Vec<ExtendedKeyUsagePurpose>,
}

impl LeafBuilder<'_> {
    /// Adds DNS names.
    pub fn dns(mut self, names: &[&str]) -> Self {
        self.dns.extend(names.iter().map(|n| n.to_string()));
        self
    }

    /// Adds an IP address SAN.
    pub fn ip(mut self, ip: IpAddr) -> Self {
        self.ips.push(ip);
        self
    }

    pub fn common_name(mut self, cn: &str) -> Self {
        self.common_name = Some(cn.to_owned());
        self
    }

    pub fn serial(mut self, serial: u64) -> Self {
        self.serial = Some(serial);
        self
    }

    /// Adds the `serverAuth` extended key usage.
    pub fn server_auth(mut self) -> Self {
        self.usages.push(ExtendedKeyUsagePurpose::ServerAuth);
        self
    }

    /// Adds the `clientAuth` extended key usage.
    pub fn client_auth(mut self) -> Self {
        self.usages.push(ExtendedKeyUsagePurpose::ClientAuth);
        self
    }

    pub fn build(self) -> Leaf {
        let mut p = CertificateParams::new(self.dns).unwrap();
        p.subject_alt_names
            .extend(self.ips.into_iter().map(SanType::IpAddress));
        if let Some(cn) = self.common_name {
            p.distinguished_name.push(DnType::CommonName, cn);
        }
        p.extended_key_usages = self.usages;
        p.serial_number = self.serial.map(SerialNumber::from);
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.ca.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key_pem: key.serialize_pem(),
            chain_pem: self.ca.pem(),
        }
    }
}

/// An end-entity certificate, its issuing chain and key.
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub key_pem: String,
    /// PEM of the issuing CA (appended to make the chain); empty for a self-signed leaf.
    pub chain_pem: String,
}

impl Leaf {
    /// A self-signed certificate (no CA) for the DNS `names`.
    pub fn self_signed(names: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let ck = rcgen::generate_simple_self_signed(names).unwrap();
        Leaf {
            cert_pem: ck.cert.pem(),
            cert_der: ck.cert.der().clone(),
            key_pem: ck.signing_key.serialize_pem(),
            chain_pem: String::new(),
        }
    }

    /// End-entity first, then the issuer.
    pub fn full_chain_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.chain_pem)
    }

    /// [`Leaf::full_chain_pem`] as DER.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        certs_from_pem(&self.full_chain_pem())
    }

    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap()
    }
}

/// Every certificate in `pem`.
pub fn certs_from_pem(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.unwrap())
        .collect()
}

/// Writes `text` to `name` under `dir` (creating parent directories).
pub fn write_in(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, text).unwrap();
    p
}

/// The test world's PKI: the app's server chain, the roots clients use, and a foreign root.
/// Written to `dir`: `server.crt` (chain) + `server.key`, `server-root.crt`, `client.crt`
/// (chain) + `client.key`, `client-root.crt`, `foreign-root.crt`.
pub struct Pki {
    pub dir: tempfile::TempDir,
    /// Signs the app's server certificate (via `server_inter`).
    pub server_root: Ca,
    pub server_inter: Ca,
    pub server_leaf: Leaf,
    /// Signs client certificates that the proxy should trust (via `client_inter`).
    pub client_root: Ca,
    pub client_inter: Ca,
    pub client_leaf: Leaf,
    /// Signs nothing anyone trusts.
    pub foreign_root: Ca,
    pub foreign_leaf: Leaf,
}

impl Pki {
    pub fn new() -> Pki {
        let server_root = Ca::root("server root");
        let server_inter = server_root.intermediate("server intermediate");
        let server_leaf = server_inter.leaf(1001);
        let client_root = Ca::root("client root");
        let client_inter = client_root.intermediate("client intermediate");
        let client_leaf = client_inter.leaf(2001);
        let foreign_root = Ca::root("foreign root");
        let foreign_leaf = foreign_root.intermediate("foreign intermediate").leaf(3001);
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
            server_root,
            server_inter,
            server_leaf,
            client_root,
            client_inter,
            client_leaf,
            foreign_root,
            foreign_leaf,
        };
        pki.write("server.crt", &pki.server_leaf.full_chain_pem());
        pki.write("server.key", &pki.server_leaf.key_pem);
        pki.write("server-root.crt", &pki.server_root.pem());
        pki.write("client.crt", &pki.client_leaf.full_chain_pem());
        pki.write("client.key", &pki.client_leaf.key_pem);
        pki.write("client-root.crt", &pki.client_root.pem());
        pki.write("foreign-root.crt", &pki.foreign_root.pem());
        pki
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        write_in(self.dir.path(), name, text)
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}
