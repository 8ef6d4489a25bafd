//! Where the fleet keeps what in etcd, under one prefix (default `/switchyard/`) and a layout version:
//!
//! ```text
//! <prefix>v1/leader                        the leader's name; leased, so it goes when the leader dies;
//!                                          its create_revision fences the leader's writes
//! <prefix>v1/members/<replica>             each live replica; leased
//! <prefix>v1/decisions/<endpoint>          the rollout's last decision (DecisionRecord); written only by
//!                                          compare-and-swap on its previous revision
//! <prefix>v1/evidence/<endpoint>/<copy>    one replica incarnation's test totals (EvidenceRecord); not
//!                                          leased: a dead replica's totals stay frozen in the pool
//! ```

#[derive(Debug, Clone)]
pub(crate) struct Keys {
    root: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        let mut p = prefix.trim().to_owned();
        if !p.ends_with('/') {
            p.push('/');
        }
        Self { root: format!("{p}v1/") }
    }

    pub(crate) fn leader(&self) -> String {
        format!("{}leader", self.root)
    }

    pub(crate) fn members(&self) -> String {
        format!("{}members/", self.root)
    }

    pub(crate) fn member(&self, replica: &str) -> String {
        format!("{}{replica}", self.members())
    }

    pub(crate) fn decisions(&self) -> String {
        format!("{}decisions/", self.root)
    }

    pub(crate) fn decision(&self, endpoint: &str) -> String {
        format!("{}{endpoint}", self.decisions())
    }

    /// The endpoint a decision key belongs to.
    pub(crate) fn endpoint_of_decision<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(self.decisions().as_str())
    }

    pub(crate) fn evidence(&self, endpoint: &str) -> String {
        format!("{}evidence/{endpoint}/", self.root)
    }

    pub(crate) fn evidence_of(&self, endpoint: &str, copy: &str) -> String {
        format!("{}{copy}", self.evidence(endpoint))
    }
}

#[cfg(test)]
mod tests {
    use super::Keys;

    #[test]
    fn the_layout_is_versioned_under_the_prefix() {
        let k = Keys::new("/switchyard");
        assert_eq!(k.decision("scorer"), "/switchyard/v1/decisions/scorer");
        assert_eq!(k.endpoint_of_decision("/switchyard/v1/decisions/scorer"), Some("scorer"));
        assert_eq!(k.evidence_of("scorer", "a@1"), "/switchyard/v1/evidence/scorer/a@1");
        assert_eq!(k.leader(), "/switchyard/v1/leader");
    }
}
