//! Which versions of a model to serve, and which one answers a request. The unversioned path
//! (`/v2/models/{m}/infer`) is resolved here and only here, so routing policies have one place to hook in.

use serde::Deserialize;

/// Which of the versions found on disk to serve (Triton's `version_policy`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged, expecting = "`latest`, `all`, `{latest: N}` or a list of version numbers")]
pub enum VersionPolicy {
    /// `all`, `latest`.
    Named(NamedPolicy),
    /// `{latest: N}`: the N highest.
    Latest { latest: usize },
    /// `[1, 3]`: exactly these.
    Specific(Vec<u64>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NamedPolicy {
    Latest,
    All,
}

impl Default for VersionPolicy {
    fn default() -> Self {
        Self::Named(NamedPolicy::Latest)
    }
}

impl VersionPolicy {
    /// The versions to serve out of those on disk, ascending. A specific version that is not on disk
    /// is returned as an error naming it.
    pub fn select(&self, on_disk: &[u64]) -> Result<Vec<u64>, SelectError> {
        let mut all = on_disk.to_vec();
        all.sort_unstable();
        all.dedup();
        let keep_latest = |n: usize| all[all.len().saturating_sub(n)..].to_vec();
        match self {
            Self::Named(NamedPolicy::Latest) => Ok(keep_latest(1)),
            Self::Named(NamedPolicy::All) => Ok(all),
            Self::Latest { latest: 0 } => Err(SelectError::NoLatest),
            Self::Latest { latest } => Ok(keep_latest(*latest)),
            Self::Specific(wanted) => {
                if let Some(missing) = wanted.iter().find(|v| !all.contains(v)) {
                    return Err(SelectError::Missing { missing: *missing, found: all });
                }
                let mut v = wanted.clone();
                v.sort_unstable();
                v.dedup();
                Ok(v)
            }
        }
    }
}

/// Why a version policy selects nothing servable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    #[error("versions: {{latest: N}} needs N of at least 1")]
    NoLatest,
    #[error("versions: version {missing} is not in the model directory (found {found:?})")]
    Missing { missing: u64, found: Vec<u64> },
}

/// The version chosen to answer a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolution {
    pub version: u64,
}

/// Why no version can answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("version '{0}' is not served")]
    UnknownVersion(String),
    #[error("version {0} is not ready")]
    NotReady(u64),
    #[error("no version is ready")]
    NoneReady,
}

/// Picks the version for a request: the pinned one when the path names it, otherwise the highest
/// ready version (as Triton does). `served` lists each served version with whether it is ready.
pub fn resolve_version(requested: Option<&str>, served: &[(u64, bool)]) -> Result<Resolution, ResolveError> {
    match requested {
        Some(text) => {
            let v: u64 = text.parse().map_err(|_| ResolveError::UnknownVersion(text.to_owned()))?;
            match served.iter().find(|(sv, _)| *sv == v) {
                None => Err(ResolveError::UnknownVersion(text.to_owned())),
                Some((_, false)) => Err(ResolveError::NotReady(v)),
                Some((_, true)) => Ok(Resolution { version: v }),
            }
        }
        None => served
            .iter()
            .filter(|(_, ready)| *ready)
            .map(|(v, _)| *v)
            .max()
            .map(|version| Resolution { version })
            .ok_or(ResolveError::NoneReady),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_pick_versions() {
        let disk = [3, 1, 2, 10];
        assert_eq!(VersionPolicy::default().select(&disk), Ok(vec![10]));
        assert_eq!(VersionPolicy::Named(NamedPolicy::All).select(&disk), Ok(vec![1, 2, 3, 10]));
        assert_eq!(VersionPolicy::Latest { latest: 2 }.select(&disk), Ok(vec![3, 10]));
        assert_eq!(VersionPolicy::Latest { latest: 9 }.select(&disk), Ok(vec![1, 2, 3, 10]));
        assert!(VersionPolicy::Latest { latest: 0 }.select(&disk).is_err());
        assert_eq!(VersionPolicy::Specific(vec![2, 1]).select(&disk), Ok(vec![1, 2]));
        assert!(VersionPolicy::Specific(vec![4]).select(&disk).unwrap_err().to_string().contains("version 4"));
        assert_eq!(
            VersionPolicy::Latest { latest: 0 }.select(&disk).unwrap_err().to_string(),
            "versions: {latest: N} needs N of at least 1"
        );
        assert_eq!(VersionPolicy::default().select(&[]), Ok(vec![]));
    }

    #[test]
    fn policies_parse_from_config_forms() {
        let p = |s: &str| serde_json::from_str::<VersionPolicy>(s);
        assert_eq!(p(r#""all""#).unwrap(), VersionPolicy::Named(NamedPolicy::All));
        assert_eq!(p(r#"{"latest":3}"#).unwrap(), VersionPolicy::Latest { latest: 3 });
        assert_eq!(p("[1,2]").unwrap(), VersionPolicy::Specific(vec![1, 2]));
        assert!(p(r#""newest""#).is_err());
    }

    #[test]
    fn unversioned_requests_go_to_the_highest_ready_version() {
        let served = [(1, true), (2, true), (3, false)];
        assert_eq!(resolve_version(None, &served), Ok(Resolution { version: 2 }));
        assert_eq!(resolve_version(Some("1"), &served), Ok(Resolution { version: 1 }));
        assert_eq!(resolve_version(Some("3"), &served), Err(ResolveError::NotReady(3)));
        assert_eq!(resolve_version(Some("4"), &served), Err(ResolveError::UnknownVersion("4".into())));
        assert_eq!(resolve_version(Some("x"), &served), Err(ResolveError::UnknownVersion("x".into())));
        assert_eq!(resolve_version(None, &[(1, false)]), Err(ResolveError::NoneReady));
    }
}
