//! "Did you mean" for image names and selectors, by edit distance (case-sensitive: image names
//! differ by case, e.g. `en-US`; kiln-syntax's suggestions for keywords fold case).

use kiln_syntax::suggest::distance;

/// The candidate closest to `word` when it is close enough to be a typo (ties: the smallest name).
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_names_are_suggested_and_far_ones_not() {
        let names = ["debian-12", "debian-12-web", "ws2022-en-US"];
        assert_eq!(closest("debain-12", names), Some("debian-12"));
        assert_eq!(closest("ws2022-en-UK", names), Some("ws2022-en-US"));
        assert_eq!(closest("centos-9", names), None);
    }
}
