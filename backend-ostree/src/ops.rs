//! The protocol's three operations on top of `ostree`.

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::command::{Ostree, PULL_TIMEOUT};
use crate::remote::{self, Source, REMOTE};
use crate::sysroot::{deployment_infos, Deployment, Sysroot};
use backend_protocol::{Applied, Check, Config, Status, Version};

/// What `check` and `apply` share: the sysroot, the stateroot's deployments, and the
/// remote set up for the config.
struct Target {
    sysroot: Sysroot,
    os: String,
    /// What runs now: the booted deployment of `os`, else (offline) its default one.
    current: Option<Deployment>,
    /// The default deployment of `os`: what boots next.
    default: Option<Deployment>,
    git_ref: String,
}

impl Target {
    fn open(root: &str, config: &Config) -> Result<Self> {
        let source = Source::parse(config.source.as_deref(), config.secure)?;
        let sysroot = Sysroot::open(root)?;
        let deployments = sysroot.deployments()?;
        let os = sysroot.stateroot(&deployments)?;
        let ours: Vec<&Deployment> = deployments.iter().filter(|d| d.stateroot == os).collect();
        let default = ours.first().map(|d| (*d).clone());
        let current = ours
            .iter()
            .find(|d| d.booted)
            .map(|d| (*d).clone())
            .or_else(|| default.clone());
        remote::ensure(&sysroot, config, &source)?;
        let git_ref = match source.git_ref {
            Some(r) => r,
            None => default_ref(&sysroot, default.as_ref(), &source)?,
        };
        Ok(Target {
            sysroot,
            os,
            current,
            default,
            git_ref,
        })
    }

    fn remote_ref(&self) -> String {
        format!("{REMOTE}:{}", self.git_ref)
    }

    /// The commit the local `update:REF` points at, with its version.
    fn local_version(&self) -> Result<Version> {
        let repo = self.sysroot.repo_arg();
        let commit = Ostree::new(["rev-parse".to_owned(), repo.clone(), self.remote_ref()])
            .run()?
            .stdout
            .trim()
            .to_owned();
        let (status, out) = Ostree::new([
            "show".to_owned(),
            repo,
            "--print-metadata-key=version".to_owned(),
            commit.clone(),
        ])
        .run_unchecked()?;
        // A commit without `version` metadata makes `show` fail: that is "no version".
        let version = status
            .success()
            .then(|| gvariant_string(out.stdout.trim()))
            .flatten();
        Ok(Version { commit, version })
    }
}

/// The ref to follow when the source names none: the default deployment's origin ref,
/// else the only ref the remote lists.
fn default_ref(sysroot: &Sysroot, default: Option<&Deployment>, source: &Source) -> Result<String> {
    if let Some(r) = default.and_then(Deployment::origin_ref) {
        return Ok(r.to_owned());
    }
    let listed = Ostree::new([
        "remote".to_owned(),
        "refs".to_owned(),
        sysroot.repo_arg(),
        REMOTE.to_owned(),
    ])
    .run()
    .with_context(|| {
        format!(
            "no ref in config.source and no deployment to take one from; cannot list \
                 the refs of {} either (set config.source to URL#REF)",
            source.url
        )
    })?;
    let refs: Vec<&str> = listed
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| l.split_once(':').map_or(l, |(_, r)| r))
        .collect();
    match refs.as_slice() {
        [only] => Ok((*only).to_owned()),
        [] => bail!("{} offers no refs", source.url),
        many => bail!(
            "{} offers several refs ({}); choose one with config.source = URL#REF",
            source.url,
            many.join(", ")
        ),
    }
}

/// `check`: what the source offers against what runs; fetches commit metadata only.
pub fn check(root: &str, config: &Config) -> Result<Value> {
    let target = Target::open(root, config)?;
    Ostree::new([
        "pull".to_owned(),
        target.sysroot.repo_arg(),
        "--commit-metadata-only".to_owned(),
        REMOTE.to_owned(),
        target.git_ref.clone(),
    ])
    .timeout(PULL_TIMEOUT)
    .run()?;
    let available = target.local_version()?;
    let current = target.current.as_ref().map(Deployment::version);
    let update_available = current
        .as_ref()
        .is_none_or(|c| c.commit != available.commit);
    Ok(serde_json::to_value(Check {
        current,
        available: Some(available),
        update_available,
    })?)
}

