//! The one set of rules for finding a session by its title, used by the session index and by
//! every backend that looks up its own sessions: the query is trimmed; a case-insensitive exact
//! title wins, else a unique case-insensitive part of a title; among several matches at one
//! level, the one preferred by the caller (e.g. in the same workspace) wins if it is the only
//! one; otherwise the query is ambiguous and the error lists the candidates (at most ten).

use crate::error::{Error, Result};

/// Candidates listed in an ambiguity error.
const MAX_CANDIDATES: usize = 10;

/// Find the item whose title matches `query` by the rules above. `describe` renders an item
/// for the ambiguity error; `prefer` breaks ties between several matches.
pub fn find_by_title<'a, T>(
    query: &str,
    items: &'a [T],
    title_of: impl Fn(&T) -> Option<&str>,
    describe: impl Fn(&T) -> String,
    prefer: Option<&dyn Fn(&T) -> bool>,
) -> Result<&'a T> {
    let wanted = query.trim().to_lowercase();
    if wanted.is_empty() {
        return Err(Error::session_not_found(query));
    }
    let title = |item: &T| title_of(item).unwrap_or("").trim().to_lowercase();
    let exact: Vec<&T> = items.iter().filter(|i| title(i) == wanted).collect();
    let matches = if exact.is_empty() {
        items
            .iter()
            .filter(|i| title(i).contains(&wanted))
            .collect()
    } else {
        exact
    };
    match matches.as_slice() {
        [] => Err(Error::session_not_found(query)),
        [one] => Ok(one),
        several => {
            if let Some(prefer) = prefer
                && let [one] = several.iter().filter(|i| prefer(i)).collect::<Vec<_>>()[..]
            {
                return Ok(one);
            }
            Err(Error::AmbiguousSession {
                query: query.trim().to_string(),
                candidates: several
                    .iter()
                    .take(MAX_CANDIDATES)
                    .map(|i| describe(i))
                    .collect(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(query: &str, titles: &'a [&'a str]) -> Result<&'a &'a str> {
        find_by_title(query, titles, |t| Some(t), |t| t.to_string(), None)
    }

    #[test]
    fn exact_beats_part_and_case_and_spaces_do_not_matter() {
        let titles = ["Fix the parser", "Fix the parser tests", "Write docs"];
        assert_eq!(
            find("  fix THE parser ", &titles).unwrap(),
            &"Fix the parser"
        );
        assert_eq!(find("docs", &titles).unwrap(), &"Write docs");
        assert!(matches!(
            find("nothing", &titles),
            Err(Error::NotFound { .. })
        ));
        assert!(matches!(find("  ", &titles), Err(Error::NotFound { .. })));
    }

    #[test]
    fn several_matches_are_ambiguous_unless_one_is_preferred() {
        let titles = ["parser a", "parser b", "docs"];
        match find("parser", &titles) {
            Err(Error::AmbiguousSession { candidates, .. }) => {
                assert_eq!(candidates, ["parser a", "parser b"])
            }
            other => panic!("{other:?}"),
        }
        let prefer_b = |t: &&str| t.ends_with('b');
        let found = find_by_title(
            "parser",
            &titles,
            |t| Some(t),
            |t| t.to_string(),
            Some(&prefer_b),
        );
        assert_eq!(found.unwrap(), &"parser b");
    }
}
