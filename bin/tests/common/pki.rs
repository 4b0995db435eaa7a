//! Certificates for TLS tests, made at run time with the system's openssl
//! (the Debian package the test command installs), never committed.

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("running openssl (Debian package openssl)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Certificates made for one test in a directory of its own.
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).expect("PKI directory");
        Pki {
            dir: dir.to_path_buf(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn path_text(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// A self-signed CA: `<name>.pem` and `<name>.key`.
    pub fn ca(&self, name: &str) {
        openssl(
            &self.dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
            ],
        );
    }

    /// A certificate for `subject` signed by `ca`: `<name>.pem`,
    /// `<name>.key`, and `<name>.keystore` (key and certificate in one
    /// PEM file, as the broker's keystore and librdkafka take them).
    pub fn issue(&self, ca: &str, name: &str, subject: &str) {
        openssl(
            &self.dir,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                subject,
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ],
        );
        std::fs::write(
            self.path(&format!("{name}.ext")),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .expect("extensions file");
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{ca}.pem"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.pem"),
            ],
        );
        let key = std::fs::read(self.path(&format!("{name}.key"))).expect("key");
        let certificate = std::fs::read(self.path(&format!("{name}.pem"))).expect("certificate");
        std::fs::write(
            self.path(&format!("{name}.keystore")),
            [key, certificate].concat(),
        )
        .expect("keystore");
    }

    /// The subject of `<name>.pem` as openssl writes it in RFC 2253 form.
    pub fn subject(&self, name: &str) -> String {
        let output = Command::new("openssl")
            .current_dir(&self.dir)
            .args(["x509", "-noout", "-subject", "-nameopt", "RFC2253"])
            .args(["-in", &format!("{name}.pem")])
            .output()
            .expect("openssl x509");
        let text = String::from_utf8_lossy(&output.stdout);
        text.trim()
            .strip_prefix("subject=")
            .expect("openssl prints subject=")
            .to_string()
    }
}
