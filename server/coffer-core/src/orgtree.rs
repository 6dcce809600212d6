//! The organization tree: ancestors, subtrees and "is inside", with a depth
//! guard. The one place the tree is walked — role scopes, plugin grants and
//! (next) settings inheritance all ask it.
//!
//! The tree is small (orgs, not devices) and changes only when an org is
//! created, so the core keeps one snapshot in memory and replaces it after
//! each creation; readers hold an `Arc` of the snapshot they started with.

use std::collections::{BTreeMap, BTreeSet};

use coffer_types::Name;

/// The deepest an org may sit below its top-level org (the top is depth 1).
/// Walks stop here too, so a cycle written behind the server's back cannot
/// make them loop.
pub const MAX_DEPTH: usize = 64;

/// A snapshot of the org tree.
#[derive(Debug, Clone, Default)]
pub struct OrgTree {
    parent: BTreeMap<Name, Option<Name>>,
    children: BTreeMap<Name, BTreeSet<Name>>,
}

impl OrgTree {
    /// Build from `(org, parent)` pairs.
    pub fn new(orgs: impl IntoIterator<Item = (Name, Option<Name>)>) -> Self {
        let mut t = Self::default();
        for (org, parent) in orgs {
            t.insert(org, parent);
        }
        t
    }

    pub(crate) fn insert(&mut self, org: Name, parent: Option<Name>) {
        if let Some(p) = &parent {
            self.children
                .entry(p.clone())
                .or_default()
                .insert(org.clone());
        }
        self.parent.insert(org, parent);
    }

    pub fn contains(&self, org: &Name) -> bool {
        self.parent.contains_key(org)
    }

    /// Every org, by name.
    pub fn orgs(&self) -> impl Iterator<Item = &Name> {
        self.parent.keys()
    }

    pub fn parent(&self, org: &Name) -> Option<&Name> {
        self.parent.get(org).and_then(Option::as_ref)
    }

    /// `org`, its parent, its parent's parent, … up to the top-level org (at
    /// most [`MAX_DEPTH`] of them). Empty for an unknown org.
    pub fn ancestors(&self, org: &Name) -> Vec<&Name> {
        let mut out = Vec::new();
        let mut at = self.parent.get_key_value(org).map(|(k, _)| k);
        while let Some(o) = at {
            if out.len() == MAX_DEPTH || out.contains(&o) {
                break;
            }
            out.push(o);
            at = self.parent(o);
        }
        out
    }

    /// How deep `org` sits: 1 for a top-level org, 0 if unknown.
    pub fn depth(&self, org: &Name) -> usize {
        self.ancestors(org).len()
    }

    /// Whether `org` is `root` or below it.
    pub fn is_inside(&self, org: &Name, root: &Name) -> bool {
        self.ancestors(org).contains(&root)
    }

    /// `root` and every org below it, parents before children (at most
    /// [`MAX_DEPTH`] levels). Empty for an unknown org.
    pub fn subtree(&self, root: &Name) -> Vec<&Name> {
        let Some((root, _)) = self.parent.get_key_value(root) else {
            return Vec::new();
        };
        let mut out = vec![root];
        let mut seen = BTreeSet::from([root]);
        let mut level = vec![root];
        for _ in 1..MAX_DEPTH {
            let next: Vec<&Name> = level
                .iter()
                .filter_map(|o| self.children.get(*o))
                .flatten()
                .filter(|c| seen.insert(*c))
                .collect();
            if next.is_empty() {
                break;
            }
            out.extend(&next);
            level = next;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    fn tree() -> OrgTree {
        OrgTree::new([
            (n("acme"), None),
            (n("acme-eu"), Some(n("acme"))),
            (n("acme-eu-sales"), Some(n("acme-eu"))),
            (n("acme-us"), Some(n("acme"))),
            (n("beta"), None),
        ])
    }

    #[test]
    fn ancestors_subtrees_and_inside() {
        let t = tree();
        let names = |v: Vec<&Name>| v.into_iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            names(t.ancestors(&n("acme-eu-sales"))),
            ["acme-eu-sales", "acme-eu", "acme"]
        );
        assert_eq!(
            names(t.subtree(&n("acme"))),
            ["acme", "acme-eu", "acme-us", "acme-eu-sales"]
        );
        assert_eq!(
            names(t.subtree(&n("acme-eu"))),
            ["acme-eu", "acme-eu-sales"]
        );
        assert!(t.is_inside(&n("acme-eu-sales"), &n("acme")));
        assert!(t.is_inside(&n("acme"), &n("acme")));
        assert!(!t.is_inside(&n("acme"), &n("acme-eu")));
        assert!(!t.is_inside(&n("acme-us"), &n("acme-eu")));
        assert!(!t.is_inside(&n("beta"), &n("acme")));
        assert_eq!(t.depth(&n("acme-eu-sales")), 3);
        assert!(t.subtree(&n("nope")).is_empty() && t.ancestors(&n("nope")).is_empty());
    }

    #[test]
    fn a_cycle_or_an_endless_chain_stops_at_the_guard() {
        // A cycle cannot be created through the API; if the database held
        // one, walks still end.
        let t = OrgTree::new([(n("a"), Some(n("b"))), (n("b"), Some(n("a")))]);
        assert_eq!(t.ancestors(&n("a")).len(), 2);
        assert!(!t.is_inside(&n("a"), &n("c")));
        assert_eq!(t.subtree(&n("a")).len(), 2);
        let chain = OrgTree::new((0..200).map(|i| {
            (
                n(&format!("o{i}")),
                (i > 0).then(|| n(&format!("o{}", i - 1))),
            )
        }));
        assert_eq!(chain.ancestors(&n("o199")).len(), MAX_DEPTH);
        assert_eq!(chain.subtree(&n("o0")).len(), MAX_DEPTH);
        assert!(!chain.is_inside(&n("o199"), &n("o0")));
    }
}