/// `apply`: pull and deploy as the new default; no reboot.
pub fn apply(root: &str, config: &Config) -> Result<Value> {
    let target = Target::open(root, config)?;
    let pulled = Ostree::new([
        "pull".to_owned(),
        target.sysroot.repo_arg(),
        REMOTE.to_owned(),
        target.git_ref.clone(),
    ])
    .timeout(PULL_TIMEOUT)
    .run()?;
    let bytes_fetched = pull_bytes(&pulled.stdout);
    let to = target.local_version()?;
    let from = target.current.as_ref().map(Deployment::version);
    // Already what boots next (applied earlier, or running): nothing to deploy.
    if target
        .default
        .as_ref()
        .is_none_or(|d| d.commit != to.commit)
    {
        Ostree::new([
            "admin".to_owned(),
            "deploy".to_owned(),
            target.sysroot.sysroot_arg(),
            format!("--os={}", target.os),
            target.remote_ref(),
        ])
        .run()?;
    }
    let signer = if config.verify {
        signer(&target.sysroot, config, &to.commit)?
    } else {
        None
    };
    Ok(serde_json::to_value(Applied {
        from,
        to,
        bytes_fetched,
        signer,
    })?)
}

/// `status`: every deployment in the sysroot, in boot order.
pub fn status(root: &str) -> Result<Value> {
    let sysroot = Sysroot::open(root)?;
    let deployments = sysroot.deployments()?;
    Ok(serde_json::to_value(Status {
        deployments: deployment_infos(&deployments),
    })?)
}

/// The name of the first config key whose signature on `commit` verifies.
fn signer(sysroot: &Sysroot, config: &Config, commit: &str) -> Result<Option<String>> {
    for (name, key) in &config.keys {
        let (status, _) = Ostree::new([
            "sign".to_owned(),
            sysroot.repo_arg(),
            "--verify".to_owned(),
            "--sign-type=ed25519".to_owned(),
            commit.to_owned(),
            key.trim().to_owned(),
        ])
        .run_unchecked()?;
        if status.success() {
            return Ok(Some(name.clone()));
        }
    }
    Ok(None)
}

/// Bytes from `ostree pull`'s summary line: "X transferred" (network pulls) else
/// "X content written" (file:// pulls, which import rather than transfer). ostree prints
/// these through `g_format_size` ("4 bytes", "1.2 kB", "3.4 MB": SI units, one decimal), so
/// the count is exact below 1 kB and within 5 % above. 0 when the line is missing.
pub fn pull_bytes(output: &str) -> u64 {
    let Some(line) = output.lines().rev().find(|l| l.contains("content written")) else {
        return 0;
    };
    let clauses: Vec<&str> = line.split([';', ',']).map(str::trim).collect();
    let pick = |suffix: &str| {
        clauses.iter().find_map(|c| {
            let c = c.split(" in ").next().unwrap_or(c);
            c.strip_suffix(suffix).and_then(parse_size)
        })
    };
    pick("transferred")
        .or_else(|| pick("content written"))
        .unwrap_or(0)
}

fn parse_size(text: &str) -> Option<u64> {
    // "4.1 kB" with a space or a no-break space, or "4.1?kB" when the locale cannot
    // encode the no-break space: number, any separator, unit.
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let number: f64 = text[..split].parse().ok()?;
    let unit = text[split..].trim_start_matches(|c: char| !c.is_ascii_alphabetic());
    let scale = match unit {
        "byte" | "bytes" => 1.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        _ => return None,
    };
    // Rounded values from ostree; the cast saturates on nonsense.
    Some((number * scale).round() as u64)
}

/// The text of a GVariant string as `ostree show --print-metadata-key` prints it
/// (`'1.2'` or `"it's"`); `None` for anything that is not a plain string.
fn gvariant_string(text: &str) -> Option<String> {
    let quote = text.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let inner = text.strip_prefix(quote)?.strip_suffix(quote)?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            other => out.push(other),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::{gvariant_string, pull_bytes};

    #[test]
    fn bytes_from_pull_output() {
        assert_eq!(
            pull_bytes("7 metadata, 2 content objects imported; 4 bytes content written\n"),
            4
        );
        assert_eq!(
            pull_bytes("GPG: ...\n3 metadata, 9 content objects fetched; 1.5\u{a0}MB transferred in 2 seconds; 4.0 MB content written\n"),
            1_500_000
        );
        assert_eq!(
            pull_bytes("0 metadata, 0 content objects imported; 0 bytes content written"),
            0
        );
        assert_eq!(
            pull_bytes("8 metadata, 4 content objects imported; 4.1?kB content written"),
            4100
        );
        assert_eq!(pull_bytes(""), 0);
    }

    #[test]
    fn gvariant_strings() {
        assert_eq!(gvariant_string("'1'").as_deref(), Some("1"));
        assert_eq!(gvariant_string("\"it's\"").as_deref(), Some("it's"));
        assert_eq!(gvariant_string("'a\\'b'").as_deref(), Some("a'b"));
        assert_eq!(gvariant_string("uint32 3"), None);
    }
}
