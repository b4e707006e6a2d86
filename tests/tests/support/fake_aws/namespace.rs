//! The buyer's side of the container's file system, inside the test's own
//! mount namespace: `/etc/hosts` sending AWS's names (and the buyer's
//! domain) to the fake, the fake CA in each place a TLS stack may look for
//! roots, and an SDK partition file that renames AWS's DNS suffix.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::{BUYER_DOMAIN, REGION, fake_host_names};

/// Where Debian (and the distroless image) keep the system CA bundle.
pub(crate) const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The identities of this process's network and mount namespaces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Namespaces {
    net: String,
    mnt: String,
}

impl Namespaces {
    /// This process's.
    pub(crate) fn current() -> Self {
        let link = |ns: &str| {
            std::fs::read_link(format!("/proc/self/ns/{ns}")).map_or_else(
                |e| panic!("read /proc/self/ns/{ns}: {e}"),
                |p| p.display().to_string(),
            )
        };
        Self {
            net: link("net"),
            mnt: link("mnt"),
        }
    }

    /// Panics unless this process runs in network and mount namespaces
    /// other than `outer`'s: nothing may be mounted over the machine's own
    /// `/etc/hosts` or CA bundle.
    pub(crate) fn assert_inside_other_than(outer: &Self) {
        let here = Self::current();
        assert!(
            here.net != outer.net && here.mnt != outer.mnt,
            "not inside fresh network and mount namespaces ({here:?}, outer {outer:?}): \
             refusing to mount over /etc/hosts"
        );
    }
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes every mount in this mount namespace private, so that nothing
/// mounted here propagates to the machine.
pub(crate) fn make_mounts_private() {
    run("mount", &["--make-rprivate", "/"]);
}

/// A bind mount of a file over another, undone when dropped.
pub(crate) struct BindMount {
    target: PathBuf,
}

impl BindMount {
    /// Mounts `source` over `target` (both files).
    pub(crate) fn new(source: &Path, target: &str) -> Self {
        run("mount", &["--bind", &source.display().to_string(), target]);
        Self {
            target: PathBuf::from(target),
        }
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.target).output();
    }
}

/// The `/etc/hosts` of the namespace: the fake's names on loopback.
pub(crate) fn hosts_file() -> String {
    let mut hosts = String::from("127.0.0.1 localhost\n::1 localhost\n");
    for name in fake_host_names() {
        let _ = writeln!(hosts, "127.0.0.1 {name}");
    }
    hosts
}

/// The fake CA in each form a buyer could install it.
pub(crate) struct TrustFiles {
    /// The CA alone, PEM (`SSL_CERT_FILE`).
    pub(crate) ca_file: PathBuf,
    /// A directory holding the CA under its `c_rehash` name `<hash>.0`
    /// (when `openssl` is there to compute it) and a plain name
    /// (`SSL_CERT_DIR`).
    pub(crate) cert_dir: PathBuf,
    /// The system bundle with the CA appended, to mount over
    /// [`SYSTEM_BUNDLE`].
    pub(crate) bundle: PathBuf,
}

impl TrustFiles {
    /// Writes the files into `dir`.
    pub(crate) fn write(dir: &Path, ca_pem: &str) -> Self {
        let ca_file = dir.join("fake-ca.pem");
        std::fs::write(&ca_file, ca_pem).expect("write the CA file");

        let cert_dir = dir.join("certs");
        std::fs::create_dir_all(&cert_dir).expect("certificate directory");
        std::fs::write(cert_dir.join("fake-ca.pem"), ca_pem).expect("write the CA");
        let hash = Command::new("openssl")
            .args(["x509", "-hash", "-noout", "-in"])
            .arg(&ca_file)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        if let Some(hash) = hash.filter(|h| !h.is_empty()) {
            std::fs::write(cert_dir.join(format!("{hash}.0")), ca_pem).expect("write the CA");
        }

        let mut bundle = std::fs::read_to_string(SYSTEM_BUNDLE)
            .unwrap_or_else(|e| panic!("read the system CA bundle {SYSTEM_BUNDLE}: {e}"));
        if !bundle.ends_with('\n') {
            bundle.push('\n');
        }
        bundle.push_str(ca_pem);
        let bundle_file = dir.join("ca-certificates.crt");
        std::fs::write(&bundle_file, bundle).expect("write the bundle");

        Self {
            ca_file,
            cert_dir,
            bundle: bundle_file,
        }
    }
}

/// A partition file for `SMITHY_CLIENT_SDK_CUSTOM_PARTITION`: the SDK's
/// `aws` partition (the format of the SDK's built-in `partitions.json`,
/// see `endpoint_lib.rs` in `aws-sdk-marketplacemetering`) with its DNS
/// suffix renamed to the buyer's domain.
pub(crate) fn partition_json() -> String {
    serde_json::json!({
        "partitions": [{
            "id": "aws",
            "outputs": {
                "dnsSuffix": BUYER_DOMAIN,
                "dualStackDnsSuffix": BUYER_DOMAIN,
                "implicitGlobalRegion": REGION,
                "name": "aws",
                "supportsDualStack": true,
                "supportsFIPS": true
            },
            "regionRegex": "^(us|eu|ap|sa|ca|me|af|il|mx)\\-\\w+\\-\\d+$",
            "regions": { REGION: { "description": "US East (N. Virginia)" } }
        }],
        "version": "1.1"
    })
    .to_string()
}
