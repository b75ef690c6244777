//! The Merkle tree over a file's (or a day's) rows, built as the rows stream past.
//!
//! Hashing is RFC 6962's (Certificate Transparency), so any CT library can check a root:
//! a leaf is `SHA-256(0x00 || line)` where `line` is the row's canonical NDJSON line without its
//! newline, an inner node is `SHA-256(0x01 || left || right)`, the tree over `n` leaves splits at
//! the largest power of two below `n`, and the empty tree's root is `SHA-256("")`. The prefixes
//! keep a leaf from passing for a node (second pre-image).
//!
//! [`Frontier`] keeps only the roots of the perfect subtrees seen so far (one per set bit of the
//! leaf count: at most 64 hashes), so a day of any size is hashed in constant memory.

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The leaf hash of one canonical line (no newline).
pub fn leaf_hash(line: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(line);
    h.finalize().into()
}

/// The hash of an inner node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The right edge of a growing tree: the perfect subtrees' roots, largest (leftmost) first.
#[derive(Clone, Debug, Default)]
pub struct Frontier {
    /// `(height, root)`; heights strictly decreasing.
    subtrees: Vec<(u32, Hash)>,
    leaves: u64,
}

impl Frontier {
    /// Add the next leaf (a canonical line).
    pub fn push_line(&mut self, line: &[u8]) {
        self.push_leaf(leaf_hash(line));
    }

    /// Add the next leaf by its hash.
    pub fn push_leaf(&mut self, leaf: Hash) {
        let (mut height, mut hash) = (0u32, leaf);
        while let Some(&(top_height, top)) = self.subtrees.last() {
            if top_height != height {
                break;
            }
            self.subtrees.pop();
            hash = node_hash(&top, &hash);
            height += 1;
        }
        self.subtrees.push((height, hash));
        self.leaves += 1;
    }

    /// Leaves added so far.
    pub fn leaves(&self) -> u64 {
        self.leaves
    }

    /// The root of the tree over every leaf added (RFC 6962's MTH): the subtrees folded from the
    /// right.
    pub fn root(&self) -> Hash {
        let mut subtrees = self.subtrees.iter().rev();
        let Some(&(_, mut acc)) = subtrees.next() else {
            return Sha256::digest([]).into();
        };
        for (_, left) in subtrees {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

/// Lower-case hex, as manifests write hashes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6962 §2.1's definition, recursively: the reference the frontier must match.
    fn mth(leaves: &[&[u8]]) -> Hash {
        match leaves.len() {
            0 => Sha256::digest([]).into(),
            1 => leaf_hash(leaves[0]),
            n => {
                let k = (n - 1).next_power_of_two().max(1);
                let k = if k >= n { k / 2 } else { k };
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn the_frontier_root_is_rfc_6962s_for_every_size_up_to_70() {
        let lines: Vec<Vec<u8>> = (0..70).map(|i| format!("{{\"row\":{i}}}").into_bytes()).collect();
        let refs: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
        let mut frontier = Frontier::default();
        assert_eq!(frontier.root(), mth(&[]));
        for n in 1..=refs.len() {
            frontier.push_line(refs[n - 1]);
            assert_eq!(frontier.root(), mth(&refs[..n]), "{n} leaves");
            assert!(frontier.subtrees.len() <= 7, "one subtree per set bit");
        }
        assert_eq!(frontier.leaves(), 70);
    }

    #[test]
    fn known_vectors() {
        // The empty tree and a one-leaf tree of the empty string, from RFC 6962's test data
        // (certificate-transparency-go merkletree tests).
        assert_eq!(hex(&Frontier::default().root()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        let mut one = Frontier::default();
        one.push_line(b"");
        assert_eq!(hex(&one.root()), "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
        assert_eq!(hex(&[0xab, 0x01]), "ab01");
    }

    #[test]
    fn a_changed_or_reordered_leaf_changes_the_root() {
        let root = |lines: &[&[u8]]| {
            let mut f = Frontier::default();
            lines.iter().for_each(|l| f.push_line(l));
            f.root()
        };
        let base = root(&[b"a", b"b", b"c"]);
        assert_ne!(base, root(&[b"a", b"b", b"d"]));
        assert_ne!(base, root(&[b"b", b"a", b"c"]));
        assert_ne!(base, root(&[b"a", b"b"]));
    }
}
